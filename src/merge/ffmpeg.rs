//! Running the bundled ffmpeg: the remux (chunks streamed into stdin, or the concat demuxer for
//! restart-style recordings), which also lists every packet it writes, and the description of
//! the output, all with `-c copy`.

use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tracing::debug;

use super::frames::{Accounting, Inventory};
use super::plan::{
    Format, FramecrcReport, Layout, Output, output, output_container, parse_duration, stream_codec,
};
use super::salvage::{Lost, Salvage, with_gaps};
use super::source::ChunkSource;
use crate::domain::{Container, OutputFormat};
use crate::error::{Error, Result};
use crate::store::ByteStream;

/// Chunks requested ahead of the one being written, and how much of each is read into memory
/// while it waits its turn; the rest of it is read as it is written. The requests hide storage
/// latency and overlap the transfers, while memory stays bounded (at most
/// `PREFETCH * READ_AHEAD` bytes) whatever the chunks' size or the recording's length.
const PREFETCH: usize = 8;
const READ_AHEAD: usize = 1 << 20;
/// Bytes enough to tell whether a chunk begins with a file header.
const PROBE_BYTES: usize = 8;
const STDERR_LINES: usize = 30;

/// Where the bundled ffmpeg is looked for when `FFMPEG_PATH` is unset: the install location of
/// `infra/ffmpeg/install.sh`, then the Lambda layer's.
pub fn bundled_candidates() -> Vec<PathBuf> {
    let tools = std::env::var_os("SCREENREC_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/screenrec-tools"));
    vec![
        tools.join("ffmpeg/ffmpeg"),
        PathBuf::from("/opt/bin/ffmpeg"),
    ]
}

#[derive(Clone, Debug)]
pub struct Ffmpeg {
    path: PathBuf,
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Ffmpeg {
    /// The override if given (it must exist), else the bundled binary.
    pub fn locate(override_path: Option<&Path>) -> Result<Self> {
        if let Some(p) = override_path {
            return if is_executable(p) {
                Ok(Self { path: p.to_owned() })
            } else {
                Err(Error::FfmpegMissing(format!(
                    "FFMPEG_PATH={} is not an executable file",
                    p.display()
                )))
            };
        }
        let candidates = bundled_candidates();
        candidates
            .iter()
            .find(|p| is_executable(p))
            .map(|p| Self { path: p.clone() })
            .ok_or_else(|| {
                Error::FfmpegMissing(format!(
                    "no bundled ffmpeg at {}; run infra/ffmpeg/install.sh or set FFMPEG_PATH",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.args(["-hide_banner", "-nostdin"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// What the merged video is, measured from the output file itself.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    pub container: &'static str,
    pub content_type: &'static str,
    pub layout: &'static str,
    pub duration_s: f64,
    pub size_bytes: u64,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Merged by salvage, leaving out what is in `lost`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub salvaged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Vec<Lost>>,
}

pub struct Merged {
    pub path: PathBuf,
    pub container: Container,
    pub info: OutputInfo,
}

fn muxer(c: Container) -> &'static str {
    match c {
        Container::WebM => "webm",
        Container::Matroska => "matroska",
        Container::Mp4 => "mp4",
    }
}

pub fn content_type(c: Container) -> &'static str {
    match c {
        Container::WebM => "video/webm",
        Container::Matroska => "video/x-matroska",
        Container::Mp4 => "video/mp4",
    }
}

/// What the first chunks say about a recording, and the chunks already read to say it.
pub struct Prepared {
    pub format: Format,
    pub layout: Layout,
    /// What the merge writes.
    pub output: Output,
    /// The recording's own container (its chunks' files, when each is one).
    native: Container,
    /// Merge what can be merged, leaving damaged or missing stretches out.
    pub salvage: bool,
    head: Vec<Bytes>,
}

/// Bytes of the first chunks read before deciding: a recorder may end its first blob a byte
/// into the file header (Chromium has been seen to), so the header can span chunks.
const HEAD_BYTES: usize = 4096;

/// Read the first chunks (at least two, and at least [`HEAD_BYTES`] when there are enough) and
/// decide the format, the layout and the output (as `asked`). A salvage reads no further than
/// the first chunk that is missing or changed.
pub async fn prepare(
    source: &dyn ChunkSource,
    salvage: bool,
    asked: OutputFormat,
) -> Result<Prepared> {
    let count = source.count();
    if count == 0 {
        return Err(Error::MissingChunks {
            count: 0,
            missing_total: 0,
            missing: vec![],
        });
    }
    let mut head = vec![source.fetch(0).await?];
    while (head.len() as u32) < count
        && (head.len() < 2 || head.iter().map(Bytes::len).sum::<usize>() < HEAD_BYTES)
    {
        match source.fetch(head.len() as u32).await {
            Ok(chunk) => head.push(chunk),
            Err(e) if salvage && e.is_bad_chunk() => break,
            Err(e) => return Err(e),
        }
    }
    let joined = head.concat();
    let format = Format::sniff(&joined)?;
    let layout = Layout::detect(format, head.get(1).map(|b| &b[..]));
    if !salvage {
        for (i, chunk) in head.iter().enumerate().skip(2) {
            layout.check_chunk(format, i as u32, chunk)?;
        }
    }
    Ok(Prepared {
        format,
        layout,
        output: output(format, &joined, asked)?,
        native: output_container(format, &joined),
        salvage,
        head,
    })
}

/// What a remux took in and wrote: the frames counted in the input as it streamed to ffmpeg,
/// and the listing of every packet written (a second, `framecrc` output of the same ffmpeg
/// run), from which [`describe`] checks the output without reading it back.
pub struct Remuxed {
    pub inventory: Inventory,
    pub packets: FramecrcReport,
    /// A salvage: what was left out (possibly nothing).
    pub lost: Option<Vec<Lost>>,
    listing: PathBuf,
}

impl Remuxed {
    /// The presentation times of `stream`'s packets, sorted, in seconds from its first: read
    /// again from the listing, to tell where an output that lacks frames parted from its input.
    async fn times(&self, stream: usize) -> Result<Vec<f64>> {
        let text = tokio::fs::read_to_string(&self.listing)
            .await
            .map_err(|e| Error::FfmpegFailed(format!("reading the packet listing: {e}")))?;
        let report = &self.packets.streams[stream];
        let mut times: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split(',').map(str::trim);
                let index = f.next()?.parse::<usize>().ok()?;
                let pts = f.nth(1)?.parse::<i64>().ok()?;
                (index == stream).then(|| report.offset_seconds(pts))
            })
            .collect();
        times.sort_by(f64::total_cmp);
        Ok(times)
    }

    /// The output holds every frame of the input: `frames_lost` naming the chunk otherwise.
    async fn check(&self) -> Result<()> {
        let Err(mismatch) = self.inventory.check(&self.packets) else {
            return Ok(());
        };
        let chunk = match mismatch.stream {
            Some(stream) => self
                .times(stream)
                .await
                .ok()
                .and_then(|times| self.inventory.parted_at(stream, &times)),
            None => None,
        };
        Err(Error::FramesLost {
            chunk,
            detail: mismatch.why,
        })
    }
}

/// Merge a recording's chunks into one seekable file at `out`, counting the frames that go in;
/// nothing is re-encoded unless `prepared.output` says so. `progress` receives whole percents as the output grows.
pub async fn remux(
    ffmpeg: &Ffmpeg,
    source: &dyn ChunkSource,
    prepared: Prepared,
    work: &Path,
    out: &Path,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<Remuxed> {
    let Prepared {
        format,
        layout,
        output,
        native,
        salvage,
        head,
    } = prepared;
    let mut cmd = ffmpeg.command();
    cmd.args(["-loglevel", "warning", "-progress", "pipe:1", "-nostats"]);
    let total = source.total_bytes();
    let listing = work.join("packets.framecrc");
    let (inventory, lost) = match layout {
        Layout::Timeslice => {
            // Byte concatenation into one remux: the chunks are one byte stream.
            cmd.args(["-f", format.demuxer(), "-i", "pipe:0"]);
            output_args(&mut cmd, output, out, &listing);
            if salvage {
                let feed = move |stdin| salvage_stream(source, format, head, stdin);
                let (inventory, lost) = run(cmd, total, progress, Some(feed)).await?;
                (inventory, Some(lost))
            } else {
                let feed = move |stdin| stream(source, format, head, stdin);
                (run(cmd, total, progress, Some(feed)).await?, None)
            }
        }
        Layout::Restart => {
            // Every chunk is a complete file with timestamps from 0: the concat demuxer.
            let files = Files {
                source,
                format,
                ext: native.extension(),
                work,
            };
            let (list_path, inventory, lost) = files.write(head, salvage).await?;
            cmd.args(["-f", "concat", "-safe", "0", "-i"])
                .arg(&list_path);
            output_args(&mut cmd, output, out, &listing);
            run::<_, _, ()>(cmd, total, progress, None::<fn(_) -> std::future::Ready<_>>).await?;
            (inventory, salvage.then_some(lost))
        }
    };
    let file = tokio::fs::File::open(&listing)
        .await
        .map_err(|e| Error::FfmpegFailed(format!("no packet listing: {e}")))?;
    let mut report = FramecrcReport::default();
    let mut lines = BufReader::new(file).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| Error::FfmpegFailed(format!("reading the packet listing: {e}")))?
    {
        report.feed(&line);
    }
    Ok(Remuxed {
        inventory,
        packets: report,
        lost,
        listing,
    })
}

/// Feed a timeslice recording's chunks to ffmpeg as one byte stream, as they arrive from
/// storage, counting their frames.
async fn stream(
    source: &dyn ChunkSource,
    format: Format,
    head: Vec<Bytes>,
    mut stdin: ChildStdin,
) -> Result<Inventory> {
    let mut accounting = Accounting::new(format, source.count());
    let first = head.len() as u32;
    // By value: each chunk is freed once written, not held to the end of the merge.
    for (i, bytes) in head.into_iter().enumerate() {
        accounting.feed(i as u32, &bytes)?;
        stdin.write_all(&bytes).await.map_err(pipe_err)?;
    }
    let mut rest = futures::stream::iter(first..source.count())
        .map(|i| async move {
            let body = read_ahead(source.open(i).await?, READ_AHEAD).await?;
            Ok::<_, Error>((i, body))
        })
        .buffered(PREFETCH);
    let mut waits = Waits::default();
    loop {
        let t = Instant::now();
        let Some(next) = rest.next().await else { break };
        waits.storage += t.elapsed();
        let (index, body) = next?;
        let chunk = Copy {
            layout: Layout::Timeslice,
            format,
            index,
        };
        chunk
            .run(body, &mut stdin, pipe_err, &mut accounting, &mut waits)
            .await?;
    }
    debug!(
        storage_wait_s = waits.storage.as_secs_f64(),
        ffmpeg_wait_s = waits.output.as_secs_f64(),
        "chunks fed to ffmpeg"
    );
    stdin.shutdown().await.map_err(pipe_err)?;
    Ok(accounting.finish()?.0)
}

/// Feed what can be salvaged of a timeslice recording to ffmpeg. Chunks are read whole (each
/// checked before any of it is used), and a missing or changed one is a gap.
async fn salvage_stream(
    source: &dyn ChunkSource,
    format: Format,
    head: Vec<Bytes>,
    mut stdin: ChildStdin,
) -> Result<(Inventory, Vec<Lost>)> {
    async fn write(stdin: &mut ChildStdin, pieces: Vec<Bytes>) -> Result<()> {
        for piece in pieces {
            stdin.write_all(&piece).await.map_err(pipe_err)?;
        }
        Ok(())
    }
    let mut salvage = Salvage::new(format);
    let first = head.len() as u32;
    for (i, bytes) in head.into_iter().enumerate() {
        write(&mut stdin, salvage.feed(i as u32, bytes)?).await?;
    }
    let mut rest = futures::stream::iter(first..source.count())
        .map(|i| async move { (i, source.fetch(i).await) })
        .buffered(PREFETCH);
    while let Some((i, fetched)) = rest.next().await {
        let pieces = match fetched {
            Ok(bytes) => salvage.feed(i, bytes)?,
            Err(e) if e.is_bad_chunk() => salvage.missing(i)?,
            Err(e) => return Err(e),
        };
        write(&mut stdin, pieces).await?;
    }
    write(&mut stdin, salvage.finish()?).await?;
    stdin.shutdown().await.map_err(pipe_err)?;
    let salvaged = salvage.result();
    Ok((salvaged.inventory, salvaged.lost))
}

/// A restart-style recording's chunks, each a complete file, written out for the concat
/// demuxer.
struct Files<'a> {
    source: &'a dyn ChunkSource,
    format: Format,
    ext: &'a str,
    work: &'a Path,
}

/// One file of a restart-style recording, once written: where, what it holds, how long it is.
type Written = (PathBuf, Inventory, Option<f64>);

impl Files<'_> {
    /// Write file `index`, counting its frames; checked like any chunk.
    async fn file(&self, index: u32, head: Option<&Bytes>) -> Result<Written> {
        let mut accounting = Accounting::new(self.format, 1);
        let body = match head {
            Some(b) => futures::stream::iter([Ok(b.clone())]).boxed(),
            None => self.source.open(index).await?,
        };
        let path = self.work.join(format!("chunk-{index:08}.{}", self.ext));
        let file_err = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
        let mut file = tokio::fs::File::create(&path).await.map_err(file_err)?;
        let chunk = Copy {
            layout: Layout::Restart,
            format: self.format,
            index,
        };
        let waits = &mut Waits::default();
        chunk
            .run(body, &mut file, file_err, &mut accounting, waits)
            .await?;
        file.flush().await.map_err(file_err)?;
        let (inventory, duration_s) = accounting.finish()?;
        Ok((path, inventory, duration_s))
    }

    /// Write every file and the concat list. The concat demuxer puts each file after the one
    /// before by its duration. A salvage leaves out the files that are missing, changed or
    /// damaged; the next one follows at once, so each loss is a point of the output's timeline.
    async fn write(
        &self,
        head: Vec<Bytes>,
        salvage: bool,
    ) -> Result<(PathBuf, Inventory, Vec<Lost>)> {
        let head = &head;
        let mut files = futures::stream::iter(0..self.source.count())
            .map(|i| async move { (i, self.file(i, head.get(i as usize)).await) })
            .buffered(PREFETCH);
        let mut list = String::new();
        let mut inventory = Inventory::default();
        let mut lost: Vec<Lost> = Vec::new();
        let mut offset_s = 0.0;
        let mut gap: Option<Lost> = None;
        while let Some((i, written)) = files.next().await {
            let (path, counted, duration_s) = match written {
                Ok(w) => w,
                Err(e) if salvage && e.is_bad_chunk() => {
                    gap.get_or_insert_with(|| Lost {
                        from_s: offset_s,
                        to_s: Some(offset_s),
                        chunks: Vec::new(),
                    })
                    .chunks
                    .push(i);
                    continue;
                }
                Err(e) => return Err(e),
            };
            lost.extend(gap.take());
            list.push_str(&format!("file '{}'\n", path.display()));
            let end = duration_s.or_else(|| {
                counted
                    .tracks
                    .iter()
                    .filter_map(|t| t.last_s)
                    .reduce(f64::max)
            });
            inventory.append(counted, offset_s);
            offset_s += end.unwrap_or(0.0);
        }
        if let Some(mut last) = gap.take() {
            last.to_s = None;
            lost.push(last);
        }
        if list.is_empty() {
            return Err(Error::FramesLost {
                chunk: Some(0),
                detail: "no file of the recording could be read".into(),
            });
        }
        let list_path = self.work.join("chunks.txt");
        tokio::fs::write(&list_path, list)
            .await
            .map_err(|e| Error::Storage(format!("{}: {e}", list_path.display())))?;
        Ok((list_path, inventory, lost))
    }
}

/// Prepare, remux and inspect: the whole merge into a file in `work` (the CLI's path; the
/// service overlaps the upload with it, see [`super::Merger`]).
pub async fn merge(
    ffmpeg: &Ffmpeg,
    source: &dyn ChunkSource,
    work: &Path,
    salvage: bool,
    asked: OutputFormat,
    progress: &(dyn Fn(u8) + Send + Sync),
) -> Result<Merged> {
    let prepared = prepare(source, salvage, asked).await?;
    let (output, layout) = (prepared.output, prepared.layout);
    let out = output_path(work, output.container);
    let remuxed = remux(ffmpeg, source, prepared, work, &out, progress).await?;
    let info = describe(ffmpeg, &out, output, layout, &remuxed).await?;
    progress(100);
    Ok(Merged {
        path: out,
        container: output.container,
        info,
    })
}

pub fn output_path(work: &Path, container: Container) -> PathBuf {
    work.join(format!("output.{}", container.extension()))
}

/// The output file, and the `framecrc` listing of the packets that went in at `listing` (the
/// same packets as the output's, unless a stream is re-encoded).
fn output_args(cmd: &mut Command, output: Output, out: &Path, listing: &Path) {
    cmd.args(["-map", "0", "-c", "copy"]);
    if output.h264 {
        // One frame out for each frame in, at its time; even dimensions, as 4:2:0 needs.
        cmd.args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"])
            .args(["-pix_fmt", "yuv420p", "-fps_mode", "passthrough"])
            .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]);
    }
    if output.aac {
        cmd.args(["-c:a", "aac", "-b:a", "160k"]);
    }
    if output.container == Container::Mp4 {
        cmd.args(["-movflags", "+faststart"]);
    }
    cmd.args(["-f", muxer(output.container), "-y"]).arg(out);
    cmd.args(["-map", "0", "-c", "copy", "-f", "framecrc", "-y"])
        .arg(listing);
}

/// Time a copy spent waiting for chunk bytes (storage) and for the writer (ffmpeg or disk).
#[derive(Default)]
struct Waits {
    storage: Duration,
    output: Duration,
}

/// `body` with up to `limit` of its first bytes read into memory now.
async fn read_ahead(body: ByteStream, limit: usize) -> Result<ByteStream> {
    // Fused: the rest is polled again after the read-ahead, even if it has ended.
    let mut body = body.fuse();
    let mut pieces = Vec::new();
    let mut read = 0;
    while read < limit {
        let Some(piece) = body.next().await else {
            break;
        };
        let piece = piece?;
        read += piece.len();
        pieces.push(Ok(piece));
    }
    Ok(futures::stream::iter(pieces).chain(body).boxed())
}

/// One chunk to copy, and what it must be.
struct Copy {
    layout: Layout,
    format: Format,
    index: u32,
}

impl Copy {
    /// Copy the chunk to `to` as its bytes arrive, once its first bytes fit the layout,
    /// counting its frames on the way.
    async fn run<W: AsyncWrite + Unpin>(
        &self,
        mut body: ByteStream,
        to: &mut W,
        io_err: impl Fn(std::io::Error) -> Error,
        accounting: &mut Accounting,
        waits: &mut Waits,
    ) -> Result<()> {
        let Copy {
            layout,
            format,
            index,
        } = *self;
        let mut prefix = Some(BytesMut::new());
        loop {
            let t = Instant::now();
            let piece = body.next().await;
            waits.storage += t.elapsed();
            let piece = match (piece, prefix.as_mut()) {
                (Some(piece), None) => piece?,
                (Some(piece), Some(start)) => {
                    start.extend_from_slice(&piece?);
                    if start.len() < PROBE_BYTES {
                        continue;
                    }
                    layout.check_chunk(format, index, start)?;
                    prefix.take().expect("a prefix").freeze()
                }
                (None, None) => return Ok(()),
                (None, Some(start)) => {
                    layout.check_chunk(format, index, start)?;
                    prefix.take().expect("a prefix").freeze()
                }
            };
            accounting.feed(index, &piece)?;
            let t = Instant::now();
            to.write_all(&piece).await.map_err(&io_err)?;
            waits.output += t.elapsed();
        }
    }
}

fn pipe_err(e: std::io::Error) -> Error {
    Error::FfmpegFailed(format!("writing to ffmpeg: {e}"))
}

fn spawn_err(e: std::io::Error) -> Error {
    Error::FfmpegMissing(format!("starting ffmpeg: {e}"))
}

/// What ffmpeg said on stderr: its last lines, for error messages, and the first of its
/// complaints about timestamps going backwards (ffmpeg "fixes" those and exits 0, so they are
/// the only sign of chunks out of order).
#[derive(Default)]
struct Stderr {
    tail: String,
    backwards: Option<String>,
}

async fn read_stderr(r: impl AsyncRead + Unpin, keep: usize) -> Stderr {
    let mut lines = BufReader::new(r).lines();
    let mut tail = VecDeque::with_capacity(keep);
    let mut backwards = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if backwards.is_none()
            && (line.contains("Non-monotonic DTS") || line.contains("non monotonically increasing"))
        {
            backwards = Some(line.clone());
        }
        if tail.len() == keep {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    Stderr {
        tail: Vec::from(tail).join("\n"),
        backwards,
    }
}

/// Run a remux: feed stdin (if any), turn `-progress` output into percents, and fail with
/// ffmpeg's own words when it fails. Returns what the feed returned (`T::default()` without
/// one).
async fn run<F, Fut, T: Default>(
    mut cmd: Command,
    total_in: u64,
    progress: &(dyn Fn(u8) + Send + Sync),
    feed: Option<F>,
) -> Result<T>
where
    F: FnOnce(ChildStdin) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if feed.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let feeding = async {
        match (feed, stdin) {
            (Some(f), Some(stdin)) => f(stdin).await,
            _ => Ok(T::default()),
        }
    };
    let reporting = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut last = 0u8;
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(size) = line
                .strip_prefix("total_size=")
                .and_then(|v| v.parse::<u64>().ok())
                && total_in > 0
            {
                let pct = (size.saturating_mul(100) / total_in).min(99) as u8;
                if pct > last {
                    last = pct;
                    progress(pct);
                }
            }
        }
    };
    let (fed, (), errors, status) = tokio::join!(
        feeding,
        reporting,
        read_stderr(stderr, STDERR_LINES),
        child.wait()
    );
    let status = status.map_err(|e| Error::FfmpegFailed(format!("waiting for ffmpeg: {e}")))?;
    // What went wrong with the input explains a failed remux better than ffmpeg can, except a
    // write that failed because ffmpeg had already quit.
    let fed = match fed {
        Err(e) if !matches!(e, Error::FfmpegFailed(_)) => return Err(e),
        fed => fed,
    };
    if !status.success() {
        return Err(Error::FfmpegFailed(format!("{status}: {}", errors.tail)));
    }
    let fed = fed?;
    match errors.backwards {
        Some(line) => Err(Error::TimestampsOutOfOrder(line)),
        None => Ok(fed),
    }
}

/// Check and describe the output: from the remux's packet listing, codecs, dimensions, packet
/// counts and timestamps (refusing a recording that is not whole: every frame that went in
/// must have come out); from the file's header, read back by ffmpeg, the container's duration
/// (which only a seekable output has).
pub async fn describe(
    ffmpeg: &Ffmpeg,
    out: &Path,
    output: Output,
    layout: Layout,
    remuxed: &Remuxed,
) -> Result<OutputInfo> {
    let container = output.container;
    remuxed.check().await?;
    let report = &remuxed.packets;
    report.check(remuxed.lost.is_some())?;
    let lost = remuxed
        .lost
        .clone()
        .map(|lost| with_gaps(lost, report, &remuxed.inventory));
    let mut cmd = ffmpeg.command();
    cmd.arg("-i")
        .arg(out)
        .args(["-map", "0", "-c", "copy", "-t", "0", "-f", "null", "-"]);
    let read_back = cmd
        .output()
        .await
        .map_err(|e| Error::FfmpegFailed(format!("running ffmpeg: {e}")))?;
    let errors = String::from_utf8_lossy(&read_back.stderr);
    if !read_back.status.success() {
        return Err(Error::OutputInvalid(format!(
            "ffmpeg cannot read it back: {errors}"
        )));
    }
    let duration_s = parse_duration(&errors)
        .filter(|d| *d > 0.0)
        .ok_or_else(|| Error::OutputInvalid("the container has no duration".into()))?;
    if container == Container::Mp4 {
        check_faststart(out).await?;
    }
    let size_bytes = tokio::fs::metadata(out)
        .await
        .map_err(|e| Error::Storage(format!("{}: {e}", out.display())))?
        .len();
    let video = report.video();
    let audio = report.audio();
    // A stream re-encoded is what the file says it is now (and must be what was asked for).
    let codec =
        |kind: &str, listed: Option<&super::plan::StreamReport>, encoded: bool, to: &str| {
            if !encoded {
                return Ok(listed.map(|s| s.codec.clone()));
            }
            match stream_codec(&errors, kind) {
                Some(c) if c == to => Ok(Some(c)),
                found => Err(Error::OutputInvalid(format!(
                    "the {kind} stream was to be {to}, and is {found:?}"
                ))),
            }
        };
    let video_codec = codec("Video", video, output.h264, "h264")?;
    let audio_codec = codec("Audio", audio, output.aac, "aac")?;
    let frame_rate = video
        .filter(|v| v.packets > 1 && v.span_seconds() > 0.0)
        .map(|v| ((v.packets - 1) as f64 / v.span_seconds() * 100.0).round() / 100.0);
    Ok(OutputInfo {
        container: container.extension(),
        content_type: content_type(container),
        layout: layout.as_str(),
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        size_bytes,
        video_codec,
        audio_codec,
        width: video.and_then(|v| v.width),
        height: video.and_then(|v| v.height),
        frame_rate,
        video_frames: video.map_or(0, |v| v.packets),
        audio_frames: audio.map_or(0, |a| a.packets),
        salvaged: lost.is_some(),
        lost,
    })
}

/// An MP4 is seekable from the start only when `moov` comes before `mdat`.
async fn check_faststart(path: &Path) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io = |e: std::io::Error| Error::Storage(format!("{}: {e}", path.display()));
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let len = f.metadata().await.map_err(io)?.len();
    let mut pos = 0u64;
    while pos + 8 <= len {
        f.seek(std::io::SeekFrom::Start(pos)).await.map_err(io)?;
        let mut header = [0u8; 16];
        f.read_exact(&mut header[..8]).await.map_err(io)?;
        let mut size = u64::from(u32::from_be_bytes(header[..4].try_into().expect("4 bytes")));
        match &header[4..8] {
            b"moov" => return Ok(()),
            b"mdat" | b"moof" => break,
            _ => {}
        }
        if size == 1 {
            f.read_exact(&mut header[8..16]).await.map_err(io)?;
            size = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
        }
        if size < 8 {
            break;
        }
        pos += size;
    }
    Err(Error::OutputInvalid(
        "MP4 output has no moov before its media".into(),
    ))
}
