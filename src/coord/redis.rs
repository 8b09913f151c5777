//! Redis coordinator for any number of instances. Every check-and-change is one Lua script, so it
//! is atomic on the server; one recording's keys share the hash tag `{id}` and so one Redis
//! Cluster slot.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{Claim, Coordinator, Failure, NewRecording, RecordingMeta, Slot, StateUpdate, now_ms};
use crate::domain::{
    ChunkDigest, ChunkIndex, ChunkRecord, Indexing, Metadata, OutputFormat, Owner, Rate,
    RecordingId, RecordingState, TokenHash,
};

use crate::error::{Error, Result};

/// Shared prologue: resolve the recording and refuse it unless it is `recording`.
const REQUIRE_RECORDING: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if state ~= 'recording' then return {'not_recording', state} end
local function set_indexing(want)
  local mode = redis.call('HGET', KEYS[1], 'indexing')
  if mode and mode ~= want then return mode end
  if not mode then redis.call('HSET', KEYS[1], 'indexing', want) end
  return nil
end
"#;

/// KEYS: meta, chunks, digests. ARGV: seq ('' = next), sha256, size, max_chunks, ttl.
const CLAIM: &str = r#"
local seq, sha, size, max, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local want = 'seq'
if seq == '' then want = 'next' end
local other = set_indexing(want)
if other then return {'indexing_conflict', other} end
local index = seq
if want == 'next' then
  index = redis.call('HGET', KEYS[3], sha)
  if not index then
    local n = redis.call('HINCRBY', KEYS[1], 'next', 1) - 1
    if n >= max then
      redis.call('HINCRBY', KEYS[1], 'next', -1)
      return {'too_many'}
    end
    index = tostring(n)
    redis.call('HSET', KEYS[3], sha, index)
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
local digest = sha .. ':' .. size
local entry = redis.call('HGET', KEYS[2], index)
if entry then
  if string.sub(entry, 3) ~= digest then return {'conflict', index} end
  if string.sub(entry, 1, 1) == 's' then return {'stored', index} end
  return {'in_flight', index}
end
redis.call('HSET', KEYS[2], index, 'p:' .. digest)
redis.call('EXPIRE', KEYS[2], ttl)
return {'fresh', index}
"#;

/// KEYS: meta, chunks. ARGV: index.
const RESERVE: &str = r#"
local other = set_indexing('seq')
if other then return {'indexing_conflict', other} end
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if entry then return {'ok', entry} end
return {'ok'}
"#;

/// KEYS: meta, chunks. ARGV: index, digest, size, now.
const COMMIT: &str = r#"
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return {'not_uploaded'} end
if string.sub(entry, 3) ~= ARGV[2] then return {'conflict'} end
if string.sub(entry, 1, 1) == 's' then return {'already'} end
redis.call('HSET', KEYS[2], ARGV[1], 's:' .. ARGV[2])
redis.call('HINCRBY', KEYS[1], 'received', 1)
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
redis.call('HSET', KEYS[1], 'updated', ARGV[4])
return {'committed', tostring(bytes)}
"#;

/// KEYS: meta, chunks. ARGV: count, now, ttl.
const STOP: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if state ~= 'recording' then return {'already_stopped', state} end
local count = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[2])
local stored, beyond = {}, {}
for i = 1, #all, 2 do
  local idx = tonumber(all[i])
  if string.sub(all[i + 1], 1, 1) == 's' then stored[idx] = true end
  if idx >= count then table.insert(beyond, idx) end
end
local missing, total = {}, 0
for i = 0, count - 1 do
  if not stored[i] then
    total = total + 1
    if #missing < 1000 then table.insert(missing, tostring(i)) end
  end
end
if total > 0 then return {'missing', tostring(total), unpack(missing)} end
if #beyond > 0 then
  table.sort(beyond)
  local listed = {}
  for i = 1, math.min(#beyond, 1000) do listed[i] = tostring(beyond[i]) end
  return {'beyond', unpack(listed)}
end
redis.call('HSET', KEYS[1], 'state', 'stopping', 'count', ARGV[1], 'updated', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return {'ok'}
"#;

/// KEYS: meta. ARGV: from, to, now, error code, error message, output, chunk count, salvage,
/// abandoned.
const TRANSITION: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'not_found'} end
if state ~= ARGV[1] then return {'stale', state} end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error_code', ARGV[4], 'error_message', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'output', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'count', ARGV[7]) end
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'salvage', '1')
  redis.call('HDEL', KEYS[1], 'error_code', 'error_message')
end
if ARGV[9] == '1' then redis.call('HSET', KEYS[1], 'abandoned', '1') end
return {'ok'}
"#;

/// KEYS: meta, chunks, digests. ARGV: ttl, n, n field/value pairs of meta, then index/digest
/// pairs of stored chunks.
const RESTORE: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then return 0 end
local ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2])
for k = 0, n - 1 do redis.call('HSET', KEYS[1], ARGV[3 + 2 * k], ARGV[4 + 2 * k]) end
local nxt = 0
for i = 3 + 2 * n, #ARGV, 2 do
  local idx, digest = ARGV[i], ARGV[i + 1]
  redis.call('HSET', KEYS[2], idx, 's:' .. digest)
  redis.call('HSET', KEYS[3], string.match(digest, '^[^:]+'), idx)
  if tonumber(idx) >= nxt then nxt = tonumber(idx) + 1 end
end
redis.call('HSET', KEYS[1], 'next', nxt)
for k = 1, 3 do redis.call('EXPIRE', KEYS[k], ttl) end
return 1
"#;

/// KEYS: meta, chunks, digests. ARGV: index, existing digest, its sha256, its size, our sha256.
const ADOPT: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'state') == 0 then return 0 end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 's:' .. ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[1], 's:' .. ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'received', 1)
  redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[4])
end
if redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[5]) end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'next') or '0') <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'next', tonumber(ARGV[1]) + 1)
end
return 1
"#;

/// KEYS: lease. ARGV: holder, ttl in ms. Take or renew it: 1 while it is the holder's.
const LEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// KEYS: rate limit. ARGV: interval ms, tolerance ms. GCRA on the server's clock, as
/// `domain::gcra`: 0 when admitted, else the ms until one would be.
const THROTTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local from = tat - tonumber(ARGV[2])
if now < from then return from - now end
local next = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], next, 'PX', next - now + 1000)
return 0
"#;

/// KEYS: tally. ARGV: delta. Nil when the tally is not known.
const TALLY: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"#;

/// KEYS: tally. ARGV: value, set unless known.
const SETTLE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return tonumber(redis.call('GET', KEYS[1]))
"#;

/// KEYS: lease. ARGV: holder.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

pub struct RedisCoordinator {
    conn: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    claim: Script,
    reserve: Script,
    commit: Script,
    stop: Script,
    transition: Script,
    restore: Script,
    adopt: Script,
    lease: Script,
    release: Script,
    throttle: Script,
    tally: Script,
    settle: Script,
}

struct Keys {
    meta: String,
    chunks: String,
    digests: String,
}

impl RedisCoordinator {
    fn keys(&self, id: &RecordingId) -> Keys {
        let p = &self.prefix;
        Keys {
            meta: format!("{p}rec:{{{id}}}:meta"),
            chunks: format!("{p}rec:{{{id}}}:chunks"),
            digests: format!("{p}rec:{{{id}}}:digests"),
        }
    }
}

impl RedisCoordinator {
    /// Connect to Redis. Every key starts with `prefix`, so deployments can share a server.
    /// `ttl` bounds how long a recording's coordination state outlives its last change; the
    /// manifest in object storage is the durable record.
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        let guarded = |body: &str| Script::new(&format!("{REQUIRE_RECORDING}{body}"));
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            ttl_secs: ttl.as_secs().max(1),
            claim: guarded(CLAIM),
            reserve: guarded(RESERVE),
            commit: guarded(COMMIT),
            stop: Script::new(STOP),
            transition: Script::new(TRANSITION),
            restore: Script::new(RESTORE),
            adopt: Script::new(ADOPT),
            lease: Script::new(LEASE),
            release: Script::new(RELEASE),
            throttle: Script::new(THROTTLE),
            tally: Script::new(TALLY),
            settle: Script::new(SETTLE),
        })
    }

    /// The connection, for the other Redis-backed adapters of the same instance.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// Map the statuses the scripts share to errors; `None` for the script's own statuses.
fn common_status(reply: &[String]) -> Option<Error> {
    match reply.first().map(String::as_str) {
        Some("not_found") => Some(Error::RecordingNotFound),
        Some("not_recording") => Some(Error::NotRecording {
            state: state_name(reply.get(1)),
        }),
        Some("indexing_conflict") => Some(Error::IndexingConflict {
            existing: match reply.get(1).map(String::as_str) {
                Some("next") => Indexing::Next.as_str(),
                _ => Indexing::Seq.as_str(),
            },
        }),
        None => Some(Error::Coordination("empty script reply".into())),
        _ => None,
    }
}

fn state_name(raw: Option<&String>) -> &'static str {
    raw.and_then(|s| RecordingState::parse(s).ok())
        .map(RecordingState::as_str)
        .unwrap_or("unknown")
}

fn unexpected(reply: &[String]) -> Error {
    Error::Coordination(format!("unexpected script reply {reply:?}"))
}

fn parse_index(raw: Option<&String>) -> Result<ChunkIndex> {
    raw.and_then(|s| s.parse().ok())
        .map(ChunkIndex::new)
        .ok_or_else(|| Error::Coordination("script returned no index".into()))
}

fn parse_indices(items: &[String]) -> Vec<u32> {
    items.iter().filter_map(|s| s.parse().ok()).collect()
}

fn parse_entry(raw: &str) -> Result<ChunkRecord> {
    let (state, digest) = raw
        .split_once(':')
        .ok_or_else(|| Error::Coordination(format!("malformed chunk entry {raw:?}")))?;
    Ok(ChunkRecord {
        digest: ChunkDigest::decode(digest)?,
        stored: state == "s",
    })
}

fn parse_meta(id: &RecordingId, mut h: HashMap<String, String>) -> Result<RecordingMeta> {
    let mut take = |k: &str| h.remove(k);
    let num = |v: Option<String>| v.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let state = RecordingState::parse(&take("state").unwrap_or_default())?;
    let failure = match (take("error_code"), take("error_message")) {
        (Some(code), message) => Some(Failure {
            code,
            message: message.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(RecordingMeta {
        id: id.clone(),
        state,
        mime_type: take("mime").unwrap_or_default(),
        token_hash: TokenHash::from_stored(take("token").unwrap_or_default()),
        owner: Owner::stored(take("tenant").as_deref(), take("owner").as_deref()),
        metadata: take("metadata")
            .and_then(|m| Metadata::parse(&serde_json::from_str(&m).ok()?).ok())
            .unwrap_or_default(),
        format: take("format")
            .and_then(|f| serde_json::from_str(&f).ok())
            .map(|f| OutputFormat::from_json(&f))
            .unwrap_or_default(),
        created_at_ms: num(take("created")),
        updated_at_ms: num(take("updated")),
        chunks_received: num(take("received")) as u32,
        bytes_received: num(take("bytes")),
        chunk_count: take("count").and_then(|s| s.parse().ok()),
        indexing: take("indexing").and_then(|s| Indexing::parse(&s)),
        failure,
        output: take("output"),
        salvage: take("salvage").as_deref() == Some("1"),
        abandoned: take("abandoned").as_deref() == Some("1"),
    })
}

/// A recording's state as the fields of its `meta` hash.
fn fields_of(meta: &RecordingMeta) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("state", meta.state.as_str().to_owned()),
        ("mime", meta.mime_type.clone()),
        ("token", meta.token_hash.as_str().to_owned()),
        ("created", meta.created_at_ms.to_string()),
        ("updated", meta.updated_at_ms.to_string()),
        ("received", meta.chunks_received.to_string()),
        ("bytes", meta.bytes_received.to_string()),
    ];
    let optional = [
        ("count", meta.chunk_count.map(|c| c.to_string())),
        ("indexing", meta.indexing.map(|i| i.as_str().to_owned())),
        ("error_code", meta.failure.as_ref().map(|f| f.code.clone())),
        (
            "error_message",
            meta.failure.as_ref().map(|f| f.message.clone()),
        ),
        ("output", meta.output.clone()),
        ("tenant", Some(meta.owner.tenant.as_str().to_owned())),
        (
            "owner",
            meta.owner.subject.as_ref().map(|s| s.as_str().to_owned()),
        ),
        (
            "metadata",
            (!meta.metadata.is_empty()).then(|| meta.metadata.to_json().to_string()),
        ),
        (
            "format",
            (!meta.format.is_default()).then(|| meta.format.to_json().to_string()),
        ),
        ("salvage", meta.salvage.then(|| "1".to_owned())),
        ("abandoned", meta.abandoned.then(|| "1".to_owned())),
    ];
    fields.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    fields
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    async fn create(&self, rec: &NewRecording) -> Result<()> {
        let k = self.keys(&rec.id);
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset_multiple(&k.meta, &fields_of(&rec.meta()))
            .expire(&k.meta, self.ttl_secs as i64)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn meta(&self, id: &RecordingId) -> Result<Option<RecordingMeta>> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = conn.hgetall(self.keys(id).meta).await?;
        // Without a state it is not a recording: after a loss, an event's version counter can
        // be all there is of it.
        if !h.contains_key("state") {
            return Ok(None);
        }
        parse_meta(id, h).map(Some)
    }

    async fn reserve(&self, id: &RecordingId, index: ChunkIndex) -> Result<Option<ChunkRecord>> {
        let k = self.keys(id);
        let reply: Vec<String> = self
            .reserve
            .key(&k.meta)
            .key(&k.chunks)
            .arg(index.get())
            .invoke_async(&mut self.conn.clone())
            .await?;
        if let Some(e) = common_status(&reply) {
            return Err(e);
        }
        match reply.get(1) {
            Some(entry) => parse_entry(entry).map(Some),
            None => Ok(None),
        }
    }

    async fn claim(
        &self,
        id: &RecordingId,
        slot: Slot,
        digest: &ChunkDigest,
        max_chunks: u32,
    ) -> Result<Claim> {
        let k = self.keys(id);
        let seq = match slot {
            Slot::Seq(i) => i.get().to_string(),
            Slot::Next => String::new(),
        };
        let reply: Vec<String> = self
            .claim
            .key(&k.meta)
            .key(&k.chunks)
            .key(&k.digests)
            .arg(seq)
            .arg(&digest.sha256)
            .arg(digest.size)
            .arg(max_chunks)
            .arg(self.ttl_secs)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if let Some(e) = common_status(&reply) {
            return Err(e);
        }
        match reply[0].as_str() {
            "fresh" => Ok(Claim::Fresh(parse_index(reply.get(1))?)),
            "in_flight" => Ok(Claim::InFlight(parse_index(reply.get(1))?)),
            "stored" => Ok(Claim::Stored(parse_index(reply.get(1))?)),
            "conflict" => Err(Error::ChunkConflict {
                index: parse_index(reply.get(1))?.get(),
            }),
            "too_many" => Err(Error::TooManyChunks { max: max_chunks }),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn commit(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        digest: &ChunkDigest,
    ) -> Result<Option<u64>> {
        let k = self.keys(id);
        let reply: Vec<String> = self
            .commit
            .key(&k.meta)
            .key(&k.chunks)
            .arg(index.get())
            .arg(digest.encode())
            .arg(digest.size)
            .arg(now_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        if let Some(e) = common_status(&reply) {
            return Err(e);
        }
        match reply[0].as_str() {
            "committed" => Ok(Some(
                reply
                    .get(1)
                    .and_then(|b| b.parse().ok())
                    .unwrap_or_default(),
            )),
            "already" => Ok(None),
            "not_uploaded" => Err(Error::ChunkNotUploaded { index: index.get() }),
            "conflict" => Err(Error::ChunkConflict { index: index.get() }),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn stop(&self, id: &RecordingId, count: u32) -> Result<()> {
        let k = self.keys(id);
        let reply: Vec<String> = self
            .stop
            .key(&k.meta)
            .key(&k.chunks)
            .key(&k.digests)
            .arg(count)
            .arg(now_ms())
            .arg(self.ttl_secs)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("not_found") => Err(Error::RecordingNotFound),
            Some("already_stopped") => Err(Error::AlreadyStopped {
                state: state_name(reply.get(1)),
            }),
            Some("missing") => Err(Error::MissingChunks {
                count,
                missing_total: reply.get(1).and_then(|s| s.parse().ok()).unwrap_or(0),
                missing: parse_indices(&reply[2..]),
            }),
            Some("beyond") => Err(Error::ChunkCountMismatch {
                count,
                beyond: parse_indices(&reply[1..]),
            }),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn transition(
        &self,
        id: &RecordingId,
        from: RecordingState,
        to: RecordingState,
        update: StateUpdate,
    ) -> Result<bool> {
        let (code, message) = update
            .failure
            .map(|f| (f.code, f.message))
            .unwrap_or_default();
        let reply: Vec<String> = self
            .transition
            .key(self.keys(id).meta)
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(now_ms())
            .arg(code)
            .arg(message)
            .arg(update.output.unwrap_or_default())
            .arg(
                update
                    .chunk_count
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            )
            .arg(if update.salvage { "1" } else { "" })
            .arg(if update.abandoned { "1" } else { "" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(true),
            Some("stale") => Ok(false),
            Some("not_found") => Err(Error::RecordingNotFound),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn chunks(&self, id: &RecordingId) -> Result<BTreeMap<u32, ChunkRecord>> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> = conn.hgetall(self.keys(id).chunks).await?;
        all.into_iter()
            .map(|(i, entry)| {
                let i = i
                    .parse()
                    .map_err(|_| Error::Coordination(format!("malformed chunk index {i:?}")))?;
                Ok((i, parse_entry(&entry)?))
            })
            .collect()
    }

    async fn restore(
        &self,
        meta: &RecordingMeta,
        chunks: &BTreeMap<u32, ChunkDigest>,
    ) -> Result<bool> {
        let k = self.keys(&meta.id);
        let fields = fields_of(meta);
        let mut call = self.restore.key(&k.meta);
        call.key(&k.chunks)
            .key(&k.digests)
            .arg(self.ttl_secs)
            .arg(fields.len());
        for (name, value) in &fields {
            call.arg(*name).arg(value);
        }
        for (index, digest) in chunks {
            call.arg(index).arg(digest.encode());
        }
        let restored: i64 = call.invoke_async(&mut self.conn.clone()).await?;
        Ok(restored == 1)
    }

    async fn adopt(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        existing: &ChunkDigest,
        ours: &ChunkDigest,
    ) -> Result<()> {
        let k = self.keys(id);
        let _: i64 = self
            .adopt
            .key(&k.meta)
            .key(&k.chunks)
            .key(&k.digests)
            .arg(index.get())
            .arg(existing.encode())
            .arg(&existing.sha256)
            .arg(existing.size)
            .arg(&ours.sha256)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let held: i64 = self
            .lease
            .key(format!("{}lease:{name}", self.prefix))
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let _: i64 = self
            .release
            .key(format!("{}lease:{name}", self.prefix))
            .arg(holder)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn held(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let exists: bool = conn.exists(format!("{}lease:{name}", self.prefix)).await?;
        Ok(exists)
    }

    async fn forget(&self, id: &RecordingId) -> Result<()> {
        let k = self.keys(id);
        let p = &self.prefix;
        let mut conn = self.conn.clone();
        let _: () = conn
            .del(&[
                k.meta,
                k.chunks,
                k.digests,
                format!("{p}rec:{{{id}}}:events"),
            ])
            .await?;
        Ok(())
    }

    async fn count(&self, name: &str, ttl: Duration) -> Result<u64> {
        let key = format!("{}count:{name}", self.prefix);
        let (n, _): (u64, bool) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis().max(1) as u64)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }

    async fn tally(&self, name: &str, delta: i64) -> Result<Option<i64>> {
        Ok(self
            .tally
            .key(format!("{}tally:{name}", self.prefix))
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    async fn settle(&self, name: &str, value: i64) -> Result<i64> {
        Ok(self
            .settle
            .key(format!("{}tally:{name}", self.prefix))
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    async fn throttle(&self, key: &str, rate: Rate) -> Result<Option<Duration>> {
        let wait: u64 = self
            .throttle
            .key(format!("{}rl:{key}", self.prefix))
            .arg(rate.interval_ms)
            .arg(rate.tolerance_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait)))
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}
