//! The durable record of a recording: its manifest and its chunk objects in the object store.
//!
//! The coordinator's state can be lost at any moment: a Redis restart without persistence, a
//! failover to a replica that had not caught up, a flush, the keys' TTL, a restart of the
//! embedded server. The store is the record: from it a finished recording is served as it was,
//! and an unfinished one is rebuilt (its committed chunks and their digests from a listing of
//! its chunk prefix, the next index above the highest) and goes on; a stopped one is queued
//! for its merge again.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tracing::info;

use crate::coord::{Coordinator, Failure, RecordingMeta};
use crate::domain::{
    ChunkDigest, ChunkHasher, Indexing, Metadata, ObjectKey, OutputFormat, Owner, RecordingId,
    RecordingState, Tenant, TokenHash,
};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::queue::{MergeJob, MergeQueue};
use crate::service::{Limits, StatusView, rfc3339};
use crate::store::{ObjectInfo, ObjectStore, Presign, PresignedUrl, read_all};
use crate::webhook::{WebhookType, Webhooks};

/// The manifest's format: 2 added the millisecond timestamps, `salvage` and `limits`.
const VERSION: u64 = 2;

/// How long a deletion holds its leases at most (it renews nothing: it is short).
const DELETE_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a deletion waits for a merge in flight to stop.
const MERGE_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The lease a deletion takes to tell a merge in flight to stop: merges watch for it.
pub fn cancel_lease(id: &RecordingId) -> String {
    format!("delete:{id}")
}

/// The tally of the bytes a tenant's recordings hold.
fn tenant_bytes_tally(tenant: &Tenant) -> String {
    format!("tenant-bytes:{}", tenant.key_part())
}

/// Chunk objects read at once when a recording is rebuilt.
const HEADS_IN_FLIGHT: usize = 16;

/// A recording's manifest, from its coordination state.
pub fn manifest(meta: &RecordingMeta, limits: &Limits) -> Value {
    json!({
        "version": VERSION,
        "recording": StatusView::of(meta),
        "tokenSha256": meta.token_hash.as_str(),
        "tenant": meta.owner.tenant.as_str(),
        "owner": meta.owner.subject.as_ref().map(|s| s.as_str()),
        "indexing": meta.indexing.map(|i| i.as_str()),
        "createdAtMs": meta.created_at_ms,
        "updatedAtMs": meta.updated_at_ms,
        "salvage": meta.salvage,
        "abandoned": meta.abandoned,
        "limits": {
            "maxChunkBytes": limits.max_chunk_bytes,
            "maxChunks": limits.max_chunks,
        },
    })
}

/// A manifest read back into coordination state.
pub fn meta_of(id: &RecordingId, doc: &Value) -> Result<RecordingMeta> {
    let bad = |what: &str| Error::Storage(format!("manifest of {id}: {what}"));
    let rec = &doc["recording"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let ms = |exact: &Value, stamp: &Value| {
        exact.as_u64().or_else(|| {
            let stamp = humantime::parse_rfc3339(stamp.as_str()?).ok()?;
            let since = stamp.duration_since(std::time::UNIX_EPOCH).ok()?;
            Some(since.as_millis() as u64)
        })
    };
    Ok(RecordingMeta {
        id: id.clone(),
        state: RecordingState::parse(rec["status"].as_str().ok_or_else(|| bad("no status"))?)?,
        mime_type: text(&rec["mimeType"]).ok_or_else(|| bad("no mimeType"))?,
        token_hash: TokenHash::from_stored(
            text(&doc["tokenSha256"]).ok_or_else(|| bad("no tokenSha256"))?,
        ),
        owner: Owner::stored(doc["tenant"].as_str(), doc["owner"].as_str()),
        metadata: rec
            .get("metadata")
            .and_then(|m| Metadata::parse(m).ok())
            .unwrap_or_default(),
        format: OutputFormat::from_json(&rec["format"]),
        created_at_ms: ms(&doc["createdAtMs"], &rec["createdAt"]).unwrap_or(0),
        updated_at_ms: ms(&doc["updatedAtMs"], &rec["updatedAt"]).unwrap_or(0),
        chunks_received: rec["chunksReceived"].as_u64().unwrap_or(0) as u32,
        bytes_received: rec["bytesReceived"].as_u64().unwrap_or(0),
        chunk_count: rec["chunkCount"].as_u64().map(|c| c as u32),
        indexing: doc["indexing"].as_str().and_then(Indexing::parse),
        failure: rec["error"]["code"].as_str().map(|code| Failure {
            code: code.to_owned(),
            message: rec["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }),
        output: rec.get("output").map(Value::to_string),
        salvage: doc["salvage"].as_bool().unwrap_or(false),
        abandoned: doc["abandoned"].as_bool().unwrap_or(false),
    })
}

/// Reads and writes the record, and rebuilds coordination state from it.
pub struct Records {
    store: Arc<dyn ObjectStore>,
    coord: Arc<dyn Coordinator>,
    queue: Arc<dyn MergeQueue>,
    webhooks: Arc<Webhooks>,
    metrics: Arc<Metrics>,
    limits: Limits,
}

impl Records {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        coord: Arc<dyn Coordinator>,
        queue: Arc<dyn MergeQueue>,
        webhooks: Arc<Webhooks>,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            coord,
            queue,
            webhooks,
            metrics,
            limits,
        }
    }

    /// This app's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where each change in a recording's life is announced to the app's server.
    pub fn webhooks(&self) -> &Arc<Webhooks> {
        &self.webhooks
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coord
    }

    pub fn queue(&self) -> &Arc<dyn MergeQueue> {
        &self.queue
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What clients see of a recording: its status, and once it is ready, fresh presigned URLs
    /// of its video and its poster.
    pub async fn view(&self, meta: &RecordingMeta) -> StatusView {
        let mut view = StatusView::of(meta);
        if meta.state != RecordingState::Ready {
            return view;
        }
        match self.download(meta).await {
            Ok(url) => {
                view.download_url = Some(url.url);
                view.expires_at = Some(rfc3339(url.expires_at));
            }
            Err(e) => tracing::warn!(recording_id = %meta.id, error = %e, "no download URL"),
        }
        match self.poster(meta).await {
            Ok(url) => view.poster_url = Some(url.url),
            Err(Error::NoPoster) => {}
            Err(e) => tracing::warn!(recording_id = %meta.id, error = %e, "no poster URL"),
        }
        view
    }

    /// A presigned download of the merged video, as an attachment named
    /// `recording-{id}.{ext}`.
    pub async fn download(&self, meta: &RecordingMeta) -> Result<PresignedUrl> {
        let output = ready_output(meta)?;
        let key = output["key"]
            .as_str()
            .ok_or_else(|| Error::Internal("output has no key".into()))
            .and_then(ObjectKey::parse)?;
        let content_type = output["contentType"].as_str().unwrap_or("video/webm");
        let ext = key.file_name().rsplit('.').next().unwrap_or("webm");
        let file_name = format!("recording-{}.{ext}", meta.id);
        let get = Presign::Get {
            file_name: &file_name,
            content_type,
        };
        let ttl = self.limits.presign_ttl;
        self.store.presign(&key, get, ttl).await
    }

    /// A presigned GET of the merged video's poster; [`Error::NoPoster`] when it has none.
    pub async fn poster(&self, meta: &RecordingMeta) -> Result<PresignedUrl> {
        let output = ready_output(meta)?;
        let Some(key) = output["poster"]["key"].as_str() else {
            return Err(Error::NoPoster);
        };
        let file_name = format!("recording-{}.jpg", meta.id);
        let get = Presign::Get {
            file_name: &file_name,
            content_type: "image/jpeg",
        };
        let ttl = self.limits.presign_ttl;
        self.store.presign(&ObjectKey::parse(key)?, get, ttl).await
    }

    /// A recording's state: the coordinator's; when it has none, the record's (a finished
    /// recording as it was, an unfinished one rebuilt into the coordinator). `None` when
    /// neither knows it.
    pub async fn meta(&self, id: &RecordingId) -> Result<Option<RecordingMeta>> {
        if let Some(meta) = self.coord.meta(id).await? {
            return Ok(Some(meta));
        }
        let Some(meta) = self.read(id).await? else {
            return Ok(None);
        };
        if meta.state.is_terminal() {
            return Ok(Some(meta));
        }
        self.rebuild(meta).await.map(Some)
    }

    /// The recording as its manifest has it.
    pub async fn read(&self, id: &RecordingId) -> Result<Option<RecordingMeta>> {
        let bytes = match read_all(self.store.as_ref(), &ObjectKey::manifest(id), None).await {
            Ok(bytes) => bytes,
            Err(Error::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Storage(format!("manifest of {id}: {e}")))?;
        meta_of(id, &doc).map(Some)
    }

    /// Write the manifest of `meta`.
    pub async fn write(&self, meta: &RecordingMeta) -> Result<()> {
        let doc = manifest(meta, &self.limits);
        self.store
            .put(
                &ObjectKey::manifest(&meta.id),
                Bytes::from(serde_json::to_vec_pretty(&doc).expect("JSON values serialize")),
                "application/json",
            )
            .await
    }

    /// Write the manifest from the recording's current state.
    pub async fn record(&self, id: &RecordingId) -> Result<RecordingMeta> {
        let meta = self.meta(id).await?.ok_or(Error::RecordingNotFound)?;
        self.write(&meta).await?;
        Ok(meta)
    }

    /// Put an unfinished recording's state back into the coordinator, from its manifest and
    /// its chunk objects. A stopped recording goes back to `stopping` and its merge is queued
    /// again (the job may have been lost with the state; a job run twice merges once).
    async fn rebuild(&self, mut meta: RecordingMeta) -> Result<RecordingMeta> {
        let (chunks, latest) = self.stored_chunks(&meta.id).await?;
        meta.chunks_received = chunks.len() as u32;
        meta.bytes_received = chunks.values().map(|d| d.size).sum();
        // Its last activity, for the sweeper: the newest chunk, if newer than the manifest.
        if let Some(latest) = latest {
            meta.updated_at_ms = meta.updated_at_ms.max(latest);
        }
        let stopped = matches!(
            meta.state,
            RecordingState::Stopping | RecordingState::Merging
        );
        if stopped {
            meta.state = RecordingState::Stopping;
        }
        // A stopped recording's job goes first: once the state is back, nothing else would
        // queue it (a job that finds the state missing rebuilds it in turn).
        if stopped {
            self.queue
                .enqueue(MergeJob {
                    recording_id: meta.id.to_string(),
                })
                .await?;
        }
        if self.coord.restore(&meta, &chunks).await? {
            info!(
                recording_id = %meta.id,
                state = %meta.state,
                chunks = chunks.len(),
                "coordination state rebuilt from the store"
            );
        }
        Ok(self.coord.meta(&meta.id).await?.unwrap_or(meta))
    }

    /// The digest of the object at `key`, described by `info`: from its metadata, or, for an
    /// object written without it, by reading it.
    pub async fn digest_of(&self, key: &ObjectKey, info: ObjectInfo) -> Result<ChunkDigest> {
        if let Some(sha256) = info.sha256 {
            return Ok(ChunkDigest {
                sha256,
                size: info.size,
            });
        }
        let mut hasher = ChunkHasher::default();
        let mut body = self.store.get(key).await?;
        while let Some(piece) = body.next().await {
            hasher.update(&piece?);
        }
        Ok(hasher.finish())
    }

    /// A recording's chunk objects by index, with their digests, and when the newest was
    /// written (milliseconds since the epoch).
    pub async fn stored_chunks(
        &self,
        id: &RecordingId,
    ) -> Result<(BTreeMap<u32, ChunkDigest>, Option<u64>)> {
        let listed = self.store.list(&ObjectKey::chunks_prefix(id)).await?;
        let latest = listed
            .iter()
            .filter_map(|l| l.modified.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .max();
        let store = self.store.as_ref();
        futures::stream::iter(listed)
            .filter_map(|l| async move {
                let key = ObjectKey::parse(&l.key).ok()?;
                Some((key.chunk_index()?, key))
            })
            .map(|(index, key)| async move {
                // Gone since the listing (deleted after a merge): not the recording's any more.
                let Some(info) = store.head(&key).await? else {
                    return Ok(None);
                };
                let digest = self.digest_of(&key, info).await?;
                Ok::<_, Error>(Some((index.get(), digest)))
            })
            .buffer_unordered(HEADS_IN_FLIGHT)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
            .map(|chunks| (chunks, latest))
    }

    /// Delete a recording: every object (chunks, manifest, output, markers, listing entries)
    /// and all its state. A merge in flight is told to stop first (the `delete:{id}` lease,
    /// which merges watch) and none starts while this runs (the deleter holds `merge:{id}`).
    /// Deleting one that is gone does nothing.
    pub async fn delete(&self, id: &RecordingId) -> Result<()> {
        // As it was, to take its bytes off its tenant's tally and to announce; an unreadable
        // manifest is deleted all the same (the tally is counted again from the store when
        // next lost).
        let last = self.last_known(id).await.unwrap_or_else(|e| {
            tracing::warn!(recording_id = %id, error = %e, "its bytes are not taken off its tenant's");
            None
        });
        let holder = format!("delete-{}", hex::encode(crate::domain::random_bytes::<8>()));
        let (cancel, merge) = (cancel_lease(id), format!("merge:{id}"));
        self.coord.lease(&cancel, &holder, DELETE_LEASE).await?;
        let waiting = std::time::Instant::now();
        while !self.coord.lease(&merge, &holder, DELETE_LEASE).await? {
            // A live merge lets go within a second or two; a dead one's lease just expires,
            // and it will write nothing.
            if waiting.elapsed() > MERGE_STOP_WAIT {
                tracing::warn!(recording_id = %id, "a merge still holds the recording; deleting anyway");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let deleted = self.delete_objects(id).await;
        let forgotten = self.coord.forget(id).await;
        for lease in [&merge, &cancel] {
            self.coord.release(lease, &holder).await?;
        }
        deleted.and(forgotten)?;
        if let Some(meta) = last {
            let tenant = &meta.owner.tenant;
            self.add_tenant_bytes(tenant, -(meta.bytes_received as i64))
                .await;
            self.webhooks.announce(WebhookType::Deleted, &meta).await;
        }
        Ok(())
    }

    /// `MAX_TENANT_BYTES`: the bytes `tenant`'s recordings hold, kept as a tally in the
    /// coordinator (one add per chunk stored, one subtraction per recording deleted). A tally
    /// lost with the coordinator's state (a Redis without persistence, a restart of the
    /// embedded server) is counted again from the store, once, by whoever needs it first.
    pub async fn tenant_bytes(&self, tenant: &Tenant) -> Result<u64> {
        let name = tenant_bytes_tally(tenant);
        let held = match self.coord.tally(&name, 0).await? {
            Some(held) => held,
            None => {
                let counted = self.count_tenant_bytes(tenant).await?;
                info!(
                    tenant = tenant.as_str(),
                    bytes = counted,
                    "tenant's bytes counted from the store"
                );
                self.coord.settle(&name, counted as i64).await?
            }
        };
        Ok(held.max(0) as u64)
    }

    /// Count `delta` more bytes (fewer, when negative) held by `tenant`. A tally that is not
    /// known is left so: it is counted from the store when next needed, and that count has
    /// these bytes already.
    pub async fn add_tenant_bytes(&self, tenant: &Tenant, delta: i64) {
        if let Err(e) = self.coord.tally(&tenant_bytes_tally(tenant), delta).await {
            tracing::warn!(tenant = tenant.as_str(), delta, error = %e, "tenant's bytes not counted");
        }
    }

    /// What `tenant`'s recordings hold, from the store: each recording in its listing.
    async fn count_tenant_bytes(&self, tenant: &Tenant) -> Result<u64> {
        let prefix = ObjectKey::listing_prefix(&Owner {
            tenant: tenant.clone(),
            subject: None,
        });
        let listed = self.store.list(&prefix).await?;
        let ids: Vec<RecordingId> = listed
            .iter()
            .filter_map(|l| ObjectKey::listed(l.key.strip_prefix(&prefix)?))
            .collect();
        let held: Vec<Option<RecordingMeta>> = futures::stream::iter(ids)
            .map(|id| async move { self.last_known(&id).await })
            .buffer_unordered(HEADS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(held.into_iter().flatten().map(|m| m.bytes_received).sum())
    }

    /// A recording as last known, without restoring it: as the coordinator has it, else as
    /// its manifest has it, with its bytes received from a listing of its chunks while it
    /// takes chunks (its manifest is not written for each). `None` when it is gone.
    async fn last_known(&self, id: &RecordingId) -> Result<Option<RecordingMeta>> {
        if let Some(meta) = self.coord.meta(id).await? {
            return Ok(Some(meta));
        }
        let Some(mut meta) = self.read(id).await? else {
            return Ok(None);
        };
        if meta.state == RecordingState::Recording {
            let listed = self.store.list(&ObjectKey::chunks_prefix(id)).await?;
            meta.bytes_received = listed
                .iter()
                .filter(|l| ObjectKey::parse(&l.key).is_ok_and(|k| k.chunk_index().is_some()))
                .map(|l| l.size)
                .sum();
        }
        Ok(Some(meta))
    }

    async fn delete_objects(&self, id: &RecordingId) -> Result<()> {
        let mut keys = match self.read(id).await {
            Ok(Some(meta)) => {
                let mut keys = ObjectKey::actives(&meta.owner, id).to_vec();
                keys.extend(ObjectKey::listings(&meta.owner, id));
                keys
            }
            Ok(None) => vec![ObjectKey::active(id)],
            // Its owner's entries cannot be named; a listing skips an entry whose recording
            // is gone, and the owner's count removes a stale marker, so they are harmless.
            Err(e) => {
                tracing::warn!(recording_id = %id, error = %e, "manifest unreadable; listing entries left");
                vec![ObjectKey::active(id)]
            }
        };
        for prefix in [
            ObjectKey::chunks_prefix(id),
            ObjectKey::recording_prefix(id),
        ] {
            let listed = self.store.list(&prefix).await?;
            keys.extend(listed.iter().filter_map(|l| ObjectKey::parse(&l.key).ok()));
        }
        // The manifest last: until it goes, a failed deletion can be tried again in full.
        let manifest = ObjectKey::manifest(id);
        keys.retain(|k| *k != manifest);
        self.delete_all(keys).await?;
        self.store.delete(&manifest).await
    }

    /// A finished recording (ready or failed) leaves the unfinished: its markers go.
    pub async fn finished(&self, meta: &RecordingMeta) -> Result<()> {
        self.delete_all(ObjectKey::actives(&meta.owner, &meta.id).to_vec())
            .await
    }

    /// How many of `owner`'s recordings are unfinished, counting up to `enough`. A marker
    /// whose recording is finished or gone is removed on the way, so a marker a crash left
    /// behind is not counted for ever.
    pub async fn unfinished_of(&self, owner: &Owner, enough: u32) -> Result<u32> {
        let prefix = ObjectKey::owner_active_prefix(owner);
        let mut count = 0;
        for listed in self.store.list(&prefix).await? {
            if count >= enough {
                break;
            }
            let Some(id) = listed
                .key
                .strip_prefix(&prefix)
                .and_then(|id| RecordingId::parse(id).ok())
            else {
                continue;
            };
            match self.meta(&id).await? {
                Some(meta) if !meta.state.is_terminal() => count += 1,
                Some(meta) => self.finished(&meta).await?,
                None => {
                    self.delete_all(ObjectKey::actives(owner, &id).to_vec())
                        .await?
                }
            }
        }
        Ok(count)
    }

    /// Delete these objects, [`HEADS_IN_FLIGHT`] at a time.
    pub async fn delete_all(&self, keys: Vec<ObjectKey>) -> Result<()> {
        let store = self.store.as_ref();
        futures::stream::iter(keys)
            .map(|key| async move { store.delete(&key).await })
            .buffer_unordered(HEADS_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }
}

/// The merge's description of a ready recording's output.
fn ready_output(meta: &RecordingMeta) -> Result<Value> {
    if meta.state != RecordingState::Ready {
        return Err(Error::NotReady {
            state: meta.state.as_str(),
        });
    }
    meta.output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .ok_or_else(|| Error::Internal("ready recording has no output".into()))
}
