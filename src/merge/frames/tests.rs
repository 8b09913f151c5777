//! The accounting against the real MediaRecorder recordings in `tests/fixtures/mediarecorder`,
//! whole and damaged in every way the fidelity proof asks for.

use std::path::PathBuf;

use super::*;

/// A fixture's chunks, in order.
pub(crate) fn fixture(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mediarecorder")
        .join(name);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| std::fs::read(dir.join(c["file"].as_str().unwrap())).unwrap())
        .collect()
}

pub(crate) const TIMESLICE: [&str; 5] = [
    "vp8-opus-ts1000",
    "vp9-ts1000",
    "h264-mkv-ts500",
    "mp4-avc1-opus-ts1000",
    "mp4-avc1-kf1000-ts1000",
];

fn format_of(chunks: &[Vec<u8>]) -> Format {
    Format::sniff(&chunks[0]).unwrap()
}

/// Account for `chunks` as one stream, fed in pieces of at most `piece` bytes.
fn account(chunks: &[Vec<u8>], piece: usize) -> Result<Inventory, Error> {
    let mut a = Accounting::new(format_of(chunks), chunks.len() as u32);
    for (i, c) in chunks.iter().enumerate() {
        for p in c.chunks(piece) {
            a.feed(i as u32, p)?;
        }
    }
    a.finish().map(|(inventory, _)| inventory)
}

fn counts(inv: &Inventory) -> Vec<(TrackKind, u64)> {
    inv.tracks.iter().map(|t| (t.kind, t.frames)).collect()
}

use TrackKind::{Audio, Video};

/// A recording, the packets per stream `ffmpeg -c copy` writes for it whole (framecrc), and its
/// last video frame's time (0: not checked).
type Whole = (&'static str, &'static [(TrackKind, u64)], f64);

const WHOLE: [Whole; 5] = [
    ("vp8-opus-ts1000", &[(Video, 355), (Audio, 201)], 12.055),
    ("vp9-ts1000", &[(Video, 231)], 0.0),
    ("h264-mkv-ts500", &[(Video, 153)], 6.036),
    (
        "mp4-avc1-opus-ts1000",
        &[(Video, 148), (Audio, 101)],
        181_861.0 / 30_000.0,
    ),
    (
        "mp4-avc1-kf1000-ts1000",
        &[(Video, 157)],
        181_037.0 / 30_000.0,
    ),
];

#[test]
fn whole_recordings_count_what_ffmpeg_writes_in_any_piece_size() {
    for (name, expected, last_video_s) in WHOLE {
        let chunks = fixture(name);
        let inv = account(&chunks, 1 << 20).unwrap();
        assert_eq!(counts(&inv), expected, "{name}");
        if last_video_s > 0.0 {
            let last = inv.tracks[0].last_s.unwrap();
            assert!((last - last_video_s).abs() < 1e-6, "{name}: {last}");
        }
        for piece in [1, 7, 4096] {
            assert_eq!(
                account(&chunks, piece).unwrap(),
                inv,
                "{name} in {piece}-byte pieces"
            );
        }
    }
}

#[test]
fn restart_style_files_each_count_on_their_own() {
    let chunks = fixture("vp8-restart2000");
    let mut total = Inventory::default();
    let mut offset = 0.0;
    for (i, c) in chunks.iter().enumerate() {
        let mut a = Accounting::new(Format::Matroska, 1);
        a.feed(i as u32, c).unwrap();
        let (inv, duration) = a.finish().unwrap();
        let duration = duration.unwrap();
        total.append(inv, offset);
        offset += duration;
    }
    assert_eq!(counts(&total), [(Video, 211)]);
    // ffmpeg's concat demuxer puts the last frame at 8.076 s.
    let last = total.tracks[0].last_s.unwrap();
    assert!((last - 8.076).abs() < 0.034, "{last}");
}

fn refused(name: &str, what: &str, chunks: &[Vec<u8>]) -> u32 {
    match account(chunks, 64 << 10) {
        Err(Error::FramesLost { chunk, .. }) => chunk.unwrap(),
        other => panic!("{name}, {what}: {other:?}"),
    }
}

#[test]
fn every_middle_chunk_cut_to_half_is_damage() {
    for name in TIMESLICE {
        let whole = fixture(name);
        for i in 1..whole.len().saturating_sub(1) {
            let mut chunks = whole.clone();
            let half = chunks[i].len() / 2;
            chunks[i].truncate(half);
            let at = refused(name, &format!("chunk {i} cut"), &chunks);
            assert!(at >= i as u32, "{name}: chunk {i} cut, reported at {at}");
        }
    }
}

#[test]
fn every_adjacent_middle_pair_swapped_is_damage() {
    for name in TIMESLICE {
        let whole = fixture(name);
        for i in 1..whole.len().saturating_sub(2) {
            let mut chunks = whole.clone();
            chunks.swap(i, i + 1);
            refused(name, &format!("chunks {i}/{} swapped", i + 1), &chunks);
        }
    }
}

#[test]
fn a_last_byte_cut_or_garbage_appended_is_damage_in_any_chunk() {
    // A fixed pseudo-random garbage, so a failure can be replayed.
    let garbage: Vec<u8> = (0u32..64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for name in TIMESLICE {
        let whole = fixture(name);
        for i in 0..whole.len() {
            let mut cut = whole.clone();
            cut[i].pop();
            refused(name, &format!("chunk {i} without its last byte"), &cut);
            let mut longer = whole.clone();
            longer[i].extend_from_slice(&garbage);
            refused(name, &format!("chunk {i} with garbage"), &longer);
        }
    }
}

#[test]
fn a_restart_style_file_cut_to_half_is_damage() {
    for (i, c) in fixture("vp8-restart2000").iter().enumerate() {
        let mut a = Accounting::new(Format::Matroska, 1);
        a.feed(i as u32, &c[..c.len() / 2]).unwrap();
        let e = a.finish().unwrap_err();
        assert_eq!(e.code(), "frames_lost", "file {i}");
    }
}

#[test]
fn the_output_must_match_the_input() {
    let inv = account(&fixture("h264-mkv-ts500"), 1 << 20).unwrap();
    // `packets` packets spread evenly over `span_ms`.
    let listing = |packets: u64, span_ms: i64| {
        let mut r = FramecrcReport::default();
        for line in ["#tb 0: 1/1000", "#media_type 0: video", "#codec_id 0: h264"] {
            r.feed(line);
        }
        for p in 0..packets as i64 {
            r.feed(&format!(
                "0, {0}, {0}, 1, 100, 0x0",
                p * span_ms / (packets as i64 - 1)
            ));
        }
        r
    };
    // 153 frames over 6.036 s: about 39.7 ms apart.
    assert!(inv.check(&listing(153, 6036)).is_ok());
    assert!(inv.check(&listing(153, 6036 - 39)).is_ok());
    let short = inv.check(&listing(145, 6036)).unwrap_err();
    assert_eq!(short.stream, Some(0));
    assert!(
        short.why.contains("153 frames went in and 145 came out"),
        "{short:?}"
    );
    let slow = inv.check(&listing(153, 6036 - 80)).unwrap_err();
    assert!(slow.why.contains("spans"), "{slow:?}");
    // Where the counts parted: an output without chunk 5's frames parts at chunk 5.
    let chunks = fixture("h264-mkv-ts500");
    let mut scanner = Scanner::new(Format::Matroska);
    let mut map = ChunkMap::default();
    let mut times = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        map.note(i as u32, scanner.position());
        scanner.feed(c).unwrap();
        for unit in scanner.take_units() {
            if let UnitKind::Media(frames) = unit.kind
                && map.chunk_of(unit.span.start) != 5
            {
                times.push(frames[0].first_s);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    assert_eq!(inv.parted_at(0, &times), Some(5));
}
