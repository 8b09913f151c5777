//! Where a merge reads its chunks from: object storage (the service) or local files (the CLI).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::domain::{ChunkDigest, ChunkHasher, ChunkIndex, ChunkRecord, ObjectKey, RecordingId};
use crate::error::{Error, Result};
use crate::store::{ByteStream, ObjectStore, collect};

#[async_trait]
pub trait ChunkSource: Send + Sync {
    /// Number of chunks, indices `0..count`.
    fn count(&self) -> u32;

    /// Total bytes of all chunks (for progress).
    fn total_bytes(&self) -> u64;

    /// Start reading chunk `index`: its bytes as they arrive, checked against what was received
    /// where that is known. A chunk that turns out different ends its stream with
    /// `chunk_corrupted`: the bytes are good only once the stream has ended without an error,
    /// so whatever a reader made of them before must be thrown away on one.
    async fn open(&self, index: u32) -> Result<ByteStream>;

    /// Chunk `index`'s bytes, whole and checked.
    async fn fetch(&self, index: u32) -> Result<Bytes> {
        collect(self.open(index).await?, 0).await
    }
}

/// A stopped recording's chunks in object storage, each checked against the digest the
/// coordinator recorded when it was received.
pub struct StoredChunks {
    pub store: Arc<dyn ObjectStore>,
    pub id: RecordingId,
    pub chunks: BTreeMap<u32, ChunkRecord>,
    pub count: u32,
}

#[async_trait]
impl ChunkSource for StoredChunks {
    fn count(&self) -> u32 {
        self.count
    }

    fn total_bytes(&self) -> u64 {
        self.chunks.values().map(|c| c.digest.size).sum()
    }

    async fn open(&self, index: u32) -> Result<ByteStream> {
        let expected =
            self.chunks
                .get(&index)
                .filter(|c| c.stored)
                .ok_or(Error::MissingChunks {
                    count: self.count,
                    missing_total: 1,
                    missing: vec![index],
                })?;
        let body = self
            .store
            .get(&ObjectKey::chunk(&self.id, ChunkIndex::new(index)))
            .await
            .map_err(|e| match e {
                Error::NotFound => Error::ChunkCorrupted { index },
                other => other,
            })?;
        Ok(verified(body, expected.digest.clone(), index))
    }
}

/// `body`, hashed as it passes; it ends with `chunk_corrupted` if it is longer than `expected`
/// or, at its end, differs from it.
fn verified(body: ByteStream, expected: ChunkDigest, index: u32) -> ByteStream {
    let start = Some((body, ChunkHasher::default(), expected));
    futures::stream::unfold(start, move |state| async move {
        let (mut body, mut hasher, expected) = state?;
        match body.next().await {
            Some(Ok(piece)) => {
                hasher.update(&piece);
                if hasher.size() > expected.size {
                    return Some((Err(Error::ChunkCorrupted { index }), None));
                }
                Some((Ok(piece), Some((body, hasher, expected))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => (hasher.finish() != expected)
                .then_some((Err(Error::ChunkCorrupted { index }), None)),
        }
    })
    .boxed()
}

/// Chunk files on disk, numbered by the last number in each file name before its extension
/// (`chunk-000006.webm` is index 6).
pub struct LocalChunks {
    /// By index; `None` where no file has the index (only when gaps are allowed).
    files: Vec<Option<(PathBuf, u64)>>,
}

/// The last run of digits in a file name, extension aside (`chunk-000004.mp4` is 4).
pub fn index_from_name(path: &std::path::Path) -> Option<u32> {
    let name = path.file_stem()?.to_str()?;
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = name[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    name[start..end].parse().ok()
}

impl LocalChunks {
    /// Order the files by index, refusing names without a number, duplicates and (unless
    /// `allow_gaps`, for a salvage) gaps.
    pub fn from_paths(paths: &[PathBuf], allow_gaps: bool) -> Result<Self> {
        let mut by_index = BTreeMap::new();
        for p in paths {
            let index = index_from_name(p).ok_or_else(|| {
                Error::InvalidSeq(format!("{} has no chunk number in its name", p.display()))
            })?;
            if by_index.insert(index, p.clone()).is_some() {
                return Err(Error::DuplicateChunk { index });
            }
        }
        let count = by_index.keys().next_back().map_or(0, |m| m + 1);
        let missing: Vec<u32> = (0..count).filter(|i| !by_index.contains_key(i)).collect();
        if count == 0 || (!missing.is_empty() && !allow_gaps) {
            return Err(Error::MissingChunks {
                count,
                missing_total: missing.len() as u32,
                missing,
            });
        }
        let files = (0..count)
            .map(|i| {
                let Some(p) = by_index.remove(&i) else {
                    return Ok(None);
                };
                let size = std::fs::metadata(&p)
                    .map_err(|e| Error::Storage(format!("{}: {e}", p.display())))?
                    .len();
                Ok(Some((p, size)))
            })
            .collect::<Result<_>>()?;
        Ok(Self { files })
    }
}

#[async_trait]
impl ChunkSource for LocalChunks {
    fn count(&self) -> u32 {
        self.files.len() as u32
    }

    fn total_bytes(&self) -> u64 {
        self.files.iter().flatten().map(|(_, s)| s).sum()
    }

    async fn open(&self, index: u32) -> Result<ByteStream> {
        let bytes = self.fetch(index).await?;
        Ok(futures::stream::iter([Ok(bytes)]).boxed())
    }

    async fn fetch(&self, index: u32) -> Result<Bytes> {
        let Some((path, _)) = &self.files[index as usize] else {
            return Err(Error::MissingChunks {
                count: self.count(),
                missing_total: 1,
                missing: vec![index],
            });
        };
        tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| Error::Storage(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn indices_come_from_the_last_number() {
        assert_eq!(index_from_name(Path::new("chunk-000006.webm")), Some(6));
        assert_eq!(
            index_from_name(Path::new("/a/b9/rec2-part-12.mkv")),
            Some(12)
        );
        assert_eq!(index_from_name(Path::new("7")), Some(7));
        assert_eq!(index_from_name(Path::new("chunk-000004.mp4")), Some(4));
        assert_eq!(index_from_name(Path::new("chunk.webm")), None);
    }

    async fn read(body: &'static [&'static [u8]], expected: &[u8]) -> Result<Bytes> {
        let body = futures::stream::iter(body.iter().map(|p| Ok(Bytes::from_static(p)))).boxed();
        collect(verified(body, ChunkDigest::of(expected), 3), 0).await
    }

    #[tokio::test]
    async fn a_chunk_that_differs_from_what_was_received_ends_its_stream_with_an_error() {
        assert_eq!(&read(&[b"ab", b"cd"], b"abcd").await.unwrap()[..], b"abcd");
        const CHANGED: &[&[u8]] = &[b"ab", b"cx"];
        const LONGER: &[&[u8]] = &[b"ab", b"cde"];
        const SHORTER: &[&[u8]] = &[b"ab"];
        for body in [CHANGED, LONGER, SHORTER] {
            let e = read(body, b"abcd").await.unwrap_err();
            assert_eq!(e.code(), "chunk_corrupted");
        }
    }

    #[test]
    fn gaps_and_duplicates_are_refused() {
        let p = |s: &str| PathBuf::from(s);
        let e = LocalChunks::from_paths(&[p("c-0.webm"), p("c-2.webm")], false)
            .err()
            .unwrap();
        assert_eq!(e.code(), "missing_chunks");
        let e = LocalChunks::from_paths(&[p("c-0.webm"), p("d-000.webm")], true)
            .err()
            .unwrap();
        assert_eq!(e.code(), "duplicate_chunk");
        assert!(LocalChunks::from_paths(&[], true).is_err());
    }
}
