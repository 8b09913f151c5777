//! Merge queue on a Redis Stream with a consumer group: every instance's workers read from it,
//! a worker holds a job by heartbeating it, and a job whose worker died (no heartbeat for the
//! lease) is claimed by another with XAUTOCLAIM.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{MergeJob, MergeQueue};
use crate::error::{Error, Result};

const GROUP: &str = "mergers";

pub struct RedisQueue {
    client: redis::Client,
    /// Shared connection for the non-blocking commands.
    conn: ConnectionManager,
    /// The stream's key: `{prefix}merge`.
    stream: String,
    consumer: String,
    lease: Duration,
}

/// A job handed to this consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub entry_id: String,
    pub job: MergeJob,
    /// How many times the job has been handed out, this time included.
    pub deliveries: u64,
}

type Entry = (String, Vec<String>);

fn job_of(fields: &[String]) -> Option<MergeJob> {
    fields
        .chunks(2)
        .find(|kv| kv[0] == "recordingId")
        .and_then(|kv| kv.get(1))
        .map(|id| MergeJob {
            recording_id: id.clone(),
        })
}

impl RedisQueue {
    /// `consumer` names this worker process in the group; `lease` is how long a job may go
    /// without a heartbeat before another worker takes it over.
    pub async fn connect(
        url: &str,
        prefix: &str,
        consumer: String,
        lease: Duration,
    ) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = Self::connection(&client, Duration::from_secs(5)).await?;
        let queue = Self {
            client,
            conn,
            stream: format!("{prefix}merge"),
            consumer,
            lease,
        };
        queue.create_group().await?;
        Ok(queue)
    }

    /// Create the stream and its consumer group, unless they exist (again, after Redis lost
    /// them: the jobs lost with them are queued again from the store's record).
    async fn create_group(&self) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn connection(client: &redis::Client, timeout: Duration) -> Result<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(timeout));
        Ok(ConnectionManager::new_with_config(client.clone(), config).await?)
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// A connection of a worker's own for blocking reads, which would stall a shared one.
    pub async fn reader(&self, block: Duration) -> Result<ConnectionManager> {
        Self::connection(&self.client, block + Duration::from_secs(5)).await
    }

    /// The next job for this consumer: first one abandoned by a dead worker, else a new one
    /// (waiting up to `block` on `reader`). `None` when there is none.
    pub async fn next(
        &self,
        reader: &mut ConnectionManager,
        block: Duration,
    ) -> Result<Option<Delivery>> {
        match self.take(reader, block).await {
            Err(Error::Coordination(e)) if e.contains("NOGROUP") => {
                self.create_group().await?;
                Ok(None)
            }
            taken => taken,
        }
    }

    async fn take(
        &self,
        reader: &mut ConnectionManager,
        block: Duration,
    ) -> Result<Option<Delivery>> {
        let mut conn = self.conn.clone();
        let (_, claimed, _): (String, Vec<Entry>, Vec<String>) = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        if let Some((entry_id, fields)) = claimed.into_iter().next() {
            let deliveries = self.deliveries(&entry_id).await?;
            return self.delivery(entry_id, &fields, deliveries).await;
        }
        let reply: Option<Vec<(String, Vec<Entry>)>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(reader)
            .await?;
        match reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .next()
        {
            Some((entry_id, fields)) => self.delivery(entry_id, &fields, 1).await,
            None => Ok(None),
        }
    }

    async fn delivery(
        &self,
        entry_id: String,
        fields: &[String],
        deliveries: u64,
    ) -> Result<Option<Delivery>> {
        match job_of(fields) {
            Some(job) => Ok(Some(Delivery {
                entry_id,
                job,
                deliveries,
            })),
            None => {
                // Not a job this version understands: drop it rather than loop on it.
                tracing::error!(entry_id, ?fields, "malformed merge job dropped");
                self.ack(&entry_id).await?;
                Ok(None)
            }
        }
    }

    async fn deliveries(&self, entry_id: &str) -> Result<u64> {
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(entry_id)
            .arg(entry_id)
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(pending.first().map_or(1, |p| p.3))
    }

    /// Keep holding a job: resets its idle time so no other worker claims it.
    pub async fn heartbeat(&self, entry_id: &str) -> Result<()> {
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(entry_id)
            .arg("JUSTID")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Give a job back before its lease is over (this worker is stopping): it becomes as idle
    /// as a job whose worker died, so another worker claims it at once.
    pub async fn hand_back(&self, entry_id: &str) -> Result<()> {
        let _: Vec<String> = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(entry_id)
            .arg("IDLE")
            .arg(self.lease.as_millis() as u64)
            .arg("JUSTID")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The job is done (or given up): remove it.
    pub async fn ack(&self, entry_id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(entry_id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl MergeQueue for RedisQueue {
    async fn enqueue(&self, job: MergeJob) -> Result<()> {
        // Once more if the connection broke (Redis restarted): the connection manager has
        // reconnected by then, and a job queued twice merges once.
        let mut last = None;
        for _ in 0..2 {
            let added: redis::RedisResult<String> = redis::cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("recordingId")
                .arg(&job.recording_id)
                .query_async(&mut self.conn.clone())
                .await;
            match added {
                Ok(_) => return Ok(()),
                Err(e) if e.is_io_error() || e.is_connection_dropped() => last = Some(e),
                Err(e) => return Err(Error::Coordination(format!("queueing the merge: {e}"))),
            }
        }
        Err(Error::Coordination(format!(
            "queueing the merge: {}",
            last.expect("an error")
        )))
    }

    /// The stream's length: a job's entry is deleted when it is acknowledged.
    async fn depth(&self) -> Result<Option<u64>> {
        let len: u64 = redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Some(len))
    }
}
