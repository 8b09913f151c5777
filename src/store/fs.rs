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
    ByteStream, Listed, ObjectInfo, ObjectStore, PartUpload, Presign, PresignedUrl, SignedOp,
    Terms, UrlSigner,
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

    /// Where an object's metadata (its SHA-256, hex) is kept: beside the tree of objects.
    fn meta_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(".meta").join(key.as_str())
    }

    /// Move a finished temp file into place with its digest. With `replace` false, an object
    /// already there stays, its digest too, and `false` is returned (a hard link, which cannot
    /// replace, is the filesystem's `If-None-Match: *`); the digest is recorded only once the
    /// link is made, so the loser of a race never relabels the winner's bytes. Until it is,
    /// the object has no recorded digest and readers hash it.
    async fn publish(
        &self,
        tmp: &Path,
        key: &ObjectKey,
        digest: &ChunkDigest,
        replace: bool,
    ) -> Result<bool> {
        let dest = self.path(key);
        let meta = self.meta_path(key);
        for dir in [dest.parent(), meta.parent()].into_iter().flatten() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_err("creating", dir, e))?;
        }
        if replace {
            self.record_digest(&meta, digest).await?;
            return tokio::fs::rename(tmp, &dest)
                .await
                .map(|()| true)
                .map_err(|e| io_err("renaming into", &dest, e));
        }
        let linked = tokio::fs::hard_link(tmp, &dest).await;
        let _ = tokio::fs::remove_file(tmp).await;
        match linked {
            Ok(()) => self.record_digest(&meta, digest).await.map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("linking into", &dest, e)),
        }
    }

    async fn record_digest(&self, meta: &Path, digest: &ChunkDigest) -> Result<()> {
        let meta_tmp = self.temp_path();
        tokio::fs::write(&meta_tmp, &digest.sha256)
            .await
            .map_err(|e| io_err("writing", &meta_tmp, e))?;
        tokio::fs::rename(&meta_tmp, meta)
            .await
            .map_err(|e| io_err("renaming into", meta, e))
    }

    /// Write an object from a stream of bytes, refusing more than `max` bytes. Used by the
    /// signed-PUT route, so a browser's upload lands exactly as a presigned S3 PUT would.
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        body: impl futures::Stream<Item = Result<Bytes>> + Unpin + Send,
        max: u64,
        check: impl FnOnce(&ChunkDigest) -> Result<()>,
    ) -> Result<u64> {
        let (tmp, digest) = self.write_temp(body, max, check).await?;
        self.publish(&tmp, key, &digest, true).await?;
        Ok(digest.size)
    }

    /// Write a stream to a temp file, hashed as it goes and checked by `check` at its end.
    async fn write_temp(
        &self,
        mut body: impl futures::Stream<Item = Result<Bytes>> + Unpin + Send,
        max: u64,
        check: impl FnOnce(&ChunkDigest) -> Result<()>,
    ) -> Result<(PathBuf, ChunkDigest)> {
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
            Ok(digest)
        }
        .await;
        match result {
            Ok(digest) => Ok((tmp, digest)),
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

/// The objects under `dir` (a directory of the tree rooted at `root`), recursively, keyed by
/// their path from `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<Listed>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if let Ok(rel) = entry.path().strip_prefix(root) {
            out.push(Listed {
                key: rel
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/"),
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(())
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

    async fn put_new(
        &self,
        key: &ObjectKey,
        body: Bytes,
        _content_type: &str,
        _digest: &ChunkDigest,
    ) -> Result<Option<ObjectInfo>> {
        let max = body.len() as u64;
        let (tmp, digest) = self
            .write_temp(futures::stream::iter([Ok(body)]), max, |_| Ok(()))
            .await?;
        if self.publish(&tmp, key, &digest, false).await? {
            return Ok(None);
        }
        self.head(key)
            .await?
            .map(Some)
            .ok_or_else(|| Error::Storage(format!("{key}: refused as existing, then not found")))
    }

    async fn list_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<Listed>> {
        // Walk from the deepest directory the prefix names; the hidden trees are not objects.
        let dir = self
            .root
            .join(&prefix[..prefix.rfind('/').map_or(0, |i| i + 1)]);
        let (root, wanted) = (self.root.clone(), prefix.to_owned());
        let after = after.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &dir, &mut out).map(|()| {
                out.retain(|l| {
                    l.key.starts_with(&wanted)
                        && !l.key.starts_with('.')
                        && after.as_ref().is_none_or(|a| l.key.as_str() > a.as_str())
                });
                out.sort_by(|a, b| a.key.cmp(&b.key));
                out.truncate(max.unwrap_or(usize::MAX));
                out
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("listing {prefix}: {e}")))?
        .map_err(|e| Error::Storage(format!("listing {prefix}: {e}")))
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
            Ok(m) => Ok(Some(ObjectInfo {
                size: m.len(),
                sha256: tokio::fs::read_to_string(self.meta_path(key)).await.ok(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading metadata of", &self.path(key), e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        for path in [self.path(key), self.meta_path(key)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &path, e)),
            }
        }
        Ok(())
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

    async fn abort_stale_uploads(&self, age: Duration) -> Result<u32> {
        let before = std::time::SystemTime::now() - age;
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(&self.tmp)
            .await
            .map_err(|e| io_err("listing", &self.tmp, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_err("listing", &self.tmp, e))?
        {
            let modified = entry.metadata().await.and_then(|m| m.modified());
            if modified.is_ok_and(|m| m < before)
                && tokio::fs::remove_file(entry.path()).await.is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::domain::{ChunkIndex, RecordingId};
    use crate::store::read_all;

    /// Writers racing to one chunk key: exactly one stores its bytes, every other is told what
    /// is there, and the recorded digest is the stored bytes' own.
    #[tokio::test]
    async fn racing_conditional_writes_keep_one_object_with_its_own_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            FsStore::open(dir.path(), UrlSigner::new([7u8; 32]), "http://x")
                .await
                .unwrap(),
        );
        for round in 0..20 {
            let key = ObjectKey::chunk(&RecordingId::generate(), ChunkIndex::new(round));
            let writers = (0..8u8).map(|w| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    let body = Bytes::from(vec![w; 1000 + usize::from(w)]);
                    let digest = ChunkDigest::of(&body);
                    store.put_new(&key, body, "video/webm", &digest).await
                })
            });
            let answers = futures::future::join_all(writers).await;
            let stored = answers.iter().filter(|a| matches!(a, Ok(Ok(None)))).count();
            assert_eq!(stored, 1, "round {round}: {answers:?}");
            let bytes = read_all(store.as_ref(), &key, None).await.unwrap();
            let info = store.head(&key).await.unwrap().unwrap();
            assert_eq!(info.sha256, Some(ChunkDigest::of(&bytes).sha256));
            for answer in answers {
                if let Some(there) = answer.unwrap().unwrap() {
                    assert_eq!(there.size, bytes.len() as u64);
                }
            }
        }
    }
}
