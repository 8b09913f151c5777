//! Frame accounting: what goes into the remux, counted per track as the chunk bytes stream to
//! ffmpeg, so that what comes out can be held to it.
//!
//! ffmpeg's demuxers stop or resynchronise at damaged data and exit 0 with a shorter, valid
//! file; its packet listing only shows what reached the output. So the input is parsed too, just
//! enough to count frames: Matroska/WebM blocks ([`matroska`]) and fragmented-MP4 samples
//! ([`bmff`]), through one streaming parser of nested elements ([`walk`]) that holds no payload.
//! Data that does not parse is damage, named by the chunk it was in; counts or end times that
//! differ from the remux's listing are frames lost.

mod bmff;
mod matroska;
mod walk;

use std::ops::Range;

pub use self::walk::Damage;
use self::walk::Walker;
use super::plan::{Format, FramecrcReport};
use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

impl TrackKind {
    /// ffmpeg's name for the media type.
    pub fn media_type(self) -> &'static str {
        match self {
            TrackKind::Video => "video",
            TrackKind::Audio => "audio",
            TrackKind::Other => "data",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    pub kind: TrackKind,
    pub codec: String,
    /// Seconds per tick of the track's timestamps.
    pub timebase_s: f64,
}

/// The frames of one track in one unit (a Matroska block, a track's run in an MP4 fragment).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frames {
    /// The track's position in the header (and ffmpeg's stream index).
    pub track: usize,
    pub count: u32,
    /// Presentation times of the earliest and latest frame, in seconds.
    pub first_s: f64,
    pub last_s: f64,
    /// The first frame can be decoded without the ones before it.
    pub key: bool,
    /// Laced (several frames in one block): only the first frame's time is known.
    pub laced: bool,
}

/// The frames of a unit, per track: one for a Matroska block, one per track for an MP4
/// fragment (held inline for two tracks, so counting allocates nothing per unit).
pub type FrameList = smallvec::SmallVec<[Frames; 2]>;

/// A whole element of the stream, as salvage copies or drops it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    pub span: Range<u64>,
    pub kind: UnitKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UnitKind {
    /// Part of the file header, copied as it is or written as the given bytes.
    Header(Option<Vec<u8>>),
    /// Where a cluster begins (a Matroska Cluster's header, written as the given bytes).
    Sync(Option<Vec<u8>>),
    /// Media: a block, or a fragment with its samples.
    Media(FrameList),
    /// Copied as it is (a cluster's timestamp).
    Copy,
    /// Not needed in a salvaged stream (indexes, padding).
    Drop,
}

/// A streaming parser of one container format.
#[derive(Debug)]
pub enum Scanner {
    Matroska(Box<Walker<matroska::Matroska>>),
    Mp4(Box<Walker<bmff::Bmff>>),
}

/// Call `$body` with the scanner's walker, whichever format it parses.
macro_rules! each {
    ($scanner:expr, $w:ident => $body:expr) => {
        match $scanner {
            Scanner::Matroska($w) => $body,
            Scanner::Mp4($w) => $body,
        }
    };
}

impl Scanner {
    pub fn new(format: Format) -> Self {
        match format {
            Format::Matroska => Scanner::Matroska(Box::new(Walker::new(Default::default()))),
            Format::Mp4 => Scanner::Mp4(Box::new(Walker::new(Default::default()))),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Damage> {
        each!(self, w => w.feed(bytes))
    }

    pub fn finish(&mut self) -> Result<(), Damage> {
        each!(self, w => w.finish())
    }

    /// The units completed so far, taken.
    pub fn take_units(&mut self) -> Vec<Unit> {
        std::mem::take(self.units())
    }

    /// The units completed so far, where the grammar puts them.
    fn units(&mut self) -> &mut Vec<Unit> {
        each!(self, w => &mut w.grammar.units)
    }

    pub fn tracks(&self) -> &[Track] {
        each!(self, w => w.grammar.tracks())
    }

    /// Offset of the next byte expected.
    pub fn position(&self) -> u64 {
        each!(self, w => w.position())
    }

    /// Where the element being read began, or `None` between elements.
    pub fn inside(&self) -> Option<u64> {
        each!(self, w => w.inside())
    }

    /// The file's own duration, when its header gives one (Matroska's Segment Duration).
    pub fn duration_s(&self) -> Option<f64> {
        match self {
            Scanner::Matroska(w) => w.grammar.duration_s(),
            Scanner::Mp4(_) => None,
        }
    }

    /// The bytes that mark where a cluster or fragment may begin, and how far into it they are.
    pub fn sync_marker(&self) -> ([u8; 4], u64) {
        match self {
            Scanner::Matroska(_) => (matroska::CLUSTER_ID, 0),
            Scanner::Mp4(_) => (bmff::MOOF_TYPE, 4),
        }
    }

    /// A scanner that parses the same stream again from `at`, where a cluster or fragment may
    /// begin, knowing what the header said. A Matroska cluster may not begin before `floor_s`.
    pub fn resync(&self, at: u64, floor_s: Option<f64>) -> Self {
        match self {
            Scanner::Matroska(w) => {
                Scanner::Matroska(Box::new(w.restart_at(w.grammar.resumed(floor_s), at, true)))
            }
            Scanner::Mp4(w) => {
                Scanner::Mp4(Box::new(w.restart_at(w.grammar.resumed(None), at, false)))
            }
        }
    }
}

/// The first offset of each chunk fed, to name the chunk an offset is in.
#[derive(Debug, Default)]
pub struct ChunkMap {
    starts: Vec<(u64, u32)>,
}

impl ChunkMap {
    /// Chunk `index` continues the stream at `offset` (a no-op while it is the same chunk).
    pub fn note(&mut self, index: u32, offset: u64) {
        if self.starts.last().is_none_or(|(_, i)| *i != index) {
            self.starts.push((offset, index));
        }
    }

    /// The start and index of the chunk holding byte `offset`.
    fn holding(&self, offset: u64) -> (u64, u32) {
        let i = self.starts.partition_point(|(start, _)| *start <= offset);
        self.starts[i.saturating_sub(1)]
    }

    /// The chunk holding byte `offset`.
    pub fn chunk_of(&self, offset: u64) -> u32 {
        self.holding(offset).1
    }

    /// Where the chunk holding byte `offset` begins.
    pub fn start_of_chunk_at(&self, offset: u64) -> u64 {
        self.holding(offset).0
    }

    /// Whether `span` runs over a chunk boundary.
    pub fn crossed(&self, span: &Range<u64>) -> bool {
        span.end > span.start + 1 && self.holding(span.start) != self.holding(span.end - 1)
    }
}

/// Frames counted in one track, with where each chunk's frames ended (to tell where an output
/// that lacks frames parted from its input).
#[derive(Clone, Debug, PartialEq)]
pub struct TrackCount {
    pub kind: TrackKind,
    pub frames: u64,
    pub first_s: Option<f64>,
    pub last_s: Option<f64>,
    pub laced: bool,
    /// Per chunk with frames of this track: the chunk, the frames counted up to its end, and
    /// the latest time among them.
    pub marks: Vec<(u32, u64, f64)>,
}

/// What went into a remux, per track in ffmpeg's stream order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub tracks: Vec<TrackCount>,
}

impl Inventory {
    /// An empty inventory of `tracks`, with room for marks of `chunks` chunks.
    pub fn for_tracks(tracks: &[Track], chunks: u32) -> Self {
        Self {
            tracks: tracks
                .iter()
                .map(|t| TrackCount {
                    kind: t.kind,
                    frames: 0,
                    first_s: None,
                    last_s: None,
                    laced: false,
                    marks: Vec::with_capacity(chunks as usize),
                })
                .collect(),
        }
    }

    /// Count `frames`, which began in chunk `chunk`.
    pub fn add(&mut self, frames: &Frames, chunk: u32) {
        let Some(t) = self.tracks.get_mut(frames.track) else {
            return;
        };
        t.frames += u64::from(frames.count);
        t.first_s = Some(t.first_s.map_or(frames.first_s, |f| f.min(frames.first_s)));
        t.last_s = Some(t.last_s.map_or(frames.last_s, |l| l.max(frames.last_s)));
        t.laced |= frames.laced;
        match t.marks.last_mut() {
            Some((c, count, last)) if *c == chunk => {
                *count = t.frames;
                *last = last.max(frames.last_s);
            }
            _ => t.marks.push((chunk, t.frames, frames.last_s)),
        }
    }

    /// Append the inventory of the next file of a restart-style recording, whose times begin
    /// `offset_s` after this one's.
    pub fn append(&mut self, next: Inventory, offset_s: f64) {
        if self.tracks.is_empty() {
            self.tracks = next
                .tracks
                .iter()
                .map(|t| TrackCount {
                    frames: 0,
                    first_s: None,
                    last_s: None,
                    marks: Vec::new(),
                    ..t.clone()
                })
                .collect();
        }
        for (t, n) in self.tracks.iter_mut().zip(next.tracks) {
            let before = t.frames;
            t.frames += n.frames;
            t.first_s = t.first_s.or(n.first_s.map(|f| f + offset_s));
            t.last_s = n.last_s.map(|l| l + offset_s).or(t.last_s);
            t.laced |= n.laced;
            t.marks.extend(
                n.marks
                    .into_iter()
                    .map(|(c, count, last)| (c, before + count, last + offset_s)),
            );
        }
    }

    /// Hold the remux's packet listing to this: the same streams, the same packets per stream,
    /// and the same span of time within one frame.
    pub fn check(&self, report: &FramecrcReport) -> Result<(), Mismatch> {
        if report.streams.len() != self.tracks.len() {
            return Err(Mismatch {
                stream: None,
                why: format!(
                    "the output has {} streams, the input {} tracks",
                    report.streams.len(),
                    self.tracks.len()
                ),
            });
        }
        for (i, (t, s)) in self.tracks.iter().zip(&report.streams).enumerate() {
            let mismatch = |why: String| Mismatch {
                stream: Some(i),
                why: format!("stream {i} ({}): {why}", t.kind.media_type()),
            };
            if s.media_type != t.kind.media_type() && t.kind != TrackKind::Other {
                return Err(mismatch(format!("the output has {} there", s.media_type)));
            }
            if s.packets != t.frames {
                return Err(mismatch(format!(
                    "{} frames went in and {} came out",
                    t.frames, s.packets
                )));
            }
            let (Some(first), Some(last), false) = (t.first_s, t.last_s, t.laced) else {
                continue;
            };
            let (span_in, span_out) = (last - first, s.pts_span_seconds());
            let frame = if s.packets > 1 {
                span_out / (s.packets - 1) as f64
            } else {
                0.0
            };
            if (span_in - span_out).abs() > frame.max(0.002) {
                return Err(mismatch(format!(
                    "the input spans {span_in:.3} s and the output {span_out:.3} s"
                )));
            }
        }
        Ok(())
    }

    /// The chunk holding `stream`'s frames at `time_s`.
    pub fn chunk_at(&self, stream: usize, time_s: f64) -> Option<u32> {
        let marks = &self.tracks.get(stream)?.marks;
        marks
            .iter()
            .find(|(_, _, last)| *last >= time_s)
            .or(marks.last())
            .map(|(chunk, _, _)| *chunk)
    }

    /// The first chunk after which the output's packets of `stream` (their presentation times,
    /// sorted, in seconds from the first) no longer match the frames counted.
    pub fn parted_at(&self, stream: usize, out_s: &[f64]) -> Option<u32> {
        let t = self.tracks.get(stream)?;
        let first = t.first_s?;
        t.marks
            .iter()
            .find(|(_, count, last)| {
                let upto = out_s.partition_point(|s| *s <= last - first + 1e-6);
                upto as u64 != *count
            })
            .or(t.marks.last())
            .map(|(chunk, _, _)| *chunk)
    }
}

/// How an output differs from its input.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub stream: Option<usize>,
    pub why: String,
}

/// The accounting of a normal merge: every byte fed to ffmpeg is also fed here; damage stops
/// the merge with `frames_lost`, naming the chunk. Its memory is taken once, for `chunks`
/// chunks, not as it goes.
#[derive(Debug)]
pub struct Accounting {
    scanner: Scanner,
    chunks: ChunkMap,
    expected: u32,
    inventory: Inventory,
}

impl Accounting {
    pub fn new(format: Format, chunks: u32) -> Self {
        Self {
            scanner: Scanner::new(format),
            chunks: ChunkMap {
                starts: Vec::with_capacity(chunks as usize),
            },
            expected: chunks,
            inventory: Inventory::default(),
        }
    }

    /// The next bytes of the stream, from chunk `chunk`.
    pub fn feed(&mut self, chunk: u32, bytes: &[u8]) -> Result<(), Error> {
        self.chunks.note(chunk, self.scanner.position());
        let fed = self.scanner.feed(bytes);
        self.count();
        fed.map_err(|d| self.lost(d))
    }

    /// The stream has ended: what went in.
    pub fn finish(mut self) -> Result<(Inventory, Option<f64>), Error> {
        let finished = self.scanner.finish();
        self.count();
        finished.map_err(|d| self.lost(d))?;
        if self.inventory.tracks.is_empty() {
            self.inventory = Inventory::for_tracks(self.scanner.tracks(), 0);
        }
        Ok((self.inventory, self.scanner.duration_s()))
    }

    fn count(&mut self) {
        // The units' buffer goes back to the grammar emptied, its room kept.
        let mut units = std::mem::take(self.scanner.units());
        for unit in units.drain(..) {
            if let UnitKind::Media(frames) = unit.kind {
                // Media comes after the header: every track is known by now.
                if self.inventory.tracks.is_empty() {
                    self.inventory = Inventory::for_tracks(self.scanner.tracks(), self.expected);
                }
                let chunk = self.chunks.chunk_of(unit.span.start);
                for f in &frames {
                    self.inventory.add(f, chunk);
                }
            }
        }
        *self.scanner.units() = units;
    }

    fn lost(&self, damage: Damage) -> Error {
        frames_lost(&self.chunks, &damage)
    }
}

/// `frames_lost` for damage found in a stream fed chunk by chunk.
pub fn frames_lost(chunks: &ChunkMap, damage: &Damage) -> Error {
    let chunk = if chunks.starts.is_empty() {
        None
    } else {
        Some(chunks.chunk_of(damage.at))
    };
    Error::FramesLost {
        chunk,
        detail: format!(
            "the input stops parsing at byte {}: {}",
            damage.at, damage.why
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests;
