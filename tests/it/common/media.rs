//! Checking videos the way a user would: Debian's ffprobe, against a plain `ffmpeg -c copy`
//! remux of the same chunks made here.

use std::path::Path;
use std::process::Command;

use screenrec::merge::Ffmpeg;
use serde_json::Value;

use super::fixtures::Recording;

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// (codec_type, codec_name, packets) per stream.
    pub streams: Vec<(String, String, u64)>,
    pub duration: f64,
    pub format: String,
}

pub fn ffprobe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .arg("stream=codec_type,codec_name,nb_read_packets:format=duration,format_name")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("running ffprobe (Debian's ffmpeg package)");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Probe {
        streams: v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["codec_type"].as_str().unwrap_or_default().to_owned(),
                    s["codec_name"].as_str().unwrap_or_default().to_owned(),
                    s["nb_read_packets"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                )
            })
            .collect(),
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        format: v["format"]["format_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// What a user gets from `cat chunks | ffmpeg -c copy` (the concat demuxer for restart-style
/// recordings): the reference every merge must match.
pub fn reference(fixture: &Recording, dir: &Path) -> Probe {
    let ffmpeg = Ffmpeg::locate(None).expect("bundled ffmpeg (infra/ffmpeg/install.sh)");
    let restart = fixture.name.contains("restart");
    let ext = if fixture.mime_type.contains("mp4") {
        "mp4"
    } else {
        "mkv"
    };
    let out = dir.join(format!("reference-{}.{ext}", fixture.name));
    let mut cmd = Command::new(ffmpeg.path());
    cmd.args(["-v", "error", "-y"]);
    if restart {
        let mut list = String::new();
        for (i, c) in fixture.chunks.iter().enumerate() {
            let p = dir.join(format!("ref-{}-{i}.webm", fixture.name));
            std::fs::write(&p, c).unwrap();
            list.push_str(&format!("file '{}'\n", p.display()));
        }
        let list_path = dir.join(format!("ref-{}.txt", fixture.name));
        std::fs::write(&list_path, list).unwrap();
        cmd.args(["-f", "concat", "-safe", "0", "-i"])
            .arg(list_path);
    } else {
        let concat = dir.join(format!("concat-{}", fixture.name));
        std::fs::write(&concat, fixture.chunks.concat()).unwrap();
        cmd.arg("-i").arg(concat);
    }
    cmd.args(["-map", "0", "-c", "copy"]).arg(&out);
    let status = cmd.status().unwrap();
    assert!(status.success(), "reference remux of {}", fixture.name);
    ffprobe(&out)
}

/// The checks every merged output must pass against its reference.
#[track_caller]
pub fn assert_matches_reference(output: &Path, reference: &Probe, label: &str) {
    let got = ffprobe(output);
    let packets = |p: &Probe| {
        p.streams
            .iter()
            .map(|s| (s.0.clone(), s.1.clone(), s.2))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        packets(&got),
        packets(reference),
        "{label}: streams, codecs or frame counts differ"
    );
    assert!(
        (got.duration - reference.duration).abs() <= 0.05,
        "{label}: duration {} vs reference {}",
        got.duration,
        reference.duration
    );
    let bytes = std::fs::read(output).unwrap();
    if got.format.contains("webm") || got.format.contains("matroska") {
        assert!(
            bytes.windows(4).any(|w| w == [0x1C, 0x53, 0xBB, 0x6B]),
            "{label}: no Cues element, so the video is not seekable"
        );
    } else {
        assert!(
            moov_before_mdat(&bytes),
            "{label}: moov does not come before mdat"
        );
    }
}

fn moov_before_mdat(bytes: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        match &bytes[pos + 4..pos + 8] {
            b"moov" => return true,
            b"mdat" => return false,
            _ => {}
        }
        if size < 8 {
            return false;
        }
        pos += size;
    }
    false
}

/// A poster is a JPEG that Debian's ffmpeg decodes whole, as wide as the video up to 1280 px,
/// with the video's proportions.
pub fn assert_poster(jpeg: &Path, video: (u64, u64), label: &str) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "json"])
        .arg(jpeg)
        .output()
        .expect("running ffprobe (Debian's ffmpeg package)");
    assert!(
        out.status.success(),
        "{label}: poster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &v["streams"][0];
    assert_eq!(
        stream["codec_name"], "mjpeg",
        "{label}: poster is not a JPEG: {v}"
    );
    let (w, h) = (
        stream["width"].as_u64().unwrap(),
        stream["height"].as_u64().unwrap(),
    );
    assert_eq!(w, video.0.min(1280), "{label}: poster width");
    let expected_h = video.1 as f64 * w as f64 / video.0 as f64;
    assert!(
        (h as f64 - expected_h).abs() <= 1.0,
        "{label}: poster {w}x{h}, video {video:?}"
    );
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(jpeg)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{label}: poster does not decode cleanly: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}
