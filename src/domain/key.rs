use super::{ChunkIndex, Container, RecordingId};
use crate::error::{Error, Result};

const PREFIX: &str = "recordings/";
/// Chunks live under their own top-level prefix: S3 lifecycle filters take no wildcard, so one
/// rule on `chunks/` can expire orphaned chunks sooner than the recordings they belong to.
const CHUNKS: &str = "chunks/";
/// One empty object per unfinished recording, so that the sweeper finds them with a listing of
/// their own (the ready and failed ones, which are most, are not in it).
const ACTIVE: &str = "active/";

/// An object key in the store. Only built from validated parts, or parsed back from a string that
/// has exactly one of these shapes:
///
/// ```text
/// chunks/{id}/{index:08}
/// recordings/{id}/manifest.json
/// recordings/{id}/output.{webm|mkv|mp4}
/// active/{id}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn chunk(id: &RecordingId, index: ChunkIndex) -> Self {
        Self(format!("{CHUNKS}{id}/{:08}", index.get()))
    }

    pub fn chunks_prefix(id: &RecordingId) -> String {
        format!("{CHUNKS}{id}/")
    }

    /// The prefix of every manifest and output.
    pub const RECORDINGS_PREFIX: &str = PREFIX;
    /// The prefix of every chunk.
    pub const CHUNKS_PREFIX: &str = CHUNKS;
    /// The prefix of the unfinished recordings' markers.
    pub const ACTIVE_PREFIX: &str = ACTIVE;

    /// The marker of an unfinished recording.
    pub fn active(id: &RecordingId) -> Self {
        Self(format!("{ACTIVE}{id}"))
    }

    /// The recording a listed key belongs to, whatever its shape.
    pub fn recording_of(key: &str) -> Option<RecordingId> {
        let rest = [CHUNKS, PREFIX, ACTIVE]
            .iter()
            .find_map(|p| key.strip_prefix(p))?;
        RecordingId::parse(rest.split('/').next()?).ok()
    }

    /// The prefix of everything under a recording's own directory (manifest, output).
    pub fn recording_prefix(id: &RecordingId) -> String {
        format!("{PREFIX}{id}/")
    }

    pub fn manifest(id: &RecordingId) -> Self {
        Self(format!("{PREFIX}{id}/manifest.json"))
    }

    pub fn output(id: &RecordingId, container: Container) -> Self {
        Self(format!("{PREFIX}{id}/output.{}", container.extension()))
    }

    /// Parse a key that arrived from outside (a signed file URL). Anything that is not one of the
    /// shapes above is refused, so no `..`, no absolute path and no stray file name gets through.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(id) = s.strip_prefix(ACTIVE) {
            return Ok(Self::active(&RecordingId::parse(id)?));
        }
        let (is_chunk, rest) = match s.strip_prefix(CHUNKS) {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix(PREFIX).ok_or(Error::NotFound)?),
        };
        let (id, tail) = rest.split_once('/').ok_or(Error::NotFound)?;
        let id = RecordingId::parse(id)?;
        let key = if is_chunk {
            let index = tail;
            if index.len() != 8 || !index.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::NotFound);
            }
            let n: u32 = index.parse().map_err(|_| Error::NotFound)?;
            Self::chunk(&id, ChunkIndex::new(n))
        } else if tail == "manifest.json" {
            Self::manifest(&id)
        } else if let Some(ext) = tail.strip_prefix("output.") {
            Self::output(&id, Container::from_extension(ext).ok_or(Error::NotFound)?)
        } else {
            return Err(Error::NotFound);
        };
        if key.0 == s {
            Ok(key)
        } else {
            Err(Error::NotFound)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The index of a chunk's key (`chunks/{id}/{index:08}`).
    pub fn chunk_index(&self) -> Option<ChunkIndex> {
        let index = self.0.strip_prefix(CHUNKS)?.split_once('/')?.1;
        index.parse().ok().map(ChunkIndex::new)
    }

    /// The last path segment, e.g. `output.webm`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> RecordingId {
        RecordingId::from_parts(1_700_000_000_000, [7; 10])
    }

    #[test]
    fn keys_carry_the_index_and_round_trip() {
        let k = ObjectKey::chunk(&id(), ChunkIndex::new(42));
        assert_eq!(k.as_str(), format!("chunks/{}/00000042", id()));
        assert_eq!(k.chunk_index(), Some(ChunkIndex::new(42)));
        assert_eq!(ObjectKey::manifest(&id()).chunk_index(), None);
        for key in [
            k,
            ObjectKey::manifest(&id()),
            ObjectKey::output(&id(), Container::Mp4),
            ObjectKey::active(&id()),
        ] {
            assert_eq!(ObjectKey::parse(key.as_str()).unwrap(), key);
            assert_eq!(ObjectKey::recording_of(key.as_str()), Some(id()));
        }
    }

    #[test]
    fn foreign_keys_are_refused() {
        let id = id();
        for bad in [
            format!("chunks/{id}/42"),
            format!("chunks/{id}/0000004a"),
            format!("recordings/{id}/chunks/00000042"),
            format!("chunks/{id}/manifest.json"),
            format!("recordings/{id}/../secret"),
            format!("recordings/{id}/output.exe"),
            format!("/recordings/{id}/manifest.json"),
            "recordings/../../etc/passwd".to_string(),
            "etc/passwd".to_string(),
            format!("active/{id}/x"),
            "active/../../etc".to_string(),
        ] {
            assert!(ObjectKey::parse(&bad).is_err(), "{bad}");
        }
    }
}
