//! Notification benchmark: 1,000 WebSockets, each subscribed to its own recording, receiving
//! that recording's events. Latency is from the publish call to receipt by the client; lost
//! is what never arrived. Measured in one run:
//!
//! - one instance, in-process hub (the embedded mode);
//! - three instances sharing Redis, subscribers spread over them, every event published on one
//!   instance and fanned out through Redis pub/sub;
//! - baseline: a bare Redis PUBLISH to one SUBSCRIBE connection.
//!
//! Needs SCREENREC_TEST_REDIS_URL (`scripts/bench`). Writes bench/results/notify.json.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use screenrec::config::Config;
use screenrec::domain::{Owner, RecordingId};
use screenrec::http::AppState;
use screenrec::notify::EventKind;
use screenrec::service::CreateRequest;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SOCKETS: usize = 1000;
const EVENTS: u64 = 10;
/// Events published per millisecond in the paced runs (at most; the timer rounds up).
const PACE: usize = 10;

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

struct Lat(Vec<f64>);

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        if v.is_empty() {
            return f64::NAN;
        }
        round(v[((v.len() - 1) as f64 * p).round() as usize])
    }
}

async fn instance(vars: &[(&str, String)]) -> anyhow::Result<(AppState, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dir = tempfile::tempdir()?.keep();
    let config = Config::from_lookup(|k| match k {
        "BIND_ADDR" => Some(addr.to_string()),
        "STORAGE_DIR" => Some(dir.display().to_string()),
        _ => vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
    })?;
    let (state, router) = screenrec::app::build(&config).await?.spawn_workers(1);
    tokio::spawn(screenrec::app::serve(
        listener,
        router,
        std::future::pending(),
    ));
    Ok((state, format!("ws://{addr}/ws")))
}

/// Subscribe one socket per recording, spread over `urls`, publish `EVENTS` events to each
/// through `publisher`, and measure.
async fn run(publisher: &AppState, urls: &[String], pace: Option<usize>) -> anyhow::Result<Value> {
    let mut recordings = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let created = publisher
            .recordings
            .create(&CreateRequest::of("video/webm"), Owner::anonymous())
            .await?;
        recordings.push(created);
    }
    let start = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new(
        (0..SOCKETS as u64 * EVENTS)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let mut readers = Vec::new();
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    for (i, rec) in recordings.iter().enumerate() {
        let (mut ws, _) = tokio_tungstenite::connect_async(&urls[i % urls.len()]).await?;
        ws.send(Message::Text(
            json!({ "type": "subscribe", "recordingId": rec.recording_id, "token": rec.upload_token })
                .to_string()
                .into(),
        ))
        .await?;
        // "subscribed", then the state snapshot.
        for _ in 0..2 {
            ws.next().await.context("closed")??;
        }
        let (sent_at, received) = (sent_at.clone(), received.clone());
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < EVENTS {
                let Some(Ok(msg)) = ws.next().await else {
                    break;
                };
                let Message::Text(t) = msg else {
                    continue;
                };
                let now = start.elapsed().as_nanos() as u64;
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                if v["type"] != "mergeProgress" {
                    continue;
                }
                let version = v["version"].as_u64().unwrap_or(0);
                let slot = &sent_at[i * EVENTS as usize + version as usize - 1];
                let ms = (now - slot.load(Ordering::Relaxed)) as f64 / 1e6;
                received.lock().expect("lock").push(ms);
                got += 1;
            }
        }));
    }
    let ids: Vec<RecordingId> = recordings
        .iter()
        .map(|r| RecordingId::parse(&r.recording_id))
        .collect::<Result<_, _>>()?;
    let notifier = publisher.recordings.notifier().clone();
    let publishing = Instant::now();
    for round_no in 0..EVENTS {
        for (i, id) in ids.iter().enumerate() {
            sent_at[i * EVENTS as usize + round_no as usize]
                .store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            notifier
                .publish(
                    id,
                    EventKind::MergeProgress {
                        percent: round_no as u8,
                    },
                )
                .await?;
            // Paced: batches of `pace` events a millisecond apart, the same for every setup.
            // Burst: a round's 1,000 events back to back.
            if let Some(pace) = pace
                && i % pace == pace - 1
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publish_s = publishing.elapsed().as_secs_f64();
    // Whatever has not arrived 10 s after the last publish is lost.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for r in readers {
        if tokio::time::timeout_at(deadline, r).await.is_err() {
            break;
        }
    }
    let all = received.lock().expect("lock").clone();
    let expected = SOCKETS as u64 * EVENTS;
    let lat = Lat(all);
    Ok(json!({
        "sockets": SOCKETS,
        "events": expected,
        "received": lat.0.len(),
        "lost": expected - lat.0.len() as u64,
        "p50Ms": lat.pct(0.5),
        "p99Ms": lat.pct(0.99),
        "maxMs": lat.pct(1.0),
        "publishPerSec": round(expected as f64 / publish_s),
        "pacing": match pace { Some(p) => format!("{p} events per ms"), None => "burst".into() },
    }))
}

/// Baseline: PUBLISH on one connection, received on a SUBSCRIBE connection.
async fn redis_baseline(url: &str) -> anyhow::Result<Value> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = format!("bench-baseline-{}", std::process::id());
    pubsub.subscribe(&channel).await?;
    let mut conn = redis::aio::ConnectionManager::new(client).await?;
    let mut messages = pubsub.on_message();
    let mut lat = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg("x")
            .query_async(&mut conn)
            .await?;
        messages.next().await.context("no message")?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let lat = Lat(lat);
    Ok(json!({ "messages": 2000, "p50Ms": lat.pct(0.5), "p99Ms": lat.pct(0.99) }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis = std::env::var("SCREENREC_TEST_REDIS_URL")
        .context("SCREENREC_TEST_REDIS_URL is not set: run scripts/bench")?;
    let (hub_app, hub_url) = instance(&[]).await?;
    let single = run(&hub_app, std::slice::from_ref(&hub_url), Some(PACE)).await?;
    let single_burst = run(&hub_app, &[hub_url], None).await?;

    let prefix = format!("benchnotify{}:", std::process::id());
    let vars = [("REDIS_URL", redis.clone()), ("REDIS_PREFIX", prefix)];
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(instance(&vars).await?);
    }
    let urls: Vec<String> = apps.iter().map(|(_, u)| u.clone()).collect();
    let spread = run(&apps[0].0, &urls, Some(PACE)).await?;
    let spread_burst = run(&apps[0].0, &urls, None).await?;
    let baseline = redis_baseline(&redis).await?;

    let result = json!({
        "benchmark": "notify",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "note": "clients, instances and Redis share the machine; latency is publish call to receipt",
        "oneInstanceHub": single,
        "oneInstanceHubBurst": single_burst,
        "threeInstancesRedis": spread,
        "threeInstancesRedisBurst": spread_burst,
        "baselineRedisPubSub": baseline,
        "goal": "0 lost, p99 <= 20 ms",
    });
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench/results/notify.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("| setup | publishing | events/s | lost | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (name, r) in [
        ("1 instance, hub", &single),
        ("1 instance, hub", &single_burst),
        ("3 instances, Redis", &spread),
        ("3 instances, Redis", &spread_burst),
    ] {
        println!(
            "| {name}, {SOCKETS} sockets | {} | {} | {} of {} | {} | {} |",
            r["pacing"].as_str().unwrap_or_default(),
            r["publishPerSec"],
            r["lost"],
            r["events"],
            r["p50Ms"],
            r["p99Ms"]
        );
    }
    println!(
        "| baseline: Redis PUBLISH → SUBSCRIBE | one at a time | – | – | {} | {} |",
        baseline["p50Ms"], baseline["p99Ms"]
    );
    println!("results written to {out}");
    Ok(())
}
