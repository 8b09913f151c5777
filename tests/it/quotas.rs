//! Quotas, each hit at its limit on every backend, with a 403 `quota_exceeded` that names it;
//! the chunks stored before stay, and the recording can still be stopped and merged.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::fixtures::Recording;
use crate::common::upload::{authed_ws, stored_sha256};
use crate::common::{Answer, Client, Rec, backends, spawn_app_with};

#[track_caller]
fn over(answer: Answer, quota: &str) {
    let body = answer.expect_error(403, "quota_exceeded");
    assert_eq!(body["error"]["quota"], quota, "{body}");
    assert!(body["error"]["limit"].is_u64(), "{body}");
}

#[tokio::test]
async fn a_recording_over_its_bytes_keeps_what_it_stored_on_every_path() {
    let f = Recording::load("vp8-opus-ts1000");
    let kept = 3;
    let limit: usize = f.chunks[..kept].iter().map(Vec::len).sum();
    let limit = limit.to_string();
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("MAX_RECORDING_BYTES", &limit)]).await;
        let client = app.client();
        let name = &backend.name;
        for path in ["server", "presigned", "websocket"] {
            let rec = client.create(&f.mime_type).await;
            for seq in 0..kept as u32 {
                client
                    .put_chunk(0, &rec, seq, f.chunks[seq as usize].clone())
                    .await
                    .expect(200);
            }
            let next = f.chunks[kept].clone();
            match path {
                "server" => over(
                    client.put_chunk(0, &rec, kept as u32, next).await,
                    "MAX_RECORDING_BYTES",
                ),
                "presigned" => {
                    let grant = client
                        .send(
                            0,
                            Method::POST,
                            &format!("/recordings/{}/chunks", rec.id),
                            Some(&rec.token),
                            Some(json!({ "seq": kept, "size": next.len() })),
                        )
                        .await;
                    over(grant, "MAX_RECORDING_BYTES");
                }
                _ => {
                    let mut ws = authed_ws(&client, 0, &rec).await;
                    let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
                    let frame =
                        screenrec::http::ws::encode_chunk_frame(&id, Some(kept as u32), &next);
                    ws.send_binary(frame).await;
                    let reply = ws.recv().await;
                    assert_eq!(reply["error"]["code"], "quota_exceeded", "{name}: {reply}");
                    assert_eq!(reply["error"]["quota"], "MAX_RECORDING_BYTES");
                }
            }
            // At the limit, a retry of a stored chunk is still a duplicate on every path.
            let last = kept as u32 - 1;
            let again = client
                .put_chunk(0, &rec, last, f.chunks[kept - 1].clone())
                .await
                .expect(200);
            assert_eq!(again["duplicate"], true, "{name} {path}: {again}");
            let grant = client
                .grant(0, &rec, json!(last), f.chunks[kept - 1].len())
                .await
                .expect(200);
            assert_eq!(grant["alreadyStored"], true, "{name} {path}: {grant}");
            let confirmed = client
                .send(
                    0,
                    Method::POST,
                    &format!("/recordings/{}/chunks/{last}/complete", rec.id),
                    Some(&rec.token),
                    None,
                )
                .await
                .expect(200);
            assert_eq!(confirmed["duplicate"], true, "{name} {path}: {confirmed}");
            let status = client.status(0, &rec).await;
            assert_eq!(status["chunksReceived"], kept, "{name} {path}: {status}");
            let store = app.state.recordings.store();
            let whole: Vec<u8> = f.chunks[..kept].concat();
            assert_eq!(
                stored_sha256(store.as_ref(), &rec, kept as u32).await,
                hex::encode(Sha256::digest(&whole)),
                "{name} {path}"
            );
            client.stop(0, &rec, kept as u32).await.expect(202);
        }
    }
}

#[tokio::test]
async fn a_recording_past_its_time_takes_no_chunk_and_can_still_stop() {
    let f = Recording::load("vp8-opus-ts1000");
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("MAX_RECORDING_SECS", "1")]).await;
        let client = app.client();
        let rec = client.create(&f.mime_type).await;
        client
            .put_chunk(0, &rec, 0, f.chunks[0].clone())
            .await
            .expect(200);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        over(
            client.put_chunk(0, &rec, 1, f.chunks[1].clone()).await,
            "MAX_RECORDING_SECS",
        );
        assert_eq!(client.status(0, &rec).await["chunksReceived"], 1);
        client.stop(0, &rec, 1).await.expect(202);
    }
}

#[tokio::test]
async fn an_owner_has_at_most_so_many_unfinished_recordings() {
    let key = "srk_quota";
    let keys = format!("acme={}", hex::encode(Sha256::digest(key.as_bytes())));
    for backend in backends() {
        let app = spawn_app_with(
            &backend,
            &[
                ("AUTH_MODE", "api-key"),
                ("API_KEYS", &keys),
                ("MAX_ACTIVE_RECORDINGS", "2"),
            ],
        )
        .await;
        let client = app.client();
        let create = |owner: &str| {
            let body = json!({ "mimeType": "video/webm", "owner": owner });
            let client = client.clone();
            async move {
                client
                    .send(0, Method::POST, "/recordings", Some(key), Some(body))
                    .await
            }
        };
        let first = create("alice").await.expect(201);
        create("alice").await.expect(201);
        over(create("alice").await, "MAX_ACTIVE_RECORDINGS");
        // Another owner has quota of its own.
        create("bob").await.expect(201);
        // A recording deleted is no longer unfinished.
        let id = first["recordingId"].as_str().unwrap();
        client
            .send(
                0,
                Method::DELETE,
                &format!("/recordings/{id}"),
                Some(key),
                None,
            )
            .await
            .expect(204);
        create("alice").await.expect(201);
        over(create("alice").await, "MAX_ACTIVE_RECORDINGS");
    }
}

/// `MAX_TENANT_BYTES` across a tenant's recordings, on every path: another tenant is not held
/// to it; the tally is counted again from the store when the coordinator's state is gone (a
/// new instance on the same storage, with a Redis prefix or a memory of its own); a deleted
/// recording's bytes are free again.
#[tokio::test]
async fn a_tenant_over_its_bytes_is_refused_across_recordings_and_restarts() {
    let f = Recording::load("vp8-opus-ts1000");
    let (acme, globex) = ("srk_tenant_acme", "srk_tenant_globex");
    let sha = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    let keys = format!("acme={},globex={}", sha(acme), sha(globex));
    // Two recordings of chunks 0 and 1, and one of chunk 0: chunk 1 more is over.
    let limit = 2 * f.chunks[0].len() + f.chunks[1].len();
    let limit = limit.to_string();
    for backend in backends() {
        let vars = [
            ("AUTH_MODE", "api-key"),
            ("API_KEYS", keys.as_str()),
            ("MAX_TENANT_BYTES", limit.as_str()),
        ];
        let app = spawn_app_with(&backend, &vars).await;
        let name = &backend.name;
        let client = app.client();
        let create = |client: &Client, key: &'static str| {
            let body = json!({ "mimeType": f.mime_type, "owner": "alice" });
            let client = client.clone();
            async move {
                let created = client
                    .send(0, Method::POST, "/recordings", Some(key), Some(body))
                    .await
                    .expect(201);
                Rec {
                    id: created["recordingId"].as_str().unwrap().to_owned(),
                    token: created["uploadToken"].as_str().unwrap().to_owned(),
                }
            }
        };
        let first = create(&client, acme).await;
        let second = create(&client, acme).await;
        for seq in 0..2 {
            client
                .put_chunk(0, &first, seq, f.chunks[seq as usize].clone())
                .await
                .expect(200);
        }
        client
            .put_chunk(0, &second, 0, f.chunks[0].clone())
            .await
            .expect(200);
        let next = f.chunks[1].clone();
        over(
            client.put_chunk(0, &second, 1, next.clone()).await,
            "MAX_TENANT_BYTES",
        );
        over(
            client.grant(0, &second, json!(1), next.len()).await,
            "MAX_TENANT_BYTES",
        );
        // Another tenant has quota of its own.
        let other = create(&client, globex).await;
        for seq in 0..2 {
            client
                .put_chunk(0, &other, seq, f.chunks[seq as usize].clone())
                .await
                .expect(200);
        }

        // A new instance on the same storage, the coordinator's state gone with the old one.
        let mut again: Vec<(&str, &str)> = vars.to_vec();
        let fresh_prefix = format!("{}:", crate::common::unique("t"));
        for key in ["STORAGE_DIR", "S3_BUCKET"] {
            if let Some(value) = app.env.get(key) {
                again.push((key, value));
            }
        }
        if backend.redis_url.is_some() {
            again.push(("REDIS_PREFIX", &fresh_prefix));
        }
        let restarted = spawn_app_with(&backend, &again).await;
        let client = restarted.client();
        over(
            client.put_chunk(0, &second, 1, next.clone()).await,
            "MAX_TENANT_BYTES",
        );
        assert_eq!(
            client.status(0, &second).await["chunksReceived"],
            1,
            "{name}"
        );
        // Deleting a recording frees its bytes.
        client
            .send(
                0,
                Method::DELETE,
                &format!("/recordings/{}", first.id),
                Some(acme),
                None,
            )
            .await
            .expect(204);
        client
            .put_chunk(0, &second, 1, next.clone())
            .await
            .expect(200);
        client.stop(0, &second, 2).await.expect(202);
    }
}
