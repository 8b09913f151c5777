//! Redis notifier for several instances: a Lua script gives each event the recording's next
//! version, keeps it in a capped per-recording stream (`{prefix}rec:{id}:events`) and
//! publishes it on one channel (`{prefix}events`). Every instance with subscribers listens on
//! that channel and hands events to its own subscribers, so a socket held by any instance hears of a change
//! made on any other.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::Script;
use redis::aio::{ConnectionManager, PubSub};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::fanout::Fanout;
use super::{Event, EventKind, HISTORY, Notifier, Subscription, splice};
use crate::domain::RecordingId;
use crate::error::{Error, Result};

/// KEYS: meta, events. ARGV: event JSON (version 0), channel, ttl, history.
const PUBLISH: &str = r#"
local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
local e = cjson.decode(ARGV[1])
e['version'] = v
local s = cjson.encode(e)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], v .. '-1', 'e', s)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[2], s)
return s
"#;

pub struct RedisNotifier {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    channel: String,
    ttl_secs: u64,
    publish: Script,
    fanout: Arc<Fanout>,
    /// Set once this instance listens on the events channel: on the first subscribe, so a
    /// process that only publishes (a Lambda function) holds no pub/sub connection.
    listening: OnceCell<()>,
}

impl RedisNotifier {
    pub async fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            channel: format!("{prefix}events"),
            ttl_secs: ttl.as_secs().max(1),
            publish: Script::new(PUBLISH),
            fanout: Arc::new(Fanout::default()),
            listening: OnceCell::new(),
        })
    }

    fn key(&self, id: &RecordingId, what: &str) -> String {
        format!("{}rec:{{{id}}}:{what}", self.prefix)
    }

    /// The multiplexed connection, for an adapter built on this one (it needs no other).
    pub fn connection(&self) -> &ConnectionManager {
        &self.conn
    }

    /// The kept events of a recording after version `after`, oldest first.
    pub async fn history(&self, id: &RecordingId, after: u64) -> Result<Vec<Event>> {
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(self.key(id, "events"))
            .arg(format!("{}-0", after + 1))
            .arg("+")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(parse_entries(entries))
    }

    /// Subscribe to the events channel, once; returns when the subscription is in place.
    async fn listen(&self) -> Result<()> {
        self.listening
            .get_or_try_init(|| async {
                let pubsub = subscribed(&self.client, &self.channel).await?;
                tokio::spawn(listen(
                    pubsub,
                    self.client.clone(),
                    self.channel.clone(),
                    self.fanout.clone(),
                ));
                Ok::<_, Error>(())
            })
            .await?;
        Ok(())
    }
}

async fn subscribed(client: &redis::Client, channel: &str) -> Result<PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    info!(%channel, "listening for events");
    Ok(pubsub)
}

/// Receive every published event and deliver it locally; resubscribe when Redis goes away.
async fn listen(mut pubsub: PubSub, client: redis::Client, channel: String, fanout: Arc<Fanout>) {
    loop {
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Event>(&payload) {
                Ok(event) => fanout.deliver(&event),
                Err(e) => warn!(error = %e, "unreadable event"),
            }
        }
        drop(messages);
        warn!("event channel closed; resubscribing");
        pubsub = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match subscribed(&client, &channel).await {
                Ok(p) => break p,
                Err(e) => warn!(error = %e, "subscribing to events failed"),
            }
        };
    }
}

fn parse_entries(entries: Vec<(String, Vec<String>)>) -> Vec<Event> {
    entries
        .into_iter()
        .filter_map(|(_, fields)| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == "e")
                .and_then(|kv| kv.get(1))
                .and_then(|s| serde_json::from_str(s).ok())
        })
        .collect()
}

#[async_trait]
impl Notifier for RedisNotifier {
    async fn publish(&self, id: &RecordingId, kind: EventKind) -> Result<Event> {
        let draft = Event {
            recording_id: id.to_string(),
            version: 0,
            kind,
        };
        let json: String = self
            .publish
            .key(self.key(id, "meta"))
            .key(self.key(id, "events"))
            .arg(serde_json::to_string(&draft).expect("serializable"))
            .arg(&self.channel)
            .arg(self.ttl_secs)
            .arg(HISTORY)
            .invoke_async(&mut self.conn.clone())
            .await?;
        serde_json::from_str(&json).map_err(|e| Error::Coordination(format!("event: {e}")))
    }

    async fn subscribe(&self, id: &RecordingId, after: Option<u64>) -> Result<Subscription> {
        let after = after.unwrap_or(0);
        self.listen().await?;
        // Listen first, then read what is kept: nothing falls between the two.
        let live = self.fanout.listen(id);
        let backlog = self.history(id, after).await?;
        Ok(splice(backlog, live.boxed(), after))
    }

    async fn version(&self, id: &RecordingId) -> Result<u64> {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(self.key(id, "meta"))
            .arg("version")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v.unwrap_or(0))
    }
}
