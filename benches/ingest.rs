//! Ingest benchmarks, each against a baseline measured in the same run:
//!
//! - chunk upload through the server (64 concurrent PUTs of 256 KiB) vs. raw PutObject of the
//!   same bytes to the same S3 server by the same S3 client;
//! - chunk reservation (the presigned path: `POST /recordings/{id}/chunks`) with Redis on
//!   loopback vs. `GET /healthz` over the same HTTP stack and a bare Redis round trip.
//!
//! Needs SCREENREC_TEST_REDIS_URL and SCREENREC_TEST_LOCALSTACK (`scripts/bench` sets them).
//! Writes JSON to bench/results/ingest.json (or $BENCH_OUT) and prints a Markdown table.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use screenrec::config::Config;
use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use screenrec::store::{ObjectStore, Presign, S3Settings, S3Store};
use serde_json::{Value, json};

const CHUNK: usize = 256 * 1024;
const CONCURRENCY: usize = 64;
const ROUNDS: usize = 4;

struct Stats {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn empty() -> Self {
        Self {
            ops: 0,
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
        }
    }
    fn add(&mut self, other: Stats) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l[i].as_secs_f64() * 1000.0
    }
    fn json(&self, bytes_per_op: usize) -> Value {
        json!({
            "ops": self.ops,
            "seconds": round(self.elapsed.as_secs_f64()),
            "opsPerSec": round(self.per_sec()),
            "mibPerSec": round(self.per_sec() * bytes_per_op as f64 / 1048576.0),
            "p50Ms": round(self.pct(0.50)),
            "p99Ms": round(self.pct(0.99)),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Run `total` operations with `concurrency` in flight and time each.
async fn measure<F, Fut>(total: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let latencies = futures::stream::iter(0..total)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    Stats {
        ops: total,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run scripts/bench"))
}

async fn create_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let store = S3Store::connect(&s3_settings(endpoint, bucket)).await;
    store.client().create_bucket().bucket(bucket).send().await?;
    Ok(())
}

fn s3_settings(endpoint: &str, bucket: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: true,
    }
}

struct Server {
    base: String,
}

async fn start_server(vars: HashMap<&str, String>) -> anyhow::Result<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Config::from_lookup(|k| {
        if k == "BIND_ADDR" {
            return Some(addr.to_string());
        }
        vars.get(k).cloned()
    })?;
    let (_, router) = screenrec::app::build(&config).await?.spawn_workers(1);
    tokio::spawn(screenrec::app::serve(
        listener,
        router,
        std::future::pending(),
    ));
    Ok(Server {
        base: format!("http://{addr}"),
    })
}

async fn create_recording(http: &reqwest::Client, base: &str) -> anyhow::Result<(String, String)> {
    let v: Value = http
        .post(format!("{base}/recordings"))
        .json(&json!({ "mimeType": "video/webm;codecs=vp8,opus" }))
        .send()
        .await?
        .json()
        .await?;
    Ok((
        v["recordingId"].as_str().context("no id")?.into(),
        v["uploadToken"].as_str().context("no token")?.into(),
    ))
}

async fn ingest(endpoint: &str, redis: &str, total: usize) -> anyhow::Result<Value> {
    let stamp = std::process::id();
    let raw_bucket = format!("bench-raw-{stamp}");
    let app_bucket = format!("bench-app-{stamp}");
    create_bucket(endpoint, &raw_bucket).await?;
    create_bucket(endpoint, &app_bucket).await?;
    let payloads: Arc<Vec<Bytes>> = Arc::new(
        (0..CONCURRENCY)
            .map(|i| Bytes::from(vec![i as u8; CHUNK]))
            .collect(),
    );

    // Baseline: the same S3 client putting the same bytes straight into the bucket.
    let raw = S3Store::connect(&s3_settings(endpoint, &raw_bucket)).await;
    let raw_id = RecordingId::generate();
    // screenrec: HTTP PUT through the server (sha256, Redis claim, PutObject, Redis commit).
    let server = start_server(HashMap::from([
        ("STORAGE", "s3".to_string()),
        ("S3_BUCKET", app_bucket.clone()),
        ("S3_ENDPOINT", endpoint.to_string()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("REDIS_URL", redis.to_string()),
    ]))
    .await?;
    let http = reqwest::Client::new();
    let mut recs = Vec::new();
    for _ in 0..CONCURRENCY {
        recs.push(create_recording(&http, &server.base).await?);
    }
    // Rounds alternate between the two, so drift in the S3 server (it grows as it stores)
    // weighs on both alike.
    let (mut raw_stats, mut app_stats) = (Stats::empty(), Stats::empty());
    let per_round = total / ROUNDS;
    for round in 0..ROUNDS {
        let offset = round * per_round;
        raw_stats.add(
            measure(per_round, CONCURRENCY, |i| {
                let (raw, payloads, id) = (&raw, payloads.clone(), raw_id.clone());
                async move {
                    let key = ObjectKey::chunk(&id, ChunkIndex::new((offset + i) as u32));
                    raw.put(&key, payloads[i % CONCURRENCY].clone(), "video/webm")
                        .await
                        .expect("raw PutObject");
                }
            })
            .await,
        );
        app_stats.add(
            measure(per_round, CONCURRENCY, |i| {
                let (http, base, payloads) = (&http, &server.base, payloads.clone());
                let (id, token) = recs[i % CONCURRENCY].clone();
                async move {
                    let seq = (offset + i) / CONCURRENCY;
                    let r = http
                        .put(format!("{base}/recordings/{id}/chunks/{seq}"))
                        .bearer_auth(token)
                        .body(payloads[i % CONCURRENCY].clone())
                        .send()
                        .await
                        .expect("PUT chunk");
                    assert!(r.status().is_success(), "PUT chunk: {}", r.status());
                }
            })
            .await,
        );
    }
    let ratio = app_stats.per_sec() / raw_stats.per_sec();
    Ok(json!({
        "chunkBytes": CHUNK,
        "concurrency": CONCURRENCY,
        "s3Server": "LocalStack",
        "rawPutObject": raw_stats.json(CHUNK),
        "screenrecPut": app_stats.json(CHUNK),
        "ratioToRaw": round(ratio),
        "goal": ">= 0.90 of raw",
        "met": ratio >= 0.9,
    }))
}

async fn reservation(endpoint: &str, redis: &str, total: usize) -> anyhow::Result<Value> {
    let bucket = format!("bench-grant-{}", std::process::id());
    create_bucket(endpoint, &bucket).await?;
    let server = start_server(HashMap::from([
        ("STORAGE", "s3".to_string()),
        ("S3_BUCKET", bucket),
        ("S3_ENDPOINT", endpoint.to_string()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("REDIS_URL", redis.to_string()),
        ("MAX_CHUNKS", "10000000".into()),
        // The benchmark is one client at full speed: no rate limit.
        ("RATE_LIMIT_REQUESTS_PER_SEC", "0".into()),
        ("RATE_LIMIT_CREATES_PER_MIN", "0".into()),
    ]))
    .await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let mut recs = Vec::new();
    for _ in 0..CONCURRENCY {
        recs.push(create_recording(&http, &server.base).await?);
    }
    // Warm up connections.
    measure(CONCURRENCY * 4, CONCURRENCY, |_| {
        let (http, base) = (&http, &server.base);
        async move {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .expect("healthz");
        }
    })
    .await;
    let healthz = measure(total, CONCURRENCY, |_| {
        let (http, base) = (&http, &server.base);
        async move {
            let r = http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .expect("healthz");
            r.bytes().await.expect("body");
        }
    })
    .await;
    let grants = measure(total, CONCURRENCY, |i| {
        let (http, base) = (&http, &server.base);
        let (id, token) = recs[i % CONCURRENCY].clone();
        async move {
            let r = http
                .post(format!("{base}/recordings/{id}/chunks"))
                .bearer_auth(token)
                .json(&json!({ "seq": i / CONCURRENCY, "size": 1 }))
                .send()
                .await
                .expect("grant");
            assert!(r.status().is_success(), "grant: {}", r.status());
            r.bytes().await.expect("body");
        }
    })
    .await;
    // Where a grant's time goes: presigning alone, in process, no HTTP and no Redis.
    let signer = S3Store::connect(&s3_settings(endpoint, "bench-presign")).await;
    let presign_id = RecordingId::generate();
    let presign = measure(total, CONCURRENCY, |i| {
        let (signer, id) = (&signer, presign_id.clone());
        async move {
            let key = ObjectKey::chunk(&id, ChunkIndex::new(i as u32));
            signer
                .presign(
                    &key,
                    Presign::Put {
                        size: None,
                        sha256: None,
                    },
                    Duration::from_secs(900),
                )
                .await
                .expect("presign");
        }
    })
    .await;
    let client = redis::Client::open(redis)?;
    let conn = redis::aio::ConnectionManager::new(client).await?;
    let redis_rtt = measure(total, CONCURRENCY, |_| {
        let mut conn = conn.clone();
        async move {
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .expect("PING");
        }
    })
    .await;
    Ok(json!({
        "concurrency": CONCURRENCY,
        "grant": grants.json(0),
        "baselineHealthz": healthz.json(0),
        "baselineRedisPing": redis_rtt.json(0),
        "presignOnly": presign.json(0),
        "goal": ">= 10000/s with p99 <= 10 ms",
        "met": grants.per_sec() >= 10_000.0 && grants.pct(0.99) <= 10.0,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let endpoint = env("SCREENREC_TEST_LOCALSTACK")?;
    let redis = env("SCREENREC_TEST_REDIS_URL")?;
    let quick = std::env::var("BENCH_QUICK").is_ok();
    // Reservation first: LocalStack keeps working for a while after a bulk upload.
    let reserve = reservation(&endpoint, &redis, if quick { 2_000 } else { 40_000 }).await?;
    let ingest = ingest(&endpoint, &redis, if quick { 256 } else { 2048 }).await?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let result = json!({
        "benchmark": "ingest",
        "cores": cores,
        "note": "client, server, Redis and LocalStack share the machine",
        "ingestThroughServer": ingest,
        "chunkReservation": reserve,
    });
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench/results/ingest.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    let i = &result["ingestThroughServer"];
    let r = &result["chunkReservation"];
    println!("| measurement | result | baseline (same run) | ratio / goal |");
    println!("|---|---|---|---|");
    println!(
        "| ingest, 64 × 256 KiB PUT through screenrec | {} MiB/s | raw PutObject {} MiB/s | {} (goal ≥ 0.90) |",
        i["screenrecPut"]["mibPerSec"], i["rawPutObject"]["mibPerSec"], i["ratioToRaw"]
    );
    println!(
        "| chunk reservation (presigned grant) | {}/s, p50 {} ms, p99 {} ms | /healthz {}/s; Redis PING {}/s; presign alone {}/s | goal ≥ 10,000/s, p99 ≤ 10 ms |",
        r["grant"]["opsPerSec"],
        r["grant"]["p50Ms"],
        r["grant"]["p99Ms"],
        r["baselineHealthz"]["opsPerSec"],
        r["baselineRedisPing"]["opsPerSec"],
        r["presignOnly"]["opsPerSec"]
    );
    println!("results written to {out}");
    Ok(())
}
