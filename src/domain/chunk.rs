use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A chunk's position in its recording, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkIndex(u32);

impl ChunkIndex {
    pub const fn new(n: u32) -> Self {
        Self(n)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// Parse a client's `seq` (a JSON number or a path segment) against the recording limit.
    pub fn parse_seq(raw: &str, max_chunks: u32) -> Result<Self> {
        let invalid = |why: String| Error::InvalidSeq(why);
        if raw.is_empty() || raw.len() > 20 {
            return Err(invalid("it must be a whole number".into()));
        }
        if raw.starts_with('-') {
            return Err(invalid("it must not be negative".into()));
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("it must be a whole number".into()));
        }
        match raw.parse::<u64>() {
            Ok(n) if n < u64::from(max_chunks) => Ok(Self(n as u32)),
            _ => Err(invalid(format!(
                "it must be below the chunk limit of {max_chunks}"
            ))),
        }
    }
}

impl std::fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How a recording's chunks get their index. Fixed by the first chunk; mixing is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexing {
    /// The client numbers its chunks (`seq`); `index = seq`.
    Seq,
    /// The client sends no number; the coordinator hands out the next index in arrival order.
    Next,
}

impl Indexing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seq => "seq",
            Self::Next => "next",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "seq" => Some(Self::Seq),
            "next" => Some(Self::Next),
            _ => None,
        }
    }
}

/// A [`ChunkDigest`] taken piece by piece, as a chunk streams past.
#[derive(Default)]
pub struct ChunkHasher {
    sha256: Sha256,
    size: u64,
}

impl ChunkHasher {
    pub fn update(&mut self, piece: &[u8]) {
        self.sha256.update(piece);
        self.size += piece.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> ChunkDigest {
        ChunkDigest {
            sha256: hex::encode(self.sha256.finalize()),
            size: self.size,
        }
    }
}

/// What identifies a chunk's bytes: SHA-256 (hex) and length.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkDigest {
    pub sha256: String,
    pub size: u64,
}

impl ChunkDigest {
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = ChunkHasher::default();
        hasher.update(bytes);
        hasher.finish()
    }

    /// `sha256:size`, the form the coordinator stores.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.sha256, self.size)
    }

    pub fn decode(s: &str) -> Result<Self> {
        let (sha, size) = s
            .split_once(':')
            .ok_or_else(|| Error::Coordination(format!("malformed chunk digest {s:?}")))?;
        Ok(Self {
            sha256: sha.to_owned(),
            size: size
                .parse()
                .map_err(|_| Error::Coordination(format!("malformed chunk size {s:?}")))?,
        })
    }
}

/// A chunk's SHA-256 as a client declares it: `x-amz-checksum-sha256`, the base64 of the
/// 32-byte digest (the form S3 checks a body against).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sha256Checksum([u8; 32]);

impl Sha256Checksum {
    pub fn parse(base64: &str) -> Result<Self> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(base64.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| {
                Error::InvalidChecksum(
                    "it must be the base64 of a 32-byte SHA-256 digest (x-amz-checksum-sha256)"
                        .into(),
                )
            })
    }

    pub fn from_hex(hex: &str) -> Result<Self> {
        hex::decode(hex)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or_else(|| Error::InvalidChecksum("it must be 64 hex digits".into()))
    }

    pub fn base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The bytes that arrived are the bytes declared: `checksum_mismatch` otherwise.
    pub fn check(&self, received: &ChunkDigest) -> Result<()> {
        if received.sha256 == self.hex() {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch(format!(
                "the body's SHA-256 is {}, {} was declared",
                Self::from_hex(&received.sha256)
                    .map_or_else(|_| received.sha256.clone(), |c| c.base64()),
                self.base64()
            )))
        }
    }
}

/// A chunk the coordinator knows of: claimed by an upload in flight, or stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    pub digest: ChunkDigest,
    pub stored: bool,
}

/// Check that a stop with `count` chunks finds exactly indices `0..count` stored. The error
/// names the missing indices (the first 1,000 of them) or the ones beyond the count.
pub fn check_stop(count: u32, chunks: &BTreeMap<u32, ChunkRecord>) -> Result<()> {
    const MAX_LISTED: usize = 1000;
    let mut missing = Vec::new();
    let mut missing_total = 0u32;
    for i in 0..count {
        if !chunks.get(&i).is_some_and(|c| c.stored) {
            missing_total += 1;
            if missing.len() < MAX_LISTED {
                missing.push(i);
            }
        }
    }
    if missing_total > 0 {
        return Err(Error::MissingChunks {
            count,
            missing_total,
            missing,
        });
    }
    let beyond: Vec<u32> = chunks
        .range(count..)
        .map(|(i, _)| *i)
        .take(MAX_LISTED)
        .collect();
    if !beyond.is_empty() {
        return Err(Error::ChunkCountMismatch { count, beyond });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u32) -> (u32, ChunkRecord) {
        (
            n,
            ChunkRecord {
                digest: ChunkDigest::of(&n.to_be_bytes()),
                stored: true,
            },
        )
    }

    #[test]
    fn seq_parsing() {
        assert_eq!(ChunkIndex::parse_seq("0", 10).unwrap().get(), 0);
        assert_eq!(ChunkIndex::parse_seq("9", 10).unwrap().get(), 9);
        for bad in [
            "10",
            "-1",
            "",
            "1.5",
            "abc",
            "99999999999999999999999",
            "+3",
            " 1",
        ] {
            let e = ChunkIndex::parse_seq(bad, 10).unwrap_err();
            assert_eq!(e.code(), "invalid_seq", "{bad}");
        }
    }

    #[test]
    fn digest_round_trips() {
        let d = ChunkDigest::of(b"hello");
        assert_eq!(d.size, 5);
        assert_eq!(ChunkDigest::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn stop_needs_every_index_stored() {
        let mut chunks: BTreeMap<u32, ChunkRecord> = [stored(0), stored(1), stored(3)].into();
        match check_stop(4, &chunks) {
            Err(Error::MissingChunks { missing, .. }) => assert_eq!(missing, [2]),
            other => panic!("{other:?}"),
        }
        chunks.insert(
            2,
            ChunkRecord {
                digest: ChunkDigest::of(b"x"),
                stored: false,
            },
        );
        assert!(matches!(
            check_stop(4, &chunks),
            Err(Error::MissingChunks { .. })
        ));
        chunks.get_mut(&2).unwrap().stored = true;
        assert!(check_stop(4, &chunks).is_ok());
        match check_stop(3, &chunks) {
            Err(Error::ChunkCountMismatch { beyond, .. }) => assert_eq!(beyond, [3]),
            other => panic!("{other:?}"),
        }
    }
}
