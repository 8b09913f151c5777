//! The serverless mode's outbox: an SQS queue. A delivery is a message, sent with a delay until
//! it is due (SQS delays at most 15 minutes: a longer wait is sent on again when it comes back
//! early). The merge function consumes the queue through its event source mapping and makes
//! the attempt ([`Webhooks::deliver_queued`](super::Webhooks::deliver_queued)); SQS deletes the
//! message once the function has answered for it, so nothing is taken from here.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

use super::outbox::{Delivery, Outbox};
use crate::coord::now_ms;
use crate::error::Result;
use crate::queue::SqsQueue;

/// SQS's longest message delay.
const MAX_DELAY_SECS: u64 = 900;

/// One message in the queue: a delivery and when it is due.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Queued {
    pub webhook: Delivery,
    pub due_ms: u64,
}

pub struct SqsOutbox(SqsQueue);

impl SqsOutbox {
    /// `endpoint` overrides the SQS endpoint (LocalStack); `None` is AWS's.
    pub fn new(sdk: &SdkConfig, queue_url: &str, endpoint: Option<&str>) -> Self {
        Self(SqsQueue::new(sdk, queue_url, endpoint))
    }
}

/// The whole seconds to delay a message due at `due_ms`, at most SQS's limit.
fn delay_secs(due_ms: u64, now_ms: u64) -> i32 {
    (due_ms.saturating_sub(now_ms).div_ceil(1000)).min(MAX_DELAY_SECS) as i32
}

#[async_trait]
impl Outbox for SqsOutbox {
    async fn put(&self, delivery: &Delivery, due_ms: u64) -> Result<()> {
        let queued = Queued {
            webhook: delivery.clone(),
            due_ms,
        };
        self.0.send(&queued, delay_secs(due_ms, now_ms())).await
    }

    /// Nothing: the queue's consumer is handed its messages.
    async fn take(&self, _now_ms: u64, _lease: Duration) -> Result<Option<Delivery>> {
        Ok(None)
    }

    /// Nothing: SQS deletes a message the function has answered for.
    async fn remove(&self, _id: &str) -> Result<()> {
        Ok(())
    }

    fn pushes(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_whole_seconds_up_to_sqs_limit() {
        assert_eq!(delay_secs(1000, 2000), 0);
        assert_eq!(delay_secs(2001, 2000), 1);
        assert_eq!(delay_secs(3000, 2000), 1);
        assert_eq!(delay_secs(86_400_000, 0), 900);
    }
}
