//! Merge queue for the serverless mode: one SQS message per stopped recording. The merge
//! function consumes the queue through a Lambda event source mapping; redelivery after the
//! visibility timeout and the dead-letter queue are SQS's.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;

use super::{MergeJob, MergeQueue};
use crate::error::{Error, Result};

pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    /// `endpoint` overrides the SQS endpoint (LocalStack); `None` is AWS's.
    pub fn new(sdk: &SdkConfig, queue_url: &str, endpoint: Option<&str>) -> Self {
        let mut config = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            queue_url: queue_url.to_owned(),
        }
    }
}

impl SqsQueue {
    /// Send `body` as JSON, handed out after `delay_secs` (at most SQS's 900).
    pub async fn send(&self, body: &impl serde::Serialize, delay_secs: i32) -> Result<()> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .delay_seconds(delay_secs)
            .message_body(serde_json::to_string(body).expect("serializable"))
            .send()
            .await
            .map_err(|e| {
                Error::Coordination(format!(
                    "SendMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(())
    }
}

#[async_trait]
impl MergeQueue for SqsQueue {
    async fn enqueue(&self, job: MergeJob) -> Result<()> {
        self.send(&job, 0).await
    }
}
