//! The merge queue port: how a stopped recording reaches a merge worker. In process for the
//! embedded mode; a Redis Stream consumer group with leases for several instances; SQS for the
//! serverless mode.

mod redis;
mod sqs;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::redis::{Delivery, RedisQueue};
pub use self::sqs::SqsQueue;
use crate::error::{Error, Result};

/// One recording to merge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeJob {
    pub recording_id: String,
}

#[async_trait]
pub trait MergeQueue: Send + Sync + 'static {
    async fn enqueue(&self, job: MergeJob) -> Result<()>;

    /// Jobs queued and not yet finished (waiting or being merged), when this queue can tell.
    async fn depth(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// In-process queue for the embedded mode: an unbounded channel to the local worker pool.
pub struct ChannelQueue {
    tx: mpsc::UnboundedSender<LocalJob>,
    unfinished: Arc<AtomicU64>,
}

/// A job from the in-process queue: it counts as unfinished until dropped.
pub struct LocalJob {
    pub job: MergeJob,
    unfinished: Arc<AtomicU64>,
}

impl Drop for LocalJob {
    fn drop(&mut self) {
        self.unfinished.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ChannelQueue {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<LocalJob>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let unfinished = Arc::new(AtomicU64::new(0));
        (Self { tx, unfinished }, rx)
    }
}

#[async_trait]
impl MergeQueue for ChannelQueue {
    async fn enqueue(&self, job: MergeJob) -> Result<()> {
        self.unfinished.fetch_add(1, Ordering::Relaxed);
        let job = LocalJob {
            job,
            unfinished: self.unfinished.clone(),
        };
        self.tx
            .send(job)
            .map_err(|_| Error::Internal("the merge worker pool has shut down".into()))
    }

    async fn depth(&self) -> Result<Option<u64>> {
        Ok(Some(self.unfinished.load(Ordering::Relaxed)))
    }
}
