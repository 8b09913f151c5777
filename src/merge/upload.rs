//! Uploading the merged output while ffmpeg is still writing it. The Matroska/WebM muxer
//! appends clusters and, at the end, the Cues; the only bytes it rewrites are in the header
//! (Duration, SeekHead, Segment size). So every part but the first can go up as soon as the
//! file has grown past it, and the first goes last. Nothing relies on that blindly: each part's
//! CRC-32 is taken before it is sent and checked against the finished file, and a part that
//! changed is sent again before the upload completes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;
use tracing::debug;

use crate::error::{Error, Result};
use crate::store::{PART_SIZE, PartUpload};

/// Parts in flight while ffmpeg runs. Few: the chunk downloads that feed ffmpeg are the critical
/// path, and the storage serves them sooner when the upload does not compete; parts that fall
/// behind go after the remux (docs/architecture.md has the measurements).
const PARTS_DURING_REMUX: usize = 2;
/// Parts in flight once the file is finished, when nothing else waits on the storage.
const PARTS_AFTER_REMUX: usize = 4;
const POLL: Duration = Duration::from_millis(50);

pub struct GrowingUpload<'a> {
    upload: Box<dyn PartUpload>,
    path: &'a Path,
    /// CRC-32 of each part already sent, by 0-based part index.
    sent: BTreeMap<u64, u32>,
    /// The next part index `follow` will send.
    next: u64,
}

async fn file_len(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

/// CRC-32 of `len` bytes of `path` from `offset`, read in blocks on one blocking thread.
async fn crc_of(path: &Path, offset: u64, len: u64) -> Result<u32> {
    use std::io::{Read, Seek};
    let owned = path.to_owned();
    let crc = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&owned)?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        let mut f = f.take(len);
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finalize());
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("checksum task: {e}")))?;
    crc.map_err(|e: std::io::Error| Error::Storage(format!("{}: {e}", path.display())))
}

/// Send part `index` (bytes `index * PART_SIZE ..`, at most `PART_SIZE`) of a file of `len`.
async fn send(upload: &dyn PartUpload, path: &Path, index: u64, len: u64) -> Result<(u64, u32)> {
    let offset = index * PART_SIZE;
    let part_len = PART_SIZE.min(len - offset);
    let crc = crc_of(path, offset, part_len).await?;
    upload
        .part(index as u32 + 1, path, offset, part_len)
        .await?;
    Ok((index, crc))
}

impl<'a> GrowingUpload<'a> {
    pub fn new(upload: Box<dyn PartUpload>, path: &'a Path) -> Self {
        Self {
            upload,
            path,
            sent: BTreeMap::new(),
            next: 1,
        }
    }

    /// Send parts 2, 3, … while the file grows, until `done` becomes true. A part goes once the
    /// file extends a whole part beyond it, clear of the muxer's buffered tail.
    pub async fn follow(&mut self, mut done: watch::Receiver<bool>) -> Result<()> {
        let (upload, path) = (self.upload.as_ref(), self.path);
        let mut in_flight = FuturesUnordered::new();
        let mut sent = BTreeMap::new();
        let mut next = self.next;
        loop {
            let finished = *done.borrow();
            let len = file_len(path).await;
            while (next + 2) * PART_SIZE <= len && in_flight.len() < PARTS_DURING_REMUX {
                in_flight.push(send(upload, path, next, len));
                next += 1;
            }
            if finished {
                break;
            }
            tokio::select! {
                _ = done.changed() => {}
                () = tokio::time::sleep(POLL) => {}
                Some(part) = in_flight.next(), if !in_flight.is_empty() => {
                    let (index, crc) = part?;
                    sent.insert(index, crc);
                }
            }
        }
        while let Some(part) = in_flight.next().await {
            let (index, crc) = part?;
            sent.insert(index, crc);
        }
        drop(in_flight);
        self.sent.extend(sent);
        self.next = next;
        Ok(())
    }

    /// The file is finished: send the parts not sent yet and the first, and meanwhile check the
    /// parts already sent, sending again any that changed; then the upload is ready to complete.
    pub async fn finish(self) -> Result<Box<dyn PartUpload>> {
        let result = async {
            let len = file_len(self.path).await;
            let parts = len.div_ceil(PART_SIZE).max(1);
            if self.sent.keys().any(|i| *i >= parts) {
                return Err(Error::OutputInvalid(
                    "the output shrank while uploading".into(),
                ));
            }
            let (upload, path) = (self.upload.as_ref(), self.path);
            let after_remux = parts - self.next + 1;
            let sending = futures::stream::iter((self.next..parts).chain([0]))
                .map(|index| send(upload, path, index, len))
                .buffer_unordered(PARTS_AFTER_REMUX)
                .try_collect::<Vec<_>>();
            let rechecking = async {
                let mut resent = 0u32;
                for (index, crc) in &self.sent {
                    let offset = index * PART_SIZE;
                    if crc_of(path, offset, PART_SIZE.min(len - offset)).await? != *crc {
                        send(upload, path, *index, len).await?;
                        resent += 1;
                    }
                }
                Ok(resent)
            };
            let (_, resent) = tokio::try_join!(sending, rechecking)?;
            debug!(
                parts,
                after_remux, resent, "the output's last parts uploaded"
            );
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Ok(self.upload),
            Err(e) => {
                self.upload.abort().await;
                Err(e)
            }
        }
    }

    pub async fn abort(self) {
        self.upload.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ObjectKey, RecordingId};
    use crate::service::testing::fs_store;
    use crate::store::{FsStore, ObjectStore, read_all};

    /// `len` bytes that differ from part to part.
    fn bytes(len: u64, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i / 4093) as u8 ^ (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    async fn setup() -> (tempfile::TempDir, FsStore, ObjectKey) {
        let dir = tempfile::tempdir().unwrap();
        let store = fs_store(&dir.path().join("store")).await;
        let key = ObjectKey::output(&RecordingId::generate(), crate::domain::Container::WebM);
        (dir, store, key)
    }

    /// Follow a file that has grown to `len`, as if the remux ended there.
    async fn follow_to<'p>(
        store: &FsStore,
        key: &ObjectKey,
        path: &'p Path,
        len: u64,
    ) -> GrowingUpload<'p> {
        std::fs::write(path, bytes(len, 0)).unwrap();
        let mut upload =
            GrowingUpload::new(store.begin_upload(key, "video/webm").await.unwrap(), path);
        let (_done, done_rx) = watch::channel(true);
        upload.follow(done_rx).await.unwrap();
        upload
    }

    #[tokio::test]
    async fn parts_changed_after_they_were_sent_are_sent_again() {
        let (dir, store, key) = setup().await;
        let path = dir.path().join("out.webm");
        let upload = follow_to(&store, &key, &path, PART_SIZE * 9 / 2).await;
        assert_eq!(upload.sent.keys().copied().collect::<Vec<_>>(), [1, 2]);
        // What the muxer does at the end (the header), what it must not do but is caught
        // (a sent part rewritten), and the rest of the file.
        let mut file = bytes(PART_SIZE * 9 / 2, 0);
        file[10] ^= 0xff;
        file[(PART_SIZE + 5) as usize] ^= 0xff;
        file.extend(bytes(PART_SIZE * 2, 9));
        std::fs::write(&path, &file).unwrap();
        upload.finish().await.unwrap().complete().await.unwrap();
        assert!(read_all(&store, &key, None).await.unwrap() == file);
    }

    #[tokio::test]
    async fn an_output_that_shrank_below_a_sent_part_is_refused() {
        let (dir, store, key) = setup().await;
        let path = dir.path().join("out.webm");
        let upload = follow_to(&store, &key, &path, PART_SIZE * 4).await;
        std::fs::write(&path, bytes(PART_SIZE * 2, 0)).unwrap();
        let e = upload.finish().await.err().expect("refused");
        assert_eq!(e.code(), "output_invalid");
        assert!(store.head(&key).await.unwrap().is_none());
    }
}
