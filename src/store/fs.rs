//! Filesystem object store for the embedded mode: one file per object under a root directory,
//! written atomically (temp file, fsync, rename), with app-served signed URLs in place of
//! presigned ones.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{
    ByteStream, ObjectInfo, ObjectStore, PartUpload, Presign, PresignedUrl, SignedOp, Terms,
    UrlSigner,
};
use crate::domain::{ChunkDigest, ChunkHasher, ObjectKey, Sha256Checksum};
use crate::error::{Error, Result};

pub struct FsStore {
    root: PathBuf,
    tmp: PathBuf,
    signer: UrlSigner,
    base_url: String,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

impl FsStore {
    /// Open (creating) a store rooted at `root`. `base_url` is where this app is reachable, for
    /// the signed URLs it hands out.
    pub async fn open(root: impl Into<PathBuf>, signer: UrlSigner, base_url: &str) -> Result<Self> {
        let root = root.into();
        let tmp = root.join(".tmp");
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io_err("creating", &tmp, e))?;
        Ok(Self {
            root,
            tmp,
            signer,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn temp_path(&self) -> PathBuf {
        self.tmp
            .join(hex::encode(crate::domain::random_bytes::<12>()))
    }

    /// Move a finished temp file into place.
    async fn publish(&self, tmp: &Path, key: &ObjectKey) -> Result<()> {
        let dest = self.path(key);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err("creating", dir, e))?;
        }
        tokio::fs::rename(tmp, &dest)
            .await
            .map_err(|e| io_err("renaming into", &dest, e))
    }

    /// Write an object from a stream of bytes, refusing more than `max` bytes. Used by the
    /// signed-PUT route, so a browser's upload lands exactly as a presigned S3 PUT would.
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: impl futures::Stream<Item = Result<Bytes>> + Unpin + Send,
        max: u64,
        check: impl FnOnce(&ChunkDigest) -> Result<()>,
    ) -> Result<u64> {
        let tmp = self.temp_path();
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_err("creating", &tmp, e))?;
            let mut hasher = ChunkHasher::default();
            while let Some(part) = body.next().await {
                let part = part?;
                hasher.update(&part);
                if hasher.size() > max {
                    return Err(Error::ChunkTooLarge { max });
                }
                file.write_all(&part)
                    .await
                    .map_err(|e| io_err("writing", &tmp, e))?;
            }
            let digest = hasher.finish();
            check(&digest)?;
            file.sync_data()
                .await
                .map_err(|e| io_err("syncing", &tmp, e))?;
            Ok(digest.size)
        }
        .await;
        match result {
            Ok(n) => {
                self.publish(&tmp, key).await?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Open an object for reading, with its size (for ranged responses).
    pub async fn open_read(&self, key: &ObjectKey) -> Result<(tokio::fs::File, u64)> {
        let path = self.path(key);
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| io_err("reading metadata of", &path, e))?
            .len();
        Ok((file, size))
    }
}

/// A multipart upload into the filesystem store: parts are written at their offsets into a temp
/// file that is renamed into place on completion.
struct FsUpload {
    tmp: PathBuf,
    dest: PathBuf,
}

#[async_trait]
impl PartUpload for FsUpload {
    async fn part(&self, _number: u32, path: &Path, offset: u64, len: u64) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut src = tokio::fs::File::open(path)
            .await
            .map_err(|e| io_err("opening", path, e))?;
        src.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io_err("seeking", path, e))?;
        let mut dst = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&self.tmp)
            .await
            .map_err(|e| io_err("opening", &self.tmp, e))?;
        dst.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| io_err("seeking", &self.tmp, e))?;
        tokio::io::copy(&mut src.take(len), &mut dst)
            .await
            .map_err(|e| io_err("writing", &self.tmp, e))?;
        dst.flush()
            .await
            .map_err(|e| io_err("writing", &self.tmp, e))
    }

    async fn complete(self: Box<Self>) -> Result<()> {
        if let Some(dir) = self.dest.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err("creating", dir, e))?;
        }
        tokio::fs::rename(&self.tmp, &self.dest)
            .await
            .map_err(|e| io_err("renaming into", &self.dest, e))
    }

    async fn abort(self: Box<Self>) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn put(&self, key: &ObjectKey, body: Bytes, _content_type: &str) -> Result<()> {
        let max = body.len() as u64;
        self.put_stream(key, futures::stream::iter([Ok(body)]), max, |_| Ok(()))
            .await
            .map(|_| ())
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let (file, _) = self.open_read(key).await?;
        let path = self.path(key);
        Ok(ReaderStream::with_capacity(file, 256 * 1024)
            .map(move |r| r.map_err(|e| io_err("reading", &path, e)))
            .boxed())
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) => Ok(Some(ObjectInfo { size: m.len() })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading metadata of", &self.path(key), e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &self.path(key), e)),
        }
    }

    async fn begin_upload(
        &self,
        key: &ObjectKey,
        _content_type: &str,
    ) -> Result<Box<dyn PartUpload>> {
        let tmp = self.temp_path();
        tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err("creating", &tmp, e))?;
        Ok(Box::new(FsUpload {
            tmp,
            dest: self.path(key),
        }))
    }

    async fn presign(
        &self,
        key: &ObjectKey,
        op: Presign<'_>,
        ttl: Duration,
    ) -> Result<PresignedUrl> {
        let (op, method, terms) = match op {
            Presign::Put { size, sha256 } => (
                SignedOp::Put,
                "PUT",
                Terms {
                    size,
                    sha256: sha256.map(Sha256Checksum::hex),
                    ..Terms::default()
                },
            ),
            Presign::Get { file_name, .. } => (
                SignedOp::Get,
                "GET",
                Terms {
                    name: file_name.to_owned(),
                    ..Terms::default()
                },
            ),
        };
        let (query, expires_at) = self.signer.sign(op, key, ttl, &terms);
        let headers = terms
            .checksum()?
            .map(|c| ("x-amz-checksum-sha256".to_owned(), c.base64()))
            .into_iter()
            .collect();
        Ok(PresignedUrl {
            url: format!("{}/files/{}?{query}", self.base_url, key.as_str()),
            method,
            expires_at,
            headers,
        })
    }

    async fn ping(&self) -> Result<()> {
        tokio::fs::metadata(&self.tmp)
            .await
            .map(|_| ())
            .map_err(|e| io_err("checking", &self.tmp, e))
    }
}
