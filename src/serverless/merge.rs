//! The merge function's events: an SQS batch from the merge queue's or the webhook queue's event
//! source mapping, one job by asynchronous invoke, or the EventBridge schedule's event, which
//! runs a sweep. Each job gets one delivery of [`Merger::deliver`], the retry policy every queue
//! shares (an invoked job's deliveries are counted in the coordinator, since Lambda's own
//! retries carry no count). Each webhook message gets one attempt
//! ([`Webhooks::deliver_queued`]), whose retry is a new message.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::merge::Merger;
use crate::queue::MergeJob;
use crate::sweep::Sweeper;
use crate::webhook::{Queued, Webhooks};

/// What the merge function is invoked with.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MergeEvent {
    Sqs(SqsEvent),
    Job(MergeJob),
    /// The EventBridge schedule's event: a sweep.
    Scheduled(Scheduled),
}

/// An EventBridge scheduled event (only its type is read).
#[derive(Debug, Deserialize)]
pub struct Scheduled {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
}

pub struct MergeFunction {
    merger: Arc<Merger>,
    sweeper: Arc<Sweeper>,
    webhooks: Arc<Webhooks>,
}

impl MergeFunction {
    pub fn new(merger: Arc<Merger>, sweeper: Arc<Sweeper>, webhooks: Arc<Webhooks>) -> Self {
        Self {
            merger,
            sweeper,
            webhooks,
        }
    }

    /// SQS: the messages to deliver again are reported as batch item failures (the mapping has
    /// `ReportBatchItemFailures`), so SQS redelivers them after the visibility timeout and the
    /// others are deleted. An asynchronous invoke: an error makes Lambda retry it.
    pub async fn handle(&self, event: MergeEvent) -> Result<Option<SqsBatchResponse>> {
        match event {
            MergeEvent::Sqs(batch) => {
                let mut response = SqsBatchResponse::default();
                for message in batch.records {
                    let id = message.message_id.clone().unwrap_or_default();
                    let queued = message
                        .body
                        .as_deref()
                        .and_then(|b| serde_json::from_str::<Queued>(b).ok());
                    if let Some(queued) = queued {
                        if let Err(e) = self.webhooks.deliver_queued(queued).await {
                            warn!(message_id = %id, error = %e, "webhook to be handed out again");
                            let mut failure = BatchItemFailure::default();
                            failure.item_identifier = id;
                            response.batch_item_failures.push(failure);
                        }
                        continue;
                    }
                    let job = message
                        .body
                        .as_deref()
                        .map(serde_json::from_str::<MergeJob>);
                    let Some(Ok(job)) = job else {
                        // Nothing can make it valid: dropped, not retried.
                        error!(message_id = %id, body = ?message.body, "merge message is not a job");
                        continue;
                    };
                    let delivery = message
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1);
                    if !self.merger.deliver(&job, delivery).await {
                        let mut failure = BatchItemFailure::default();
                        failure.item_identifier = id;
                        response.batch_item_failures.push(failure);
                    }
                }
                Ok(Some(response))
            }
            MergeEvent::Scheduled(event) => {
                match self.sweeper.sweep_once().await? {
                    Some(report) => info!(?report, detail_type = event.detail_type, "sweep done"),
                    None => info!("another instance sweeps"),
                }
                Ok(None)
            }
            MergeEvent::Job(job) => {
                if self.merger.deliver_counted(&job).await {
                    Ok(None)
                } else {
                    warn!(?job, "merge to be retried by Lambda");
                    Err(Error::Internal(format!(
                        "merge of {} failed; to be retried",
                        job.recording_id
                    )))
                }
            }
        }
    }
}
