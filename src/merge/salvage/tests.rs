//! Salvage of the real recordings with chunks missing or cut: what comes out parses whole, holds
//! what the salvage says it kept, and lacks exactly the frames of its lost ranges.

use super::*;
use crate::merge::frames::Accounting;
use crate::merge::frames::tests::{TIMESLICE, fixture};

/// Every video frame time of a whole Matroska recording (per block, unlaced).
fn video_times(chunks: &[Vec<u8>]) -> Vec<f64> {
    let mut scanner = Scanner::new(Format::Matroska);
    let mut times = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        scanner.feed(c).unwrap();
        if i + 1 == chunks.len() {
            scanner.finish().unwrap();
        }
        for unit in scanner.take_units() {
            if let UnitKind::Media(frames) = unit.kind {
                let video = scanner.tracks()[frames[0].track].kind == TrackKind::Video;
                if video {
                    times.push(frames[0].first_s);
                }
            }
        }
    }
    times
}

/// Salvage `chunks` (`None`: missing), returning the bytes for ffmpeg and what was kept.
fn salvage(chunks: &[Option<Vec<u8>>]) -> (Vec<u8>, Salvaged) {
    let first = chunks[0].as_ref().unwrap();
    let mut s = Salvage::new(Format::sniff(first).unwrap());
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let pieces = match c {
            Some(bytes) => s.feed(i as u32, Bytes::from(bytes.clone())).unwrap(),
            None => s.missing(i as u32).unwrap(),
        };
        out.extend(pieces.iter().flat_map(|b| b.iter().copied()));
    }
    out.extend(s.finish().unwrap().iter().flat_map(|b| b.iter().copied()));
    (out, s.result())
}

/// The salvaged stream parses whole and holds exactly what the salvage kept.
fn parses_as_kept(name: &str, what: &str, out: &[u8], kept: &Inventory) -> Inventory {
    let mut a = Accounting::new(Format::sniff(out).unwrap(), 1);
    a.feed(0, out)
        .unwrap_or_else(|e| panic!("{name}, {what}: salvaged stream damaged: {e}"));
    let (inv, _) = a.finish().unwrap();
    let counts = |i: &Inventory| i.tracks.iter().map(|t| t.frames).collect::<Vec<_>>();
    assert_eq!(counts(&inv), counts(kept), "{name}, {what}");
    inv
}

#[test]
fn an_undamaged_recording_is_salvaged_whole() {
    for name in TIMESLICE {
        let whole = fixture(name);
        let chunks: Vec<Option<Vec<u8>>> = whole.iter().cloned().map(Some).collect();
        let (out, salvaged) = salvage(&chunks);
        assert!(salvaged.lost.is_empty(), "{name}: {:?}", salvaged.lost);
        let mut a = Accounting::new(Format::sniff(&whole[0]).unwrap(), whole.len() as u32);
        for (i, c) in whole.iter().enumerate() {
            a.feed(i as u32, c).unwrap();
        }
        let (inv, _) = a.finish().unwrap();
        let got = parses_as_kept(name, "undamaged", &out, &salvaged.inventory);
        assert_eq!(
            got.tracks.iter().map(|t| t.frames).collect::<Vec<_>>(),
            inv.tracks.iter().map(|t| t.frames).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

/// Every middle chunk missing, and every middle chunk cut to half: the rest is kept, and the
/// lost range holds exactly the video frames that are not.
#[test]
fn a_missing_or_cut_chunk_leaves_a_hole_that_the_lost_range_describes() {
    for name in TIMESLICE {
        let whole = fixture(name);
        let matroska = Format::sniff(&whole[0]).unwrap() == Format::Matroska;
        let times = if matroska {
            video_times(&whole)
        } else {
            Vec::new()
        };
        for i in 1..whole.len().saturating_sub(1) {
            for cut in [false, true] {
                let what = if cut {
                    format!("chunk {i} cut")
                } else {
                    format!("chunk {i} missing")
                };
                let chunks: Vec<Option<Vec<u8>>> = whole
                    .iter()
                    .enumerate()
                    .map(|(k, c)| match (k == i, cut) {
                        (false, _) => Some(c.clone()),
                        (true, false) => None,
                        (true, true) => Some(c[..c.len() / 2].to_vec()),
                    })
                    .collect();
                let (out, salvaged) = salvage(&chunks);
                let kept = parses_as_kept(name, &what, &out, &salvaged.inventory);
                assert_eq!(
                    salvaged.lost.len(),
                    1,
                    "{name}, {what}: {:?}",
                    salvaged.lost
                );
                let lost = &salvaged.lost[0];
                assert!(
                    lost.chunks.contains(&(i as u32)),
                    "{name}, {what}: {lost:?}"
                );
                let to_s = lost.to_s.unwrap_or(f64::INFINITY);
                assert!(lost.from_s < to_s, "{name}, {what}: {lost:?}");
                if matroska {
                    let inside = times
                        .iter()
                        .filter(|t| **t > lost.from_s + 1e-9 && **t < to_s - 1e-9)
                        .count() as u64;
                    let video = kept
                        .tracks
                        .iter()
                        .find(|t| t.kind == TrackKind::Video)
                        .unwrap();
                    assert_eq!(
                        video.frames + inside,
                        times.len() as u64,
                        "{name}, {what}: {lost:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_damaged_header_cannot_be_salvaged() {
    let whole = fixture("vp8-opus-ts1000");
    let mut s = Salvage::new(Format::Matroska);
    s.feed(0, Bytes::from(whole[0][..100].to_vec())).unwrap();
    let e = s.feed(1, Bytes::from(whole[1].clone())).unwrap_err();
    assert_eq!(e.code(), "frames_lost");
}
