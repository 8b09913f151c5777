//! Faults between an instance and its services, through the fault proxy: S3 answering
//! `503 SlowDown` to a fifth of its requests, connections reset in the middle of a body, 300 ms
//! more on every S3 request, Redis gone for 5 seconds. Under each, 30 recordings over the three
//! ingest paths (server PUT, presigned PUT, WebSocket) all become ready with every frame, or
//! their stop says what is missing; none is merged short, none is lost. A client retries what
//! failed (a 5xx, a reset), as the browser client does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use screenrec::http::ws::encode_chunk_frame;
use screenrec::store::{ObjectStore, S3Settings, S3Store, read_all};
use serde_json::{Value, json};

use crate::common::fault::{Fault, Mode, Proxy};
use crate::common::fixtures::Recording;
use crate::common::media::{Probe, assert_matches_reference, reference};
use crate::common::{Backend, Client, Rec, new_bucket, redis_url, s3_endpoints, spawn_app_with};
use crate::ws_client::Ws;

const RECORDINGS: usize = 30;
const AT_ONCE: usize = 6;

fn addr_of(url: &str) -> SocketAddr {
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    host.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A client's patience: a fifth of a second between tries, for at most half a minute (Redis is
/// away for 5 s; S3 may refuse a request several times over).
/// Failures the clients met and retried, over all recordings.
static RETRIED: AtomicU64 = AtomicU64::new(0);

struct Tries {
    what: String,
    deadline: Instant,
}

impl Tries {
    fn new(what: String) -> Self {
        Self {
            what,
            deadline: Instant::now() + Duration::from_secs(30),
        }
    }

    /// Wait before the next try; give up (fail the test) once patience is out.
    async fn again(&mut self, failure: impl std::fmt::Display) {
        assert!(
            Instant::now() < self.deadline,
            "{}: still failing: {failure}",
            self.what
        );
        RETRIED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Try `op` until it succeeds, as [`Tries`] allows.
async fn retried<T, Fut: Future<Output = Result<T, String>>>(
    what: &str,
    mut op: impl FnMut() -> Fut,
) -> T {
    let mut tries = Tries::new(what.to_owned());
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => tries.again(e).await,
        }
    }
}

/// An answer that a client retries (a 5xx, no answer at all) is `Err`; another is `Ok`.
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Result<(u16, Value), String> {
    let res = sent.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status >= 500 {
        return Err(format!("{status}: {body}"));
    }
    Ok((status, body))
}

#[derive(Clone, Copy, Debug)]
enum Route {
    Server,
    Presigned,
    WebSocket,
}

struct Outcome {
    ready_whole: bool,
    said_missing: bool,
}

async fn record(
    client: &Client,
    f: &Recording,
    reference: &Probe,
    route: Route,
    label: &str,
) -> Outcome {
    let http = &client.http;
    let base = client.base(0);
    let rec: Rec = retried(&format!("{label}: create"), || async {
        let (status, body) = answer(
            http.post(format!("{base}/recordings"))
                .json(&json!({ "mimeType": f.mime_type }))
                .send()
                .await,
        )
        .await?;
        assert_eq!(status, 201, "{label}: {body}");
        Ok(Rec {
            id: body["recordingId"].as_str().unwrap().to_owned(),
            token: body["uploadToken"].as_str().unwrap().to_owned(),
        })
    })
    .await;
    let (id, token) = (&rec.id, &rec.token);
    let mut ws: Option<Ws> = None;
    for (seq, chunk) in f.chunks.iter().enumerate() {
        let what = format!("{label}: chunk {seq}");
        match route {
            Route::Server => {
                retried(&what, || async {
                    let put = http
                        .put(format!("{base}/recordings/{id}/chunks/{seq}"))
                        .bearer_auth(token)
                        .body(chunk.clone());
                    let (status, body) = answer(put.send().await).await?;
                    assert_eq!(status, 200, "{what}: {body}");
                    Ok(())
                })
                .await
            }
            Route::Presigned => {
                retried(&what, || async {
                    let grant = http
                        .post(format!("{base}/recordings/{id}/chunks"))
                        .bearer_auth(token)
                        .json(&json!({ "seq": seq }));
                    let (status, grant) = answer(grant.send().await).await?;
                    assert_eq!(status, 200, "{what}: {grant}");
                    if let Some(url) = grant["uploadUrl"].as_str() {
                        let put = http
                            .put(url)
                            .body(chunk.clone())
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if !put.status().is_success() {
                            return Err(format!("storage answered {}", put.status()));
                        }
                    }
                    let confirm = http
                        .post(format!("{base}/recordings/{id}/chunks/{seq}/complete"))
                        .bearer_auth(token);
                    let (status, body) = answer(confirm.send().await).await?;
                    assert_eq!(status, 200, "{what}: {body}");
                    Ok(())
                })
                .await
            }
            Route::WebSocket => {
                let socket = match &mut ws {
                    Some(socket) => socket,
                    None => {
                        let mut socket = Ws::connect(&client.ws_url(0)).await;
                        let auth = json!({ "type": "auth", "recordingId": id, "token": token });
                        let mut tries = Tries::new(format!("{label}: auth"));
                        loop {
                            let reply = socket.call(auth.clone()).await;
                            if reply["type"] == "authorized" {
                                break;
                            }
                            tries.again(reply).await;
                        }
                        ws.insert(socket)
                    }
                };
                let recording = RecordingId::parse(id).unwrap();
                let frame = encode_chunk_frame(&recording, Some(seq as u32), chunk);
                let mut tries = Tries::new(what);
                loop {
                    socket.send_binary(frame.clone()).await;
                    let ack = socket.recv().await;
                    if ack["type"] == "chunkAck" {
                        break;
                    }
                    tries.again(ack).await;
                }
            }
        }
    }
    let count = f.chunks.len();
    let stopped = retried(&format!("{label}: stop"), || async {
        let stop = http
            .post(format!("{base}/recordings/{id}/stop"))
            .bearer_auth(token)
            .json(&json!({ "chunkCount": count }));
        answer(stop.send().await).await
    })
    .await;
    if stopped.0 == 409 && stopped.1["error"]["code"] == "missing_chunks" {
        return Outcome {
            ready_whole: false,
            said_missing: true,
        };
    }
    assert_eq!(stopped.0, 202, "{label}: stop: {}", stopped.1);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        let s = answer(
            http.get(format!("{base}/recordings/{id}"))
                .bearer_auth(token)
                .send()
                .await,
        )
        .await;
        if let Ok((200, s)) = &s
            && (s["status"] == "ready" || s["status"] == "failed")
        {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "{label}: not finished: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["status"], "ready", "{label}: {status}");
    let url = status["downloadUrl"].as_str().unwrap().to_owned();
    let bytes = retried(&format!("{label}: download"), || async {
        let res = http.get(&url).send().await.map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("download answered {}", res.status()));
        }
        res.bytes().await.map_err(|e| e.to_string())
    })
    .await;
    let file = tempfile::Builder::new()
        .suffix(".video")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    assert_matches_reference(file.path(), reference, label);
    Outcome {
        ready_whole: true,
        said_missing: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_each_fault_thirty_recordings_lose_nothing() {
    let (Some(redis), Some((_, localstack))) = (
        redis_url(),
        s3_endpoints().into_iter().find(|(n, _)| n == "localstack"),
    ) else {
        eprintln!("Redis and LocalStack not configured; skipped");
        return;
    };
    let s3 = Proxy::start(addr_of(&localstack), Mode::Http).await;
    let kv = Proxy::start(addr_of(&redis), Mode::Tcp).await;
    let backend = Backend {
        name: "faults".into(),
        s3_endpoint: Some(s3.url()),
        redis_url: Some(format!("redis://{}/", kv.addr)),
    };
    let app = spawn_app_with(
        &backend,
        &[
            ("KEEP_CHUNKS", "false"),
            ("MERGE_LEASE_SECS", "3"),
            ("MERGE_MAX_DELIVERIES", "20"),
            ("MERGE_WORKERS", "3"),
        ],
    )
    .await;
    let client = app.client();
    let dir = tempfile::tempdir().unwrap();
    let fixtures: Vec<(Recording, Probe)> = [
        "vp8-opus-ts1000",
        "vp9-ts1000",
        "h264-mkv-ts500",
        "mp4-avc1-kf1000-ts1000",
    ]
    .into_iter()
    .map(|name| {
        let f = Recording::load(name);
        let r = reference(&f, dir.path());
        (f, r)
    })
    .collect();
    let routes = [Route::Server, Route::Presigned, Route::WebSocket];
    let faults: [(&str, Fault); 4] = [
        ("S3 503 SlowDown to 20% of requests", Fault::SlowDown(20)),
        ("connections reset mid-body (10%)", Fault::ResetMidBody(10)),
        (
            "300 ms more on every S3 request",
            Fault::Latency(Duration::from_millis(300)),
        ),
        ("Redis gone for 5 s", Fault::Down),
    ];
    let mut table = Vec::new();
    for (name, fault) in faults {
        let redis_outage = fault == Fault::Down;
        if !redis_outage {
            s3.set(fault);
        }
        let started = Instant::now();
        let outage = async {
            if redis_outage {
                tokio::time::sleep(Duration::from_secs(2)).await;
                kv.set(Fault::Down);
                tokio::time::sleep(Duration::from_secs(5)).await;
                kv.set(Fault::None);
            }
        };
        let runs = futures::stream::iter(0..RECORDINGS)
            .map(|i| {
                let (f, reference) = &fixtures[i % fixtures.len()];
                let route = routes[i % routes.len()];
                let label = format!("{name}: #{i} {} over {route:?}", f.name);
                let client = &client;
                async move { record(client, f, reference, route, &label).await }
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<Outcome>>();
        let (outcomes, ()) = tokio::join!(runs, outage);
        s3.set(Fault::None);
        let whole = outcomes.iter().filter(|o| o.ready_whole).count();
        let missing = outcomes.iter().filter(|o| o.said_missing).count();
        let spoiled =
            s3.injected.swap(0, Ordering::Relaxed) + kv.injected.swap(0, Ordering::Relaxed);
        table.push(format!(
            "| {name} | {RECORDINGS} | {whole} | {missing} | {spoiled} | {} | {:.0} s |",
            RETRIED.swap(0, Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        ));
        assert_eq!(whole + missing, RECORDINGS, "{name}: a recording was lost");
    }
    eprintln!(
        "| fault | recordings | ready with every frame | stop said what was missing | requests or connections spoiled | client retries | took |"
    );
    eprintln!("|---|---|---|---|---|---|---|");
    for row in table {
        eprintln!("{row}");
    }
}

/// An object read whose connection is reset in the middle of the body goes on where it stopped
/// (a ranged GET of the rest), so a merge reading its chunks is not failed by one reset.
#[tokio::test]
async fn a_read_cut_mid_body_resumes_where_it_stopped() {
    let Some((_, localstack)) = s3_endpoints().into_iter().find(|(n, _)| n == "localstack") else {
        eprintln!("LocalStack not configured; skipped");
        return;
    };
    let s3 = Proxy::start(addr_of(&localstack), Mode::Http).await;
    let store = S3Store::connect(&S3Settings {
        bucket: new_bucket(&localstack).await,
        region: Some("us-east-1".into()),
        endpoint: Some(s3.url()),
        force_path_style: true,
    })
    .await;
    let key = ObjectKey::chunk(&RecordingId::generate(), ChunkIndex::new(0));
    let bytes: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    store
        .put(&key, bytes.clone().into(), "application/octet-stream")
        .await
        .unwrap();
    s3.set(Fault::ResetMidBody(30));
    for read in 0..20 {
        let got = read_all(&store, &key, None).await;
        let got = got.unwrap_or_else(|e| panic!("read {read}: {e}"));
        assert!(got[..] == bytes[..], "read {read} differs");
    }
    assert!(
        s3.injected.load(Ordering::Relaxed) > 0,
        "no read was cut: the test proved nothing"
    );
}
