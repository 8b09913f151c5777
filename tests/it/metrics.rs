//! `/metrics`, read with the Prometheus client library's parsers (`tests/metrics/parse.py`, the
//! `prometheus_client` package from PyPI): every family is there, and the counters move with a
//! recording taken over each ingest path to a ready video, with a webhook delivered.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::Recording;
use crate::common::receiver::Receiver;
use crate::common::upload::{Path, Plan, upload};
use crate::common::{Client, backends, spawn_app_with};
use crate::ws_client::Ws;

/// The samples of one scrape, parsed by the reference parsers.
struct Scrape(Vec<Value>);

impl Scrape {
    async fn of(client: &Client) -> Self {
        let res = client
            .http
            .get(format!("{}/metrics", client.bases[0]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = res.text().await.unwrap();
        let python = std::env::var("SCREENREC_TEST_PYTHON")
            .expect("SCREENREC_TEST_PYTHON: run the suite through scripts/test");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics/parse.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the parsers refused it: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap())
    }

    /// The value of the sample `name` whose labels include `labels` (0 when there is none).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s["name"] == name)
            .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    }

    fn families(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        names.dedup();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_a_recording() {
    let receiver = Receiver::start(0);
    let fixture = Recording::load("vp8-opus-ts1000");
    let total: usize = fixture.chunks.iter().map(Vec::len).sum();
    let n = fixture.chunks.len() as f64;
    for backend in backends() {
        let app = spawn_app_with(&backend, &receiver.vars()).await;
        let name = &backend.name;
        let client = app.client();
        let before = Scrape::of(&client).await;
        let mut recs = Vec::new();
        for path in [Path::Server, Path::Presigned, Path::WsSeq] {
            let rec = client.create(&fixture.mime_type).await;
            upload(&client, &rec, &fixture.chunks, path, Plan::default()).await;
            recs.push(rec);
        }
        let rec = &recs[0];
        client
            .stop(0, rec, fixture.chunks.len() as u32)
            .await
            .expect(202);
        let status = client.until_finished(rec).await;
        assert_eq!(status["status"], "ready", "{name}: {status}");
        receiver
            .until(Duration::from_secs(10), |r| {
                r.iter().any(|d| {
                    d["event"]["type"] == "recording.ready"
                        && d["event"]["data"]["recordingId"] == rec.id.as_str()
                })
            })
            .await;
        let mut ws = Ws::connect(&client.ws_url(0)).await;
        ws.call(json!({ "type": "auth", "recordingId": rec.id, "token": rec.token }))
            .await;
        let after = Scrape::of(&client).await;

        for family in [
            "screenrec_http_requests_total",
            "screenrec_http_request_duration_seconds_bucket",
            "screenrec_chunks_received_total",
            "screenrec_chunks_received_bytes_total",
            "screenrec_merges_total",
            "screenrec_merge_duration_seconds_count",
            "screenrec_merge_queue_depth",
            "screenrec_webhook_deliveries_total",
            "screenrec_websocket_connections",
        ] {
            assert!(
                after.families().iter().any(|f| f == family),
                "{name}: no {family} in {:?}",
                after.families()
            );
        }
        let moved = |metric: &str, labels: &[(&str, &str)]| {
            after.get(metric, labels) - before.get(metric, labels)
        };
        for path in ["server", "presigned", "websocket"] {
            let labels = [("path", path)];
            assert_eq!(
                moved("screenrec_chunks_received_total", &labels),
                n,
                "{name} {path}"
            );
            assert_eq!(
                moved("screenrec_chunks_received_bytes_total", &labels),
                total as f64,
                "{name} {path}"
            );
        }
        let put = [
            ("route", "/recordings/{id}/chunks/{seq}"),
            ("method", "PUT"),
            ("status", "200"),
        ];
        assert_eq!(moved("screenrec_http_requests_total", &put), n, "{name}");
        assert_eq!(
            moved("screenrec_http_request_duration_seconds_count", &put),
            n,
            "{name}"
        );
        let ready = [("outcome", "ready")];
        assert_eq!(moved("screenrec_merges_total", &ready), 1.0, "{name}");
        assert_eq!(
            moved("screenrec_merge_duration_seconds_count", &[]),
            1.0,
            "{name}"
        );
        assert_eq!(after.get("screenrec_merge_queue_depth", &[]), 0.0, "{name}");
        let delivered = [("outcome", "delivered")];
        // created × 3, stopped and ready.
        assert!(
            moved("screenrec_webhook_deliveries_total", &delivered) >= 5.0,
            "{name}"
        );
        assert!(
            after.get("screenrec_websocket_connections", &[]) >= 1.0,
            "{name}"
        );
        drop(ws);
    }
}
