//! The poster: one JPEG of the merged video, for the app's list of videos. It is cut from the
//! output file the merge has just written, before that file is removed, so the video is not
//! downloaded again.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ffmpeg::Ffmpeg;
use crate::error::{Error, Result};

/// The widest a poster is; a narrower video keeps its own width.
pub const MAX_WIDTH: u32 = 1280;

/// Where the poster is looked for: 1 s in, or 10% in for a recording shorter than 10 s.
pub fn position_s(duration_s: f64) -> f64 {
    (duration_s * 0.1).clamp(0.0, 1.0)
}

/// A poster written to disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Poster {
    #[serde(skip)]
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// The first keyframe at or after [`position_s`] of `video` (the first keyframe when none
/// comes after it), scaled down to at most [`MAX_WIDTH`] wide, as `dir/poster.jpg`. Only
/// keyframes are decoded, which is quick and needs no frame before them.
pub async fn extract(ffmpeg: &Ffmpeg, video: &Path, duration_s: f64, dir: &Path) -> Result<Poster> {
    let path = dir.join("poster.jpg");
    let at = position_s(duration_s);
    let mut last = String::new();
    for seek in [at, 0.0] {
        let _ = tokio::fs::remove_file(&path).await;
        let output = ffmpeg
            .command()
            .args(["-v", "error", "-skip_frame", "nokey", "-ss"])
            .arg(format!("{seek:.3}"))
            .arg("-i")
            .arg(video)
            .args(["-map", "0:v:0", "-frames:v", "1", "-vf"])
            .arg(format!("scale='min({MAX_WIDTH},iw)':-2"))
            .args(["-q:v", "3", "-f", "image2", "-update", "1", "-y"])
            .arg(&path)
            .output()
            .await
            .map_err(|e| Error::FfmpegFailed(format!("running ffmpeg: {e}")))?;
        last = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            continue;
        }
        if let Ok(jpeg) = tokio::fs::read(&path).await
            && let Some((width, height)) = jpeg_size(&jpeg)
        {
            return Ok(Poster {
                path,
                width,
                height,
            });
        }
    }
    Err(Error::FfmpegFailed(format!("no poster: {last}")))
}

/// The width and height in a JPEG's frame header, or `None` if `bytes` is not a JPEG with one.
pub fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        let (marker, len) = (
            *bytes.get(at + 1)?,
            usize::from(u16::from_be_bytes([
                *bytes.get(at + 2)?,
                *bytes.get(at + 3)?,
            ])),
        );
        if *bytes.get(at)? != 0xFF || len < 2 {
            return None;
        }
        // Start of frame: baseline, extended, progressive or lossless (not DHT, JPG or DAC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let w = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)));
        }
        at += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1920x1080 H.264 video, black for its first second and white for the next two, with a
    /// keyframe every `gop` frames (at 30 fps).
    async fn black_then_white(ffmpeg: &Ffmpeg, dir: &Path, gop: u32) -> PathBuf {
        let path = dir.join(format!("gop{gop}.mp4"));
        let made = ffmpeg
            .command()
            .args(["-v", "error", "-f", "lavfi", "-i"])
            .arg("color=black:size=1920x1080:rate=30:duration=1")
            .args(["-f", "lavfi", "-i"])
            .arg("color=white:size=1920x1080:rate=30:duration=2")
            .args(["-filter_complex", "[0][1]concat=n=2:v=1", "-c:v", "libx264"])
            .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()])
            .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-y"])
            .arg(&path)
            .output()
            .await
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        path
    }

    /// The mean brightness of a JPEG, 0 to 255.
    async fn brightness(ffmpeg: &Ffmpeg, jpeg: &Path) -> u8 {
        let out = ffmpeg
            .command()
            .args(["-v", "error", "-i"])
            .arg(jpeg)
            .args([
                "-vf",
                "scale=1:1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "gray",
                "-",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout[0]
    }

    #[tokio::test]
    async fn the_poster_is_the_first_keyframe_after_its_position_at_most_1280_wide() {
        let ffmpeg = Ffmpeg::locate(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Keyframes at 0 s and 1 s: 0.3 s in (a tenth of 3 s), the next one is white.
        let video = black_then_white(&ffmpeg, dir.path(), 30).await;
        let poster = extract(&ffmpeg, &video, 3.0, dir.path()).await.unwrap();
        assert_eq!((poster.width, poster.height), (1280, 720));
        assert!(brightness(&ffmpeg, &poster.path).await > 200);
        // One keyframe, at the start: none after 0.3 s, so the first.
        let video = black_then_white(&ffmpeg, dir.path(), 300).await;
        let poster = extract(&ffmpeg, &video, 3.0, dir.path()).await.unwrap();
        assert_eq!((poster.width, poster.height), (1280, 720));
        assert!(brightness(&ffmpeg, &poster.path).await < 50);
        // Not a video: an error, not a poster.
        let text = dir.path().join("not-a-video.mp4");
        std::fs::write(&text, b"not a video").unwrap();
        assert!(extract(&ffmpeg, &text, 3.0, dir.path()).await.is_err());
    }

    #[test]
    fn the_poster_is_a_second_in_or_a_tenth_of_a_short_recording() {
        assert_eq!(position_s(60.0), 1.0);
        assert_eq!(position_s(10.0), 1.0);
        assert_eq!(position_s(4.0), 0.4);
        assert_eq!(position_s(0.0), 0.0);
    }

    #[test]
    fn a_jpeg_frame_header_gives_its_size() {
        // SOI, an APP0 of 16 bytes, then SOF0 for 8 bits, 270 high, 480 wide.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend([0; 14]);
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0x0E, 0x01, 0xE0, 0x03]);
        assert_eq!(jpeg_size(&jpeg), Some((480, 270)));
        assert_eq!(jpeg_size(&jpeg[..24]), None, "cut short");
        assert_eq!(jpeg_size(b"\x89PNG\r\n"), None);
        assert_eq!(jpeg_size(&[]), None);
    }
}
