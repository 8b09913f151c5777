//! Metrics, in the Prometheus exposition format (OpenMetrics text) at `GET /metrics`, each name
//! prefixed `screenrec_`. One set per app (`app::Core`), so that each instance, and each app a
//! test starts in one process, counts its own. No label carries a recording, owner or tenant:
//! their number is unbounded.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::service::Ingest;

/// What `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A route (its pattern, so ids do not multiply the series), its method and its status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// How a chunk came in: `server` (a PUT through the API), `presigned` (a PUT to storage,
/// confirmed) or `websocket`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngestLabels {
    pub path: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RequestLabels>,
    chunks: Family<IngestLabels, Counter>,
    chunk_bytes: Family<IngestLabels, Counter>,
    merges: Family<OutcomeLabels, Counter>,
    merge_seconds: Histogram,
    /// Set when scraped, from the queue itself.
    pub merge_queue_depth: Gauge,
    webhooks: Family<OutcomeLabels, Counter>,
    /// WebSocket connections open on this instance.
    pub websockets: Gauge,
}

fn latency() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("screenrec");
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<RequestLabels> = Family::new_with_constructor(latency);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request (a WebSocket: its upgrade), by route, method and status",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let chunks = Family::default();
        registry.register(
            "chunks_received",
            "Chunks stored for the first time, by ingest path",
            chunks.clone(),
        );
        let chunk_bytes = Family::default();
        registry.register_with_unit(
            "chunks_received",
            "Bytes of the chunks stored for the first time, by ingest path",
            Unit::Bytes,
            chunk_bytes.clone(),
        );
        let merges = Family::default();
        registry.register(
            "merges",
            "Merge jobs run, by outcome: ready, failed, already_done, busy, deleted or retried",
            merges.clone(),
        );
        // 50 ms to about 27 minutes.
        let merge_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register_with_unit(
            "merge_duration",
            "Time from taking a merge job to its recording being ready or failed",
            Unit::Seconds,
            merge_seconds.clone(),
        );
        let merge_queue_depth = Gauge::default();
        registry.register(
            "merge_queue_depth",
            "Merge jobs queued and not yet finished (waiting or being merged), across instances with Redis",
            merge_queue_depth.clone(),
        );
        let webhooks = Family::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered, failed (to be retried) or dead_lettered",
            webhooks.clone(),
        );
        let websockets = Gauge::default();
        registry.register(
            "websocket_connections",
            "WebSocket connections open on this instance",
            websockets.clone(),
        );
        // Every known label value from the start, at 0, so that a rate sees the first event.
        for via in Ingest::ALL {
            let labels = IngestLabels { path: via.as_str() };
            let _ = chunks.get_or_create(&labels);
            let _ = chunk_bytes.get_or_create(&labels);
        }
        for outcome in [
            "ready",
            "failed",
            "already_done",
            "busy",
            "deleted",
            "retried",
        ] {
            let _ = merges.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["delivered", "failed", "dead_lettered"] {
            let _ = webhooks.get_or_create(&OutcomeLabels { outcome });
        }
        Self {
            registry,
            requests,
            request_seconds,
            chunks,
            chunk_bytes,
            merges,
            merge_seconds,
            merge_queue_depth,
            webhooks,
            websockets,
        }
    }

    pub fn request(&self, labels: RequestLabels, took: Duration) {
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    pub fn chunk(&self, path: &'static str, bytes: u64) {
        let labels = IngestLabels { path };
        self.chunks.get_or_create(&labels).inc();
        self.chunk_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// A merge job's outcome; `took` for one that merged (or failed to).
    pub fn merge(&self, outcome: &'static str, took: Option<Duration>) {
        self.merges.get_or_create(&OutcomeLabels { outcome }).inc();
        if let Some(took) = took {
            self.merge_seconds.observe(took.as_secs_f64());
        }
    }

    pub fn webhook(&self, outcome: &'static str) {
        self.webhooks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Webhook attempts with `outcome` so far.
    pub fn webhooks(&self, outcome: &'static str) -> u64 {
        self.webhooks
            .get_or_create(&OutcomeLabels { outcome })
            .get()
    }

    /// Everything, as `GET /metrics` answers.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_with_the_prefix_and_counts() {
        let m = Metrics::new();
        m.chunk("server", 10);
        m.chunk("server", 5);
        m.merge("ready", Some(Duration::from_millis(300)));
        m.webhook("delivered");
        let text = m.encode();
        assert!(
            text.contains(r#"screenrec_chunks_received_total{path="server"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"screenrec_chunks_received_bytes_total{path="server"} 15"#),
            "{text}"
        );
        assert!(
            text.contains("screenrec_merge_duration_seconds_count 1"),
            "{text}"
        );
        assert_eq!(m.webhooks("delivered"), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
