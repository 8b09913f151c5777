//! Faults between an instance and its services, through the fault proxy: S3 answering
//! `503 SlowDown` to a fifth of its requests, connections reset in the middle of a body, 300 ms
//! more on every S3 request, Redis gone for 5 seconds. Under each, 30 recordings over the three
//! ingest paths (server PUT, presigned PUT, WebSocket) all become ready with every frame, or
//! their stop says what is missing; none is merged short, none is lost. A client retries what
//! failed (a 5xx, a reset), as the browser client does.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use screenrec::store::{ObjectStore, S3Settings, S3Store, read_all};

use crate::common::fault::{Fault, Mode, Proxy};
use crate::common::patient::{Tally, counted, fixtures, record_many};
use crate::common::{Backend, new_bucket, redis_url, s3_endpoints, spawn_app_with};

const RECORDINGS: usize = 30;
const AT_ONCE: usize = 6;

fn addr_of(url: &str) -> SocketAddr {
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    host.parse().unwrap_or_else(|e| panic!("{url}: {e}"))
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
    let fixtures = fixtures(dir.path());
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
        let tally = Tally::default();
        let runs = record_many(&client, &fixtures, RECORDINGS, AT_ONCE, name, &tally);
        let (outcomes, ()) = tokio::join!(runs, outage);
        s3.set(Fault::None);
        let (whole, missing) = counted(&outcomes);
        let spoiled =
            s3.injected.swap(0, Ordering::Relaxed) + kv.injected.swap(0, Ordering::Relaxed);
        table.push(format!(
            "| {name} | {RECORDINGS} | {whole} | {missing} | {spoiled} | {} | {:.0} s |",
            tally.retried.load(Ordering::Relaxed),
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
