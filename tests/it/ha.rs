//! Three `screenrec serve` processes sharing one Redis and one S3 (LocalStack), with the client
//! spreading every request round robin over them: no sticky sessions.

use std::time::Instant;

use futures::StreamExt;
use screenrec::store::{S3Settings, S3Store};

use crate::common::fixtures::Recording;
use crate::common::process::Instance;
use crate::common::upload::{Path, Plan, stored_sha256, upload};
use crate::common::{Backend, Client, env_for, redis_url, s3_endpoints};

const RECORDINGS: usize = 50;
const MIN_CHUNKS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_recordings_over_three_instances_land_whole_and_in_order() {
    let (Some(redis), Some((_, s3))) = (
        redis_url(),
        s3_endpoints().into_iter().find(|(n, _)| n == "localstack"),
    ) else {
        return;
    };
    let backend = Backend {
        name: "localstack+redis".into(),
        s3_endpoint: Some(s3.clone()),
        redis_url: Some(redis),
    };
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&backend, dir.path()).await;
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(Instance::start(&env, dir.path(), n).await);
    }
    let client = Client::new(instances.iter().map(|i| i.base.clone()).collect());
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

    let store = S3Store::connect(&S3Settings {
        bucket: env["S3_BUCKET"].clone(),
        region: Some("us-east-1".into()),
        endpoint: Some(s3),
        force_path_style: true,
    })
    .await;
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
    for i in &instances {
        assert!(!i.log_text().contains("panicked"), "{}", i.log_text());
    }
}
