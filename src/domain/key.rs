use super::{ChunkIndex, Container, Owner, RecordingId};
use crate::error::{Error, Result};

const PREFIX: &str = "recordings/";
/// Chunks live under their own top-level prefix: S3 lifecycle filters take no wildcard, so one
/// rule on `chunks/` can expire orphaned chunks sooner than the recordings they belong to.
const CHUNKS: &str = "chunks/";
/// One empty object per unfinished recording, so that the sweeper finds them with a listing of
/// their own (the ready and failed ones, which are most, are not in it).
const ACTIVE: &str = "active/";
/// The listings: one empty object per recording under its tenant, and one under its owner when
/// it has one, named so that a listing comes newest first.
const TENANTS: &str = "tenants/";

/// An object key in the store. Only built from validated parts, or parsed back from a string that
/// has exactly one of these shapes:
///
/// ```text
/// chunks/{id}/{index:08}
/// recordings/{id}/manifest.json
/// recordings/{id}/output.{webm|mkv|mp4}
/// recordings/{id}/poster.jpg
/// active/{id}
/// tenants/{tenant}/all/{rev}-{id}              (rev: u64::MAX - the id's ms, 16 hex digits;
/// tenants/{tenant}/owners/{owner}/{rev}-{id}    tenant, owner: hashes of their names)
/// tenants/{tenant}/active/{owner or -}/{id}     (an owner's unfinished recordings)
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

    /// Where `caller`'s recordings are listed: its owner's listing when it speaks for one
    /// owner, else its tenant's.
    pub fn listing_prefix(caller: &Owner) -> String {
        let tenant = caller.tenant.key_part();
        match &caller.subject {
            Some(subject) => format!("{TENANTS}{tenant}/owners/{}/", subject.key_part()),
            None => format!("{TENANTS}{tenant}/all/"),
        }
    }

    /// Where an owner's unfinished recordings are marked (counted for `MAX_ACTIVE_RECORDINGS`).
    pub fn owner_active_prefix(owner: &Owner) -> String {
        let subject = owner.subject.as_ref().map_or("-".into(), |s| s.key_part());
        format!("{TENANTS}{}/active/{subject}/", owner.tenant.key_part())
    }

    /// The markers of an unfinished recording: the sweeper's, and its owner's.
    pub fn actives(owner: &Owner, id: &RecordingId) -> [Self; 2] {
        [
            Self::active(id),
            Self(format!("{}{id}", Self::owner_active_prefix(owner))),
        ]
    }

    /// A recording's entries in the listings of its tenant and of its owner, ordered by the
    /// time in its id, newest first.
    pub fn listings(owner: &Owner, id: &RecordingId) -> Vec<Self> {
        let name = format!("{:016x}-{id}", u64::MAX - id.created_ms());
        let mut keys = vec![Self(format!(
            "{}{name}",
            Self::listing_prefix(&Owner {
                tenant: owner.tenant.clone(),
                subject: None,
            })
        ))];
        if owner.subject.is_some() {
            keys.push(Self(format!("{}{name}", Self::listing_prefix(owner))));
        }
        keys
    }

    /// The recording of a listing entry's name (what follows its prefix), which is also the
    /// cursor a page of the listing ends with; `None` for anything else.
    pub fn listed(name: &str) -> Option<RecordingId> {
        let (rev, id) = name.split_once('-')?;
        if rev.len() != 16 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        RecordingId::parse(id).ok()
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

    /// A throwaway object `screenrec doctor` writes, reads and deletes to check the storage.
    pub fn probe() -> Self {
        Self(format!(
            "doctor/{}",
            hex::encode(super::random_bytes::<8>())
        ))
    }

    /// The merged video's poster image.
    pub fn poster(id: &RecordingId) -> Self {
        Self(format!("{PREFIX}{id}/poster.jpg"))
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
        } else if tail == "poster.jpg" {
            Self::poster(&id)
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
    fn listings_come_newest_first_under_hashed_names() {
        use crate::domain::{Subject, Tenant};
        let owner = Owner {
            tenant: Tenant::parse("../acme").unwrap(),
            subject: Some(Subject::parse("alice/../x").unwrap()),
        };
        let older = ObjectKey::listings(&owner, &id());
        let newer_id = RecordingId::from_parts(1_700_000_000_001, [7; 10]);
        let newer = ObjectKey::listings(&owner, &newer_id);
        assert_eq!(older.len(), 2);
        assert!(newer[0].as_str() < older[0].as_str() && newer[1].as_str() < older[1].as_str());
        let tenant_wide = Owner {
            subject: None,
            ..owner.clone()
        };
        assert!(
            older[0]
                .as_str()
                .starts_with(&ObjectKey::listing_prefix(&tenant_wide))
        );
        assert!(
            older[1]
                .as_str()
                .starts_with(&ObjectKey::listing_prefix(&owner))
        );
        for key in &older {
            assert!(!key.as_str().contains(".."), "{key}");
            let name = key.file_name();
            assert_eq!(ObjectKey::listed(name), Some(id()));
        }
        assert_eq!(ObjectKey::listed("zz-x"), None);
        assert_eq!(
            ObjectKey::listed(&format!("{}-{}", "0".repeat(15), id())),
            None
        );
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
            ObjectKey::poster(&id()),
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
