//! The merge queue port: how a stopped recording reaches a merge worker. In process for the
//! embedded mode; a Redis Stream consumer group with leases for several instances; SQS for the
//! serverless mode.

mod redis;
mod sqs;

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
}

/// In-process queue for the embedded mode: an unbounded channel to the local worker pool.
pub struct ChannelQueue {
    tx: mpsc::UnboundedSender<MergeJob>,
}

impl ChannelQueue {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<MergeJob>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

#[async_trait]
impl MergeQueue for ChannelQueue {
    async fn enqueue(&self, job: MergeJob) -> Result<()> {
        self.tx
            .send(job)
            .map_err(|_| Error::Internal("the merge worker pool has shut down".into()))
    }
}
