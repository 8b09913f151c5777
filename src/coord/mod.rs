//! The coordinator port: the small amount of shared, atomic state that lets any number of
//! stateless instances serve one recording. Redis in production, in-process in the embedded mode.
//! Object storage stays the source of truth for bytes; this holds indices, digests and states.

mod memory;
mod redis;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryCoordinator;
pub use self::redis::RedisCoordinator;
use crate::domain::{
    ChunkDigest, ChunkIndex, ChunkRecord, Indexing, Metadata, OutputFormat, Owner, Rate,
    RecordingId, RecordingState, TokenHash,
};
use crate::error::Result;

/// What a new recording starts with.
#[derive(Clone, Debug)]
pub struct NewRecording {
    pub id: RecordingId,
    pub mime_type: String,
    pub token_hash: TokenHash,
    pub owner: Owner,
    pub metadata: Metadata,
    pub format: OutputFormat,
}

impl NewRecording {
    /// The state a new recording starts in.
    pub fn meta(&self) -> RecordingMeta {
        let now = now_ms();
        RecordingMeta {
            id: self.id.clone(),
            state: RecordingState::Recording,
            mime_type: self.mime_type.clone(),
            token_hash: self.token_hash.clone(),
            owner: self.owner.clone(),
            metadata: self.metadata.clone(),
            format: self.format,
            created_at_ms: now,
            updated_at_ms: now,
            chunks_received: 0,
            bytes_received: 0,
            chunk_count: None,
            indexing: None,
            failure: None,
            output: None,
            salvage: false,
            abandoned: false,
        }
    }
}

/// Why a recording failed, as stored and reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// A recording's coordination state.
#[derive(Clone, Debug)]
pub struct RecordingMeta {
    pub id: RecordingId,
    pub state: RecordingState,
    pub mime_type: String,
    pub token_hash: TokenHash,
    pub owner: Owner,
    pub metadata: Metadata,
    /// The output asked for at create.
    pub format: OutputFormat,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub chunks_received: u32,
    pub bytes_received: u64,
    pub chunk_count: Option<u32>,
    pub indexing: Option<Indexing>,
    pub failure: Option<Failure>,
    /// The merged output's description (JSON), once ready.
    pub output: Option<String>,
    /// The merge is to salvage what it can (asked for after a failure).
    pub salvage: bool,
    /// Left unfinished (no chunk and no stop for a while); the sweeper stopped it.
    pub abandoned: bool,
}

/// Which index a chunk asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The client's own `seq`.
    Seq(ChunkIndex),
    /// The next free index, in arrival order.
    Next,
}

/// The answer to a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The index is now claimed for these bytes: write the object, then commit.
    Fresh(ChunkIndex),
    /// The same bytes are claimed but not committed (a retry of an upload that failed or is in
    /// flight): writing the same object again is harmless, then commit.
    InFlight(ChunkIndex),
    /// The same bytes are already stored: nothing to do.
    Stored(ChunkIndex),
}

impl Claim {
    pub fn index(self) -> ChunkIndex {
        match self {
            Claim::Fresh(i) | Claim::InFlight(i) | Claim::Stored(i) => i,
        }
    }
}

/// Fields written together with a state change.
#[derive(Clone, Debug, Default)]
pub struct StateUpdate {
    pub failure: Option<Failure>,
    pub output: Option<String>,
    pub chunk_count: Option<u32>,
    /// Mark the merge a salvage, and forget the failure that led to it.
    pub salvage: bool,
    /// Mark the recording abandoned.
    pub abandoned: bool,
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// Register a new recording in state `recording`.
    async fn create(&self, rec: &NewRecording) -> Result<()>;

    async fn meta(&self, id: &RecordingId) -> Result<Option<RecordingMeta>>;

    /// For a presigned upload: check the recording takes `seq` chunks now, and return what is
    /// already known of `index`.
    async fn reserve(&self, id: &RecordingId, index: ChunkIndex) -> Result<Option<ChunkRecord>>;

    /// Atomically claim an index for a chunk's bytes. Errors: `recording_not_active`,
    /// `chunk_conflict` (the index holds other bytes), `indexing_conflict`, `too_many_chunks`.
    async fn claim(
        &self,
        id: &RecordingId,
        slot: Slot,
        digest: &ChunkDigest,
        max_chunks: u32,
    ) -> Result<Claim>;

    /// Mark a claimed chunk stored (its object is written). Returns the recording's bytes
    /// received when this call did it, `None` when it was already stored.
    async fn commit(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        digest: &ChunkDigest,
    ) -> Result<Option<u64>>;

    /// Atomically check that exactly chunks `0..count` are stored and move `recording ->
    /// stopping`. Errors: `missing_chunks`, `chunk_count_mismatch`, `already_stopped`.
    async fn stop(&self, id: &RecordingId, count: u32) -> Result<()>;

    /// Compare-and-set the state, writing `update` with it. Returns false when the state was
    /// not `from`.
    async fn transition(
        &self,
        id: &RecordingId,
        from: RecordingState,
        to: RecordingState,
        update: StateUpdate,
    ) -> Result<bool>;

    /// Every chunk known for the recording, by index.
    async fn chunks(&self, id: &RecordingId) -> Result<BTreeMap<u32, ChunkRecord>>;

    /// Put back a recording's state from the store (after it was lost): `meta` with these
    /// stored `chunks`, the next index above the highest. Does nothing and returns false when
    /// the recording is known (another instance restored it, or it never went).
    async fn restore(
        &self,
        meta: &RecordingMeta,
        chunks: &BTreeMap<u32, ChunkDigest>,
    ) -> Result<bool>;

    /// The store already holds `existing` at `index`, which was claimed for `ours`: record
    /// the stored chunk (counted once) and forget the claim, so that `ours` gets another index.
    async fn adopt(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        existing: &ChunkDigest,
        ours: &ChunkDigest,
    ) -> Result<()>;

    /// Take, or keep, the lease `name` for `holder` for `ttl`: true while it is `holder`'s. A
    /// lease not renewed in time goes to whoever asks next.
    async fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool>;

    /// Give the lease `name` up, if `holder` has it.
    async fn release(&self, name: &str, holder: &str) -> Result<()>;

    /// Whether anyone holds the lease `name`.
    async fn held(&self, name: &str) -> Result<bool>;

    /// Forget everything about a recording (it is deleted).
    async fn forget(&self, id: &RecordingId) -> Result<()>;

    /// Add one to the counter `name` (which lasts `ttl` from its first count) and return it.
    async fn count(&self, name: &str, ttl: std::time::Duration) -> Result<u64>;

    /// Add `delta` to the tally `name` and return it, while the tally is known; `None` when
    /// it is not (never settled, or lost with the rest of this state), and then nothing is
    /// added: whoever needs it [`settle`](Coordinator::settle)s it from the store.
    async fn tally(&self, name: &str, delta: i64) -> Result<Option<i64>>;

    /// Set the tally `name` to `value` unless it is known (another instance settled it
    /// first), and return what it holds. Tallies do not expire.
    async fn settle(&self, name: &str, value: i64) -> Result<i64>;

    /// Admit one request against the rate limit `key` ([`gcra`](crate::domain::gcra)):
    /// `None` when admitted, else how long until one would be.
    async fn throttle(&self, key: &str, rate: Rate) -> Result<Option<std::time::Duration>>;

    async fn ping(&self) -> Result<()>;
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
