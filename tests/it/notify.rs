//! Notifications: every change reaches a subscriber on whichever instance holds its socket,
//! in version order with no gap, across a reconnect.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::Recording;
use crate::common::process::Cluster;
use crate::common::upload::{Path, Plan, upload};
use crate::common::{Client, Rec, backends, redis_url, spawn_app};
use crate::ws_client::Ws;

async fn subscribe(client: &Client, n: usize, rec: &Rec, last: Option<u64>) -> Ws {
    let mut ws = Ws::connect(&client.ws_url(n)).await;
    let mut msg = json!({ "type": "subscribe", "recordingId": rec.id, "token": rec.token });
    if let Some(v) = last {
        msg["lastVersion"] = json!(v);
    }
    let reply = ws.call(msg).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    ws
}

/// Read events until `recordingReady` or `recordingError` (or `stop_after` returns true).
async fn collect(ws: &mut Ws, events: &mut Vec<Value>, stop_after: impl Fn(&Value) -> bool) {
    loop {
        let e = ws.recv().await;
        let done = e["type"] == "recordingReady" || e["type"] == "recordingError";
        let stop = stop_after(&e);
        events.push(e);
        if done || stop {
            return;
        }
    }
}

/// Versions of stored events (the state snapshot repeats the last version) must run 1..=n.
#[track_caller]
fn assert_versions_complete(events: &[Value]) {
    let mut versions: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] != "recordingState")
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    let before = versions.len();
    versions.dedup();
    assert_eq!(before, versions.len(), "an event arrived twice");
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected, "versions out of order or with a gap");
}

async fn check_flow(client: &Client, subscriber: usize, uploader: usize, stopper: usize) {
    let fixture = Recording::load("vp9-ts1000");
    let rec = client.create(&fixture.mime_type).await;
    let mut ws = subscribe(client, subscriber, &rec, None).await;
    let state = ws.recv().await;
    assert_eq!(state["type"], "recordingState", "{state}");
    assert_eq!(state["recording"]["status"], "recording");
    let uploading = Client::new(vec![client.base(uploader).to_owned()]);
    upload(
        &uploading,
        &rec,
        &fixture.chunks,
        Path::Server,
        Plan::default(),
    )
    .await;
    client
        .stop(stopper, &rec, fixture.chunks.len() as u32)
        .await
        .expect(202);
    let mut events = vec![state];
    collect(&mut ws, &mut events, |_| false).await;
    assert_versions_complete(&events);
    let mut saved: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "chunkSaved")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    saved.sort();
    assert_eq!(saved, (0..fixture.chunks.len() as u64).collect::<Vec<_>>());
    assert!(events.iter().any(|e| e["type"] == "mergeProgress"));
    let ready = events.last().unwrap();
    assert_eq!(ready["type"], "recordingReady", "{ready}");
    assert_eq!(ready["recordingId"], rec.id);
    let video = client
        .http
        .get(ready["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(video.status().is_success());
    assert_eq!(
        video.bytes().await.unwrap().len() as u64,
        ready["sizeBytes"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_instance_notifies_its_subscribers() {
    for backend in backends().iter().filter(|b| b.redis_url.is_none()) {
        let app = spawn_app(backend).await;
        check_flow(&app.client(), 0, 0, 0).await;
    }
}

/// Subscribed on instance 3, uploading through instance 1, stopping through instance 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_instance_that_holds_the_socket() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let client = cluster.client();
    check_flow(&client, 2, 0, 1).await;
}

/// Drop the socket mid-merge and reconnect to another instance with the last version seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_elsewhere_misses_nothing() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let client = cluster.client();
    let fixture = Recording::load("vp8-restart2000");
    let chunks = fixture.repeated_to(120);
    let rec = client.create(&fixture.mime_type).await;
    let mut ws = subscribe(&client, 0, &rec, None).await;
    let mut events = vec![ws.recv().await];
    upload(&client, &rec, &chunks, Path::Server, Plan::default()).await;
    client.stop(1, &rec, chunks.len() as u32).await.expect(202);
    collect(&mut ws, &mut events, |e| e["type"] == "mergeProgress").await;
    drop(ws);
    let last = events
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .max()
        .unwrap();
    let mut ws = subscribe(&client, 2, &rec, Some(last)).await;
    collect(&mut ws, &mut events, |_| false).await;
    assert_versions_complete(&events);
    assert_eq!(events.last().unwrap()["type"], "recordingReady");
    let saved = events.iter().filter(|e| e["type"] == "chunkSaved").count();
    assert_eq!(saved, chunks.len());
}

#[tokio::test]
async fn bad_subscriptions_get_error_frames_and_other_sockets_carry_on() {
    let app = spawn_app(&backends()[0]).await;
    let client = app.client();
    let rec = client.create("video/webm").await;
    let mut bystander = subscribe(&client, 0, &rec, None).await;
    assert_eq!(bystander.recv().await["type"], "recordingState");

    let mut ws = Ws::connect(&client.ws_url(0)).await;
    let unknown = screenrec::domain::RecordingId::generate();
    for (msg, code) in [
        (
            json!({ "type": "subscribe", "recordingId": unknown.as_str(), "token": rec.token }),
            "recording_not_found",
        ),
        (
            json!({ "type": "subscribe", "recordingId": rec.id, "token": "0".repeat(64) }),
            "invalid_token",
        ),
        (
            json!({ "type": "subscribe", "recordingId": rec.id }),
            "missing_token",
        ),
        (
            json!({ "type": "subscribe", "recordingId": "../../x", "token": rec.token }),
            "invalid_recording_id",
        ),
        (
            json!({ "type": "subscribe", "recordingId": rec.id, "token": rec.token, "lastVersion": -1 }),
            "invalid_json",
        ),
    ] {
        let reply = ws.call(msg).await;
        assert_eq!(reply["error"]["code"], code, "{reply}");
    }
    // Too many subscriptions on one connection.
    let mut recs = Vec::new();
    for _ in 0..17 {
        recs.push(client.create("video/webm").await);
    }
    for (i, r) in recs.iter().enumerate() {
        let reply = ws
            .call(json!({ "type": "subscribe", "recordingId": r.id, "token": r.token }))
            .await;
        if i < 16 {
            assert_eq!(reply["type"], "subscribed", "{reply}");
            assert_eq!(ws.recv().await["type"], "recordingState");
        } else {
            assert_eq!(reply["error"]["code"], "connection_limit", "{reply}");
        }
    }
    // A message over twice the chunk limit closes that socket with 1009; the others carry on.
    let mut big = Ws::connect(&client.ws_url(0)).await;
    big.send_binary(vec![0u8; 2 * 1024 * 1024 + 200]).await;
    assert_eq!(big.close_code().await, Some(1009));
    client
        .put_chunk(0, &rec, 0, b"still working".to_vec())
        .await
        .expect(200);
    let saved = bystander.recv().await;
    assert_eq!(saved["type"], "chunkSaved", "{saved}");
    assert_eq!(saved["version"], 1);
    let reply = ws
        .call(json!({ "type": "status", "recordingId": recs[0].id }))
        .await;
    assert_eq!(reply["type"], "status", "{reply}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn the_serverless_notifier_posts_to_api_gateway_and_drops_gone_connections() {
    use screenrec::notify::{ApiGatewayNotifier, EventKind, Notifier};
    let Some(redis) = redis_url() else {
        return;
    };
    let api = crate::common::apigw::ManagementApi::spawn().await;
    let prefix = format!("{}:", crate::common::unique("apigw"));
    let sdk = screenrec::aws::sdk_config(Some("us-east-1")).await;
    let notifier = ApiGatewayNotifier::connect(
        &sdk,
        &redis,
        &prefix,
        Duration::from_secs(600),
        &api.endpoint,
    )
    .await
    .unwrap();
    let id = screenrec::domain::RecordingId::generate();
    for c in ["ok1=", "gone=", "flaky", "down"] {
        notifier.register(&id, c).await.unwrap();
    }
    assert!(notifier.register(&id, "not/../valid id").await.is_err());
    let event = notifier
        .publish(&id, EventKind::MergeProgress { percent: 50 })
        .await
        .unwrap();
    assert_eq!(event.version, 1);

    let seen = api.seen();
    let to = |c: &str| seen.iter().filter(|(x, _, _)| x == c).collect::<Vec<_>>();
    let ok = to("ok1=");
    assert_eq!(ok.len(), 1, "{seen:?}");
    let (_, headers, body) = ok[0];
    let sent: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(sent, serde_json::to_value(&event).unwrap());
    assert_eq!(sent["type"], "mergeProgress");
    let auth = headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential="), "{auth}");
    assert!(
        auth.contains("/us-east-1/execute-api/aws4_request"),
        "{auth}"
    );
    assert!(
        auth.contains("SignedHeaders=") && auth.contains("Signature="),
        "{auth}"
    );
    assert!(headers.contains_key("x-amz-date"));
    assert_eq!(to("flaky").len(), 2, "retried once after the 500");
    assert_eq!(to("down").len(), 3, "three attempts, then given up");
    assert_eq!(to("gone=").len(), 1, "a 410 is not retried");
    let mut followers = notifier.followers(&id).await.unwrap();
    followers.sort();
    assert_eq!(
        followers,
        ["down", "flaky", "ok1="],
        "the gone connection is dropped"
    );
    notifier.unregister("ok1=").await.unwrap();
    let followers = notifier.followers(&id).await.unwrap();
    assert!(!followers.contains(&"ok1=".to_string()));
}

/// A subscriber that stops reading is cut off once its buffers fill, and never holds up the
/// subscriber beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_dropped_and_slows_no_one() {
    use screenrec::notify::EventKind;
    let app = spawn_app(&backends()[0]).await;
    let client = app.client();
    let rec = client.create("video/webm").await;
    let mut slow = Ws::connect_small_buffer(&client.ws_url(0)).await;
    let reply = slow
        .call(json!({ "type": "subscribe", "recordingId": rec.id, "token": rec.token }))
        .await;
    assert_eq!(reply["type"], "subscribed");
    let mut fast = subscribe(&client, 0, &rec, None).await;
    assert_eq!(fast.recv().await["type"], "recordingState");
    let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
    let notifier = app.state.recordings.notifier().clone();
    // 20 MB of events: more than the kernel buffers between server and client hold. The
    // publisher stays at most LEAD events ahead of the reading subscriber, well inside its
    // outbox, so only the one that never reads can fall behind, however loaded the machine.
    const EVENTS: u64 = 2_000;
    const LEAD: u64 = 64;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let read = received.clone();
    let padding = "x".repeat(10_000);
    let publisher = tokio::spawn(async move {
        for n in 0..EVENTS {
            while n >= read.load(std::sync::atomic::Ordering::Acquire) + LEAD {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let kind = EventKind::RecordingState {
                recording: json!({ "n": n, "padding": padding }),
            };
            notifier.publish(&id, kind).await.unwrap();
        }
    });
    let mut next = 1;
    while next <= EVENTS {
        let e = fast.recv().await;
        assert_eq!(
            e["version"], next,
            "the reading subscriber lost or reordered an event"
        );
        received.store(next, std::sync::atomic::Ordering::Release);
        next += 1;
    }
    publisher.await.unwrap();
    // The one that never read has been disconnected with 1008 (policy) after some events.
    assert_eq!(slow.close_code().await, Some(1008));
}
