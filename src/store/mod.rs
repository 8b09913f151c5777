//! The object store port: where chunk and output bytes live. S3 (any S3 API server) or a local
//! directory. Keys are always [`ObjectKey`]s, so nothing unvalidated reaches a bucket or a path.

mod fs;
mod s3;
mod signed;

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use self::fs::FsStore;
pub use self::s3::{S3Settings, S3Store};
pub use self::signed::{SignedOp, Terms, UrlSigner};
use crate::domain::{ChunkDigest, ObjectKey, Sha256Checksum};
use crate::error::Result;

/// An object's bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// The SHA-256 (hex) its writer recorded in the object's metadata, when it did.
    pub sha256: Option<String>,
}

/// An object found by [`ObjectStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// What a presigned URL lets its holder do.
#[derive(Clone, Copy, Debug)]
pub enum Presign<'a> {
    /// Upload the object's bytes with an HTTP PUT; when given, only a body of `size` bytes
    /// whose SHA-256 is `sha256`, sent with it as `x-amz-checksum-sha256` (and recorded in the
    /// object's metadata, as [`ObjectStore::put_new`] records it).
    Put {
        size: Option<u64>,
        sha256: Option<&'a Sha256Checksum>,
    },
    /// Download the object, served as an attachment called `file_name`.
    Get {
        file_name: &'a str,
        content_type: &'a str,
    },
}

#[derive(Clone, Debug)]
pub struct PresignedUrl {
    pub url: String,
    pub method: &'static str,
    pub expires_at: SystemTime,
    /// Headers the request must carry as they are (they are part of the signature).
    pub headers: Vec<(String, String)>,
}

/// A multipart upload in progress: parts (1-based numbers) are byte ranges of a local file,
/// sent in any order and replaced when sent again; nothing is visible until `complete`.
#[async_trait]
pub trait PartUpload: Send + Sync {
    async fn part(&self, number: u32, path: &Path, offset: u64, len: u64) -> Result<()>;
    async fn complete(self: Box<Self>) -> Result<()>;
    async fn abort(self: Box<Self>);
}

/// The metadata name under which a chunk's SHA-256 (hex) is kept: `x-amz-meta-sha256`.
pub const SHA256_METADATA: &str = "sha256";

/// Size of every part but the last (S3 needs at least 5 MiB).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Store `body` under `key`, replacing what was there. Readers never see a partial object.
    async fn put(&self, key: &ObjectKey, body: Bytes, content_type: &str) -> Result<()>;

    /// Store a chunk under `key` unless something is there already, with its digest in the
    /// object's metadata (`x-amz-meta-sha256`): S3's `If-None-Match: *`. `Ok(None)` when it was
    /// stored; `Ok(Some(info))`, and nothing written, when an object was there. (A server that
    /// ignores `If-None-Match` replaces it instead; see docs/architecture.md for which do.)
    async fn put_new(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        digest: &ChunkDigest,
    ) -> Result<Option<ObjectInfo>>;

    /// Every object whose key begins with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        self.list_from(prefix, None, None).await
    }

    /// The objects whose key begins with `prefix` and comes after `after`, in key order, at
    /// most `max` of them.
    async fn list_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<Listed>>;

    /// Stream an object's bytes; `Error::NotFound` when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream>;

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>>;

    /// Remove an object; removing a missing one succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<()>;

    /// Start a multipart upload to `key`.
    async fn begin_upload(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<Box<dyn PartUpload>>;

    /// Abort the multipart uploads (and, for a directory, the temp files) begun more than
    /// `age` ago and never completed. Returns how many.
    async fn abort_stale_uploads(&self, age: Duration) -> Result<u32>;

    /// A URL that lets a browser read or write one object directly, for `ttl`.
    async fn presign(
        &self,
        key: &ObjectKey,
        op: Presign<'_>,
        ttl: Duration,
    ) -> Result<PresignedUrl>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}

/// Read a whole object into memory (chunks are bounded by the chunk size limit). With its
/// expected length, the buffer is allocated once and each received buffer copied once.
pub async fn read_all(
    store: &dyn ObjectStore,
    key: &ObjectKey,
    expected_len: Option<u64>,
) -> Result<Bytes> {
    collect(store.get(key).await?, expected_len.unwrap_or(0)).await
}

/// All of a stream's bytes, in one buffer of at least `capacity`.
pub async fn collect(mut stream: ByteStream, capacity: u64) -> Result<Bytes> {
    use futures::StreamExt;
    let mut out = bytes::BytesMut::with_capacity(capacity as usize);
    while let Some(part) = stream.next().await {
        out.extend_from_slice(&part?);
    }
    Ok(out.freeze())
}
