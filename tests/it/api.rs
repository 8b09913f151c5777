//! The HTTP and WebSocket API against every backend.

use reqwest::Method;
use serde_json::json;

use crate::common::fixtures::Recording;
use crate::common::upload::{ALL_PATHS, Plan, stored_sha256, upload};
use crate::common::{Rec, backends, spawn_app};
use crate::ws_client::Ws;

#[tokio::test]
async fn every_path_stores_each_recording_whole_in_order_once() {
    let recordings = Recording::all();
    assert!(recordings.len() >= 6, "fixtures missing");
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let client = app.client();
        for (n, path) in ALL_PATHS.into_iter().enumerate() {
            for (k, fixture) in recordings.iter().enumerate() {
                let label = format!("{} / {path:?} / {}", backend.name, fixture.name);
                let rec = client.create(&fixture.mime_type).await;
                upload(
                    &client,
                    &rec,
                    &fixture.chunks,
                    path,
                    Plan {
                        seed: (n * 100 + k) as u64,
                        ..Plan::default()
                    },
                )
                .await;
                let count = fixture.chunks.len() as u32;
                let stopped = client.stop(0, &rec, count).await.expect(202);
                assert_ne!(stopped["status"], "recording", "{label}");
                let status = client.status(0, &rec).await;
                assert_eq!(status["chunksReceived"], count, "{label}");
                let total: usize = fixture.chunks.iter().map(Vec::len).sum();
                assert_eq!(status["bytesReceived"], total, "{label}");
                assert_eq!(status["chunkCount"], count, "{label}");
                assert_eq!(
                    stored_sha256(app.state.recordings.store().as_ref(), &rec, count).await,
                    Recording::sha256_of(&fixture.chunks),
                    "{label}: stored stream differs"
                );
            }
        }
    }
}

#[tokio::test]
async fn retries_are_idempotent_and_conflicts_are_refused() {
    let fixture = Recording::load("vp8-opus-ts1000");
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let c = app.client();
        let rec = c.create(&fixture.mime_type).await;
        let first = c
            .put_chunk(0, &rec, 0, fixture.chunks[0].clone())
            .await
            .expect(200);
        assert_eq!(first["duplicate"], false);
        let again = c
            .put_chunk(0, &rec, 0, fixture.chunks[0].clone())
            .await
            .expect(200);
        assert_eq!(again["duplicate"], true, "{}", backend.name);
        let conflict = c
            .put_chunk(0, &rec, 0, fixture.chunks[1].clone())
            .await
            .expect_error(409, "chunk_conflict");
        assert_eq!(conflict["error"]["index"], 0);
        // A presigned grant for a stored chunk says so instead of handing out a URL.
        let grant = c
            .grant(0, &rec, json!(0), fixture.chunks[0].len())
            .await
            .expect(200);
        assert_eq!(grant["alreadyStored"], true);
        assert!(grant.get("uploadUrl").is_none());
        // A recording numbered by seq refuses chunks without one.
        let mut ws = crate::common::upload::authed_ws(&c, 0, &rec).await;
        let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
        ws.send_binary(screenrec::http::ws::encode_chunk_frame(&id, None, b"x"))
            .await;
        let reply = ws.recv().await;
        assert_eq!(reply["error"]["code"], "indexing_conflict", "{reply}");
        assert_eq!(c.status(0, &rec).await["chunksReceived"], 1);
    }
}

#[tokio::test]
async fn presigned_uploads_count_only_once_confirmed() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let c = app.client();
        let rec = c.create("video/webm;codecs=vp9").await;
        let grant = c.grant(0, &rec, json!(0), 10).await.expect(200);
        assert!(grant["uploadUrl"].is_string(), "{grant}");
        assert!(grant["expiresAt"].is_string(), "{grant}");
        assert_eq!(grant["index"], 0);
        // Not uploaded yet: confirming fails and nothing counts.
        c.send(
            0,
            Method::POST,
            &format!("/recordings/{}/chunks/0/complete", rec.id),
            Some(&rec.token),
            None,
        )
        .await
        .expect_error(409, "chunk_not_uploaded");
        assert_eq!(c.status(0, &rec).await["chunksReceived"], 0);
        c.stop(0, &rec, 1).await.expect_error(409, "missing_chunks");
        // A grant binds the declared size. Declaring more than a chunk may hold is refused
        // outright; a body other than the one declared is refused by the storage itself when it
        // checks signatures (LocalStack, the filesystem store), and otherwise (moto) by the
        // confirmation, which removes the object.
        let grants = format!("/recordings/{}/chunks", rec.id);
        c.send(
            0,
            Method::POST,
            &grants,
            Some(&rec.token),
            Some(json!({"seq": 1})),
        )
        .await
        .expect_error(400, "invalid_json");
        c.grant(0, &rec, json!(1), 1024 * 1024 + 1)
            .await
            .expect_error(413, "chunk_too_large");
        let grant = c.grant(0, &rec, json!(1), 10).await.expect(200);
        let url = grant["uploadUrl"].as_str().unwrap().to_owned();
        c.grant(0, &rec, json!(1), 11)
            .await
            .expect_error(409, "chunk_conflict");
        let key = screenrec::domain::ObjectKey::chunk(
            &screenrec::domain::RecordingId::parse(&rec.id).unwrap(),
            screenrec::domain::ChunkIndex::new(1),
        );
        let mut refused_by_storage = 0;
        for (body, status, code) in [
            (vec![7u8; 1024 * 1024 + 1], 413, "chunk_too_large"),
            (vec![7u8; 11], 400, "checksum_mismatch"),
        ] {
            let put = c.http.put(&url).body(body).send().await.unwrap().status();
            if put.is_success() {
                c.send(
                    0,
                    Method::POST,
                    &format!("/recordings/{}/chunks/1/complete", rec.id),
                    Some(&rec.token),
                    None,
                )
                .await
                .expect_error(status, code);
            } else {
                assert!(put.is_client_error(), "{}: {put}", backend.name);
                refused_by_storage += 1;
            }
            let kept = app.state.recordings.store().head(&key).await.unwrap();
            assert!(
                kept.is_none(),
                "{}: a refused object was kept",
                backend.name
            );
        }
        if !backend.name.starts_with("moto") {
            assert_eq!(refused_by_storage, 2, "{}", backend.name);
        }
        assert_eq!(c.status(0, &rec).await["chunksReceived"], 0);
        c.presigned_chunk(0, &rec, 0, b"chunk zero".to_vec())
            .await
            .expect(200);
        c.stop(0, &rec, 1).await.expect(202);
    }
}

/// Every malformed request gets a 4xx with a stable code, and a bystander recording is
/// untouched by all of it.
#[tokio::test]
async fn bad_input_gets_clear_errors_and_harms_no_other_recording() {
    let fixture = Recording::load("vp9-ts1000");
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let c = app.client();
        let bystander = c.create(&fixture.mime_type).await;
        for (i, chunk) in fixture.chunks.iter().enumerate().take(3) {
            c.put_chunk(0, &bystander, i as u32, chunk.clone())
                .await
                .expect(200);
        }
        let before = c.status(0, &bystander).await;
        let rec = c.create(&fixture.mime_type).await;
        let t = Some(rec.token.as_str());
        let get = |path: String, token: Option<&str>| {
            let c = c.clone();
            let token = token.map(str::to_owned);
            async move { c.send(0, Method::GET, &path, token.as_deref(), None).await }
        };

        // Identifiers.
        let long = "0".repeat(300);
        // HTTP clients resolve `..` before sending, so it never names a recording: this asks
        // for `/`, the demo page.
        for dots in ["..", "%2E%2E"] {
            let page = get(format!("/recordings/{dots}"), t).await.expect(200);
            assert!(page.as_str().unwrap().starts_with("<!doctype html>"));
        }
        for bad in [
            "...",
            "a%2Fb",
            "%2E%2E%2Fx",
            "%C3%A9t%C3%A9",
            long.as_str(),
            "01HZZZZZZZZZZZZZZZZZZZZZZZ",
        ] {
            get(format!("/recordings/{bad}"), t)
                .await
                .expect_error(400, "invalid_recording_id");
        }
        get("/recordings/../etc/passwd".into(), t)
            .await
            .expect_error(404, "not_found");
        get("/recordings/a/b/c/d".into(), t)
            .await
            .expect_error(404, "not_found");
        let unknown = screenrec::domain::RecordingId::generate();
        get(format!("/recordings/{unknown}"), t)
            .await
            .expect_error(404, "recording_not_found");

        // Tokens.
        get(format!("/recordings/{}", rec.id), None)
            .await
            .expect_error(401, "missing_token");
        get(format!("/recordings/{}", rec.id), Some("nope"))
            .await
            .expect_error(401, "invalid_token");
        get(format!("/recordings/{}", rec.id), Some(&bystander.token))
            .await
            .expect_error(401, "invalid_token");
        c.put_chunk(
            0,
            &Rec {
                id: rec.id.clone(),
                token: bystander.token.clone(),
            },
            0,
            b"x".to_vec(),
        )
        .await
        .expect_error(401, "invalid_token");

        // Chunks and seqs.
        c.put_chunk(0, &rec, 0, vec![1u8; 1024 * 1024 + 1])
            .await
            .expect_error(413, "chunk_too_large");
        c.put_chunk(0, &rec, 0, Vec::new())
            .await
            .expect_error(400, "empty_chunk");
        for seq in ["-1", "99999999999999999999999", "1000", "1.5", "abc"] {
            let r = c
                .http
                .put(format!("{}/recordings/{}/chunks/{seq}", c.base(0), rec.id))
                .bearer_auth(&rec.token)
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "seq {seq}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_seq", "seq {seq}");
        }
        for seq in [json!(-1), json!(1e30), json!(1.5), json!(100000)] {
            c.grant(0, &rec, seq, 1)
                .await
                .expect_error(400, "invalid_seq");
        }

        // Request shape.
        let r = c
            .http
            .post(format!("{}/recordings", c.base(0)))
            .header("content-type", "application/json")
            .body("{\"mimeType\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
            "invalid_json"
        );
        let r = c
            .http
            .post(format!("{}/recordings", c.base(0)))
            .header("content-type", "text/plain")
            .body("{\"mimeType\": \"video/webm\"}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        c.send(
            0,
            Method::POST,
            "/recordings",
            None,
            Some(json!({ "mimeType": "text/html" })),
        )
        .await
        .expect_error(400, "invalid_mime_type");
        c.send(
            0,
            Method::POST,
            "/recordings",
            None,
            Some(json!({ "mime": "video/webm" })),
        )
        .await
        .expect_error(400, "invalid_json");
        c.send(0, Method::DELETE, "/recordings", None, None)
            .await
            .expect_error(405, "method_not_allowed");

        // Lifecycle.
        get(format!("/recordings/{}/download", rec.id), t)
            .await
            .expect_error(409, "not_ready");
        c.put_chunk(0, &rec, 0, fixture.chunks[0].clone())
            .await
            .expect(200);
        c.put_chunk(0, &rec, 2, fixture.chunks[2].clone())
            .await
            .expect(200);
        let missing = c.stop(0, &rec, 4).await.expect_error(409, "missing_chunks");
        assert_eq!(missing["error"]["missing"], json!([1, 3]));
        assert_eq!(missing["error"]["missingTotal"], 2);
        let beyond = c
            .stop(0, &rec, 1)
            .await
            .expect_error(409, "chunk_count_mismatch");
        assert_eq!(beyond["error"]["beyond"], json!([2]));
        for count in [json!(0), json!(-3), json!(1.5), json!(100000)] {
            c.send(
                0,
                Method::POST,
                &format!("/recordings/{}/stop", rec.id),
                t,
                Some(json!({ "chunkCount": count })),
            )
            .await
            .expect_error(400, "invalid_chunk_count");
        }
        c.put_chunk(0, &rec, 1, fixture.chunks[1].clone())
            .await
            .expect(200);
        c.stop(0, &rec, 3).await.expect(202);
        // A retried stop is idempotent, whether or not the merge has started; another count
        // is refused.
        c.stop(0, &rec, 3).await.expect(202);
        c.stop(0, &rec, 2)
            .await
            .expect_error(409, "already_stopped");
        c.put_chunk(0, &rec, 3, fixture.chunks[3].clone())
            .await
            .expect_error(409, "recording_not_active");
        c.grant(0, &rec, json!(3), fixture.chunks[3].len())
            .await
            .expect_error(409, "recording_not_active");
        get(format!("/recordings/{}/download", rec.id), t)
            .await
            .expect_error(409, "not_ready");

        // The bystander saw none of it and can still finish.
        let after = c.status(0, &bystander).await;
        assert_eq!(
            before["chunksReceived"], after["chunksReceived"],
            "{}",
            backend.name
        );
        assert_eq!(before["bytesReceived"], after["bytesReceived"]);
        assert_eq!(after["status"], "recording");
        assert_eq!(after["updatedAt"], before["updatedAt"]);
        for (i, chunk) in fixture.chunks.iter().enumerate().skip(3) {
            c.put_chunk(0, &bystander, i as u32, chunk.clone())
                .await
                .expect(200);
        }
        c.stop(0, &bystander, fixture.chunks.len() as u32)
            .await
            .expect(202);
        assert_eq!(
            stored_sha256(
                app.state.recordings.store().as_ref(),
                &bystander,
                fixture.chunks.len() as u32
            )
            .await,
            Recording::sha256_of(&fixture.chunks)
        );
    }
}

#[tokio::test]
async fn websocket_bad_input_gets_error_frames_and_the_socket_survives() {
    let backend = &backends()[0];
    let app = spawn_app(backend).await;
    let c = app.client();
    let mut ws = Ws::connect(&c.ws_url(0)).await;
    let created = ws
        .call(json!({ "type": "create", "mimeType": "video/webm", "requestId": 7 }))
        .await;
    assert_eq!(created["type"], "created", "{created}");
    assert_eq!(created["requestId"], 7);
    let rec = Rec {
        id: created["recordingId"].as_str().unwrap().into(),
        token: created["uploadToken"].as_str().unwrap().into(),
    };
    let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
    let frame = |seq, body: &[u8]| screenrec::http::ws::encode_chunk_frame(&id, seq, body);

    // A chunk before auth, garbage, bad JSON, a wrong token.
    ws.send_binary(frame(Some(0), b"x")).await;
    assert_eq!(ws.recv().await["error"]["code"], "missing_token");
    ws.send_binary(vec![0xde, 0xad, 0xbe, 0xef]).await;
    assert_eq!(ws.recv().await["error"]["code"], "invalid_frame");
    ws.send_text("{not json").await;
    assert_eq!(ws.recv().await["error"]["code"], "invalid_json");
    ws.send_text(r#"{"type":"launch"}"#).await;
    assert_eq!(ws.recv().await["error"]["code"], "invalid_json");
    let wrong = ws
        .call(json!({ "type": "auth", "recordingId": rec.id, "token": "0".repeat(64) }))
        .await;
    assert_eq!(wrong["error"]["code"], "invalid_token");
    let bad_id = ws
        .call(json!({ "type": "auth", "recordingId": "../x", "token": rec.token }))
        .await;
    assert_eq!(bad_id["error"]["code"], "invalid_recording_id");

    // The same socket still works.
    let ok = ws
        .call(json!({ "type": "auth", "recordingId": rec.id, "token": rec.token }))
        .await;
    assert_eq!(ok["type"], "authorized");
    ws.send_binary(frame(None, b"first")).await;
    assert_eq!(ws.recv().await["index"], 0);
    ws.send_binary(frame(None, b"")).await;
    assert_eq!(ws.recv().await["error"]["code"], "empty_chunk");
    // A chunk over the limit is refused by an error frame with its seq; the socket stays.
    ws.send_binary(frame(Some(7), &vec![1u8; 1024 * 1024 + 1]))
        .await;
    let refused = ws.recv().await;
    assert_eq!(
        (refused["error"]["code"].clone(), refused["seq"].clone()),
        (json!("chunk_too_large"), json!(7))
    );
    ws.send_binary(frame(None, b"second")).await;
    assert_eq!(ws.recv().await["index"], 1);
    ws.send_binary(frame(None, b"first")).await;
    let dup = ws.recv().await;
    assert_eq!(
        (dup["index"].clone(), dup["duplicate"].clone()),
        (json!(0), json!(true))
    );
    let stopped = ws
        .call(json!({ "type": "stop", "recordingId": rec.id, "chunkCount": 3 }))
        .await;
    assert_eq!(stopped["error"]["code"], "missing_chunks", "{stopped}");
    let stopped = ws
        .call(json!({ "type": "stop", "recordingId": rec.id, "chunkCount": 2 }))
        .await;
    assert_eq!(stopped["type"], "stopped", "{stopped}");
    assert_ne!(stopped["recording"]["status"], "recording");
    let status = ws
        .call(json!({ "type": "status", "recordingId": rec.id }))
        .await;
    assert_eq!(status["recording"]["chunksReceived"], 2);
}

#[tokio::test]
async fn service_endpoints_answer() {
    let app = spawn_app(&backends()[0]).await;
    let c = app.client();
    assert_eq!(
        c.send(0, Method::GET, "/healthz", None, None)
            .await
            .expect(200)["status"],
        "ok"
    );
    assert_eq!(
        c.send(0, Method::GET, "/readyz", None, None)
            .await
            .expect(200)["status"],
        "ready"
    );
    let spec = c
        .send(0, Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/recordings",
        "/recordings/{id}",
        "/recordings/{id}/chunks",
        "/recordings/{id}/chunks/{seq}",
        "/recordings/{id}/chunks/{seq}/complete",
        "/recordings/{id}/stop",
        "/recordings/{id}/merge",
        "/recordings/{id}/download",
        "/recordings/{id}/poster",
        "/files/{key}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi.json lacks {path}");
    }
    c.send(0, Method::GET, "/nowhere", None, None)
        .await
        .expect_error(404, "not_found");
    // Not a WebSocket handshake: a JSON error, naming the protocol to switch to.
    let plain = c
        .http
        .get(format!("{}/ws", c.bases[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 426);
    assert_eq!(plain.headers()["upgrade"], "websocket");
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required", "{body}");
}

/// The filesystem store's signed URLs: signature, expiry and HTTP Range.
#[tokio::test]
async fn signed_file_urls_serve_ranges() {
    use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
    use screenrec::store::Presign;
    let app = spawn_app(&backends()[0]).await;
    let c = app.client();
    let rec = c.create("video/webm").await;
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    c.put_chunk(0, &rec, 0, body.clone()).await.expect(200);
    let key = ObjectKey::chunk(&RecordingId::parse(&rec.id).unwrap(), ChunkIndex::new(0));
    let store = app.state.recordings.store();
    let url = store
        .presign(
            &key,
            Presign::Get {
                file_name: "x.webm",
                content_type: "video/webm",
            },
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap()
        .url;
    let full = c.http.get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert!(
        full.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("x.webm")
    );
    assert_eq!(full.bytes().await.unwrap().to_vec(), body);
    let part = c
        .http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        body[100..200].to_vec()
    );
    let tail = c
        .http
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap().to_vec(), body[9990..].to_vec());
    let r = c
        .http
        .get(&url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let tampered = url.replace("sig=", "sig=00");
    let r = c.http.get(&tampered).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A GET signature does not allow a PUT.
    let r = c.http.put(&url).body("overwrite").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .http
        .get(format!("{}/files/{}", c.base(0), key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// The router is a tower Service: call it without a socket.
#[tokio::test]
async fn router_is_a_tower_service() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = spawn_app(&backends()[0]).await;
    let router = screenrec::http::router(app.state.clone());
    let res = router
        .oneshot(
            Request::post("/recordings")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"mimeType":"video/mp4;codecs=avc1,opus"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// Integrity at ingest. A body that differs from its `x-amz-checksum-sha256` is refused through
/// the server with nothing stored. On the presigned path the grant signs the declared size and
/// checksum into the URL, so the storage itself refuses another body (LocalStack, with its
/// signature checks on, and the filesystem store's own URLs); a server that checks neither
/// (moto) stores it, and the confirmation refuses it and removes it. A client that declares
/// nothing is still served.
#[tokio::test]
async fn checksums_bind_each_chunk_to_the_bytes_declared() {
    use base64::Engine;
    use sha2::Digest;
    let b64 = |bytes: &[u8]| {
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
    };
    let mut storage_refused = Vec::new();
    for backend in backends() {
        let label = backend.name.clone();
        let app = spawn_app(&backend).await;
        let c = app.client();
        let rec = c.create("video/webm;codecs=vp9").await;
        let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
        let stored = |i: u32| {
            let key =
                screenrec::domain::ObjectKey::chunk(&id, screenrec::domain::ChunkIndex::new(i));
            let store = app.state.recordings.store().clone();
            async move { store.head(&key).await.unwrap().is_some() }
        };
        let put = |seq: u32, body: &'static [u8], checksum: Option<String>| {
            let (c, rec) = (&c, &rec);
            async move {
                let mut req = c
                    .http
                    .put(format!("{}/recordings/{}/chunks/{seq}", c.base(0), rec.id))
                    .bearer_auth(&rec.token)
                    .body(body);
                if let Some(sum) = checksum {
                    req = req.header("x-amz-checksum-sha256", sum);
                }
                let r = req.send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                )
            }
        };

        // Through the server.
        let (status, body) = put(0, b"chunk zero", Some(b64(b"chunk 0ero"))).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("checksum_mismatch")),
            "{label}: {body}"
        );
        assert!(!stored(0).await, "{label}: a refused body was stored");
        let (status, body) = put(0, b"chunk zero", Some("not base64 of a digest".into())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_checksum")),
            "{label}: {body}"
        );
        assert_eq!(c.status(0, &rec).await["chunksReceived"], 0);
        let (status, body) = put(0, b"chunk zero", Some(b64(b"chunk zero"))).await;
        assert_eq!(status, 200, "{label}: {body}");

        // Presigned, with the size and checksum declared.
        let good: &[u8] = b"chunk one, declared";
        // A grant of seq 1 for a body of `good`'s size with `bytes`' checksum.
        let grants = format!("/recordings/{}/chunks", rec.id);
        let declare = |bytes: &[u8]| {
            let body = json!({ "seq": 1, "size": good.len(), "sha256": b64(bytes) });
            c.send(0, Method::POST, &grants, Some(&rec.token), Some(body))
        };
        let grant = declare(good).await.expect(200);
        let url = grant["uploadUrl"].as_str().unwrap().to_owned();
        assert_eq!(
            grant["headers"]["x-amz-checksum-sha256"],
            b64(good),
            "{label}: {grant}"
        );
        let confirm_path = format!("/recordings/{}/chunks/1/complete", rec.id);
        let confirm = || c.send(0, Method::POST, &confirm_path, Some(&rec.token), None);
        // The PUT sends every header the grant lists, as given (they are signed).
        let signed: Vec<(String, String)> = grant["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let upload = |body: Vec<u8>, with_headers: bool| {
            let mut req = c.http.put(&url).body(body);
            if with_headers {
                for (name, value) in &signed {
                    req = req.header(name, value);
                }
            }
            async move { req.send().await.unwrap().status().as_u16() }
        };
        let mut other = good.to_vec();
        other[0] ^= 1;
        let mut longer = good.to_vec();
        longer.push(b'!');
        for (what, body) in [
            ("other bytes of the declared size", other),
            ("a longer body", longer),
        ] {
            let status = upload(body, true).await;
            if (200..300).contains(&status) {
                // The storage took it: the confirmation must not.
                confirm().await.expect_error(400, "checksum_mismatch");
                assert!(
                    !stored(1).await,
                    "{label}, {what}: the refused object was kept"
                );
            } else {
                assert!((400..500).contains(&status), "{label}, {what}: {status}");
                storage_refused.push(format!("{label}: {what} -> {status}"));
                assert!(!stored(1).await, "{label}, {what}: stored");
            }
        }
        if label.starts_with("localstack") || label.starts_with("fs") {
            assert!(
                storage_refused
                    .iter()
                    .filter(|r| r.starts_with(&label))
                    .count()
                    == 2,
                "{label}: the storage itself must refuse both: {storage_refused:?}"
            );
        }
        confirm().await.expect_error(409, "chunk_not_uploaded");
        assert_eq!(upload(good.to_vec(), true).await, 200, "{label}");
        confirm().await.expect(200);
        assert_eq!(c.status(0, &rec).await["chunksReceived"], 2);
        // The index now holds those bytes: declaring them again finds them stored; declaring
        // others is a conflict.
        let again = declare(good).await.expect(200);
        assert_eq!(again["alreadyStored"], true, "{label}: {again}");
        declare(b"something else")
            .await
            .expect_error(409, "chunk_conflict");

        // A client that declares nothing.
        c.presigned_chunk(0, &rec, 2, b"chunk two".to_vec())
            .await
            .expect(200);
        c.stop(0, &rec, 3).await.expect(202);
    }
    eprintln!("refused by the storage itself: {storage_refused:?}");
}
