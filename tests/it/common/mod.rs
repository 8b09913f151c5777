//! Test helpers: the backends to run against, `spawn_app()` on port 0, fixtures, and clients.

pub mod apigw;
pub mod fault;
pub mod fixtures;
pub mod media;
pub mod patient;
pub mod process;
pub mod receiver;
pub mod upload;

use std::collections::HashMap;

use reqwest::StatusCode;
use screenrec::app;
use screenrec::config::{Config, StorageConfig};
use screenrec::store::{S3Settings, S3Store};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A combination of adapters the suites run against.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: String,
    /// `None`: a temporary directory.
    pub s3_endpoint: Option<String>,
    pub redis_url: Option<String>,
}

fn required(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok() => {
            panic!("{var} must be set in CI: run the suite through scripts/test")
        }
        _ => {
            eprintln!("{var} unset: skipping that backend (run scripts/test for all of them)");
            None
        }
    }
}

pub fn redis_url() -> Option<String> {
    required("SCREENREC_TEST_REDIS_URL")
}

/// `name=url` pairs of real S3 API servers (LocalStack, moto).
pub fn s3_endpoints() -> Vec<(String, String)> {
    required("SCREENREC_TEST_S3_ENDPOINTS")
        .map(|v| {
            v.split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(n, u)| (n.trim().to_owned(), u.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every backend: the embedded default, and each real S3 server with real Redis.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "fs+memory".into(),
        s3_endpoint: None,
        redis_url: None,
    }];
    let redis = redis_url();
    for (name, url) in s3_endpoints() {
        out.push(Backend {
            name: format!("{name}+redis"),
            s3_endpoint: Some(url),
            redis_url: redis.clone(),
        });
    }
    if let Some(r) = redis {
        out.push(Backend {
            name: "fs+redis".into(),
            s3_endpoint: None,
            redis_url: Some(r),
        });
    }
    out
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 100_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Create a fresh bucket on an S3 endpoint.
pub async fn new_bucket(endpoint: &str) -> String {
    let bucket = unique("screenrec-test");
    let store = S3Store::connect(&S3Settings {
        bucket: bucket.clone(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.to_owned()),
        force_path_style: true,
    })
    .await;
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating bucket on {endpoint}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    bucket
}

/// Environment variables that configure an instance for `backend`.
pub async fn env_for(backend: &Backend, dir: &std::path::Path) -> HashMap<String, String> {
    let mut env = HashMap::new();
    match &backend.s3_endpoint {
        Some(endpoint) => {
            env.insert("STORAGE".into(), "s3".into());
            env.insert("S3_BUCKET".into(), new_bucket(endpoint).await);
            env.insert("S3_ENDPOINT".into(), endpoint.clone());
            env.insert("S3_FORCE_PATH_STYLE".into(), "true".into());
        }
        None => {
            env.insert("STORAGE".into(), "fs".into());
            env.insert("STORAGE_DIR".into(), dir.display().to_string());
        }
    }
    if let Some(r) = &backend.redis_url {
        env.insert("REDIS_URL".into(), r.clone());
        // Apps of one test run share the Redis server, not their storage: keep them apart.
        env.insert("REDIS_PREFIX".into(), format!("{}:", unique("t")));
    }
    env.insert("MAX_CHUNK_BYTES".into(), (1024 * 1024).to_string());
    env.insert("MAX_CHUNKS".into(), "1000".into());
    // Ingest tests read the stored chunks back after stop; merge tests turn this off.
    env.insert("KEEP_CHUNKS".into(), "true".into());
    // Suites send as fast as they can; the rate limit tests set their own.
    env.insert("RATE_LIMIT_CREATES_PER_MIN".into(), "0".into());
    env.insert("RATE_LIMIT_REQUESTS_PER_SEC".into(), "0".into());
    env
}

pub struct TestApp {
    pub base: String,
    pub state: screenrec::http::AppState,
    /// The configuration it was started with.
    pub env: HashMap<String, String>,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

/// Start the app in-process on port 0 with `backend`'s adapters.
pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// [`spawn_app`] with some configuration variables overridden.
pub async fn spawn_app_with(backend: &Backend, vars: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut env = env_for(backend, dir.path()).await;
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    env.insert("BIND_ADDR".into(), addr.to_string());
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    if let StorageConfig::Fs { .. } = config.storage {
        assert_eq!(config.public_base_url, format!("http://{addr}"));
    }
    let (state, router) = app::build(&config).await.unwrap().spawn_workers(2);
    let server = tokio::spawn(async move {
        app::serve(listener, router, std::future::pending())
            .await
            .unwrap();
    });
    TestApp {
        base: format!("http://{addr}"),
        state,
        env,
        _dir: dir,
        _server: server,
    }
}

/// A recording created through the API.
#[derive(Clone, Debug)]
pub struct Rec {
    pub id: String,
    pub token: String,
}

/// The API as a client sees it, against one or more instances.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub bases: Vec<String>,
}

/// An API answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        self.body
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        body
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

impl Client {
    pub fn new(bases: Vec<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            bases,
        }
    }

    /// The base URL for request number `n` (round robin over the instances).
    pub fn base(&self, n: usize) -> &str {
        &self.bases[n % self.bases.len()]
    }

    pub async fn create(&self, mime: &str) -> Rec {
        self.create_with(json!({ "mimeType": mime })).await
    }

    /// `POST /recordings` with `body`, which must be accepted.
    pub async fn create_with(&self, body: Value) -> Rec {
        let body = self
            .send(0, reqwest::Method::POST, "/recordings", None, Some(body))
            .await
            .expect(201);
        Rec {
            id: body["recordingId"].as_str().unwrap().to_owned(),
            token: body["uploadToken"].as_str().unwrap().to_owned(),
        }
    }

    /// Poll the status until the recording is `ready` or `failed` (at most two minutes).
    pub async fn until_finished(&self, rec: &Rec) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let s = self.status(0, rec).await;
            if s["status"] == "ready" || s["status"] == "failed" {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "merge did not finish: {s}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// GET `url` (a presigned URL) into the file `to`, which must succeed; its headers.
    pub async fn fetch(&self, url: &str, to: &std::path::Path) -> reqwest::header::HeaderMap {
        let res = self.http.get(url).send().await.unwrap();
        assert!(res.status().is_success(), "GET {url}: {}", res.status());
        let headers = res.headers().clone();
        std::fs::write(to, res.bytes().await.unwrap()).unwrap();
        headers
    }

    pub async fn send(
        &self,
        n: usize,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        json: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base(n)));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(j) = json {
            req = req.json(&j);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn put_chunk(&self, n: usize, rec: &Rec, seq: u32, bytes: Vec<u8>) -> Answer {
        let r = self
            .http
            .put(format!(
                "{}/recordings/{}/chunks/{seq}",
                self.base(n),
                rec.id
            ))
            .bearer_auth(&rec.token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// `GET /recordings/{id}/download` (not followed).
    pub async fn download(&self, n: usize, rec: &Rec) -> Answer {
        self.send(
            n,
            reqwest::Method::GET,
            &format!("/recordings/{}/download", rec.id),
            Some(&rec.token),
            None,
        )
        .await
    }

    /// `POST /recordings/{id}/chunks {"seq", "size"}`: ask for a presigned upload URL.
    pub async fn grant(&self, n: usize, rec: &Rec, seq: Value, size: usize) -> Answer {
        self.send(
            n,
            reqwest::Method::POST,
            &format!("/recordings/{}/chunks", rec.id),
            Some(&rec.token),
            Some(json!({ "seq": seq, "size": size })),
        )
        .await
    }

    /// Upload through a presigned URL: grant, PUT straight to storage, confirm.
    pub async fn presigned_chunk(&self, n: usize, rec: &Rec, seq: u32, bytes: Vec<u8>) -> Answer {
        let grant = self.grant(n, rec, json!(seq), bytes.len()).await;
        if grant.status != 200 {
            return grant;
        }
        if let Some(url) = grant.body["uploadUrl"].as_str() {
            // A 5xx from the storage is retried, as a browser client does (moto answers 500 to
            // one of two PUTs racing to the same key).
            for attempt in 1.. {
                let put = self.http.put(url).body(bytes.clone()).send().await.unwrap();
                if put.status().is_success() {
                    break;
                }
                if !put.status().is_server_error() || attempt == 3 {
                    return answer(put).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
        }
        self.send(
            n + 1,
            reqwest::Method::POST,
            &format!("/recordings/{}/chunks/{seq}/complete", rec.id),
            Some(&rec.token),
            None,
        )
        .await
    }

    pub async fn stop(&self, n: usize, rec: &Rec, count: u32) -> Answer {
        self.send(
            n,
            reqwest::Method::POST,
            &format!("/recordings/{}/stop", rec.id),
            Some(&rec.token),
            Some(json!({ "chunkCount": count })),
        )
        .await
    }

    pub async fn status(&self, n: usize, rec: &Rec) -> Value {
        self.send(
            n,
            reqwest::Method::GET,
            &format!("/recordings/{}", rec.id),
            Some(&rec.token),
            None,
        )
        .await
        .expect(200)
    }

    pub fn ws_url(&self, n: usize) -> String {
        format!("{}/ws", self.base(n).replacen("http://", "ws://", 1))
    }
}

impl TestApp {
    pub fn client(&self) -> Client {
        Client::new(vec![self.base.clone()])
    }

    /// A recording's manifest, as stored.
    pub async fn manifest(&self, rec: &Rec) -> Value {
        let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
        let bytes = screenrec::store::read_all(
            self.state.recordings.store().as_ref(),
            &screenrec::domain::ObjectKey::manifest(&id),
            None,
        )
        .await
        .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}
