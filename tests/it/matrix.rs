//! Every route, over HTTP and `/ws`, with every wrong credential: each refused with 401, 403 or
//! 404 and its stable code, and not one answer carries anything of the recording it aimed at.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Rec, backends, spawn_app_with};
use crate::ws_client::Ws;

#[tokio::test]
async fn every_route_refuses_every_wrong_credential_and_leaks_nothing() {
    let (acme, globex) = ("srk_matrix_acme", "srk_matrix_globex");
    let hash = |k: &str| hex::encode(Sha256::digest(k.as_bytes()));
    let keys = format!("acme={},globex={}", hash(acme), hash(globex));
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("AUTH_MODE", "api-key"), ("API_KEYS", &keys)]).await;
        let client = app.client();
        let name = &backend.name;
        // The target, with a secret in its metadata and a stored chunk.
        let secret = "the-secret-of-the-target";
        let created = |key: &'static str, metadata: Value| {
            let client = client.clone();
            async move {
                let body = json!({ "mimeType": "video/webm", "metadata": metadata });
                let b = client
                    .send(0, Method::POST, "/recordings", Some(key), Some(body))
                    .await
                    .expect(201);
                Rec {
                    id: b["recordingId"].as_str().unwrap().to_owned(),
                    token: b["uploadToken"].as_str().unwrap().to_owned(),
                }
            }
        };
        let target = created(acme, json!({ "secret": secret })).await;
        let chunk = format!("chunk bytes of {secret}").into_bytes();
        client.put_chunk(0, &target, 0, chunk).await.expect(200);
        let other = created(globex, json!({})).await;

        let id = &target.id;
        let routes: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/recordings/{id}"), None),
            (Method::GET, format!("/recordings/{id}/download"), None),
            (Method::GET, format!("/recordings/{id}/poster"), None),
            (Method::DELETE, format!("/recordings/{id}"), None),
            (
                Method::POST,
                format!("/recordings/{id}/chunks"),
                Some(json!({"seq": 1, "size": 1})),
            ),
            (Method::PUT, format!("/recordings/{id}/chunks/1"), None),
            (
                Method::POST,
                format!("/recordings/{id}/chunks/0/complete"),
                None,
            ),
            (
                Method::POST,
                format!("/recordings/{id}/stop"),
                Some(json!({"chunkCount": 1})),
            ),
            (
                Method::POST,
                format!("/recordings/{id}/merge"),
                Some(json!({"salvage": true})),
            ),
        ];
        let (no_sig, _) = globex.split_at(8);
        let credentials: Vec<(&str, Option<String>)> = vec![
            ("none", None),
            ("garbage", Some("garbage".into())),
            ("a malformed token", Some("0".repeat(63))),
            ("another recording's token", Some(other.token.clone())),
            ("a token of the right shape", Some("a".repeat(64))),
            ("another tenant's key", Some(globex.into())),
            (
                "an unknown key",
                Some(format!("{no_sig}{}", "f".repeat(64))),
            ),
            ("a JWT", Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".into())),
        ];
        for (method, path, body) in &routes {
            for (what, credential) in &credentials {
                let mut req = client
                    .http
                    .request(method.clone(), format!("{}{path}", app.base));
                if let Some(c) = credential {
                    req = req.bearer_auth(c);
                }
                req = match body {
                    Some(b) => req.json(b),
                    None if *method == Method::PUT => req.body(b"x".to_vec()),
                    None => req,
                };
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let text = res.text().await.unwrap();
                let label = format!("{name}: {method} {path} with {what}");
                assert!(
                    matches!(status, 401 | 403 | 404),
                    "{label}: {status} {text}"
                );
                let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let code = answer["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    [
                        "missing_token",
                        "invalid_token",
                        "missing_credentials",
                        "invalid_credentials",
                        "forbidden",
                        "recording_not_found",
                    ]
                    .contains(&code),
                    "{label}: {text}"
                );
                assert!(!text.contains(secret), "{label} leaked: {text}");
                assert!(!text.contains(&target.token), "{label} leaked: {text}");
            }
        }
        // The owner's routes: nothing of acme's in globex's listing, nor in any refusal.
        for (what, credential) in &credentials {
            let mut req = client.http.get(format!("{}/recordings", app.base));
            if let Some(c) = credential {
                req = req.bearer_auth(c);
            }
            let text = req.send().await.unwrap().text().await.unwrap();
            assert!(
                !text.contains(id.as_str()),
                "{name}: the list with {what}: {text}"
            );
        }

        // Over /ws: authorise, subscribe and stop with every wrong token.
        let mut ws = Ws::connect(&client.ws_url(0)).await;
        for (what, credential) in &credentials {
            let token = credential.clone().unwrap_or_default();
            for message in [
                json!({"type": "auth", "recordingId": id, "token": token}),
                json!({"type": "subscribe", "recordingId": id, "token": token}),
            ] {
                let reply = ws.call(message.clone()).await;
                let text = reply.to_string();
                assert_eq!(
                    reply["type"], "error",
                    "{name}: /ws {message} with {what}: {text}"
                );
                assert!(!text.contains(secret), "{name}: /ws leaked: {text}");
            }
            // Another tenant's key is a key: it may create, for its own tenant.
            if *what != "another tenant's key" {
                let create =
                    json!({"type": "create", "mimeType": "video/webm", "credential": credential});
                let reply = ws.call(create).await;
                assert_eq!(
                    reply["type"], "error",
                    "{name}: /ws create with {what}: {reply}"
                );
            }
        }
        let stop = ws
            .call(json!({"type": "stop", "recordingId": id, "chunkCount": 1}))
            .await;
        assert_eq!(
            stop["type"], "error",
            "{name}: /ws stop unauthorised: {stop}"
        );
        // The target is untouched.
        let status = client.status(0, &target).await;
        assert_eq!(
            (status["status"].as_str(), status["chunksReceived"].as_u64()),
            (Some("recording"), Some(1)),
            "{name}: {status}"
        );
    }
}
