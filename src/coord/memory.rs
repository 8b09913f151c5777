//! In-process coordinator for the embedded single-instance mode (and unit tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Claim, Coordinator, NewRecording, RecordingMeta, Slot, StateUpdate, now_ms};
use crate::domain::{
    ChunkDigest, ChunkIndex, ChunkRecord, Indexing, RecordingId, RecordingState, check_stop,
};
use crate::error::{Error, Result};

#[derive(Default)]
pub struct MemoryCoordinator {
    recordings: Mutex<HashMap<RecordingId, Entry>>,
}

struct Entry {
    meta: RecordingMeta,
    chunks: BTreeMap<u32, ChunkRecord>,
    /// For `Slot::Next`: which index a digest already has, so a re-delivery is stored once.
    by_digest: HashMap<String, u32>,
    next: u32,
}

impl MemoryCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, id: &RecordingId, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let mut map = self.recordings.lock().expect("coordinator lock poisoned");
        let entry = map.get_mut(id).ok_or(Error::RecordingNotFound)?;
        f(entry)
    }
}

fn require_recording(meta: &RecordingMeta) -> Result<()> {
    if meta.state == RecordingState::Recording {
        Ok(())
    } else {
        Err(Error::NotRecording {
            state: meta.state.as_str(),
        })
    }
}

fn set_indexing(meta: &mut RecordingMeta, want: Indexing) -> Result<()> {
    match meta.indexing {
        Some(existing) if existing != want => Err(Error::IndexingConflict {
            existing: existing.as_str(),
        }),
        _ => {
            meta.indexing = Some(want);
            Ok(())
        }
    }
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    async fn create(&self, rec: &NewRecording) -> Result<()> {
        let now = now_ms();
        let meta = RecordingMeta {
            id: rec.id.clone(),
            state: RecordingState::Recording,
            mime_type: rec.mime_type.clone(),
            token_hash: rec.token_hash.clone(),
            created_at_ms: now,
            updated_at_ms: now,
            chunks_received: 0,
            bytes_received: 0,
            chunk_count: None,
            indexing: None,
            failure: None,
            output: None,
            salvage: false,
        };
        let mut map = self.recordings.lock().expect("coordinator lock poisoned");
        map.entry(rec.id.clone()).or_insert(Entry {
            meta,
            chunks: BTreeMap::new(),
            by_digest: HashMap::new(),
            next: 0,
        });
        Ok(())
    }

    async fn meta(&self, id: &RecordingId) -> Result<Option<RecordingMeta>> {
        let map = self.recordings.lock().expect("coordinator lock poisoned");
        Ok(map.get(id).map(|e| e.meta.clone()))
    }

    async fn reserve(&self, id: &RecordingId, index: ChunkIndex) -> Result<Option<ChunkRecord>> {
        self.with(id, |e| {
            require_recording(&e.meta)?;
            set_indexing(&mut e.meta, Indexing::Seq)?;
            Ok(e.chunks.get(&index.get()).cloned())
        })
    }

    async fn claim(
        &self,
        id: &RecordingId,
        slot: Slot,
        digest: &ChunkDigest,
        max_chunks: u32,
    ) -> Result<Claim> {
        self.with(id, |e| {
            require_recording(&e.meta)?;
            let index = match slot {
                Slot::Seq(i) => {
                    set_indexing(&mut e.meta, Indexing::Seq)?;
                    i.get()
                }
                Slot::Next => {
                    set_indexing(&mut e.meta, Indexing::Next)?;
                    match e.by_digest.get(&digest.sha256) {
                        Some(i) => *i,
                        None if e.next >= max_chunks => {
                            return Err(Error::TooManyChunks { max: max_chunks });
                        }
                        None => {
                            e.next += 1;
                            e.by_digest.insert(digest.sha256.clone(), e.next - 1);
                            e.next - 1
                        }
                    }
                }
            };
            let idx = ChunkIndex::new(index);
            match e.chunks.get(&index) {
                Some(c) if c.digest != *digest => Err(Error::ChunkConflict { index }),
                Some(c) if c.stored => Ok(Claim::Stored(idx)),
                Some(_) => Ok(Claim::InFlight(idx)),
                None => {
                    e.chunks.insert(
                        index,
                        ChunkRecord {
                            digest: digest.clone(),
                            stored: false,
                        },
                    );
                    Ok(Claim::Fresh(idx))
                }
            }
        })
    }

    async fn commit(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        digest: &ChunkDigest,
    ) -> Result<Option<u64>> {
        self.with(id, |e| {
            let chunk = e
                .chunks
                .get_mut(&index.get())
                .ok_or(Error::ChunkNotUploaded { index: index.get() })?;
            if chunk.digest != *digest {
                return Err(Error::ChunkConflict { index: index.get() });
            }
            if chunk.stored {
                return Ok(None);
            }
            chunk.stored = true;
            e.meta.chunks_received += 1;
            e.meta.bytes_received += digest.size;
            e.meta.updated_at_ms = now_ms();
            Ok(Some(e.meta.bytes_received))
        })
    }

    async fn stop(&self, id: &RecordingId, count: u32) -> Result<()> {
        self.with(id, |e| {
            if e.meta.state != RecordingState::Recording {
                return Err(Error::AlreadyStopped {
                    state: e.meta.state.as_str(),
                });
            }
            check_stop(count, &e.chunks)?;
            e.meta.state = RecordingState::Stopping;
            e.meta.chunk_count = Some(count);
            e.meta.updated_at_ms = now_ms();
            Ok(())
        })
    }

    async fn transition(
        &self,
        id: &RecordingId,
        from: RecordingState,
        to: RecordingState,
        update: StateUpdate,
    ) -> Result<bool> {
        self.with(id, |e| {
            if e.meta.state != from {
                return Ok(false);
            }
            e.meta.state = to;
            e.meta.updated_at_ms = now_ms();
            if update.failure.is_some() {
                e.meta.failure = update.failure;
            }
            if update.output.is_some() {
                e.meta.output = update.output;
            }
            if update.chunk_count.is_some() {
                e.meta.chunk_count = update.chunk_count;
            }
            if update.salvage {
                e.meta.salvage = true;
                e.meta.failure = None;
            }
            Ok(true)
        })
    }

    async fn chunks(&self, id: &RecordingId) -> Result<BTreeMap<u32, ChunkRecord>> {
        self.with(id, |e| Ok(e.chunks.clone()))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
