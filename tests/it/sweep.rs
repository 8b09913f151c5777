//! The sweeper against real Redis and S3: an abandoned recording is merged with what it had,
//! a stopped one whose job was lost is queued again, one past retention leaves no object
//! behind, and two sweepers never run a pass at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use serde_json::Value;

use crate::common::fixtures::Recording;
use crate::common::media::{assert_matches_reference, reference};
use crate::common::{Backend, Client, Rec, backends, spawn_app_with};

async fn wait_ready(client: &Client, rec: &Rec, label: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = client.status(0, rec).await;
        if s["status"] == "ready" || s["status"] == "failed" {
            return s;
        }
        assert!(Instant::now() < deadline, "{label}: not finished: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backends with Redis, where leases and state are shared; and the embedded one.
fn sweep_backends() -> Vec<Backend> {
    backends()
        .into_iter()
        .filter(|b| b.name == "fs+memory" || b.name.starts_with("localstack"))
        .collect()
}

const FAST: [(&str, &str); 5] = [
    ("SWEEP_INTERVAL_SECS", "1"),
    ("ABANDON_AFTER_SECS", "2"),
    ("MERGE_LEASE_SECS", "1"),
    ("KEEP_CHUNKS", "false"),
    ("RETENTION_DAYS", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_finishes_what_no_request_will() {
    let dir = tempfile::tempdir().unwrap();
    let f = Recording::load("vp8-opus-ts1000");
    let five = Recording {
        name: "first five chunks".into(),
        mime_type: f.mime_type.clone(),
        chunks: f.chunks[..5].to_vec(),
    };
    let reference_of_five = reference(&five, dir.path());
    for backend in sweep_backends() {
        let label = backend.name.clone();
        let app = spawn_app_with(&backend, &FAST).await;
        let client = app.client();
        let store = app.state.recordings.store().clone();

        // Abandoned after 5 chunks: merged with those, marked abandoned.
        let abandoned = client.create(&f.mime_type).await;
        for (seq, chunk) in five.chunks.iter().enumerate() {
            client
                .put_chunk(0, &abandoned, seq as u32, chunk.clone())
                .await
                .expect(200);
        }
        // Stopped, but its merge job was lost (queued nowhere).
        let stuck = client.create(&f.mime_type).await;
        for (seq, chunk) in f.chunks.iter().enumerate() {
            client
                .put_chunk(0, &stuck, seq as u32, chunk.clone())
                .await
                .expect(200);
        }
        let stuck_id = RecordingId::parse(&stuck.id).unwrap();
        app.state
            .recordings
            .coordinator()
            .stop(&stuck_id, f.chunks.len() as u32)
            .await
            .unwrap();

        let status = wait_ready(&client, &abandoned, &label).await;
        assert_eq!(status["status"], "ready", "{label}: {status}");
        assert_eq!(status["abandoned"], true, "{label}: {status}");
        assert_eq!(status["chunkCount"], 5, "{label}: {status}");
        let url = status["downloadUrl"].as_str().unwrap();
        let file = dir.path().join(format!("abandoned-{label}.webm"));
        let bytes = client.http.get(url).send().await.unwrap().bytes().await;
        std::fs::write(&file, bytes.unwrap()).unwrap();
        assert_matches_reference(&file, &reference_of_five, &format!("{label}: abandoned"));
        assert_eq!(app.manifest(&abandoned).await["abandoned"], true, "{label}");

        let status = wait_ready(&client, &stuck, &label).await;
        assert_eq!(status["status"], "ready", "{label}: stuck: {status}");

        // Finished recordings leave the sweeper's list.
        let active = store.list(ObjectKey::ACTIVE_PREFIX).await.unwrap();
        for rec in [&abandoned, &stuck] {
            assert!(
                !active.iter().any(|l| l.key.ends_with(&rec.id)),
                "{label}: {} still listed as unfinished",
                rec.id
            );
        }

        // Past retention (made two days ago): every object goes, and nothing else does.
        let old = RecordingId::from_parts(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                - 2 * 86_400_000,
            [5; 10],
        );
        for key in [
            ObjectKey::manifest(&old),
            ObjectKey::output(&old, screenrec::domain::Container::WebM),
            ObjectKey::chunk(&old, ChunkIndex::new(0)),
        ] {
            store
                .put(&key, Bytes::from_static(b"old"), "application/octet-stream")
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut left = Vec::new();
            for prefix in [
                ObjectKey::recording_prefix(&old),
                ObjectKey::chunks_prefix(&old),
            ] {
                left.extend(
                    store
                        .list(&prefix)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|l| l.key),
                );
            }
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: past retention, still there: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The recordings made today are still there.
        assert_eq!(
            client.status(0, &abandoned).await["status"],
            "ready",
            "{label}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_never_run_a_pass_at_once() {
    for backend in sweep_backends() {
        // Two instances: two apps on one Redis and one store (or, embedded, one app twice).
        let app = spawn_app_with(&backend, &[("SWEEP_INTERVAL_SECS", "86400")]).await;
        let config = screenrec::config::Config::from_lookup(|k| match k {
            "ABANDONED" => Some("merge".into()),
            _ => None,
        })
        .unwrap();
        let records = app.state.recordings.records().clone();
        let notifier = app.state.recordings.notifier().clone();
        let sweepers = [0, 1].map(|_| {
            screenrec::sweep::Sweeper::new(records.clone(), notifier.clone(), config.sweep.clone())
        });
        // While another instance holds the sweep, neither runs one. (The app's own sweeper
        // makes a pass as it starts; the lease is free once that is over.)
        let coord = records.coordinator();
        let hour = Duration::from_secs(3600);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !coord
            .lease("sweeper", "another instance", hour)
            .await
            .unwrap()
        {
            assert!(
                Instant::now() < deadline,
                "{}: the sweep never free",
                backend.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..5 {
            let (a, b) = tokio::join!(sweepers[0].sweep_once(), sweepers[1].sweep_once());
            assert!(
                a.unwrap().is_none() && b.unwrap().is_none(),
                "{}: a pass ran beside another instance's",
                backend.name
            );
        }
        coord.release("sweeper", "another instance").await.unwrap();
        // Asking at the same moment, one gets it; once its pass is over, the other can.
        let (a, b) = tokio::join!(sweepers[0].sweep_once(), sweepers[1].sweep_once());
        assert!(
            a.unwrap().is_some() || b.unwrap().is_some(),
            "{}: the sweep is free again",
            backend.name
        );
    }
}
