//! A patient client: it records a fixture over one of the three ingest paths and retries what
//! a browser would retry (a 5xx, a reset, a closed WebSocket, an instance gone), then waits for
//! the recording to finish and checks its download against the reference remux. The fault and
//! restart suites run it while they break things.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use screenrec::domain::RecordingId;
use screenrec::http::ws::encode_chunk_frame;
use serde_json::{Value, json};

use super::fixtures::Recording;
use super::media::{Probe, assert_matches_reference, reference};
use super::{Client, Rec};
use crate::ws_client::Ws;

/// What the clients of one run met.
#[derive(Default)]
pub struct Tally {
    /// Failures met and retried.
    pub retried: AtomicU64,
    /// Chunks sent and seen accepted.
    pub chunks_sent: AtomicU64,
}

/// A client's patience: a fifth of a second between tries, for at most half a minute (Redis
/// away for 5 s, S3 refusing a request several times over, an instance restarting).
struct Tries<'a> {
    what: String,
    deadline: Instant,
    tally: &'a Tally,
}

impl<'a> Tries<'a> {
    fn new(what: String, tally: &'a Tally) -> Self {
        Self {
            what,
            deadline: Instant::now() + Duration::from_secs(30),
            tally,
        }
    }

    /// Wait before the next try; give up (fail the test) once patience is out.
    async fn again(&mut self, failure: impl std::fmt::Display) {
        assert!(
            Instant::now() < self.deadline,
            "{}: still failing: {failure}",
            self.what
        );
        self.tally.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Try `op` until it succeeds, as [`Tries`] allows.
async fn retried<T, Fut: Future<Output = Result<T, String>>>(
    what: &str,
    tally: &Tally,
    mut op: impl FnMut() -> Fut,
) -> T {
    let mut tries = Tries::new(what.to_owned(), tally);
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

const ROUTES: [Route; 3] = [Route::Server, Route::Presigned, Route::WebSocket];

pub struct Outcome {
    pub ready_whole: bool,
    pub said_missing: bool,
}

/// A WebSocket to `client`'s first base, authorised for the recording.
async fn ws_session(client: &Client, rec: &Rec) -> Result<Ws, String> {
    let mut socket = Ws::try_connect(&client.ws_url(0)).await?;
    let auth = json!({ "type": "auth", "recordingId": rec.id, "token": rec.token });
    socket.try_send_json(auth).await?;
    let reply = socket.try_recv().await?;
    if reply["type"] != "authorized" {
        return Err(reply.to_string());
    }
    Ok(socket)
}

/// The fixtures the crowd records, one per container and codec family, with their reference
/// remuxes (made in `dir`).
pub fn fixtures(dir: &std::path::Path) -> Vec<(Recording, Probe)> {
    [
        "vp8-opus-ts1000",
        "vp9-ts1000",
        "h264-mkv-ts500",
        "mp4-avc1-kf1000-ts1000",
    ]
    .into_iter()
    .map(|name| {
        let f = Recording::load(name);
        let r = reference(&f, dir);
        (f, r)
    })
    .collect()
}

/// `n` recordings through `client`, `at_once` at a time, taking the fixtures and the ingest
/// paths in turn; each label starts with `name`.
pub async fn record_many(
    client: &Client,
    fixtures: &[(Recording, Probe)],
    n: usize,
    at_once: usize,
    name: &str,
    tally: &Tally,
) -> Vec<Outcome> {
    futures::stream::iter(0..n)
        .map(|i| {
            let (f, reference) = &fixtures[i % fixtures.len()];
            let route = ROUTES[i % ROUTES.len()];
            let label = format!("{name}: #{i} {} over {route:?}", f.name);
            async move { record(client, f, reference, route, &label, tally).await }
        })
        .buffer_unordered(at_once)
        .collect()
        .await
}

/// How many of `outcomes` were ready with every frame, and how many stops said what was
/// missing.
pub fn counted(outcomes: &[Outcome]) -> (usize, usize) {
    (
        outcomes.iter().filter(|o| o.ready_whole).count(),
        outcomes.iter().filter(|o| o.said_missing).count(),
    )
}

/// Record fixture `f` through `client`'s first base over `route`, stop, wait for the outcome
/// and, when ready, check the download against `reference`.
async fn record(
    client: &Client,
    f: &Recording,
    reference: &Probe,
    route: Route,
    label: &str,
    tally: &Tally,
) -> Outcome {
    let http = &client.http;
    let base = client.base(0);
    let rec: Rec = retried(&format!("{label}: create"), tally, || async {
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
                retried(&what, tally, || async {
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
                retried(&what, tally, || async {
                    let grant = http
                        .post(format!("{base}/recordings/{id}/chunks"))
                        .bearer_auth(token)
                        .json(&json!({ "seq": seq, "size": chunk.len() }));
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
                let recording = RecordingId::parse(id).unwrap();
                let frame = encode_chunk_frame(&recording, Some(seq as u32), chunk);
                let mut tries = Tries::new(what, tally);
                loop {
                    let sent = async {
                        let socket = match &mut ws {
                            Some(socket) => socket,
                            None => ws.insert(ws_session(client, &rec).await?),
                        };
                        socket.try_send_binary(frame.clone()).await?;
                        let ack = socket.try_recv().await?;
                        if ack["type"] == "chunkAck" {
                            Ok(())
                        } else {
                            Err(ack.to_string())
                        }
                    }
                    .await;
                    match sent {
                        Ok(()) => break,
                        Err(e) => {
                            // A closed socket (an instance stopping, a reset) is opened again;
                            // the same chunk sent twice is stored once.
                            ws = None;
                            tries.again(e).await;
                        }
                    }
                }
            }
        }
        tally.chunks_sent.fetch_add(1, Ordering::Relaxed);
    }
    finish(client, &rec, f.chunks.len(), reference, label, tally).await
}

/// Stop a recording of `count` chunks, wait for it to finish and, when ready, check its
/// download against `reference`.
pub async fn finish(
    client: &Client,
    rec: &Rec,
    count: usize,
    reference: &Probe,
    label: &str,
    tally: &Tally,
) -> Outcome {
    let http = &client.http;
    let base = client.base(0);
    let (id, token) = (&rec.id, &rec.token);
    let stopped = retried(&format!("{label}: stop"), tally, || async {
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
    let bytes = retried(&format!("{label}: download"), tally, || async {
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
