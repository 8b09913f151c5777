//! Instances stopped while they work, behind the compose deployment's nginx: three instances on
//! Redis and LocalStack serve 30 recordings over the three ingest paths while one is SIGKILLed
//! in the middle of the chunk uploads (one of them half-sent to it) and started again, then 30
//! more while all three are restarted one at a time with SIGTERM (a rolling restart), each
//! while a chunk's body is on its way to it. Every recording becomes ready with every frame;
//! a SIGTERMed instance finishes the request in flight and exits cleanly within the grace.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::fixtures::Recording;
use crate::common::patient::{Tally, counted, finish, fixtures, record_many};
use crate::common::process::{Cluster, Nginx, Stop};
use crate::common::{Client, Rec};

const RECORDINGS: usize = 30;
const AT_ONCE: usize = 6;

/// Wait until the clients have had `n` chunks accepted.
async fn chunks_sent(tally: &Tally, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while tally.chunks_sent.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the clients stalled before chunk {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A chunk PUT straight to `base` whose body stops half-way: the head and half the bytes are
/// sent, the rest never is.
async fn half_sent_put(base: &str, rec: &Rec, seq: usize, chunk: &[u8]) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /recordings/{}/chunks/{seq} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        rec.id,
        rec.token,
        chunk.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&chunk[..chunk.len() / 2]).await.unwrap();
    conn
}

/// Instance `i` stopped (`how`) while it is reading the body of a chunk of a new recording of
/// `f`, sent half-way straight to it, then started again. SIGKILLed, it never answers that
/// chunk; SIGTERMed, it finishes the request in flight (the rest of the body comes after the
/// signal) and answers 200. Returns the recording and the first chunk still to send.
async fn stopped_mid_body(
    cluster: &mut Cluster,
    i: usize,
    how: Stop,
    client: &Client,
    f: &Recording,
) -> (Rec, usize) {
    let rec = client.create(&f.mime_type).await;
    let cut = f.chunks.len() / 2;
    for (seq, chunk) in f.chunks[..cut].iter().enumerate() {
        client
            .put_chunk(0, &rec, seq as u32, chunk.clone())
            .await
            .expect(200);
    }
    let chunk = &f.chunks[cut];
    let mut conn = half_sent_put(&cluster.instances[i].base, &rec, cut, chunk).await;
    // The instance is reading the body by then.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_flight = async {
        if how == Stop::Term {
            tokio::time::sleep(Duration::from_millis(500)).await;
            conn.write_all(&chunk[chunk.len() / 2..]).await.unwrap();
        }
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let ((), answer) = tokio::join!(cluster.instances[i].restart(how), in_flight);
    match how {
        Stop::Kill => {
            assert!(
                answer.is_empty(),
                "the half-sent chunk was answered: {answer}"
            );
            (rec, cut)
        }
        Stop::Term => {
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "the request in flight at SIGTERM was not finished: {answer}"
            );
            (rec, cut + 1)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_killed_or_restarted_mid_recording_lose_nothing() {
    let Some(mut cluster) = Cluster::start(
        3,
        &[
            ("KEEP_CHUNKS", "false"),
            ("MERGE_LEASE_SECS", "3"),
            ("MERGE_MAX_DELIVERIES", "20"),
            ("MERGE_WORKERS", "2"),
            ("SHUTDOWN_GRACE_SECS", "5"),
        ],
    )
    .await
    else {
        eprintln!("Redis and LocalStack not configured; skipped");
        return;
    };
    let nginx = Nginx::start(&cluster).await;
    let client = Client::new(vec![nginx.base.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let fixtures = fixtures(dir.path());
    let total: u64 = (0..RECORDINGS)
        .map(|i| fixtures[i % fixtures.len()].0.chunks.len() as u64)
        .sum();

    let mut table = Vec::new();
    for (name, how) in [
        ("instance 1 SIGKILLed mid-upload, then started", Stop::Kill),
        (
            "rolling restart: SIGTERM, one instance at a time",
            Stop::Term,
        ),
    ] {
        let tally = Tally::default();
        let started = Instant::now();
        let runs = record_many(&client, &fixtures, RECORDINGS, AT_ONCE, name, &tally);
        let chaos = async {
            // When each stop began, in chunks accepted so far.
            let mut at = Vec::new();
            let mut halves = Vec::new();
            let targets: &[usize] = match how {
                Stop::Kill => &[1],
                Stop::Term => &[0, 1, 2],
            };
            let steps = targets.len() as u64 + 1;
            for (k, &i) in targets.iter().enumerate() {
                chunks_sent(&tally, total * (k as u64 + 1) / steps).await;
                at.push(tally.chunks_sent.load(Ordering::Relaxed));
                let f = &fixtures[2];
                halves.push((
                    stopped_mid_body(&mut cluster, i, how, &client, &f.0).await,
                    f,
                ));
            }
            // The recordings that had a chunk in flight are finished once every stop is done.
            for ((rec, rest), (f, reference)) in halves {
                for (seq, chunk) in f.chunks.iter().enumerate().skip(rest) {
                    client
                        .put_chunk(0, &rec, seq as u32, chunk.clone())
                        .await
                        .expect(200);
                }
                let label = format!("{}: a chunk in flight at {how:?}", f.name);
                let count = f.chunks.len();
                let outcome = finish(&client, &rec, count, reference, &label, &tally).await;
                assert!(outcome.ready_whole, "{label}: not ready with every frame");
            }
            at
        };
        let (outcomes, at) = tokio::join!(runs, chaos);
        let (whole, missing) = counted(&outcomes);
        assert!(
            at.iter().all(|&n| n < total),
            "{name}: a stop came after the last chunk ({at:?} of {total})"
        );
        // The recordings with a chunk in flight at a stop were checked ready by the chaos.
        let extra = at.len();
        table.push(format!(
            "| {name} | {} | {} | {} | {} | {:.0} s |",
            RECORDINGS + extra,
            whole + extra,
            at.iter()
                .map(|n| format!("{n}/{total}"))
                .collect::<Vec<_>>()
                .join(", "),
            tally.retried.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        ));
        assert_eq!(
            (whole, missing),
            (RECORDINGS, 0),
            "{name}: every recording must become ready"
        );
    }
    eprintln!(
        "| stop | recordings | ready with every frame | stopped at chunk | client retries | took |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for row in table {
        eprintln!("{row}");
    }
}
