//! Durable state: the store is the record. Redis loses everything (`FLUSHALL`, or a restart
//! without persistence) at each moment of a recording's life, over every ingest path, and every
//! recording still becomes ready with every frame of the reference remux; seq-less WebSocket
//! chunks never get an index twice. The embedded server, killed, finds its recordings again.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use screenrec::domain::{ChunkDigest, ChunkIndex, ObjectKey, RecordingId};
use screenrec::http::ws::encode_chunk_frame;
use screenrec::store::read_all;
use serde_json::Value;

use crate::common::fixtures::Recording;
use crate::common::media::{Probe, assert_matches_reference, reference};
use crate::common::process::Instance;
use crate::common::upload::{Path as Route, authed_ws};
use crate::common::{Backend, Client, Rec, backends, s3_endpoints, spawn_app, spawn_app_with};
use crate::ws_client::Ws;

/// A Redis server of this test's own, so that flushing and killing it harms no other test.
struct Redis {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
enum Loss {
    /// `FLUSHALL`.
    Flush,
    /// SIGKILL, then started again with nothing (no RDB, no AOF).
    Restart,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, dir.path());
        let redis = Self { port, child, dir };
        redis.wait();
        redis
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lose(&mut self, loss: Loss) {
        match loss {
            Loss::Flush => assert_eq!(self.cli(&["FLUSHALL"]), "OK"),
            Loss::Restart => {
                self.child.kill().unwrap();
                self.child.wait().unwrap();
                self.child = Self::spawn(self.port, self.dir.path());
                self.wait();
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(client: &Client, rec: &Rec, wanted: &[&str]) -> Value {
    wait_labelled(client, rec, wanted, "").await
}

async fn wait_labelled(client: &Client, rec: &Rec, wanted: &[&str], label: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = client
            .send(
                0,
                reqwest::Method::GET,
                &format!("/recordings/{}", rec.id),
                Some(&rec.token),
                None,
            )
            .await;
        if s.status == 200 && wanted.contains(&s.body["status"].as_str().unwrap_or_default()) {
            return s.body;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: still not {wanted:?}: {:?}",
            s.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Send chunk `seq` by `route`; the index it got. A 503 (`coordination_unavailable`: the
/// first use of a Redis connection that broke) is sent again, as every client does.
async fn send(
    client: &Client,
    rec: &Rec,
    route: Route,
    ws: &mut Option<Ws>,
    seq: u32,
    bytes: &[u8],
) -> u64 {
    for _ in 0..10 {
        let answer = match route {
            Route::Server => client.put_chunk(0, rec, seq, bytes.to_vec()).await.body,
            Route::Presigned => {
                client
                    .presigned_chunk(0, rec, seq, bytes.to_vec())
                    .await
                    .body
            }
            Route::WsSeq | Route::WsNext => {
                if ws.is_none() {
                    *ws = Some(authed_ws(client, 0, rec).await);
                }
                let id = RecordingId::parse(&rec.id).unwrap();
                let seq = (route == Route::WsSeq).then_some(seq);
                let socket = ws.as_mut().unwrap();
                socket
                    .send_binary(encode_chunk_frame(&id, seq, bytes))
                    .await;
                socket.recv().await
            }
        };
        if answer["error"]["code"] == "coordination_unavailable" {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return answer["index"]
            .as_u64()
            .unwrap_or_else(|| panic!("chunk {seq}: {answer}"));
    }
    panic!("chunk {seq}: the coordinator stayed unavailable");
}

/// Stop, sent again on a 503 like a chunk.
async fn stop(client: &Client, rec: &Rec, n: u32) {
    for _ in 0..10 {
        let answer = client.stop(0, rec, n).await;
        if answer.status != 503 {
            answer.expect(202);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stop: the coordinator stayed unavailable");
}

/// Download a ready recording and check it against the reference remux.
async fn check_download(
    client: &Client,
    status: &Value,
    reference: &Probe,
    label: &str,
    dir: &std::path::Path,
) {
    let url = status["downloadUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{label}: no download URL: {status}"));
    let file = dir.join(format!("{}.webm", label.replace([' ', '/', ','], "-")));
    client.fetch(url, &file).await;
    assert_matches_reference(&file, reference, label);
}

#[derive(Clone, Copy, Debug)]
enum Moment {
    AfterReady,
    MidRecording(Route),
    AfterStop,
    MidMerge,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loses_everything_at_every_moment_and_every_recording_becomes_ready_whole() {
    let Some((_, s3)) = s3_endpoints().into_iter().find(|(n, _)| n == "localstack") else {
        eprintln!("LocalStack not configured; skipped");
        return;
    };
    let mut redis = Redis::start();
    let backend = Backend {
        name: "localstack+own redis".into(),
        s3_endpoint: Some(s3),
        redis_url: Some(redis.url()),
    };
    // A short merge lease, so that a job lost with Redis is taken up again soon.
    let app = spawn_app_with(
        &backend,
        &[("KEEP_CHUNKS", "false"), ("MERGE_LEASE_SECS", "2")],
    )
    .await;
    let client = app.client();
    let dir = tempfile::tempdir().unwrap();
    let f = Recording::load("vp8-opus-ts1000");
    let reference = reference(&f, dir.path());
    let n = f.chunks.len() as u32;
    let moments = [
        Moment::AfterReady,
        Moment::MidRecording(Route::Server),
        Moment::MidRecording(Route::Presigned),
        Moment::MidRecording(Route::WsSeq),
        Moment::MidRecording(Route::WsNext),
        Moment::AfterStop,
        Moment::MidMerge,
    ];
    let mut survived = 0;
    for loss in [Loss::Flush, Loss::Restart] {
        for moment in moments {
            let label = format!("{loss:?} {moment:?}");
            let rec = client.create(&f.mime_type).await;
            let route = match moment {
                Moment::MidRecording(route) => route,
                _ => Route::Server,
            };
            let mut ws = None;
            let half = if matches!(moment, Moment::MidRecording(_)) {
                n / 2
            } else {
                n
            };
            let mut indices = Vec::new();
            for seq in 0..half {
                indices
                    .push(send(&client, &rec, route, &mut ws, seq, &f.chunks[seq as usize]).await);
            }
            match moment {
                Moment::AfterReady => {
                    stop(&client, &rec, n).await;
                    wait_for(&client, &rec, &["ready"]).await;
                    redis.lose(loss);
                }
                Moment::MidRecording(_) => {
                    redis.lose(loss);
                    // A chunk sent again after the loss is still the one stored.
                    let again = send(
                        &client,
                        &rec,
                        route,
                        &mut ws,
                        half - 1,
                        &f.chunks[half as usize - 1],
                    )
                    .await;
                    assert_eq!(again, u64::from(half - 1), "{label}: a re-sent chunk moved");
                    for seq in half..n {
                        indices.push(
                            send(&client, &rec, route, &mut ws, seq, &f.chunks[seq as usize]).await,
                        );
                    }
                    stop(&client, &rec, n).await;
                }
                Moment::AfterStop => {
                    stop(&client, &rec, n).await;
                    redis.lose(loss);
                }
                Moment::MidMerge => {
                    stop(&client, &rec, n).await;
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let s = client.status(0, &rec).await;
                        if s["status"] == "merging" {
                            break;
                        }
                        assert!(
                            s["status"] == "stopping",
                            "{label}: the merge was not caught: {s}"
                        );
                        assert!(Instant::now() < deadline, "{label}: no merge began");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    redis.lose(loss);
                }
            }
            assert_eq!(
                indices,
                (0..u64::from(n)).collect::<Vec<_>>(),
                "{label}: an index was given twice"
            );
            let status = wait_labelled(&client, &rec, &["ready", "failed"], &label).await;
            assert_eq!(status["status"], "ready", "{label}: {status}");
            check_download(&client, &status, &reference, &label, dir.path()).await;
            survived += 1;
        }
    }
    eprintln!("redis losses: {survived} recordings, each through one loss, all ready and whole");
}

/// The embedded server keeps its coordination in memory: killed and started again on the same
/// directory, it serves a finished recording from its manifest, goes on with an unfinished one,
/// and merges one that was stopped just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_killed_finds_its_recordings_again() {
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [
        ("STORAGE", "fs".to_owned()),
        ("STORAGE_DIR", dir.path().join("data").display().to_string()),
        (
            "MERGE_WORK_DIR",
            dir.path().join("work").display().to_string(),
        ),
        (
            "URL_SIGNING_SECRET",
            "a-secret-of-at-least-thirty-two-characters".to_owned(),
        ),
        ("SWEEP_INTERVAL_SECS", "1".to_owned()),
        ("MERGE_LEASE_SECS", "1".to_owned()),
        ("RATE_LIMIT_REQUESTS_PER_SEC", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let f = Recording::load("vp8-opus-ts1000");
    let reference = reference(&f, dir.path());
    let n = f.chunks.len() as u32;
    let mut first = Instance::start(&env, dir.path(), 0).await;
    let client = Client::new(vec![first.base.clone()]);
    let upload = |rec: Rec, range: std::ops::Range<u32>| {
        let (client, f) = (&client, &f);
        async move {
            for seq in range {
                client
                    .put_chunk(0, &rec, seq, f.chunks[seq as usize].clone())
                    .await
                    .expect(200);
            }
        }
    };
    let done = client.create(&f.mime_type).await;
    upload(done.clone(), 0..n).await;
    client.stop(0, &done, n).await.expect(202);
    wait_for(&client, &done, &["ready"]).await;
    let half = client.create(&f.mime_type).await;
    upload(half.clone(), 0..n / 2).await;
    let stopped = client.create(&f.mime_type).await;
    upload(stopped.clone(), 0..n).await;
    client.stop(0, &stopped, n).await.expect(202);
    first.kill();

    let second = Instance::start(&env, dir.path(), 1).await;
    let client = Client::new(vec![second.base.clone()]);
    let upload = |rec: Rec, range: std::ops::Range<u32>| {
        let (client, f) = (&client, &f);
        async move {
            for seq in range {
                client
                    .put_chunk(0, &rec, seq, f.chunks[seq as usize].clone())
                    .await
                    .expect(200);
            }
        }
    };
    let status = wait_for(&client, &done, &["ready"]).await;
    check_download(
        &client,
        &status,
        &reference,
        "embedded: ready before the kill",
        dir.path(),
    )
    .await;
    upload(half.clone(), n / 2..n).await;
    client.stop(0, &half, n).await.expect(202);
    for (rec, label) in [
        (&half, "embedded: recording at the kill"),
        (&stopped, "embedded: stopped at the kill"),
    ] {
        let status = wait_for(&client, rec, &["ready", "failed"]).await;
        assert_eq!(status["status"], "ready", "{label}: {status}");
        check_download(&client, &status, &reference, label, dir.path()).await;
    }
    assert_eq!(
        client
            .send(
                0,
                reqwest::Method::GET,
                &format!("/recordings/{}", done.id),
                Some("0".repeat(64).as_str()),
                None
            )
            .await
            .status,
        401,
        "a recording served from its manifest still checks the token"
    );
}

/// A chunk object is never written over: on every store the suite runs against, a second
/// conditional write (`If-None-Match: *`) of other bytes to a stored key reports what is there
/// and leaves it as it was. This is what keeps an index handed out again after a coordinator
/// loss from replacing a chunk.
#[tokio::test]
async fn a_stored_chunk_is_never_written_over() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let store = app.state.recordings.store();
        let key = ObjectKey::chunk(&RecordingId::generate(), ChunkIndex::new(3));
        let (first, second) = (
            Bytes::from_static(b"first bytes"),
            Bytes::from_static(b"other"),
        );
        let mime = "video/webm";
        let stored = store
            .put_new(&key, first.clone(), mime, &ChunkDigest::of(&first))
            .await
            .unwrap();
        assert!(stored.is_none(), "{}: a new key was refused", backend.name);
        let refused = store
            .put_new(&key, second.clone(), mime, &ChunkDigest::of(&second))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: the stored chunk was written over", backend.name));
        assert_eq!(refused.size, first.len() as u64, "{}", backend.name);
        assert_eq!(
            refused.sha256.as_deref(),
            Some(ChunkDigest::of(&first).sha256.as_str()),
            "{}",
            backend.name
        );
        let kept = read_all(store.as_ref(), &key, None).await.unwrap();
        assert_eq!(kept, first, "{}: the stored bytes changed", backend.name);
    }
}
