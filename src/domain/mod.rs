//! The domain core: identifiers, the recording state machine, the object key scheme and the
//! chunk rules. Pure values, validated on construction; no I/O happens in this module.

mod chunk;
mod id;
mod key;
mod media;
mod state;
mod token;

pub use chunk::{
    ChunkDigest, ChunkHasher, ChunkIndex, ChunkRecord, Indexing, Sha256Checksum, check_stop,
};
pub use id::RecordingId;
pub use key::ObjectKey;
pub use media::{Container, MediaType};
pub use state::RecordingState;
pub use token::{TokenHash, UploadToken};

/// Fill `buf` from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}
