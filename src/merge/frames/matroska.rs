//! Matroska / WebM as MediaRecorder writes it: an EBML header, then a Segment (often of unknown
//! size) holding Info, Tracks and Clusters (often of unknown size) of blocks.
//!
//! Inside a Cluster only the elements Matroska allows there are accepted: after damage the
//! parser lands in the middle of some element and reads its bytes as headers, and this is what
//! notices it within a few bytes.

use std::ops::Range;

use super::walk::{Grammar, Head, Step};
use super::{Frames, Track, TrackKind, Unit, UnitKind};

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;
const VOID: u32 = 0xEC;
const CRC32: u32 = 0xBF;

/// Other Segment children: Cues, Chapters, Tags, Attachments.
const SEGMENT_OTHER: [u32; 4] = [0x1C53_BB6B, 0x1043_A770, 0x1254_C367, 0x1941_A469];
/// Other Cluster children: Position, PrevSize, EncryptedBlock, SilentTracks.
const CLUSTER_OTHER: [u32; 4] = [0xA7, 0xAB, 0xAF, 0x5854];

/// The Cluster ID, for finding where a cluster may begin in damaged data.
pub const CLUSTER_ID: [u8; 4] = CLUSTER.to_be_bytes();

/// A header of unknown size for `id` (a 4-byte ID), as salvage writes Segments and Clusters.
pub fn unknown_size_header(id: u32) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    h
}

/// Bytes a block's header needs: the track number (at most 8 bytes), the timestamp (2), the
/// flags (1) and the lace count (1).
const BLOCK_HEADER: usize = 12;
/// A larger block is damage: no frame of a screen recording comes near it.
const MAX_BLOCK: u64 = 256 << 20;

#[derive(Debug)]
pub struct Matroska {
    scale_ns: u64,
    duration: Option<f64>,
    tracks: Vec<Track>,
    numbers: Vec<u64>,
    /// Per track: the latest frame time read, and how far back a frame may be presented
    /// (codecs with B-frames reorder; the others never go back).
    latest: Vec<(Option<i64>, i64)>,
    entry: Option<(Option<u64>, TrackKind, String)>,
    cluster_time: Option<i64>,
    /// A cluster may not begin before this time (in timestamp units).
    floor: Option<i64>,
    /// A SimpleBlock being read.
    block: Option<Frames>,
    /// The Block of a BlockGroup being read, and whether the group references another frame.
    group: Option<(Option<Frames>, bool)>,
    pub units: Vec<Unit>,
}

impl Default for Matroska {
    fn default() -> Self {
        Self {
            scale_ns: 1_000_000,
            duration: None,
            tracks: Vec::new(),
            numbers: Vec::new(),
            latest: Vec::new(),
            entry: None,
            cluster_time: None,
            floor: None,
            block: None,
            group: None,
            units: Vec::new(),
        }
    }
}

/// An EBML variable-length integer at the start of `buf`: its length and value (with the
/// length marker kept when `keep_marker`, as IDs are written). `Ok(None)` when `buf` is short.
fn vint(buf: &[u8], max_len: usize, keep_marker: bool) -> Result<Option<(usize, u64)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > max_len {
        return Err(format!("byte {first:#04x} begins no valid number"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let first = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & ((1 << (8 - len)) - 1)
    };
    let value = buf[1..len]
        .iter()
        .fold(first, |v, b| (v << 8) | u64::from(*b));
    Ok(Some((len, value)))
}

fn uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |v, b| (v << 8) | u64::from(*b))
}

impl Matroska {
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The Segment's Duration, in seconds, when the header gives one.
    pub fn duration_s(&self) -> Option<f64> {
        self.duration.map(|d| d * self.scale_ns as f64 / 1e9)
    }

    /// The same header knowledge, for parsing again from a cluster: no cluster may begin before
    /// `floor_s`.
    pub fn resumed(&self, floor_s: Option<f64>) -> Self {
        Self {
            scale_ns: self.scale_ns,
            duration: self.duration,
            tracks: self.tracks.clone(),
            numbers: self.numbers.clone(),
            latest: self
                .latest
                .iter()
                .map(|(_, reorder)| (None, *reorder))
                .collect(),
            floor: floor_s.map(|s| (s * 1e9 / self.scale_ns as f64).ceil() as i64),
            ..Self::default()
        }
    }

    fn seconds(&self, ticks: i64) -> f64 {
        ticks as f64 * self.scale_ns as f64 / 1e9
    }

    fn unit(&mut self, span: Range<u64>, kind: UnitKind) {
        self.units.push(Unit { span, kind });
    }

    /// A Block or SimpleBlock header: its track, time, keyframe flag and frame count.
    fn block(&mut self, bytes: &[u8], size: u64, simple: bool) -> Result<Frames, String> {
        let (len, number) = vint(bytes, 8, false)?.ok_or("a block too short for its header")?;
        let track = self
            .numbers
            .iter()
            .position(|n| *n == number)
            .ok_or_else(|| format!("a block of track {number}, which the header does not have"))?;
        let rest = &bytes[len..];
        if rest.len() < 3 {
            return Err("a block too short for its header".into());
        }
        let cluster = self
            .cluster_time
            .ok_or("a block before its cluster's timestamp")?;
        let time = cluster + i64::from(i16::from_be_bytes([rest[0], rest[1]]));
        let flags = rest[2];
        let laced = flags & 0x06 != 0;
        let count = if laced {
            u32::from(*rest.get(3).ok_or("a laced block without its frame count")?) + 1
        } else {
            1
        };
        if (len + 3 + usize::from(laced)) as u64 > size {
            return Err("a block shorter than its header".into());
        }
        let (latest, reorder) = &mut self.latest[track];
        if let Some(before) = *latest
            && time < before - *reorder
        {
            return Err(format!(
                "track {number} goes back from {:.3} s to {:.3} s",
                self.seconds(before),
                self.seconds(time)
            ));
        }
        *latest = Some(latest.map_or(time, |l| l.max(time)));
        let at = self.seconds(time);
        Ok(Frames {
            track,
            count,
            first_s: at,
            last_s: at,
            key: simple && flags & 0x80 != 0,
            laced,
        })
    }
}

impl Grammar for Matroska {
    const MAX_HEADER: usize = 12;

    fn header(&self, buf: &[u8]) -> Result<Option<Head>, String> {
        let Some((id_len, id)) = vint(buf, 4, true)? else {
            return Ok(None);
        };
        let Some((size_len, size)) = vint(&buf[id_len..], 8, false)? else {
            return Ok(None);
        };
        let unknown = size == (1u64 << (7 * size_len)) - 1;
        Ok(Some(Head {
            id: id as u32,
            len: (id_len + size_len) as u64,
            size: (!unknown).then_some(size),
        }))
    }

    fn allowed(&self, parent: Option<u32>, id: u32) -> bool {
        match parent {
            None => matches!(id, EBML | SEGMENT | VOID),
            Some(SEGMENT) => {
                matches!(
                    id,
                    SEEK_HEAD | INFO | TRACKS | CLUSTER | VOID | CRC32 | EBML
                ) || SEGMENT_OTHER.contains(&id)
            }
            Some(CLUSTER) => {
                matches!(id, TIMESTAMP | SIMPLE_BLOCK | BLOCK_GROUP | VOID | CRC32)
                    || CLUSTER_OTHER.contains(&id)
            }
            // Known-size containers bound whatever is inside them.
            Some(_) => true,
        }
    }

    fn enter(&mut self, parent: Option<u32>, head: &Head, start: u64) -> Result<Step, String> {
        let sized = |max: u64| match head.size {
            Some(s) if s <= max => Ok(()),
            Some(s) => Err(format!("element {:#x} of {s} bytes", head.id)),
            None => Err(format!("element {:#x} of unknown size", head.id)),
        };
        Ok(match (parent, head.id) {
            (None, EBML) => {
                sized(4096)?;
                Step::Skip
            }
            (Some(SEGMENT), EBML) => return Err("a second file header inside the Segment".into()),
            (None, SEGMENT) => {
                self.unit(
                    start..start + head.len,
                    UnitKind::Header(Some(unknown_size_header(SEGMENT))),
                );
                Step::Enter
            }
            (Some(SEGMENT), INFO | TRACKS) => {
                sized(1 << 20)?;
                Step::Enter
            }
            (Some(TRACKS), TRACK_ENTRY) => {
                self.entry = Some((None, TrackKind::Other, String::new()));
                Step::Enter
            }
            (Some(INFO), TIMESTAMP_SCALE | DURATION)
            | (Some(TRACK_ENTRY), TRACK_NUMBER | TRACK_TYPE) => {
                sized(8)?;
                Step::Read(8)
            }
            (Some(TRACK_ENTRY), CODEC_ID) => Step::Read(64),
            (Some(SEGMENT), CLUSTER) => {
                if self.tracks.is_empty() {
                    return Err("a cluster before the tracks".into());
                }
                self.cluster_time = None;
                self.unit(
                    start..start + head.len,
                    UnitKind::Sync(Some(unknown_size_header(CLUSTER))),
                );
                Step::Enter
            }
            (Some(CLUSTER), TIMESTAMP) => {
                sized(8)?;
                Step::Read(8)
            }
            (Some(CLUSTER), SIMPLE_BLOCK) | (Some(BLOCK_GROUP), BLOCK) => {
                sized(MAX_BLOCK)?;
                Step::Read(BLOCK_HEADER)
            }
            (Some(CLUSTER), BLOCK_GROUP) => {
                sized(MAX_BLOCK)?;
                self.group = Some((None, false));
                Step::Enter
            }
            (Some(BLOCK_GROUP), REFERENCE_BLOCK) => {
                if let Some(group) = &mut self.group {
                    group.1 = true;
                }
                Step::Skip
            }
            _ => {
                if head.size.is_none() {
                    return Err(format!("element {:#x} of unknown size", head.id));
                }
                Step::Skip
            }
        })
    }

    fn read(&mut self, id: u32, bytes: &[u8], size: u64) -> Result<Option<usize>, String> {
        match id {
            TIMESTAMP_SCALE => self.scale_ns = uint(bytes).max(1),
            DURATION => {
                self.duration = match bytes.len() {
                    4 => Some(f64::from(f32::from_be_bytes(bytes.try_into().expect("4")))),
                    8 => Some(f64::from_be_bytes(bytes.try_into().expect("8"))),
                    _ => None,
                }
            }
            TRACK_NUMBER | TRACK_TYPE | CODEC_ID => {
                let entry = self.entry.as_mut().ok_or("a track field outside a track")?;
                match id {
                    TRACK_NUMBER => entry.0 = Some(uint(bytes)),
                    TRACK_TYPE => {
                        entry.1 = match uint(bytes) {
                            1 => TrackKind::Video,
                            2 => TrackKind::Audio,
                            _ => TrackKind::Other,
                        }
                    }
                    _ => entry.2 = String::from_utf8_lossy(bytes).trim_end_matches('\0').into(),
                }
            }
            TIMESTAMP => {
                let time =
                    i64::try_from(uint(bytes)).map_err(|_| "a cluster timestamp too large")?;
                if let Some(floor) = self.floor
                    && time < floor
                {
                    return Err(format!(
                        "a cluster at {:.3} s, before the one read last ({:.3} s)",
                        self.seconds(time),
                        self.seconds(floor)
                    ));
                }
                self.floor = Some(time);
                self.cluster_time = Some(time);
            }
            SIMPLE_BLOCK => self.block = Some(self.block(bytes, size, true)?),
            BLOCK => {
                let frames = self.block(bytes, size, false)?;
                let group = self.group.as_mut().ok_or("a Block outside a BlockGroup")?;
                if group.0.replace(frames).is_some() {
                    return Err("a BlockGroup with two Blocks".into());
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn exit(&mut self, parent: Option<u32>, id: u32, span: Range<u64>) -> Result<(), String> {
        let kind = match (parent, id) {
            (Some(TRACKS), TRACK_ENTRY) => {
                let (number, kind, codec) = self.entry.take().ok_or("a track ended twice")?;
                let number = number.ok_or("a track without a number")?;
                if self.numbers.contains(&number) {
                    return Err(format!("track {number} defined twice"));
                }
                self.numbers.push(number);
                // H.264 and HEVC may present frames in another order than they are stored.
                let reorders = codec.starts_with("V_MPEG4/ISO/AVC") || codec.starts_with("V_MPEGH");
                let window_s = if reorders { 0.5 } else { 0.0 };
                self.latest
                    .push((None, (window_s * 1e9 / self.scale_ns as f64) as i64));
                self.tracks.push(Track {
                    kind,
                    codec,
                    timebase_s: self.scale_ns as f64 / 1e9,
                });
                return Ok(());
            }
            (Some(CLUSTER), SIMPLE_BLOCK) => UnitKind::Media(smallvec::smallvec![
                self.block.take().ok_or("a block ended twice")?
            ]),
            (Some(CLUSTER), BLOCK_GROUP) => {
                let (frames, references) = self.group.take().ok_or("a BlockGroup ended twice")?;
                let mut frames = frames.ok_or("a BlockGroup without a Block")?;
                frames.key = !references;
                UnitKind::Media(smallvec::smallvec![frames])
            }
            (Some(CLUSTER), TIMESTAMP) => UnitKind::Copy,
            (None, EBML) | (Some(SEGMENT), INFO | TRACKS) => UnitKind::Header(None),
            (_, SEGMENT) | (Some(SEGMENT), CLUSTER) => return Ok(()),
            (None | Some(SEGMENT | CLUSTER), _) => UnitKind::Drop,
            _ => return Ok(()),
        };
        self.unit(span, kind);
        Ok(())
    }
}
