//! Salvage: the video with a hole rather than nothing, for a recording whose chunks are damaged
//! or missing. Asked for explicitly; a normal merge never does it.
//!
//! The chunks pass through the same parser as a normal merge's accounting. Units (blocks,
//! fragments) go on to ffmpeg once they are known to be whole, and where the parser finds damage
//! (or a chunk is missing) the stream picks up again at the next cluster (Matroska) or fragment
//! (MP4) that parses, video at its next keyframe. What was left out is reported as time ranges
//! of the primary track (the first video track, else the first), with the chunks involved.
//!
//! Which units are whole: damage comes from a discontinuity at a chunk boundary (a chunk cut,
//! missing, swapped, or followed by garbage), and the parser notices it within the element that
//! spans it or the next few. So a unit is passed on once a later unit has been read that begins
//! in a later chunk than the one the unit ends in; on damage, the units still held are kept up to
//! the last one read (or, if that one spans a chunk boundary, up to its start) and the rest are
//! dropped. Memory: the held units and the bytes behind them, about two chunks (or one MP4
//! fragment, when a fragment is longer).

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;
use serde::Serialize;

use super::frames::{ChunkMap, Damage, Inventory, Scanner, TrackKind, Unit, UnitKind, frames_lost};
use super::plan::{Format, FramecrcReport};
use crate::error::{Error, Result};

/// A stretch of the recording the salvaged video does not have.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lost {
    /// The salvaged video has no frame of the primary track strictly between these times
    /// (seconds on the recording's own timeline); the recording had frames there. `toS` is
    /// null when nothing after the damage could be read: the loss runs to the end.
    pub from_s: f64,
    pub to_s: Option<f64>,
    /// The chunks whose bytes were left out (in part or whole), or missing.
    pub chunks: Vec<u32>,
}

/// Bytes fed and not yet passed on or given up, by stream offset.
#[derive(Debug, Default)]
struct Window {
    pieces: VecDeque<(u64, Bytes)>,
    /// The stream's length so far.
    end: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.end
    }

    /// Append the stream's next bytes; returns their offset.
    fn push(&mut self, bytes: Bytes) -> u64 {
        let at = self.end;
        self.end += bytes.len() as u64;
        if !bytes.is_empty() {
            self.pieces.push_back((at, bytes));
        }
        at
    }

    /// The bytes of `range`, as slices of the pieces.
    fn slice(&self, range: Range<u64>) -> Vec<Bytes> {
        self.pieces
            .iter()
            .filter(|(at, b)| *at < range.end && at + b.len() as u64 > range.start)
            .map(|(at, b)| {
                let from = range.start.saturating_sub(*at) as usize;
                let to = ((range.end - at) as usize).min(b.len());
                b.slice(from..to)
            })
            .collect()
    }

    /// Forget the bytes before `offset`.
    fn trim(&mut self, offset: u64) {
        while let Some((at, b)) = self.pieces.front_mut() {
            let end = *at + b.len() as u64;
            if end <= offset {
                self.pieces.pop_front();
            } else {
                if *at < offset {
                    *b = b.slice((offset - *at) as usize..);
                    *at = offset;
                }
                break;
            }
        }
    }

    /// The first offset at or after `from` where `marker` begins.
    fn find(&self, from: u64, marker: &[u8; 4]) -> Option<u64> {
        let bytes: Vec<u8> = self.slice(from..self.end()).concat();
        bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|i| from + i as u64)
    }
}

/// A stretch being left out, from the damage (or missing chunk) to where the stream resumes.
#[derive(Debug, Default)]
struct Gap {
    /// Chunks known to be involved; every chunk between the first and the last was.
    chunks: Vec<u32>,
}

#[derive(Debug)]
pub struct Salvage {
    scanner: Scanner,
    chunks: ChunkMap,
    window: Window,
    /// Units read and not yet known to be whole.
    held: VecDeque<Unit>,
    /// Looking for the next cluster or fragment from this offset.
    hunting: Option<u64>,
    /// Where the scanner last started again, so that damage there moves the hunt on.
    resumed_at: Option<u64>,
    /// A cluster or a media unit has been read: the header is complete.
    in_body: bool,
    out: Vec<Bytes>,
    kept: Inventory,
    /// Per track, the latest frame time passed on.
    latest: Vec<Option<f64>>,
    /// After a gap, frames earlier than this (the resumed keyframe) are left out too.
    resume_floor: Option<f64>,
    gap: Option<Gap>,
    lost: Vec<Lost>,
}

/// What a salvage passed on, and what it left out.
#[derive(Debug)]
pub struct Salvaged {
    pub inventory: Inventory,
    pub lost: Vec<Lost>,
}

impl Salvage {
    pub fn new(format: Format) -> Self {
        Self {
            scanner: Scanner::new(format),
            chunks: ChunkMap::default(),
            window: Window::default(),
            held: VecDeque::new(),
            hunting: None,
            resumed_at: None,
            in_body: false,
            out: Vec::new(),
            kept: Inventory::default(),
            latest: Vec::new(),
            resume_floor: None,
            gap: None,
            lost: Vec::new(),
        }
    }

    /// Chunk `index`, whole. Returns the bytes to pass on to ffmpeg.
    pub fn feed(&mut self, index: u32, bytes: Bytes) -> Result<Vec<Bytes>> {
        self.chunks.note(index, self.window.end());
        self.window.push(bytes);
        self.pump()?;
        Ok(std::mem::take(&mut self.out))
    }

    /// Chunk `index` is missing (or changed in storage since it was received).
    pub fn missing(&mut self, index: u32) -> Result<Vec<Bytes>> {
        if self.hunting.is_none()
            && let Some(start) = self.scanner.inside()
        {
            // The stream breaks exactly here: the element being read is the only damaged one.
            let damage = Damage {
                at: start,
                why: format!("chunk {index} is missing"),
            };
            self.damaged(&damage, Some(start))?;
        }
        // A clean break: what was read before it is whole.
        while let Some(unit) = self.held.pop_front() {
            self.pass(unit);
        }
        let gap = self.gap.get_or_insert_with(Gap::default);
        gap.chunks.push(index);
        Ok(std::mem::take(&mut self.out))
    }

    /// The stream has ended. Returns the last bytes to pass on.
    pub fn finish(&mut self) -> Result<Vec<Bytes>> {
        loop {
            if self.hunting.is_some() && !self.resync() {
                break;
            }
            let fed = self.feed_scanner();
            // At the end, an element the data stops inside is the only damaged one (a
            // recording cut off, as an abandoned one is): what came before it is whole.
            let exact = fed.is_ok();
            let finished = fed.and_then(|()| self.scanner.finish());
            let units = self.scanner.take_units();
            self.accept(units);
            match finished {
                Ok(()) => break,
                Err(damage) => {
                    let at = damage.at;
                    self.damaged(&damage, exact.then_some(at))?
                }
            }
        }
        while let Some(unit) = self.held.pop_front() {
            self.pass(unit);
        }
        if let Some(gap) = self.gap.take() {
            let from_s = self.primary_latest();
            self.close(gap, from_s, None);
        }
        if !self.in_body {
            return Err(Error::FramesLost {
                chunk: Some(0),
                detail: "no cluster or fragment of the recording could be read".into(),
            });
        }
        Ok(std::mem::take(&mut self.out))
    }

    pub fn result(self) -> Salvaged {
        Salvaged {
            inventory: self.kept,
            lost: self.lost,
        }
    }

    /// Parse what the window holds beyond the scanner, going back to hunt after damage.
    fn pump(&mut self) -> Result<()> {
        loop {
            if self.hunting.is_some() && !self.resync() {
                return Ok(());
            }
            let fed = self.feed_scanner();
            let units = self.scanner.take_units();
            self.accept(units);
            match fed {
                Ok(()) => {
                    self.trim();
                    return Ok(());
                }
                Err(damage) => self.damaged(&damage, None)?,
            }
        }
    }

    fn feed_scanner(&mut self) -> Result<(), Damage> {
        let from = self.scanner.position();
        for piece in self.window.slice(from..self.window.end()) {
            self.scanner.feed(&piece)?;
        }
        Ok(())
    }

    /// Look for the next place a cluster or fragment may begin; start the scanner there.
    fn resync(&mut self) -> bool {
        let from = self.hunting.expect("hunting");
        let (marker, back) = self.scanner.sync_marker();
        match self.window.find(from + back, &marker) {
            Some(found) => {
                let at = found - back;
                self.scanner = self.scanner.resync(at, self.floor());
                self.hunting = None;
                self.resumed_at = Some(at);
                true
            }
            None => {
                // Keep enough to find a marker that the next bytes complete.
                let keep = self.window.end().saturating_sub(back + 3).max(from);
                self.hunting = Some(keep);
                self.window.trim(keep);
                false
            }
        }
    }

    /// No cluster may begin before the earliest of the tracks' latest frames passed on.
    fn floor(&self) -> Option<f64> {
        self.latest.iter().flatten().copied().reduce(f64::min)
    }

    /// Forget bytes nothing can need again.
    fn trim(&mut self) {
        let keep = self.held.front().map_or(
            self.scanner.inside().unwrap_or(self.scanner.position()),
            |u| u.span.start,
        );
        self.window
            .trim(keep.min(self.scanner.inside().unwrap_or(keep)));
    }

    /// Units just read: hold them, and pass on those now known to be whole.
    fn accept(&mut self, units: Vec<Unit>) {
        for unit in units {
            if matches!(unit.kind, UnitKind::Sync(_) | UnitKind::Media(_)) {
                self.in_body = true;
            }
            let whole_before = self.chunks.start_of_chunk_at(unit.span.start);
            self.held.push_back(unit);
            while self
                .held
                .front()
                .is_some_and(|u| u.span.end <= whole_before)
            {
                let unit = self.held.pop_front().expect("a held unit");
                self.pass(unit);
            }
        }
    }

    /// Damage found at `damage.at` (exactly there when `exact` names the offset): keep the held
    /// units before it, drop the rest, and hunt for where the stream resumes.
    fn damaged(&mut self, damage: &Damage, exact: Option<u64>) -> Result<()> {
        if !self.in_body {
            return Err(frames_lost(&self.chunks, damage));
        }
        let cut = exact.unwrap_or_else(|| match self.held.back() {
            Some(last) if self.chunks.crossed(&last.span) => last.span.start,
            Some(last) => last.span.end,
            None => damage.at,
        });
        // The units before the cut are whole: they go on before the gap opens.
        let dropped = self
            .held
            .iter()
            .position(|u| u.span.end > cut)
            .unwrap_or(self.held.len());
        let whole: Vec<Unit> = self.held.drain(..dropped).collect();
        for unit in whole {
            self.pass(unit);
        }
        let gap = self.gap.get_or_insert_with(Gap::default);
        gap.chunks.push(self.chunks.chunk_of(cut));
        gap.chunks.push(self.chunks.chunk_of(damage.at));
        while let Some(unit) = self.held.pop_front() {
            self.drop_unit(&unit);
        }
        let mut from = cut;
        if let Some(resumed) = self.resumed_at
            && from <= resumed
        {
            from = resumed + 1;
        }
        self.hunting = Some(from);
        Ok(())
    }

    fn primary(&self) -> Option<usize> {
        let tracks = self.scanner.tracks();
        tracks
            .iter()
            .position(|t| t.kind == TrackKind::Video)
            .or((!tracks.is_empty()).then_some(0))
    }

    fn has_video(&self) -> bool {
        self.scanner
            .tracks()
            .iter()
            .any(|t| t.kind == TrackKind::Video)
    }

    /// The primary track's latest frame passed on (0 when there is none).
    fn primary_latest(&self) -> f64 {
        self.primary()
            .and_then(|p| self.latest.get(p).copied().flatten())
            .unwrap_or(0.0)
    }

    /// A unit that will not be passed on: its chunk is part of the gap.
    fn drop_unit(&mut self, unit: &Unit) {
        if let Some(gap) = &mut self.gap {
            gap.chunks.push(self.chunks.chunk_of(unit.span.start));
        }
    }

    /// Pass a whole unit on, unless a gap before it means it cannot be decoded: then video waits
    /// for a keyframe, and nothing earlier than that keyframe goes on.
    fn pass(&mut self, unit: Unit) {
        let bytes = match &unit.kind {
            UnitKind::Header(Some(b)) | UnitKind::Sync(Some(b)) => vec![Bytes::from(b.clone())],
            UnitKind::Header(None) | UnitKind::Sync(None) | UnitKind::Copy => {
                self.window.slice(unit.span.clone())
            }
            UnitKind::Drop => return,
            UnitKind::Media(frames) => {
                if self.gap.is_some() {
                    let video = self.has_video();
                    let tracks = self.scanner.tracks();
                    let resumes = frames.iter().any(|f| {
                        f.key
                            && (!video
                                || tracks.get(f.track).map(|t| t.kind) == Some(TrackKind::Video))
                    });
                    if !resumes {
                        self.drop_unit(&unit);
                        return;
                    }
                    let at = frames
                        .iter()
                        .map(|f| f.first_s)
                        .fold(f64::INFINITY, f64::min);
                    let mut gap = self.gap.take().expect("a gap");
                    gap.chunks.push(self.chunks.chunk_of(unit.span.start));
                    let from_s = self.primary_latest();
                    self.close(gap, from_s, Some(at));
                    self.resume_floor = Some(at);
                }
                if let Some(floor) = self.resume_floor
                    && frames.iter().any(|f| f.first_s < floor)
                {
                    return;
                }
                let chunk = self.chunks.chunk_of(unit.span.start);
                for f in frames {
                    self.kept_add(f, chunk);
                }
                self.window.slice(unit.span.clone())
            }
        };
        self.out.extend(bytes);
    }

    fn kept_add(&mut self, frames: &super::frames::Frames, chunk: u32) {
        if self.kept.tracks.is_empty() {
            self.kept = Inventory::for_tracks(self.scanner.tracks(), 0);
            self.latest = vec![None; self.kept.tracks.len()];
        }
        self.kept.add(frames, chunk);
        if let Some(latest) = self.latest.get_mut(frames.track) {
            *latest = Some(latest.map_or(frames.last_s, |l| l.max(frames.last_s)));
        }
    }

    fn close(&mut self, gap: Gap, from_s: f64, to_s: Option<f64>) {
        let first = gap.chunks.iter().min().copied().unwrap_or(0);
        let last = gap.chunks.iter().max().copied().unwrap_or(first);
        let round = |s: f64| (s * 1000.0).round() / 1000.0;
        self.lost.push(Lost {
            from_s: round(from_s),
            to_s: to_s.map(round),
            chunks: (first..=last).collect(),
        });
    }
}

/// What a salvage left out, with the output's own long gaps (a recording that paused, or lost
/// frames ffmpeg dropped) that no lost range already covers, in order of time.
pub fn with_gaps(mut lost: Vec<Lost>, report: &FramecrcReport, inventory: &Inventory) -> Vec<Lost> {
    /// How far a gap of another track may stick out of a lost range and still be its.
    const SLACK_S: f64 = 0.5;
    for (i, stream) in report.streams.iter().enumerate() {
        let Some(first) = inventory.tracks.get(i).and_then(|t| t.first_s) else {
            continue;
        };
        for (a, b) in &stream.gaps {
            let from_s = first + stream.offset_seconds(*a);
            let to_s = first + stream.offset_seconds(*b);
            let covered = lost.iter().any(|l| {
                from_s >= l.from_s - SLACK_S && to_s <= l.to_s.unwrap_or(f64::INFINITY) + SLACK_S
            });
            if !covered {
                let round = |s: f64| (s * 1000.0).round() / 1000.0;
                lost.push(Lost {
                    from_s: round(from_s),
                    to_s: Some(round(to_s)),
                    chunks: inventory.chunk_at(i, to_s).into_iter().collect(),
                });
            }
        }
    }
    lost.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
    lost
}

#[cfg(test)]
mod tests;
