//! Notifications: every change reaches a subscriber on whichever instance holds its socket,
//! in version order with no gap, across a reconnect.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fixtures::Recording;
use crate::common::process::Instance;
use crate::common::upload::{Path, Plan, upload};
use crate::common::{Backend, Client, Rec, backends, env_for, redis_url, s3_endpoints, spawn_app};
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

async fn three_instances() -> Option<(Vec<Instance>, tempfile::TempDir)> {
    let (Some(redis), Some((_, s3))) = (
        redis_url(),
        s3_endpoints().into_iter().find(|(n, _)| n == "localstack"),
    ) else {
        return None;
    };
    let backend = Backend {
        name: "localstack+redis".into(),
        s3_endpoint: Some(s3),
        redis_url: Some(redis),
    };
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&backend, dir.path()).await;
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(Instance::start(&env, dir.path(), n).await);
    }
    Some((instances, dir))
}

/// Subscribed on instance 3, uploading through instance 1, stopping through instance 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_instance_that_holds_the_socket() {
    let Some((instances, _dir)) = three_instances().await else {
        return;
    };
    let client = Client::new(instances.iter().map(|i| i.base.clone()).collect());
    check_flow(&client, 2, 0, 1).await;
}

/// Drop the socket mid-merge and reconnect to another instance with the last version seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_elsewhere_misses_nothing() {
    let Some((instances, _dir)) = three_instances().await else {
        return;
    };
    let client = Client::new(instances.iter().map(|i| i.base.clone()).collect());
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
    // An oversized message closes that socket with 1009; the others carry on.
    let mut big = Ws::connect(&client.ws_url(0)).await;
    big.send_binary(vec![0u8; 1024 * 1024 + 200]).await;
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
