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
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;
use tracing::debug;

use crate::error::{Error, Result};
use crate::store::{PART_SIZE, PartUpload};

const PARTS_IN_FLIGHT: usize = 4;
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

/// CRC-32 of `len` bytes of `path` from `offset`, read in blocks.
async fn crc_of(path: &Path, offset: u64, len: u64) -> Result<u32> {
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(io)?;
    let mut f = f.take(len);
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize())
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
            while (next + 2) * PART_SIZE <= len && in_flight.len() < PARTS_IN_FLIGHT {
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

    /// The file is finished: send the parts not sent yet, the ones that changed since they were
    /// sent, and the first; then the upload is ready to complete.
    pub async fn finish(self) -> Result<Box<dyn PartUpload>> {
        let result = async {
            let len = file_len(self.path).await;
            let parts = len.div_ceil(PART_SIZE).max(1);
            if self.sent.keys().any(|i| *i >= parts) {
                return Err(Error::OutputInvalid(
                    "the output shrank while uploading".into(),
                ));
            }
            let mut todo: Vec<u64> = (self.next..parts).collect();
            todo.push(0);
            for (index, crc) in &self.sent {
                let offset = index * PART_SIZE;
                if crc_of(self.path, offset, PART_SIZE.min(len - offset)).await? != *crc {
                    todo.push(*index);
                }
            }
            debug!(
                parts = parts,
                after_remux = todo.len(),
                resent = todo.len() as u64 - (parts - self.next) - 1,
                "uploading the output's last parts"
            );
            let (upload, path) = (self.upload.as_ref(), self.path);
            futures::stream::iter(todo)
                .map(|index| send(upload, path, index, len))
                .buffer_unordered(PARTS_IN_FLIGHT)
                .try_collect::<Vec<_>>()
                .await
        }
        .await;
        match result {
            Ok(_) => Ok(self.upload),
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
