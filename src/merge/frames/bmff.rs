//! Fragmented MP4 as MediaRecorder writes it: `ftyp`, `moov` (the tracks, no samples), then
//! fragments, each a `moof` (per track: `tfhd`, `tfdt`, `trun` sample tables) followed by the
//! `mdat` holding those samples.
//!
//! Beyond the box structure, a fragment is checked against itself: fragment sequence numbers
//! increase, every `trun` has exactly the samples it declares, and every sample it points to lies
//! inside the `mdat` that follows it.

use std::ops::Range;

use super::walk::{Grammar, Head, Step};
use super::{FrameList, Frames, Track, TrackKind, Unit, UnitKind};

const fn fourcc(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

const FTYP: u32 = fourcc(b"ftyp");
const MOOV: u32 = fourcc(b"moov");
const TRAK: u32 = fourcc(b"trak");
const TKHD: u32 = fourcc(b"tkhd");
const MDIA: u32 = fourcc(b"mdia");
const MDHD: u32 = fourcc(b"mdhd");
const HDLR: u32 = fourcc(b"hdlr");
const MVEX: u32 = fourcc(b"mvex");
const TREX: u32 = fourcc(b"trex");
const MOOF: u32 = fourcc(b"moof");
const MFHD: u32 = fourcc(b"mfhd");
const TRAF: u32 = fourcc(b"traf");
const TFHD: u32 = fourcc(b"tfhd");
const TFDT: u32 = fourcc(b"tfdt");
const TRUN: u32 = fourcc(b"trun");
const MDAT: u32 = fourcc(b"mdat");
/// The other boxes a fragmented MP4 may have at its top level.
const TOP_OTHER: [u32; 11] = [
    fourcc(b"styp"),
    fourcc(b"sidx"),
    fourcc(b"ssix"),
    fourcc(b"free"),
    fourcc(b"skip"),
    fourcc(b"mfra"),
    fourcc(b"uuid"),
    fourcc(b"emsg"),
    fourcc(b"prft"),
    fourcc(b"meta"),
    fourcc(b"pdin"),
];

/// The box type, for finding where a fragment may begin in damaged data (4 bytes after the
/// box's start).
pub const MOOF_TYPE: [u8; 4] = *b"moof";

/// Per-track defaults from `trex`, overridden by `tfhd`.
#[derive(Clone, Copy, Debug, Default)]
struct Defaults {
    duration: Option<u32>,
    size: Option<u32>,
    flags: Option<u32>,
}

#[derive(Clone, Debug, Default)]
struct Trak {
    id: Option<u32>,
    timescale: Option<u32>,
    kind: Option<TrackKind>,
}

/// A `traf` being read.
#[derive(Debug)]
struct Traf {
    track: usize,
    base: u64,
    defaults: Defaults,
    dts: Option<i64>,
    /// Where the next `trun` without a data offset begins.
    next_data: u64,
    frames: Option<Frames>,
}

/// A `trun` being read, four bytes at a time.
#[derive(Debug)]
struct Trun {
    flags: u32,
    signed_offsets: bool,
    count: u32,
    /// Optional header words still to come (data offset, first sample flags).
    header_words: Vec<u32>,
    data_start: Option<u64>,
    data_len: u64,
    first_flags: Option<u32>,
    sample: u32,
    field: u32,
    duration: Option<u32>,
    sample_flags: Option<u32>,
}

impl Trun {
    const DATA_OFFSET: u32 = 0x1;
    const FIRST_FLAGS: u32 = 0x4;
    const DURATION: u32 = 0x100;
    const SIZE: u32 = 0x200;
    const FLAGS: u32 = 0x400;
    const CTO: u32 = 0x800;

    fn fields(&self) -> u32 {
        (self.flags & 0xF00).count_ones()
    }
}

/// A `moof` read, waiting for its `mdat`.
#[derive(Debug, Default)]
struct Fragment {
    start: u64,
    frames: FrameList,
    data: Vec<Range<u64>>,
    trafs: u32,
    /// Where the previous `traf`'s data ended (the base of the next one without its own).
    next_base: Option<u64>,
    mdat_body: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Bmff {
    tracks: Vec<Track>,
    ids: Vec<u32>,
    trex: Vec<(u32, Defaults)>,
    trak: Option<Trak>,
    /// Where each track's next sample would begin when a fragment has no `tfdt`.
    next_dts: Vec<i64>,
    last_sequence: Option<u32>,
    fragment: Option<Fragment>,
    traf: Option<Traf>,
    trun: Option<Trun>,
    pub units: Vec<Unit>,
}

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")))
        .ok_or_else(|| "a box too short for its fields".into())
}

fn be64(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| "a box too short for its fields".into())
}

/// A box's version byte and 24-bit flags.
fn full_box(b: &[u8]) -> Result<(u8, u32), String> {
    Ok((b[0], be32(b, 0)? & 0x00FF_FFFF))
}

impl Bmff {
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The same header knowledge, for parsing again from a fragment: its sequence number must
    /// follow `after`.
    pub fn resumed(&self, after: Option<u32>) -> Self {
        Self {
            tracks: self.tracks.clone(),
            ids: self.ids.clone(),
            trex: self.trex.clone(),
            next_dts: self.next_dts.clone(),
            last_sequence: after.or(self.last_sequence),
            ..Self::default()
        }
    }

    /// The sequence number of the last fragment read.
    pub fn last_sequence(&self) -> Option<u32> {
        self.last_sequence
    }

    fn traf(&mut self) -> Result<&mut Traf, String> {
        self.traf
            .as_mut()
            .ok_or_else(|| "a track run outside a track fragment".into())
    }

    /// One sample of the current run: its duration and flags are known, its composition offset
    /// is `cto`.
    fn sample(&mut self, cto: i64) -> Result<(), String> {
        let trun = self.trun.as_mut().ok_or("a sample outside a track run")?;
        let first = trun.sample == 0;
        let flags = if first { trun.first_flags } else { None }.or(trun.sample_flags);
        let sample_duration = trun.duration;
        trun.sample += 1;
        trun.duration = None;
        trun.sample_flags = None;
        let traf = self.traf.as_mut().expect("a run is inside a traf");
        let duration = sample_duration
            .or(traf.defaults.duration)
            .ok_or("a sample without a duration")?;
        let flags = flags.or(traf.defaults.flags).unwrap_or(0);
        let track = &self.tracks[traf.track];
        let dts = traf.dts.ok_or("a sample without a decode time")?;
        let at = (dts + cto) as f64 * track.timebase_s;
        traf.dts = Some(dts + i64::from(duration));
        let key = flags & 0x0001_0000 == 0;
        match &mut traf.frames {
            Some(f) => {
                f.count += 1;
                f.first_s = f.first_s.min(at);
                f.last_s = f.last_s.max(at);
            }
            None => {
                traf.frames = Some(Frames {
                    track: traf.track,
                    count: 1,
                    first_s: at,
                    last_s: at,
                    key,
                    laced: false,
                })
            }
        }
        Ok(())
    }

    /// The sample sizes of the current run are known: its data must follow the others.
    fn end_run(&mut self) -> Result<(), String> {
        let trun = self.trun.take().ok_or("a track run ended twice")?;
        if trun.sample != trun.count || !trun.header_words.is_empty() {
            return Err(format!(
                "a track run declares {} samples and holds {}",
                trun.count, trun.sample
            ));
        }
        let traf = self.traf()?;
        let start = trun.data_start.unwrap_or(traf.next_data);
        traf.next_data = start + trun.data_len;
        let fragment = self.fragment.as_mut().expect("a run is inside a fragment");
        fragment.data.push(start..start + trun.data_len);
        Ok(())
    }
}

impl Grammar for Bmff {
    const MAX_HEADER: usize = 16;

    fn header(&self, buf: &[u8]) -> Result<Option<Head>, String> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let size = be32(buf, 0)?;
        let kind = &buf[4..8];
        if !kind.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') {
            return Err(format!("a box of type {}", hex::encode(kind)));
        }
        let (len, size) = match size {
            0 => return Err("a box that runs to the end of the file".into()),
            1 if buf.len() < 16 => return Ok(None),
            1 => (16, be64(buf, 8)?),
            n => (8, u64::from(n)),
        };
        if size < len {
            return Err(format!("a box of {size} bytes"));
        }
        Ok(Some(Head {
            id: be32(buf, 4)?,
            len,
            size: Some(size - len),
        }))
    }

    fn allowed(&self, parent: Option<u32>, id: u32) -> bool {
        match parent {
            None => matches!(id, FTYP | MOOV | MOOF | MDAT) || TOP_OTHER.contains(&id),
            Some(_) => true,
        }
    }

    fn enter(&mut self, parent: Option<u32>, head: &Head, start: u64) -> Result<Step, String> {
        Ok(match (parent, head.id) {
            (None, MOOV) | (Some(MOOV), MVEX) | (Some(TRAK), MDIA) => Step::Enter,
            (Some(MOOV), TRAK) => {
                self.trak = Some(Trak::default());
                Step::Enter
            }
            (Some(TRAK), TKHD) | (Some(MDIA), MDHD) | (Some(MVEX), TREX) => Step::Read(24),
            (Some(MDIA), HDLR) => Step::Read(12),
            (None, MOOF) => {
                if self.tracks.is_empty() {
                    return Err("a fragment before the movie header".into());
                }
                if self.fragment.is_some() {
                    return Err("a fragment header without its media data".into());
                }
                self.fragment = Some(Fragment {
                    start,
                    ..Fragment::default()
                });
                Step::Enter
            }
            (Some(MOOF), MFHD) => Step::Read(8),
            (Some(MOOF), TRAF) => Step::Enter,
            (Some(TRAF), TFHD) => Step::Read(32),
            (Some(TRAF), TFDT) => Step::Read(12),
            (Some(TRAF), TRUN) => Step::Read(8),
            (None, MDAT) => {
                let fragment = self
                    .fragment
                    .as_mut()
                    .ok_or("media data without a fragment header")?;
                fragment.mdat_body = Some(start + head.len);
                Step::Skip
            }
            _ => Step::Skip,
        })
    }

    fn read(&mut self, id: u32, b: &[u8], size: u64) -> Result<Option<usize>, String> {
        match id {
            TKHD | MDHD => {
                let (version, _) = full_box(b)?;
                let at = if version == 1 { 20 } else { 12 };
                let value = be32(b, at)?;
                let trak = self.trak.as_mut().ok_or("a track header outside a track")?;
                if id == TKHD {
                    trak.id = Some(value);
                } else {
                    trak.timescale = Some(value).filter(|t| *t > 0);
                }
            }
            HDLR => {
                let trak = self.trak.as_mut().ok_or("a handler outside a track")?;
                trak.kind = Some(match b.get(8..12) {
                    Some(b"vide") => TrackKind::Video,
                    Some(b"soun") => TrackKind::Audio,
                    _ => TrackKind::Other,
                });
            }
            TREX => {
                let defaults = Defaults {
                    duration: Some(be32(b, 12)?),
                    size: Some(be32(b, 16)?),
                    flags: Some(be32(b, 20)?),
                };
                self.trex.push((be32(b, 4)?, defaults));
            }
            MFHD => {
                let sequence = be32(b, 4)?;
                if let Some(last) = self.last_sequence
                    && sequence <= last
                {
                    return Err(format!("fragment {sequence} after fragment {last}"));
                }
                self.last_sequence = Some(sequence);
            }
            TFHD => {
                let (_, flags) = full_box(b)?;
                let id = be32(b, 4)?;
                let track =
                    self.ids.iter().position(|t| *t == id).ok_or_else(|| {
                        format!("a fragment of track {id}, which the header lacks")
                    })?;
                let mut defaults = self
                    .trex
                    .iter()
                    .find(|(t, _)| *t == id)
                    .map(|(_, d)| *d)
                    .unwrap_or_default();
                let mut at = 8;
                let mut base = None;
                if flags & 0x1 != 0 {
                    base = Some(be64(b, at)?);
                    at += 8;
                }
                if flags & 0x2 != 0 {
                    at += 4;
                }
                for (bit, field) in [
                    (0x8, &mut defaults.duration),
                    (0x10, &mut defaults.size),
                    (0x20, &mut defaults.flags),
                ] {
                    if flags & bit != 0 {
                        *field = Some(be32(b, at)?);
                        at += 4;
                    }
                }
                let fragment = self
                    .fragment
                    .as_mut()
                    .ok_or("a track fragment outside a fragment")?;
                let base = match base {
                    Some(base) => base,
                    None if flags & 0x2_0000 != 0 || fragment.trafs == 0 => fragment.start,
                    None => fragment.next_base.unwrap_or(fragment.start),
                };
                fragment.trafs += 1;
                self.traf = Some(Traf {
                    track,
                    base,
                    defaults,
                    dts: self.next_dts.get(track).copied(),
                    next_data: base,
                    frames: None,
                });
            }
            TFDT => {
                let (version, _) = full_box(b)?;
                let time = if version == 1 {
                    be64(b, 4)?
                } else {
                    u64::from(be32(b, 4)?)
                };
                let time = i64::try_from(time).map_err(|_| "a decode time too large")?;
                let traf = self
                    .traf
                    .as_mut()
                    .ok_or("a decode time outside a track fragment")?;
                if let Some(end) = traf.dts
                    && time < end
                {
                    let track = &self.tracks[traf.track];
                    return Err(format!(
                        "a fragment of a {} track that begins at {:.3} s, before the one before it ends ({:.3} s)",
                        track.kind.media_type(),
                        time as f64 * track.timebase_s,
                        end as f64 * track.timebase_s
                    ));
                }
                traf.dts = Some(time);
            }
            TRUN => {
                let (version, flags) = full_box(b)?;
                let count = be32(b, 4)?;
                let mut header_words = Vec::new();
                if flags & Trun::FIRST_FLAGS != 0 {
                    header_words.push(Trun::FIRST_FLAGS);
                }
                if flags & Trun::DATA_OFFSET != 0 {
                    header_words.push(Trun::DATA_OFFSET);
                }
                let mut trun = Trun {
                    flags,
                    signed_offsets: version == 1,
                    count,
                    header_words,
                    data_start: None,
                    data_len: 0,
                    first_flags: None,
                    sample: 0,
                    field: 0,
                    duration: None,
                    sample_flags: None,
                };
                let words =
                    trun.header_words.len() as u64 + u64::from(count) * u64::from(trun.fields());
                if 8 + 4 * words != size {
                    return Err(format!(
                        "a track run of {size} bytes that declares {count} samples"
                    ));
                }
                if words > 0 {
                    self.trun = Some(trun);
                    return Ok(Some(4));
                }
                // Every sample takes the defaults: no per-sample fields follow.
                let default_size = self
                    .traf()?
                    .defaults
                    .size
                    .ok_or("a sample without a size")?;
                trun.data_len = u64::from(count) * u64::from(default_size);
                self.trun = Some(trun);
                for _ in 0..count {
                    self.sample(0)?;
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn record(&mut self, _id: u32, word: &[u8]) -> Result<(), String> {
        let value = be32(word, 0)?;
        let trun = self
            .trun
            .as_mut()
            .ok_or("a track run field outside a run")?;
        if let Some(field) = trun.header_words.pop() {
            // Pushed in reverse: the data offset comes first, then the first sample's flags.
            if field == Trun::DATA_OFFSET {
                let base = self.traf.as_ref().expect("a run is inside a traf").base;
                let start = base as i64 + i64::from(value as i32);
                trun.data_start = Some(u64::try_from(start).map_err(|_| "a negative data offset")?);
            } else {
                trun.first_flags = Some(value);
            }
            return Ok(());
        }
        let field = [Trun::DURATION, Trun::SIZE, Trun::FLAGS, Trun::CTO]
            .into_iter()
            .filter(|f| trun.flags & f != 0)
            .nth(trun.field as usize)
            .expect("one field per present flag");
        trun.field = (trun.field + 1) % trun.fields();
        let last_field = trun.field == 0;
        match field {
            Trun::DURATION => trun.duration = Some(value),
            Trun::SIZE => trun.data_len += u64::from(value),
            Trun::FLAGS => trun.sample_flags = Some(value),
            _ => {}
        }
        if !last_field {
            return Ok(());
        }
        if trun.flags & Trun::SIZE == 0 {
            let size = self
                .traf
                .as_ref()
                .and_then(|t| t.defaults.size)
                .ok_or("a sample without a size")?;
            self.trun.as_mut().expect("a run").data_len += u64::from(size);
        }
        let cto = match (field, self.trun.as_ref().expect("a run").signed_offsets) {
            (Trun::CTO, true) => i64::from(value as i32),
            (Trun::CTO, false) => i64::from(value),
            _ => 0,
        };
        self.sample(cto)
    }

    fn exit(&mut self, parent: Option<u32>, id: u32, span: Range<u64>) -> Result<(), String> {
        let kind = match (parent, id) {
            (Some(MOOV), TRAK) => {
                let trak = self.trak.take().ok_or("a track ended twice")?;
                let (Some(id), Some(timescale)) = (trak.id, trak.timescale) else {
                    return Err("a track without an id or a timescale".into());
                };
                self.ids.push(id);
                self.next_dts.push(0);
                self.tracks.push(Track {
                    kind: trak.kind.unwrap_or(TrackKind::Other),
                    codec: String::new(),
                    timebase_s: 1.0 / f64::from(timescale),
                });
                return Ok(());
            }
            (Some(TRAF), TRUN) => return self.end_run(),
            (Some(MOOF), TRAF) => {
                let traf = self.traf.take().ok_or("a track fragment ended twice")?;
                self.next_dts[traf.track] = traf.dts.unwrap_or(self.next_dts[traf.track]);
                let fragment = self.fragment.as_mut().expect("a traf is inside a fragment");
                fragment.next_base = Some(traf.next_data);
                fragment.frames.extend(traf.frames);
                return Ok(());
            }
            (None, FTYP) => UnitKind::Header(None),
            (None, MOOV) => {
                if self.tracks.is_empty() {
                    return Err("a movie header without tracks".into());
                }
                UnitKind::Header(None)
            }
            (None, MOOF) => return Ok(()),
            (None, MDAT) => {
                let fragment = self.fragment.take().expect("checked at its start");
                let body = fragment.mdat_body.expect("set at its start")..span.end;
                if let Some(outside) = fragment
                    .data
                    .iter()
                    .find(|d| d.start < body.start || d.end > body.end)
                {
                    return Err(format!(
                        "samples at bytes {}..{} lie outside their media data ({}..{})",
                        outside.start, outside.end, body.start, body.end
                    ));
                }
                self.units.push(Unit {
                    span: fragment.start..span.end,
                    kind: UnitKind::Media(fragment.frames),
                });
                return Ok(());
            }
            (None, _) => UnitKind::Drop,
            _ => return Ok(()),
        };
        self.units.push(Unit { span, kind });
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        match &self.fragment {
            Some(_) => Err("a fragment header without its media data".into()),
            None => Ok(()),
        }
    }
}
