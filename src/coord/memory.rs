//! In-process coordinator for the embedded single-instance mode (and unit tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Claim, Coordinator, NewRecording, RecordingMeta, Slot, StateUpdate, now_ms};
use crate::domain::{
    ChunkDigest, ChunkIndex, ChunkRecord, Indexing, Rate, RecordingId, RecordingState, check_stop,
    gcra,
};
use crate::error::{Error, Result};

#[derive(Default)]
pub struct MemoryCoordinator {
    recordings: Mutex<HashMap<RecordingId, Entry>>,
    /// Leases: holder and expiry, by name.
    leases: Mutex<HashMap<String, (String, Instant)>>,
    /// Counters: count and expiry, by name.
    counters: Mutex<HashMap<String, (u64, Instant)>>,
    /// Tallies, by name.
    tallies: Mutex<HashMap<String, i64>>,
    /// Rate limits: the theoretical arrival time (ms since the epoch), by key.
    rates: Mutex<HashMap<String, u64>>,
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
        let meta = rec.meta();
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
            if update.abandoned {
                e.meta.abandoned = true;
            }
            Ok(true)
        })
    }

    async fn chunks(&self, id: &RecordingId) -> Result<BTreeMap<u32, ChunkRecord>> {
        self.with(id, |e| Ok(e.chunks.clone()))
    }

    async fn restore(
        &self,
        meta: &RecordingMeta,
        chunks: &BTreeMap<u32, ChunkDigest>,
    ) -> Result<bool> {
        let mut map = self.recordings.lock().expect("coordinator lock poisoned");
        if map.contains_key(&meta.id) {
            return Ok(false);
        }
        map.insert(
            meta.id.clone(),
            Entry {
                meta: meta.clone(),
                chunks: chunks
                    .iter()
                    .map(|(i, d)| {
                        let record = ChunkRecord {
                            digest: d.clone(),
                            stored: true,
                        };
                        (*i, record)
                    })
                    .collect(),
                by_digest: chunks.iter().map(|(i, d)| (d.sha256.clone(), *i)).collect(),
                next: chunks.keys().next_back().map_or(0, |i| i + 1),
            },
        );
        Ok(true)
    }

    async fn adopt(
        &self,
        id: &RecordingId,
        index: ChunkIndex,
        existing: &ChunkDigest,
        ours: &ChunkDigest,
    ) -> Result<()> {
        self.with(id, |e| {
            let i = index.get();
            let known = e.chunks.get(&i);
            if !known.is_some_and(|c| c.stored && c.digest == *existing) {
                e.meta.chunks_received += 1;
                e.meta.bytes_received += existing.size;
            }
            e.chunks.insert(
                i,
                ChunkRecord {
                    digest: existing.clone(),
                    stored: true,
                },
            );
            if e.by_digest.get(&ours.sha256) == Some(&i) {
                e.by_digest.remove(&ours.sha256);
            }
            e.by_digest.insert(existing.sha256.clone(), i);
            e.next = e.next.max(i + 1);
            Ok(())
        })
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut leases = self.leases.lock().expect("lease lock poisoned");
        let now = Instant::now();
        match leases.get(name) {
            Some((other, until)) if other != holder && *until > now => Ok(false),
            _ => {
                leases.insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn held(&self, name: &str) -> Result<bool> {
        let leases = self.leases.lock().expect("lease lock poisoned");
        Ok(leases
            .get(name)
            .is_some_and(|(_, until)| *until > Instant::now()))
    }

    async fn forget(&self, id: &RecordingId) -> Result<()> {
        let mut map = self.recordings.lock().expect("coordinator lock poisoned");
        map.remove(id);
        Ok(())
    }

    async fn count(&self, name: &str, ttl: Duration) -> Result<u64> {
        let mut counters = self.counters.lock().expect("counter lock poisoned");
        let now = Instant::now();
        let entry = counters.entry(name.to_owned()).or_insert((0, now + ttl));
        if entry.1 <= now {
            *entry = (0, now + ttl);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = self.leases.lock().expect("lease lock poisoned");
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
        }
        Ok(())
    }

    async fn tally(&self, name: &str, delta: i64) -> Result<Option<i64>> {
        let mut tallies = self.tallies.lock().expect("tally lock poisoned");
        Ok(tallies.get_mut(name).map(|t| {
            *t += delta;
            *t
        }))
    }

    async fn settle(&self, name: &str, value: i64) -> Result<i64> {
        let mut tallies = self.tallies.lock().expect("tally lock poisoned");
        Ok(*tallies.entry(name.to_owned()).or_insert(value))
    }

    async fn throttle(&self, key: &str, rate: Rate) -> Result<Option<Duration>> {
        let mut rates = self.rates.lock().expect("rate lock poisoned");
        let now = now_ms();
        // Keys whose time has passed are as good as absent: drop them now and then.
        if rates.len() > 10_000 {
            rates.retain(|_, tat| *tat > now);
        }
        match gcra(rates.get(key).copied(), now, rate) {
            Ok(tat) => {
                rates.insert(key.to_owned(), tat);
                Ok(None)
            }
            Err(wait) => Ok(Some(wait)),
        }
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
