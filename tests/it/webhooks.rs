//! Webhooks, checked by a receiver that verifies every delivery with the reference Standard
//! Webhooks library (`tests/webhooks/receiver.py`, the `standardwebhooks` package from PyPI):
//! every change in a recording's life, once each, with its metadata; retries with the same
//! `webhook-id`; one delivery per event across three instances, none lost when they are all
//! killed; private addresses refused.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::fixtures::Recording;
use crate::common::process::Cluster;
use crate::common::receiver::{Receiver, SECRET};
use crate::common::{Client, Rec, backends, spawn_app_with};

/// The requests whose event is of `kind` about `rec`.
fn about<'a>(requests: &'a [Value], rec: &Rec, kind: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|r| r["event"]["type"] == kind && r["event"]["data"]["recordingId"] == rec.id)
        .collect()
}

fn delivered(requests: &[Value]) -> Vec<&Value> {
    requests.iter().filter(|r| r["status"] == 204).collect()
}

const KEY: &str = "srk_webhooks";

fn api_keys() -> String {
    format!("acme={}", hex::encode(Sha256::digest(KEY.as_bytes())))
}

async fn create(client: &Client, n: usize, metadata: Value) -> Rec {
    let body = json!({ "mimeType": "video/webm;codecs=vp8,opus", "metadata": metadata });
    let created = client
        .send(n, Method::POST, "/recordings", Some(KEY), Some(body))
        .await
        .expect(201);
    Rec {
        id: created["recordingId"].as_str().unwrap().to_owned(),
        token: created["uploadToken"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn every_change_reaches_the_app_once_signed_as_standard_webhooks() {
    let f = Recording::load("vp8-opus-ts1000");
    let receiver = Receiver::start(0);
    let keys = api_keys();
    for backend in backends() {
        let app = spawn_app_with(
            &backend,
            &[
                &receiver.vars()[..],
                &[("AUTH_MODE", "api-key"), ("API_KEYS", &keys)],
            ]
            .concat(),
        )
        .await;
        let name = &backend.name;
        let client = app.client();
        let rec = create(&client, 0, json!({ "lesson": "7" })).await;
        for (seq, chunk) in f.chunks.iter().enumerate() {
            client
                .put_chunk(0, &rec, seq as u32, chunk.clone())
                .await
                .expect(200);
        }
        client
            .stop(0, &rec, f.chunks.len() as u32)
            .await
            .expect(202);
        let requests = receiver
            .until(Duration::from_secs(60), |r| {
                !about(r, &rec, "recording.ready").is_empty()
            })
            .await;
        let ready = about(&requests, &rec, "recording.ready")[0];
        for url in ["downloadUrl", "posterUrl"] {
            assert!(ready["event"]["data"][url].is_string(), "{name}: {ready}");
        }
        assert_eq!(ready["event"]["data"]["status"], "ready", "{name}");
        client
            .send(
                0,
                Method::DELETE,
                &format!("/recordings/{}", rec.id),
                Some(KEY),
                None,
            )
            .await
            .expect(204);
        let requests = receiver
            .until(Duration::from_secs(10), |r| {
                !about(r, &rec, "recording.deleted").is_empty()
            })
            .await;
        for kind in [
            "recording.created",
            "recording.stopped",
            "recording.ready",
            "recording.deleted",
        ] {
            let got = about(&requests, &rec, kind);
            assert_eq!(got.len(), 1, "{name}: {kind} once: {got:#?}");
            let event = &got[0]["event"];
            assert_eq!(
                event["data"]["metadata"],
                json!({ "lesson": "7" }),
                "{name}"
            );
            assert!(event["timestamp"].is_string(), "{name}: {event}");
        }
        assert_eq!(
            about(&requests, &rec, "recording.stopped")[0]["event"]["data"]["status"],
            "stopping",
            "{name}"
        );
    }
    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "every delivery verifies: {requests:#?}"
    );
    let mut ids: Vec<&str> = requests.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), requests.len(), "a distinct webhook-id per event");
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_event_again_with_the_same_id() {
    let receiver = Receiver::start(3);
    let keys = api_keys();
    for backend in backends() {
        let app = spawn_app_with(
            &backend,
            &[
                &receiver.vars()[..],
                &[
                    ("AUTH_MODE", "api-key"),
                    ("API_KEYS", &keys),
                    ("WEBHOOK_RETRY_MIN_MS", "100"),
                ],
            ]
            .concat(),
        )
        .await;
        let rec = create(&app.client(), 0, json!({})).await;
        let requests = receiver
            .until(Duration::from_secs(20), |r| {
                about(r, &rec, "recording.created")
                    .iter()
                    .any(|a| a["status"] == 204)
            })
            .await;
        let attempts = about(&requests, &rec, "recording.created");
        let statuses: Vec<&Value> = attempts.iter().map(|r| &r["status"]).collect();
        assert_eq!(
            statuses,
            [500, 500, 500, 204],
            "{}: {attempts:#?}",
            backend.name
        );
        let id = &attempts[0]["id"];
        assert!(attempts.iter().all(|r| r["id"] == *id), "{attempts:#?}");
        let stamps: Vec<u64> = attempts
            .iter()
            .map(|r| r["timestamp"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(stamps.is_sorted(), "{stamps:?}");
        // Nothing more comes: delivered once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            about(&receiver.requests(), &rec, "recording.created").len(),
            4
        );
    }
}

#[tokio::test]
async fn private_addresses_are_refused() {
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://[::1]/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::ffff:192.168.0.1]/",
    ] {
        let vars = [("WEBHOOK_URL", url), ("WEBHOOK_SECRET", SECRET)];
        let refused = screenrec::config::Config::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect_err(url);
        assert_eq!(refused.var, "WEBHOOK_URL", "{url}: {refused}");
    }
    // A name that resolves to loopback: refused when it is sent, and given up at once.
    let receiver = Receiver::start(0);
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let backend = &backends()[0];
    let app = spawn_app_with(
        backend,
        &[("WEBHOOK_URL", &by_name), ("WEBHOOK_SECRET", SECRET)],
    )
    .await;
    app.client().create("video/webm").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = app.state.recordings.records().metrics().clone();
    while metrics.webhooks("dead_lettered") == 0 {
        assert!(Instant::now() < deadline, "not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.requests().is_empty(), "{:#?}", receiver.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_deliver_each_event_once_and_lose_none_when_killed() {
    // Every event fails once, so each is retried, by whichever instance comes to it.
    let receiver = Receiver::start(1);
    let keys = api_keys();
    let vars = [
        ("AUTH_MODE", "api-key"),
        ("API_KEYS", keys.as_str()),
        ("WEBHOOK_URL", receiver.url.as_str()),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_MIN_MS", "1500"),
    ];
    let Some(mut cluster) = Cluster::start(3, &vars).await else {
        return;
    };
    let client = cluster.client();
    let mut recs = Vec::new();
    for n in 0..12 {
        recs.push(create(&client, n, json!({ "n": n.to_string() })).await);
    }
    let requests = receiver
        .until(Duration::from_secs(30), |r| {
            delivered(r).len() >= recs.len()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = if requests.len() == receiver.requests().len() {
        requests
    } else {
        receiver.requests()
    };
    for rec in &recs {
        let attempts = about(&requests, rec, "recording.created");
        let statuses: Vec<&Value> = attempts.iter().map(|r| &r["status"]).collect();
        assert_eq!(statuses, [500, 204], "{}: {attempts:#?}", rec.id);
    }

    // Events whose retry is pending when every instance is killed: delivered after they
    // start again.
    let mut pending = Vec::new();
    for n in 0..6 {
        pending.push(create(&client, n, json!({ "n": n.to_string() })).await);
    }
    receiver
        .until(Duration::from_secs(10), |r| {
            pending
                .iter()
                .all(|rec| !about(r, rec, "recording.created").is_empty())
        })
        .await;
    for instance in &mut cluster.instances {
        instance.kill();
    }
    for instance in &mut cluster.instances {
        instance.start_again().await;
    }
    let requests = receiver
        .until(Duration::from_secs(30), |r| {
            pending.iter().all(|rec| {
                about(r, rec, "recording.created")
                    .iter()
                    .any(|a| a["status"] == 204)
            })
        })
        .await;
    assert!(requests.iter().all(|r| r["verified"] == true));
}
