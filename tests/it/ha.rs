//! Three `screenrec serve` processes sharing one Redis and one S3 (LocalStack), with the client
//! spreading every request round robin over them: no sticky sessions.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::common::Client;
use crate::common::fixtures::Recording;
use crate::common::process::Cluster;
use crate::common::upload::{Path, Plan, stored_sha256, upload};

const RECORDINGS: usize = 50;
const MIN_CHUNKS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_recordings_over_three_instances_land_whole_and_in_order() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let client = cluster.client();
    let fixtures = Recording::all();
    let paths = [Path::Presigned, Path::Server, Path::WsSeq];
    let started = Instant::now();

    let results = futures::stream::iter(0..RECORDINGS)
        .map(|i| {
            let client = client.clone();
            let fixture = &fixtures[i % fixtures.len()];
            let path = paths[i % paths.len()];
            async move {
                let chunks = fixture.repeated_to(MIN_CHUNKS);
                let rec = client.create(&fixture.mime_type).await;
                let plan = Plan {
                    in_flight: 4,
                    duplicate_pct: 10,
                    max_delay_ms: 20,
                    seed: i as u64 + 1,
                };
                upload(&client, &rec, &chunks, path, plan).await;
                client.stop(i, &rec, chunks.len() as u32).await.expect(202);
                (rec, chunks, path, fixture.name.clone())
            }
        })
        .buffer_unordered(RECORDINGS)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "{RECORDINGS} recordings uploaded through 3 instances in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let store = cluster.store().await;
    let mut intact = 0;
    for (rec, chunks, path, name) in &results {
        let status = client.status(0, rec).await;
        assert_ne!(status["status"], "recording", "{name} {path:?}");
        assert_eq!(status["chunksReceived"], chunks.len(), "{name} {path:?}");
        let stored = stored_sha256(&store, rec, chunks.len() as u32).await;
        assert_eq!(stored, Recording::sha256_of(chunks), "{name} over {path:?}");
        intact += 1;
    }
    assert_eq!(intact, RECORDINGS);
    for i in &cluster.instances {
        assert!(!i.log_text().contains("panicked"), "{}", i.log_text());
    }
}

/// SIGKILL the instance merging a recording: another instance takes the job over once the
/// lease expires and finishes it, and there is exactly one output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_survives_its_worker_being_killed() {
    let vars = [("MERGE_LEASE_SECS", "2"), ("KEEP_CHUNKS", "false")];
    let Some(mut cluster) = Cluster::start(1, &vars).await else {
        return;
    };
    // Restart-style chunks are complete files, so repeating them makes a long, valid recording
    // whose merge takes long enough to be interrupted.
    let fixture = Recording::load("vp8-restart2000");
    let chunks = fixture.repeated_to(400);

    let client_a = cluster.client();
    let rec = client_a.create(&fixture.mime_type).await;
    let plan = Plan {
        in_flight: 8,
        duplicate_pct: 0,
        max_delay_ms: 0,
        seed: 7,
    };
    upload(&client_a, &rec, &chunks, Path::Server, plan).await;
    client_a
        .stop(0, &rec, chunks.len() as u32)
        .await
        .expect(202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client_a.status(0, &rec).await;
        match status["status"].as_str() {
            Some("merging") => break,
            Some("stopping") => {}
            other => panic!("the merge ended before it could be interrupted: {other:?} {status}"),
        }
        assert!(Instant::now() < deadline, "merge never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.instances[0].kill();

    let store = cluster.store().await;
    let outputs = || async {
        store
            .client()
            .list_objects_v2()
            .bucket(store.bucket())
            .prefix(format!("recordings/{}/output", rec.id))
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        outputs().await.is_empty(),
        "the killed worker had already uploaded"
    );

    let b = cluster.add().await;
    let client_b = Client::new(vec![b.base.clone()]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = client_b.status(0, &rec).await;
        if status["status"] == "ready" || status["status"] == "failed" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover: {status}\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["status"], "ready", "{status}");
    assert_eq!(
        outputs().await,
        [format!("recordings/{}/output.webm", rec.id)]
    );
    let one_pass: u64 = 211;
    assert_eq!(status["output"]["videoFrames"], one_pass * 100, "{status}");
    assert!(!b.log_text().contains("panicked"), "{}", b.log_text());
}

/// The deployment's nginx configuration (checked with `nginx -t`) balancing three instances:
/// every ingest path, the WebSocket, the merge and the download work through it, and requests
/// reach every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balances_three_instances_without_sticky_sessions() {
    use crate::common::process::Nginx;
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let nginx = Nginx::start(&cluster).await;
    let client = Client::new(vec![nginx.base.clone()]);
    let fixture = Recording::load("vp8-opus-ts1000");
    for (n, path) in [Path::Server, Path::Presigned, Path::WsSeq]
        .into_iter()
        .enumerate()
    {
        let rec = client.create(&fixture.mime_type).await;
        let plan = Plan {
            seed: n as u64,
            ..Plan::default()
        };
        upload(&client, &rec, &fixture.chunks, path, plan).await;
        client
            .stop(0, &rec, fixture.chunks.len() as u32)
            .await
            .expect(202);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = client.status(0, &rec).await;
            if status["status"] == "ready" {
                break;
            }
            assert_ne!(status["status"], "failed", "{path:?}: {status}");
            assert!(Instant::now() < deadline, "{path:?}: not ready: {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client.download(0, &rec).await.expect(302);
    }
    let used: std::collections::HashSet<String> = nginx.upstreams_used().into_iter().collect();
    for i in &cluster.instances {
        let addr = i.base.trim_start_matches("http://");
        assert!(used.contains(addr), "no request reached {addr}: {used:?}");
    }
}
