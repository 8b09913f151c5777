//! Webhooks: each change in a recording's life, sent to the app's server as a signed
//! Standard Webhooks POST, so it learns of it without holding a WebSocket.
//!
//! An event becomes a [`Delivery`] in the [`Outbox`] when it happens (in Redis, shared by every
//! instance, when there is one), and any instance's workers take it from there: each delivery is
//! taken by one worker at a time, and tried again with exponential backoff and jitter on any
//! answer but a 2xx, until [`WebhookSettings::retry_for`] after the event; then it is
//! dead-lettered with an error in the log. Its `webhook-id` is the same on every attempt.

mod outbox;
mod send;
mod sign;
mod sqs;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{Instrument, error, info, info_span, warn};

pub use self::outbox::{Delivery, MemoryOutbox, Outbox, RedisOutbox};
pub use self::send::{Attempt, Sender, is_public};
pub use self::sign::WebhookSecret;
pub use self::sqs::{Queued, SqsOutbox};
use crate::coord::{RecordingMeta, now_ms};
use crate::domain::Tenant;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::service::{StatusView, rfc3339};
use crate::shutdown::Shutdown;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often an idle worker looks for a delivery that is due.
const POLL: Duration = Duration::from_millis(200);

/// What happened to the recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookType {
    Created,
    Stopped,
    Ready,
    Failed,
    Deleted,
    Abandoned,
}

impl WebhookType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "recording.created",
            Self::Stopped => "recording.stopped",
            Self::Ready => "recording.ready",
            Self::Failed => "recording.failed",
            Self::Deleted => "recording.deleted",
            Self::Abandoned => "recording.abandoned",
        }
    }
}

/// `WEBHOOK_*`: where events go and how they are retried.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// `WEBHOOK_URL`: every tenant's endpoint, unless it has its own.
    pub url: Option<String>,
    /// `WEBHOOK_TENANT_URLS`: a tenant's own endpoint, by tenant.
    pub tenant_urls: HashMap<String, String>,
    /// `WEBHOOK_SECRET`: required when there is any endpoint.
    pub secret: Option<WebhookSecret>,
    /// `WEBHOOK_ALLOW_PRIVATE`: let deliveries go to loopback, link-local and private addresses.
    pub allow_private: bool,
    /// `WEBHOOK_RETRY_MIN_MS`: the wait before the first retry; each retry waits twice the one
    /// before (at most an hour), less up to half at random.
    pub retry_min: Duration,
    /// `WEBHOOK_RETRY_FOR_SECS`: how long after the event it is still tried.
    pub retry_for: Duration,
    /// `WEBHOOK_TIMEOUT_SECS`: how long one attempt may take.
    pub timeout: Duration,
    /// `WEBHOOK_WORKERS`: deliveries one instance makes at once.
    pub workers: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: None,
            tenant_urls: HashMap::new(),
            secret: None,
            allow_private: false,
            retry_min: Duration::from_secs(5),
            retry_for: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            workers: 4,
        }
    }
}

/// The wait before attempt `attempts + 1`, given `attempts` failed ones: `min` doubled for
/// each failure after the first, at most [`MAX_BACKOFF`], less up to half of it by `jitter`
/// (from 0 to 1), so that deliveries that failed together do not come back together.
pub fn backoff(attempts: u32, min: Duration, jitter: f64) -> Duration {
    let doubled = min.saturating_mul(1 << attempts.saturating_sub(1).min(20));
    let full = doubled.min(MAX_BACKOFF);
    full.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

pub struct Webhooks {
    settings: WebhookSettings,
    outbox: Arc<dyn Outbox>,
    sender: Option<Sender>,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    pub fn new(settings: WebhookSettings, outbox: Arc<dyn Outbox>, metrics: Arc<Metrics>) -> Self {
        let sender = settings
            .secret
            .clone()
            .map(|secret| Sender::new(secret, settings.timeout, settings.allow_private));
        Self {
            settings,
            outbox,
            sender,
            metrics,
        }
    }

    /// No endpoint: events go nowhere.
    pub fn none() -> Self {
        Self::new(
            WebhookSettings::default(),
            Arc::new(MemoryOutbox::default()),
            Arc::new(Metrics::new()),
        )
    }

    fn url_for(&self, tenant: &Tenant) -> Option<&str> {
        self.settings
            .tenant_urls
            .get(tenant.as_str())
            .or(self.settings.url.as_ref())
            .map(String::as_str)
    }

    /// Queue the event `kind` for `tenant`'s endpoint, if it has one. `data` is the
    /// recording's status, as `GET /recordings/{id}` has it.
    pub async fn emit(&self, kind: WebhookType, tenant: &Tenant, data: &StatusView) -> Result<()> {
        let (Some(url), Some(_)) = (self.url_for(tenant), &self.sender) else {
            return Ok(());
        };
        let now = now_ms();
        let body = json!({
            "type": kind.as_str(),
            "timestamp": rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(now)),
            "data": data,
        });
        let delivery = Delivery {
            id: format!("msg_{}", hex::encode(crate::domain::random_bytes::<16>())),
            url: url.to_owned(),
            body: body.to_string(),
            created_ms: now,
            attempts: 0,
            recording_id: data.recording_id.clone(),
        };
        self.outbox.put(&delivery, now).await?;
        info!(recording_id = %data.recording_id, webhook_id = %delivery.id, kind = kind.as_str(), "webhook queued");
        Ok(())
    }

    /// [`emit`](Self::emit) the recording `meta` as it is, logging a failure: the change it
    /// tells of has happened anyway.
    pub async fn announce(&self, kind: WebhookType, meta: &RecordingMeta) {
        self.announce_view(kind, &meta.owner.tenant, &StatusView::of(meta))
            .await;
    }

    /// [`announce`](Self::announce) a status view of the caller's making.
    pub async fn announce_view(&self, kind: WebhookType, tenant: &Tenant, data: &StatusView) {
        if let Err(e) = self.emit(kind, tenant, data).await {
            warn!(recording_id = %data.recording_id, kind = kind.as_str(), error = %e, "webhook not queued");
        }
    }

    /// Deliver what is due, [`WebhookSettings::workers`] at once, until `shutdown`: a delivery
    /// in flight then finishes; the others wait in the outbox.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        if self.sender.is_none() || self.outbox.pushes() {
            return;
        }
        let workers = (0..self.settings.workers.max(1)).map(|_| {
            let (me, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move { me.work(shutdown).await })
        });
        futures::future::join_all(workers).await;
    }

    async fn work(&self, shutdown: Shutdown) {
        let lease = self.settings.timeout + Duration::from_secs(30);
        while !shutdown.is_fired() {
            let wait = match self.outbox.take(now_ms(), lease).await {
                Ok(Some(delivery)) => {
                    if let Err(e) = self.deliver(delivery).await {
                        // Still in the outbox, under its lease: tried again when that is over.
                        warn!(error = %e, "webhook outbox not updated");
                    }
                    continue;
                }
                Ok(None) => POLL,
                Err(e) => {
                    warn!(error = %e, "webhook outbox unavailable");
                    Duration::from_secs(1)
                }
            };
            sleep_unless(wait, shutdown.fired()).await;
        }
    }

    /// One message from the SQS outbox: an attempt if it is due, else sent on to wait. An
    /// error leaves the message to SQS to hand out again.
    pub async fn deliver_queued(&self, queued: Queued) -> Result<()> {
        if queued.due_ms > now_ms() + 500 {
            return self.outbox.put(&queued.webhook, queued.due_ms).await;
        }
        self.deliver(queued.webhook).await
    }

    /// One attempt at `delivery`, and what follows from it in the outbox: removed once
    /// delivered or given up, put back for later otherwise. An error is the outbox's.
    pub async fn deliver(&self, mut delivery: Delivery) -> Result<()> {
        let span =
            info_span!("webhook", recording_id = %delivery.recording_id, webhook_id = %delivery.id);
        let Some(sender) = &self.sender else {
            return self
                .dead_letter(&delivery, "no WEBHOOK_SECRET")
                .instrument(span)
                .await;
        };
        let timestamp = now_ms() / 1000;
        let attempt = sender
            .send(
                &delivery.url,
                &delivery.id,
                timestamp,
                delivery.body.as_bytes(),
            )
            .instrument(span.clone())
            .await;
        delivery.attempts += 1;
        let attempts = delivery.attempts;
        async {
            match attempt {
                Attempt::Delivered => {
                    self.metrics.webhook("delivered");
                    info!(attempts, "webhook delivered");
                    self.outbox.remove(&delivery.id).await
                }
                Attempt::Refused(why) => self.dead_letter(&delivery, &why).await,
                Attempt::Failed(why) => {
                    self.metrics.webhook("failed");
                    let jitter = f64::from(u32::from_le_bytes(crate::domain::random_bytes()))
                        / f64::from(u32::MAX);
                    let wait = backoff(attempts, self.settings.retry_min, jitter);
                    let next = now_ms() + wait.as_millis() as u64;
                    if next > delivery.created_ms + self.settings.retry_for.as_millis() as u64 {
                        self.dead_letter(&delivery, &why).await
                    } else {
                        warn!(attempts, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook not delivered; will retry");
                        self.outbox.put(&delivery, next).await
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn dead_letter(&self, delivery: &Delivery, why: &str) -> Result<()> {
        self.metrics.webhook("dead_lettered");
        error!(
            attempts = delivery.attempts,
            url = %delivery.url,
            error = %why,
            body = %delivery.body,
            "webhook dead-lettered: given up"
        );
        self.outbox.remove(&delivery.id).await
    }
}

async fn sleep_unless(wait: Duration, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_minimum_up_to_an_hour_with_jitter_off_the_top() {
        let min = Duration::from_secs(5);
        assert_eq!(backoff(1, min, 0.0), min);
        assert_eq!(backoff(2, min, 0.0), min * 2);
        assert_eq!(backoff(4, min, 0.0), min * 8);
        assert_eq!(backoff(4, min, 1.0), min * 4);
        assert_eq!(backoff(30, min, 0.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, min, 0.0), MAX_BACKOFF);
        // Tried for a day: about 29 attempts at the default.
        let (mut t, mut n) = (Duration::ZERO, 0);
        while t < Duration::from_secs(86_400) {
            n += 1;
            t += backoff(n, min, 0.0);
        }
        assert!((25..35).contains(&n), "{n}");
    }
}
