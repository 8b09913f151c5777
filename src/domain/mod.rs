//! The domain core: identifiers, the recording state machine, the object key scheme and the
//! chunk rules. Pure values, validated on construction; no I/O happens in this module.

mod chunk;
mod id;
mod key;
mod media;
mod output;
mod owner;
mod rate;
mod state;
mod token;

pub use chunk::{
    ChunkDigest, ChunkHasher, ChunkIndex, ChunkRecord, Indexing, Sha256Checksum, check_stop,
};
pub use id::RecordingId;
pub use key::ObjectKey;
pub use media::{Container, MediaType, PATTERN as MIME_TYPE_PATTERN};
pub use output::OutputFormat;
pub use owner::{
    MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS,
    Metadata, NO_CONTROLS_PATTERN, Owner, Subject, Tenant,
};
pub use rate::{Rate, gcra};
pub use state::RecordingState;
pub use token::{TokenHash, UploadToken};

/// Whether `a` and `b` are equal, in time that depends on their lengths only.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a.len() ^ b.len()
        | a.iter()
            .zip(b)
            .fold(0usize, |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}

/// Fill `buf` from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}
