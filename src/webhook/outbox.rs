//! The outbox: deliveries waiting for their next attempt, by when it is due. Each is taken by
//! one worker at a time, for a lease: a worker that dies holding one leaves it to be taken
//! again when the lease is over. In process when embedded; in Redis, shared by every
//! instance, otherwise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One event for one endpoint, with its attempts so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `webhook-id`: the same on every attempt.
    pub id: String,
    pub url: String,
    /// The JSON body, fixed when the event happened.
    pub body: String,
    /// When the event happened (milliseconds since the epoch): retries stop a while after.
    pub created_ms: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// The recording the event is about, for the log.
    pub recording_id: String,
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Keep `delivery` for an attempt at `due_ms` (a new one, or one to try again).
    async fn put(&self, delivery: &Delivery, due_ms: u64) -> Result<()>;

    /// Take one delivery due by `now_ms`, for `lease`: until then no other worker takes it.
    async fn take(&self, now_ms: u64, lease: Duration) -> Result<Option<Delivery>>;

    /// Forget a delivery: it was delivered, or given up.
    async fn remove(&self, id: &str) -> Result<()>;

    /// Whether its deliveries are handed to a consumer (SQS's event source mapping) rather
    /// than taken by this process's workers.
    fn pushes(&self) -> bool {
        false
    }
}

/// The embedded mode's outbox.
#[derive(Default)]
pub struct MemoryOutbox {
    waiting: Mutex<HashMap<String, (u64, Delivery)>>,
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn put(&self, delivery: &Delivery, due_ms: u64) -> Result<()> {
        let mut waiting = self.waiting.lock().expect("outbox lock");
        waiting.insert(delivery.id.clone(), (due_ms, delivery.clone()));
        Ok(())
    }

    async fn take(&self, now_ms: u64, lease: Duration) -> Result<Option<Delivery>> {
        let mut waiting = self.waiting.lock().expect("outbox lock");
        let Some((due, delivery)) = waiting
            .values_mut()
            .filter(|(due, _)| *due <= now_ms)
            .min_by_key(|(due, _)| *due)
        else {
            return Ok(None);
        };
        *due = now_ms + lease.as_millis() as u64;
        Ok(Some(delivery.clone()))
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.waiting.lock().expect("outbox lock").remove(id);
        Ok(())
    }
}

/// KEYS: due (sorted set), deliveries (hash). ARGV: now, lease end. The earliest due
/// delivery, pushed back to the lease's end, or nil.
const TAKE: &str = r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #ids == 0 then return false end
local body = redis.call('HGET', KEYS[2], ids[1])
if not body then
  redis.call('ZREM', KEYS[1], ids[1])
  return false
end
redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
return body
"#;

/// The outbox in Redis: a sorted set of ids by due time and a hash of the deliveries.
pub struct RedisOutbox {
    conn: ConnectionManager,
    due: String,
    deliveries: String,
    take: Script,
}

impl RedisOutbox {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            due: format!("{prefix}webhooks:due"),
            deliveries: format!("{prefix}webhooks:deliveries"),
            take: Script::new(TAKE),
        }
    }
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn put(&self, delivery: &Delivery, due_ms: u64) -> Result<()> {
        let json = serde_json::to_string(delivery).expect("a delivery serializes");
        redis::pipe()
            .atomic()
            .hset(&self.deliveries, &delivery.id, json)
            .ignore()
            .zadd(&self.due, &delivery.id, due_ms)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn take(&self, now_ms: u64, lease: Duration) -> Result<Option<Delivery>> {
        let taken: Option<String> = self
            .take
            .key(&self.due)
            .key(&self.deliveries)
            .arg(now_ms)
            .arg(now_ms + lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        taken
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| Error::Coordination(format!("a webhook delivery: {e}")))
            })
            .transpose()
    }

    async fn remove(&self, id: &str) -> Result<()> {
        redis::pipe()
            .atomic()
            .zrem(&self.due, id)
            .ignore()
            .hdel(&self.deliveries, id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            id: id.into(),
            url: "https://example.com/".into(),
            body: "{}".into(),
            created_ms: 0,
            attempts: 0,
            recording_id: "r".into(),
        }
    }

    #[tokio::test]
    async fn the_memory_outbox_hands_out_what_is_due_once_per_lease() {
        let outbox = MemoryOutbox::default();
        outbox.put(&delivery("a"), 100).await.unwrap();
        outbox.put(&delivery("b"), 50).await.unwrap();
        let lease = Duration::from_millis(1000);
        assert_eq!(outbox.take(10, lease).await.unwrap(), None);
        assert_eq!(outbox.take(100, lease).await.unwrap().unwrap().id, "b");
        assert_eq!(outbox.take(200, lease).await.unwrap().unwrap().id, "a");
        assert_eq!(outbox.take(200, lease).await.unwrap(), None);
        // A lease over (b's at 1100, a's at 1200): taken again.
        assert_eq!(outbox.take(1100, lease).await.unwrap().unwrap().id, "b");
        assert_eq!(outbox.take(1100, lease).await.unwrap(), None);
        outbox.remove("a").await.unwrap();
        outbox.remove("b").await.unwrap();
        assert_eq!(outbox.take(10_000, lease).await.unwrap(), None);
    }
}
