//! The coordinator contract, run against the in-process adapter and a real Redis server.

use std::sync::Arc;
use std::time::Duration;

use screenrec::coord::{
    Claim, Coordinator, MemoryCoordinator, NewRecording, RedisCoordinator, Slot, StateUpdate,
};
use screenrec::domain::{
    ChunkDigest, ChunkIndex, Metadata, Owner, RecordingId, RecordingState, UploadToken,
};

use crate::common::redis_url;

async fn coordinators() -> Vec<(&'static str, Arc<dyn Coordinator>)> {
    let mut out: Vec<(&'static str, Arc<dyn Coordinator>)> =
        vec![("memory", Arc::new(MemoryCoordinator::new()))];
    if let Some(url) = redis_url() {
        out.push((
            "redis",
            Arc::new(
                RedisCoordinator::connect(
                    &url,
                    &crate::common::unique("t"),
                    Duration::from_secs(3600),
                )
                .await
                .unwrap(),
            ),
        ));
    }
    out
}

async fn new_recording(c: &dyn Coordinator) -> RecordingId {
    let id = RecordingId::generate();
    c.create(&NewRecording {
        id: id.clone(),
        mime_type: "video/webm".into(),
        token_hash: UploadToken::generate().hash(),
        owner: Owner::anonymous(),
        metadata: Metadata::default(),
        format: Default::default(),
    })
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn concurrent_claims_of_one_index_admit_one_writer() {
    for (name, c) in coordinators().await {
        let id = new_recording(c.as_ref()).await;
        let digest = ChunkDigest::of(b"same bytes");
        let claims = futures::future::join_all((0..32).map(|_| {
            let (c, id, digest) = (c.clone(), id.clone(), digest.clone());
            async move {
                c.claim(&id, Slot::Seq(ChunkIndex::new(5)), &digest, 100)
                    .await
                    .unwrap()
            }
        }))
        .await;
        let fresh = claims
            .iter()
            .filter(|c| matches!(c, Claim::Fresh(_)))
            .count();
        assert_eq!(fresh, 1, "{name}: {claims:?}");
        let commits = futures::future::join_all((0..8).map(|_| {
            let (c, id, digest) = (c.clone(), id.clone(), digest.clone());
            async move { c.commit(&id, ChunkIndex::new(5), &digest).await.unwrap() }
        }))
        .await;
        assert_eq!(commits.iter().filter(|b| b.is_some()).count(), 1, "{name}");
        assert!(commits.contains(&Some(10)), "{name}: {commits:?}");
        let meta = c.meta(&id).await.unwrap().unwrap();
        assert_eq!(
            (meta.chunks_received, meta.bytes_received),
            (1, 10),
            "{name}"
        );
        let other = ChunkDigest::of(b"other bytes");
        let e = c
            .claim(&id, Slot::Seq(ChunkIndex::new(5)), &other, 100)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "chunk_conflict", "{name}");
    }
}

#[tokio::test]
async fn next_slots_are_contiguous_under_concurrency() {
    for (name, c) in coordinators().await {
        let id = new_recording(c.as_ref()).await;
        let mut indices: Vec<u32> = futures::future::join_all((0..50u32).map(|n| {
            let (c, id) = (c.clone(), id.clone());
            async move {
                c.claim(&id, Slot::Next, &ChunkDigest::of(&n.to_be_bytes()), 40)
                    .await
                    .map(|claim| claim.index().get())
            }
        }))
        .await
        .into_iter()
        .filter_map(|r| match r {
            Ok(i) => Some(i),
            Err(e) => {
                assert_eq!(e.code(), "too_many_chunks", "{name}");
                None
            }
        })
        .collect();
        indices.sort();
        assert_eq!(indices, (0..40).collect::<Vec<_>>(), "{name}");
        // A re-delivery gets its first index back.
        let again = c
            .claim(&id, Slot::Next, &ChunkDigest::of(&7u32.to_be_bytes()), 40)
            .await
            .unwrap();
        assert!(matches!(again, Claim::InFlight(_)), "{name}: {again:?}");
        let e = c
            .claim(
                &id,
                Slot::Seq(ChunkIndex::new(0)),
                &ChunkDigest::of(b"x"),
                40,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), "indexing_conflict", "{name}");
    }
}

#[tokio::test]
async fn stop_is_atomic_and_the_state_machine_is_compare_and_set() {
    for (name, c) in coordinators().await {
        let id = new_recording(c.as_ref()).await;
        for i in 0..3u32 {
            let d = ChunkDigest::of(&i.to_be_bytes());
            c.claim(&id, Slot::Seq(ChunkIndex::new(i)), &d, 100)
                .await
                .unwrap();
            if i != 1 {
                c.commit(&id, ChunkIndex::new(i), &d).await.unwrap();
            }
        }
        // Chunk 1 is claimed but not stored: it counts as missing.
        let e = c.stop(&id, 3).await.unwrap_err();
        assert_eq!(e.code(), "missing_chunks", "{name}");
        c.commit(
            &id,
            ChunkIndex::new(1),
            &ChunkDigest::of(&1u32.to_be_bytes()),
        )
        .await
        .unwrap();
        // Concurrent stops: exactly one wins.
        let stops = futures::future::join_all((0..8).map(|_| {
            let (c, id) = (c.clone(), id.clone());
            async move { c.stop(&id, 3).await }
        }))
        .await;
        assert_eq!(stops.iter().filter(|r| r.is_ok()).count(), 1, "{name}");
        for r in stops.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(r.code(), "already_stopped");
        }
        let e = c
            .claim(
                &id,
                Slot::Seq(ChunkIndex::new(3)),
                &ChunkDigest::of(b"late"),
                100,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), "recording_not_active", "{name}");
        let meta = c.meta(&id).await.unwrap().unwrap();
        assert_eq!(meta.state, RecordingState::Stopping);
        assert_eq!(meta.chunk_count, Some(3));
        // Compare-and-set transitions.
        let moved = futures::future::join_all((0..8).map(|_| {
            let (c, id) = (c.clone(), id.clone());
            async move {
                c.transition(
                    &id,
                    RecordingState::Stopping,
                    RecordingState::Merging,
                    StateUpdate::default(),
                )
                .await
                .unwrap()
            }
        }))
        .await;
        assert_eq!(moved.iter().filter(|b| **b).count(), 1, "{name}");
        let chunks = c.chunks(&id).await.unwrap();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.values().all(|c| c.stored));
    }
}

#[tokio::test]
async fn unknown_recordings_are_not_found() {
    for (name, c) in coordinators().await {
        let id = RecordingId::generate();
        assert!(c.meta(&id).await.unwrap().is_none(), "{name}");
        let e = c
            .claim(&id, Slot::Next, &ChunkDigest::of(b"x"), 10)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "recording_not_found", "{name}");
        assert_eq!(
            c.stop(&id, 1).await.unwrap_err().code(),
            "recording_not_found"
        );
    }
}
