//! Who may record and whose recordings are whose, on every backend: API keys and JWTs create
//! recordings for a tenant and an owner; the owner's credential lists and deletes them; every
//! other credential is refused with its code, and sees nothing of another tenant's recordings.
//! A deletion, in any state, leaves no object and no coordinator key behind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::fixtures::Recording;
use crate::common::{Answer, Client, Rec, TestApp, backends, spawn_app_with};

const SECRET: &str = "a test secret of at least thirty-two bytes";
const ISSUER: &str = "https://auth.example.test/";
const AUDIENCE: &str = "screenrec";

async fn call(client: &Client, method: Method, path: &str, bearer: Option<&str>) -> Answer {
    client.send(0, method, path, bearer, None).await
}

async fn create(client: &Client, bearer: Option<&str>, body: Value) -> Answer {
    client
        .send(0, Method::POST, "/recordings", bearer, Some(body))
        .await
}

fn rec_of(body: &Value) -> Rec {
    Rec {
        id: body["recordingId"].as_str().unwrap().to_owned(),
        token: body["uploadToken"].as_str().unwrap().to_owned(),
    }
}

/// The ids of every page of `bearer`'s listing, `limit` at a time.
async fn listed(client: &Client, bearer: Option<&str>, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/recordings?limit={limit}&cursor={c}"),
            None => format!("/recordings?limit={limit}"),
        };
        let page = call(client, Method::GET, &path, bearer).await.expect(200);
        let recordings = page["recordings"].as_array().unwrap();
        assert!(recordings.len() <= limit, "{page}");
        ids.extend(
            recordings
                .iter()
                .map(|r| r["recordingId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// Every object and coordinator key that still names `id`.
async fn remains(app: &TestApp, id: &str) -> Vec<String> {
    let store = app.state.recordings.store();
    let mut left: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .filter(|k| k.contains(id))
        .collect();
    if let Some(url) = app.env.get("REDIS_URL") {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let pattern = format!("{}*{id}*", app.env["REDIS_PREFIX"]);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        left.extend(keys);
    }
    left
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600 })
}

#[tokio::test]
async fn api_keys_create_for_a_tenant_and_its_key_lists_and_deletes() {
    let acme_key = "srk_".to_owned() + &"a1".repeat(32);
    let globex_key = "srk_".to_owned() + &"b2".repeat(32);
    let sha = |k: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(k.as_bytes()));
    let keys = format!("acme={},globex={}", sha(&acme_key), sha(&globex_key));
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("AUTH_MODE", "api-key"), ("API_KEYS", &keys)]).await;
        let client = app.client();
        let name = &backend.name;
        let body =
            json!({ "mimeType": "video/webm", "owner": "alice", "metadata": {"lesson": "3"} });
        create(&client, None, body.clone())
            .await
            .expect_error(401, "missing_credentials");
        create(&client, Some("srk_wrong"), body.clone())
            .await
            .expect_error(401, "invalid_credentials");
        let created = create(&client, Some(&acme_key), body.clone())
            .await
            .expect(201);
        let rec = rec_of(&created);
        create(&client, Some(&rec.token), body.clone())
            .await
            .expect_error(403, "forbidden");
        let by_token = call(
            &client,
            Method::GET,
            &format!("/recordings/{}", rec.id),
            Some(&rec.token),
        )
        .await
        .expect(200);
        assert_eq!(by_token["metadata"], json!({"lesson": "3"}), "{name}");
        let manifest = app.manifest(&rec).await;
        assert_eq!(
            (manifest["tenant"].as_str(), manifest["owner"].as_str()),
            (Some("acme"), Some("alice")),
            "{name}"
        );

        // The tenant's key reaches it; another tenant's sees nothing of it.
        let path = format!("/recordings/{}", rec.id);
        call(&client, Method::GET, &path, Some(&acme_key))
            .await
            .expect(200);
        call(&client, Method::GET, &path, Some(&globex_key))
            .await
            .expect_error(404, "recording_not_found");
        call(&client, Method::DELETE, &path, Some(&globex_key))
            .await
            .expect_error(404, "recording_not_found");
        call(&client, Method::DELETE, &path, Some(&rec.token))
            .await
            .expect_error(403, "forbidden");
        call(
            &client,
            Method::GET,
            &format!("{path}/download"),
            Some(&globex_key),
        )
        .await
        .expect_error(404, "recording_not_found");
        assert_eq!(
            listed(&client, Some(&globex_key), 10).await,
            Vec::<String>::new(),
            "{name}"
        );
        call(&client, Method::GET, "/recordings", None)
            .await
            .expect_error(401, "missing_credentials");
        call(&client, Method::GET, "/recordings?limit=0", Some(&acme_key))
            .await
            .expect_error(400, "invalid_query");
        call(
            &client,
            Method::GET,
            "/recordings?cursor=../x",
            Some(&acme_key),
        )
        .await
        .expect_error(400, "invalid_cursor");

        // Newest first, page by page, each once.
        let mut made = vec![rec.id.clone()];
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let body = json!({ "mimeType": "video/webm", "owner": format!("user-{i}") });
            made.push(rec_of(&create(&client, Some(&acme_key), body).await.expect(201)).id);
        }
        made.reverse();
        assert_eq!(listed(&client, Some(&acme_key), 2).await, made, "{name}");

        call(&client, Method::DELETE, &path, Some(&acme_key))
            .await
            .expect(204);
        call(&client, Method::DELETE, &path, Some(&acme_key))
            .await
            .expect(204);
        call(&client, Method::GET, &path, Some(&rec.token))
            .await
            .expect_error(404, "recording_not_found");
        assert_eq!(remains(&app, &rec.id).await, Vec::<String>::new(), "{name}");
        assert_eq!(
            listed(&client, Some(&acme_key), 10).await,
            made[..4].to_vec(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn jwts_are_checked_and_each_owner_sees_only_its_own() {
    let backend = &backends()[0];
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_MODE", "jwt"),
            ("JWT_SECRET", SECRET),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let client = app.client();
    let body = json!({ "mimeType": "video/webm" });
    let (alice, bob) = (jwt(claims("alice")), jwt(claims("bob")));
    let mine = rec_of(
        &create(&client, Some(&alice), body.clone())
            .await
            .expect(201),
    );
    let theirs = rec_of(&create(&client, Some(&bob), body.clone()).await.expect(201));
    assert_eq!(
        listed(&client, Some(&alice), 10).await,
        vec![mine.id.clone()]
    );
    assert_eq!(
        listed(&client, Some(&bob), 10).await,
        vec![theirs.id.clone()]
    );
    call(
        &client,
        Method::GET,
        &format!("/recordings/{}", theirs.id),
        Some(&alice),
    )
    .await
    .expect_error(404, "recording_not_found");
    create(
        &client,
        Some(&alice),
        json!({ "mimeType": "video/webm", "owner": "bob" }),
    )
    .await
    .expect_error(400, "invalid_owner");
    // The tenant is the issuer unless a tenant claim says otherwise.
    assert_eq!(app.manifest(&mine).await["tenant"], ISSUER);

    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 120);
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 600);
    let mut other_audience = claims("alice");
    other_audience["aud"] = json!("someone-else");
    let mut other_issuer = claims("alice");
    other_issuer["iss"] = json!("https://evil.example/");
    let mut no_sub = claims("alice");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut no_exp = claims("alice");
    no_exp.as_object_mut().unwrap().remove("exp");
    // exp of the wrong JSON type skipped validation before jsonwebtoken 10.3.
    let mut string_exp = claims("alice");
    string_exp["exp"] = json!("9999999999");
    let mut tampered = alice.clone();
    tampered.pop();
    tampered.push(if alice.ends_with('A') { 'B' } else { 'A' });
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("alice"))
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims("alice"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let wrong_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice"),
        &EncodingKey::from_secret(b"another secret of at least thirty-two bytes"),
    )
    .unwrap();
    let refused = [
        ("expired", jwt(expired)),
        ("not yet valid", jwt(early)),
        ("another audience", jwt(other_audience)),
        ("another issuer", jwt(other_issuer)),
        ("no sub", jwt(no_sub)),
        ("no exp", jwt(no_exp)),
        ("exp as a string", jwt(string_exp)),
        ("tampered signature", tampered),
        ("alg none", alg_none),
        ("HS512", hs512),
        ("another secret", wrong_secret),
        ("not a JWT", "a.b.c".to_owned()),
    ];
    for (what, token) in refused {
        let answer = create(&client, Some(&token), body.clone()).await;
        assert_eq!(answer.status.as_u16(), 401, "{what}: {}", answer.body);
        assert_eq!(
            answer.body["error"]["code"], "invalid_credentials",
            "{what}"
        );
        call(&client, Method::GET, "/recordings", Some(&token))
            .await
            .expect_error(401, "invalid_credentials");
    }
}

/// Deleting a recording while it records, right after its stop (its merge queued or running),
/// once ready and once failed: each leaves no object and no coordinator key, and subscribers
/// hear `recordingDeleted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_recording_leaves_nothing_in_any_state() {
    let f = Recording::load("vp8-opus-ts1000");
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("KEEP_CHUNKS", "false")]).await;
        let client = app.client();
        let name = &backend.name;
        let upload = |rec: Rec, chunks: Vec<Vec<u8>>| {
            let client = client.clone();
            async move {
                for (seq, chunk) in chunks.into_iter().enumerate() {
                    client
                        .put_chunk(0, &rec, seq as u32, chunk)
                        .await
                        .expect(200);
                }
            }
        };
        let wait = |rec: Rec, wanted: &'static str| {
            let client = client.clone();
            async move {
                for _ in 0..600 {
                    if client.status(0, &rec).await["status"] == wanted {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("never {wanted}");
            }
        };
        let mut cases = Vec::new();
        let recording = client.create(&f.mime_type).await;
        upload(recording.clone(), f.chunks[..3].to_vec()).await;
        cases.push(("recording", recording));
        let stopping = client.create(&f.mime_type).await;
        upload(stopping.clone(), f.chunks.clone()).await;
        client
            .stop(0, &stopping, f.chunks.len() as u32)
            .await
            .expect(202);
        cases.push(("stopped, its merge queued or running", stopping));
        let ready = client.create(&f.mime_type).await;
        upload(ready.clone(), f.chunks.clone()).await;
        client
            .stop(0, &ready, f.chunks.len() as u32)
            .await
            .expect(202);
        wait(ready.clone(), "ready").await;
        cases.push(("ready", ready));
        let failed = client.create(&f.mime_type).await;
        let mut damaged = f.chunks[..3].to_vec();
        damaged[1] = vec![0x42; 4096];
        upload(failed.clone(), damaged).await;
        client.stop(0, &failed, 3).await.expect(202);
        wait(failed.clone(), "failed").await;
        cases.push(("failed", failed));

        for (state, rec) in cases {
            let mut ws = crate::ws_client::Ws::connect(&client.ws_url(0)).await;
            let subscribed = ws
                .call(json!({"type": "subscribe", "recordingId": rec.id, "token": rec.token}))
                .await;
            assert_eq!(
                subscribed["type"], "subscribed",
                "{name} {state}: {subscribed}"
            );
            let path = format!("/recordings/{}", rec.id);
            call(&client, Method::DELETE, &path, None).await.expect(204);
            let mut heard = false;
            for _ in 0..20 {
                let event = ws.recv().await;
                if event["type"] == "recordingDeleted" {
                    heard = true;
                    break;
                }
            }
            assert!(heard, "{name} {state}: no recordingDeleted");
            // A merge that was running has stopped by now and written nothing.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(
                remains(&app, &rec.id).await,
                Vec::<String>::new(),
                "{name} {state}"
            );
            call(&client, Method::DELETE, &path, None).await.expect(204);
            client
                .send(0, Method::GET, &path, Some(&rec.token), None)
                .await
                .expect_error(404, "recording_not_found");
        }
    }
}

/// A JWKS served by a local HTTP server: a key the set gains (a rotation) is found by one
/// fetch, and while the server is down the set already held still verifies.
#[tokio::test]
async fn a_jwks_is_refetched_once_on_a_new_key_and_kept_while_its_server_is_down() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;

    struct Key {
        kid: &'static str,
        pkcs8: Vec<u8>,
        jwk: Value,
    }
    let key = |kid: &'static str| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.public_key());
        Key {
            kid,
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
        }
    };
    let (k1, k2, k3) = (key("k1"), key("k2"), key("k3"));
    let sign = |k: &Key| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(k.kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &claims("alice"),
            &EncodingKey::from_ed_der(&k.pkcs8),
        )
        .unwrap()
    };

    #[derive(Clone)]
    struct Jwks {
        set: Arc<std::sync::Mutex<Value>>,
        down: Arc<AtomicBool>,
        fetches: Arc<AtomicUsize>,
    }
    let jwks = Jwks {
        set: Arc::new(std::sync::Mutex::new(json!({ "keys": [k1.jwk] }))),
        down: Arc::default(),
        fetches: Arc::default(),
    };
    let served = jwks.clone();
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                served.fetches.fetch_add(1, Ordering::SeqCst);
                if served.down.load(Ordering::SeqCst) {
                    return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(axum::Json(served.set.lock().unwrap().clone()))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let app = spawn_app_with(
        &backends()[0],
        &[
            ("AUTH_MODE", "jwt"),
            ("JWT_JWKS_URL", &url),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let client = app.client();
    let body = json!({ "mimeType": "video/webm" });
    let fetches = || jwks.fetches.load(Ordering::SeqCst);

    create(&client, Some(&sign(&k1)), body.clone())
        .await
        .expect(201);
    create(&client, Some(&sign(&k1)), body.clone())
        .await
        .expect(201);
    assert_eq!(fetches(), 1, "the set is fetched once and kept");

    // Rotation: the issuer publishes k2 and signs with it.
    jwks.set.lock().unwrap()["keys"] = json!([k1.jwk, k2.jwk]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create(&client, Some(&sign(&k2)), body.clone())
        .await
        .expect(201);
    assert_eq!(fetches(), 2, "an unknown kid fetches the set once");
    create(&client, Some(&sign(&k3)), body.clone())
        .await
        .expect_error(401, "invalid_credentials");
    create(&client, Some(&sign(&k3)), body.clone())
        .await
        .expect_error(401, "invalid_credentials");
    assert!(
        fetches() <= 3,
        "unknown kids do not fetch on every request: {}",
        fetches()
    );

    // The key server goes down: the keys held still verify; an unknown one cannot.
    jwks.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create(&client, Some(&sign(&k3)), body.clone())
        .await
        .expect_error(401, "invalid_credentials");
    create(&client, Some(&sign(&k1)), body.clone())
        .await
        .expect(201);
    create(&client, Some(&sign(&k2)), body.clone())
        .await
        .expect(201);
}
