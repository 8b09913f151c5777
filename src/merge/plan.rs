//! Pure merge decisions: what kind of recording the chunks form, which container the output
//! gets, and whether ffmpeg's packet listing of the output shows a whole recording.

use crate::domain::{Container, OutputFormat};
use crate::error::{Error, Result};

const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// The container family of the chunks, from chunk 0's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Matroska,
    Mp4,
}

impl Format {
    /// The demuxer ffmpeg is forced to use (never auto-detection: a headerless stream would be
    /// taken for raw H.264).
    pub fn demuxer(self) -> &'static str {
        match self {
            Format::Matroska => "matroska",
            Format::Mp4 => "mp4",
        }
    }

    pub fn sniff(chunk0: &[u8]) -> Result<Self> {
        if chunk0.starts_with(&EBML_MAGIC) {
            Ok(Format::Matroska)
        } else if chunk0.get(4..8) == Some(b"ftyp") {
            Ok(Format::Mp4)
        } else {
            Err(Error::MissingHeader(format!(
                "first bytes {}",
                hex::encode(&chunk0[..chunk0.len().min(8)])
            )))
        }
    }

    /// Whether a chunk begins with this format's file header.
    pub fn starts_file(self, chunk: &[u8]) -> bool {
        match self {
            Format::Matroska => chunk.starts_with(&EBML_MAGIC),
            Format::Mp4 => chunk.get(4..8) == Some(b"ftyp"),
        }
    }
}

/// How the recorder cut its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One recorder, `start(timeslice)`: chunk 0 has the header, the rest continue the byte
    /// stream. Merged by byte concatenation into one ffmpeg remux.
    Timeslice,
    /// A new recorder per chunk: every chunk is a complete file. Merged with ffmpeg's concat
    /// demuxer.
    Restart,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Timeslice => "timeslice",
            Layout::Restart => "restart",
        }
    }

    /// Decide from chunk 0 and, when there is one, chunk 1.
    pub fn detect(format: Format, chunk1: Option<&[u8]>) -> Self {
        match chunk1 {
            Some(c) if format.starts_file(c) => Layout::Restart,
            _ => Layout::Timeslice,
        }
    }

    /// Check chunk `index` (> 0) against the layout: in timeslice mode no later chunk may
    /// begin with a header, in restart mode every one must.
    pub fn check_chunk(self, format: Format, index: u32, chunk: &[u8]) -> Result<()> {
        match (self, format.starts_file(chunk)) {
            (Layout::Timeslice, true) => Err(Error::MixedChunkLayout(format!(
                "chunk {index} begins with a new file header in a timeslice recording"
            ))),
            (Layout::Restart, false) => Err(Error::MixedChunkLayout(format!(
                "chunk {index} is not a complete file in a restart-per-chunk recording"
            ))),
            _ => Ok(()),
        }
    }
}

/// Codecs named in a Matroska header (CodecID strings in Tracks).
fn matroska_codecs(header: &[u8]) -> (Option<&'static str>, Option<&'static str>) {
    let has = |needle: &str| header.windows(needle.len()).any(|w| w == needle.as_bytes());
    let video = [
        ("V_VP8", "vp8"),
        ("V_VP9", "vp9"),
        ("V_AV1", "av1"),
        ("V_MPEG4/ISO/AVC", "h264"),
        ("V_MPEGH/ISO/HEVC", "hevc"),
    ]
    .into_iter()
    .find(|(id, _)| has(id))
    .map(|(_, name)| name);
    let audio = [("A_OPUS", "opus"), ("A_VORBIS", "vorbis"), ("A_AAC", "aac")]
        .into_iter()
        .find(|(id, _)| has(id))
        .map(|(_, name)| name);
    (video, audio)
}

/// The video and audio codecs an MP4 header names (its sample entries), after the `ftyp` box,
/// whose brands may name `avc1` whatever the video is.
fn mp4_codecs(header: &[u8]) -> (Option<&'static str>, Option<&'static str>) {
    let ftyp = header
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let rest = header.get(ftyp..).unwrap_or_default();
    let has = |fourcc: &[u8; 4]| rest.windows(4).any(|w| w == fourcc);
    let video = [
        (b"vp09", "vp9"),
        (b"av01", "av1"),
        (b"avc1", "h264"),
        (b"avc3", "h264"),
        (b"hvc1", "hevc"),
        (b"hev1", "hevc"),
    ]
    .into_iter()
    .find(|(id, _)| has(id))
    .map(|(_, name)| name);
    let audio = [(b"Opus", "opus"), (b"mp4a", "aac")]
        .into_iter()
        .find(|(id, _)| has(id))
        .map(|(_, name)| name);
    (video, audio)
}

/// The recording's video and audio codecs, as its header names them.
pub fn codecs(format: Format, header: &[u8]) -> (Option<&'static str>, Option<&'static str>) {
    let head = &header[..header.len().min(64 * 1024)];
    match format {
        Format::Matroska => matroska_codecs(head),
        Format::Mp4 => mp4_codecs(head),
    }
}

/// What the merge writes: the container, and whether the video is re-encoded to H.264 and the
/// audio to AAC (else each is copied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    pub container: Container,
    pub h264: bool,
    pub aac: bool,
}

impl Output {
    /// Whether any stream is re-encoded.
    pub fn encodes(&self) -> bool {
        self.h264 || self.aac
    }
}

/// What the merge makes of a recording whose header is `header`, as `asked`: its own container
/// ([`output_container`]), or an MP4, with the video re-encoded when it is VP8, VP9 or AV1 and
/// `transcode` was asked for (`TranscodeRequired` when it was not), and the audio converted to
/// AAC when asked, when the video is re-encoded, or when it is Vorbis (which MP4 does not carry).
pub fn output(format: Format, header: &[u8], asked: OutputFormat) -> Result<Output> {
    if !asked.mp4 {
        return Ok(Output {
            container: output_container(format, header),
            h264: false,
            aac: false,
        });
    }
    let (video, audio) = codecs(format, header);
    let h264 = match video {
        Some(video) => asked.video_for_mp4(video)?,
        None => false,
    };
    let aac = match audio {
        Some("opus") => asked.aac || h264,
        Some("vorbis") => true,
        _ => false,
    };
    Ok(Output {
        container: Container::Mp4,
        h264,
        aac,
    })
}

/// The codec of the first `kind` (`Video` or `Audio`) stream ffmpeg lists when it opens a
/// file: `Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), …` is `h264`.
pub fn stream_codec(stderr: &str, kind: &str) -> Option<String> {
    let marker = format!(": {kind}: ");
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("Stream #"))
        .find_map(|l| {
            let rest = &l[l.find(&marker)? + marker.len()..];
            let end = rest.find([' ', ',']).unwrap_or(rest.len());
            Some(rest[..end].to_owned())
        })
}

/// The output container: WebM when the codecs allow it (VP8/VP9/AV1 with Opus/Vorbis),
/// otherwise Matroska; fragmented MP4 stays MP4 (remuxed with faststart).
pub fn output_container(format: Format, chunk0: &[u8]) -> Container {
    match format {
        Format::Mp4 => Container::Mp4,
        Format::Matroska => {
            let head = &chunk0[..chunk0.len().min(64 * 1024)];
            match matroska_codecs(head) {
                (Some("vp8" | "vp9" | "av1"), None | Some("opus" | "vorbis")) => Container::WebM,
                (None, Some("opus" | "vorbis")) => Container::WebM,
                _ => Container::Matroska,
            }
        }
    }
}

/// One stream of the output, from ffmpeg's `framecrc` listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamReport {
    pub media_type: String,
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Time base numerator/denominator.
    pub tb: (u64, u64),
    pub packets: u64,
    pub first_dts: Option<i64>,
    pub last_dts: Option<i64>,
    /// The earliest and latest presentation times.
    pub min_pts: Option<i64>,
    pub max_pts: Option<i64>,
    pub max_gap: i64,
    /// Gaps longer than a stream of this kind ever has (the first [`GAPS_KEPT`]), as the
    /// timestamps before and after.
    pub gaps: Vec<(i64, i64)>,
    pub backwards: u64,
}

/// Long gaps kept per stream.
const GAPS_KEPT: usize = 256;

impl StreamReport {
    fn seconds(&self, ticks: i64) -> f64 {
        let (num, den) = self.tb;
        if den == 0 {
            return 0.0;
        }
        ticks as f64 * num as f64 / den as f64
    }

    /// The longest gap a stream of this kind may have: video pauses while the screen does not
    /// change; audio never pauses.
    pub fn gap_limit_seconds(&self) -> f64 {
        if self.media_type == "audio" {
            1.0
        } else {
            10.0
        }
    }

    fn ticks(&self, seconds: f64) -> i64 {
        let (num, den) = self.tb;
        if num == 0 {
            return i64::MAX;
        }
        (seconds * den as f64 / num as f64) as i64
    }

    /// A timestamp in seconds after the stream's earliest presentation time.
    pub fn offset_seconds(&self, ticks: i64) -> f64 {
        self.seconds(ticks - self.min_pts.unwrap_or(ticks))
    }

    pub fn span_seconds(&self) -> f64 {
        match (self.first_dts, self.last_dts) {
            (Some(a), Some(b)) => self.seconds(b - a),
            _ => 0.0,
        }
    }

    /// From the earliest presentation time to the latest.
    pub fn pts_span_seconds(&self) -> f64 {
        match (self.min_pts, self.max_pts) {
            (Some(a), Some(b)) => self.seconds(b - a),
            _ => 0.0,
        }
    }
}

/// Incremental parser of `ffmpeg -f framecrc` output: header lines `#tb 0: 1/1000`,
/// `#media_type 0: video`, `#codec_id 0: vp8`, `#dimensions 0: 480x270`, then one line per
/// packet: `stream, dts, pts, duration, size, crc[, side data]`.
#[derive(Debug, Default)]
pub struct FramecrcReport {
    pub streams: Vec<StreamReport>,
}

impl FramecrcReport {
    fn stream(&mut self, i: usize) -> &mut StreamReport {
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, StreamReport::default);
        }
        &mut self.streams[i]
    }

    pub fn feed(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix('#') {
            let Some((key, value)) = rest.split_once(':') else {
                return;
            };
            let mut key_parts = key.split_whitespace();
            let (Some(name), Some(idx)) = (key_parts.next(), key_parts.next()) else {
                return;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                return;
            };
            let value = value.trim();
            let s = self.stream(idx);
            match name {
                "tb" => {
                    if let Some((n, d)) = value.split_once('/') {
                        s.tb = (n.parse().unwrap_or(0), d.parse().unwrap_or(0));
                    }
                }
                "media_type" => s.media_type = value.to_owned(),
                "codec_id" => s.codec = value.to_owned(),
                "dimensions" => {
                    if let Some((w, h)) = value.split_once('x') {
                        s.width = w.parse().ok();
                        s.height = h.parse().ok();
                    }
                }
                _ => {}
            }
            return;
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(idx), Some(dts)) = (
            fields.next().and_then(|f| f.parse::<usize>().ok()),
            fields.next().and_then(|f| f.parse::<i64>().ok()),
        ) else {
            return;
        };
        let pts = fields.next().and_then(|f| f.parse::<i64>().ok());
        let s = self.stream(idx);
        s.packets += 1;
        if let Some(pts) = pts.filter(|p| *p != i64::MIN) {
            s.min_pts = Some(s.min_pts.map_or(pts, |m| m.min(pts)));
            s.max_pts = Some(s.max_pts.map_or(pts, |m| m.max(pts)));
        }
        if let Some(last) = s.last_dts {
            if dts < last {
                s.backwards += 1;
            } else {
                s.max_gap = s.max_gap.max(dts - last);
                if dts - last > s.ticks(s.gap_limit_seconds()) && s.gaps.len() < GAPS_KEPT {
                    s.gaps.push((last, dts));
                }
            }
        }
        if s.first_dts.is_none() {
            s.first_dts = Some(dts);
        }
        s.last_dts = Some(s.last_dts.map_or(dts, |l| l.max(dts)));
    }

    pub fn video(&self) -> Option<&StreamReport> {
        self.streams.iter().find(|s| s.media_type == "video")
    }

    pub fn audio(&self) -> Option<&StreamReport> {
        self.streams.iter().find(|s| s.media_type == "audio")
    }

    /// Whether the output is a whole recording: streams with packets, timestamps that never go
    /// back, and no gap longer than a stream of that kind ever has.
    /// A salvage allows long gaps: it reports them as lost instead.
    pub fn check(&self, gaps_allowed: bool) -> Result<()> {
        if self.streams.iter().all(|s| s.packets == 0) {
            return Err(Error::OutputInvalid("the output has no packets".into()));
        }
        for (i, s) in self.streams.iter().enumerate() {
            if s.backwards > 0 {
                return Err(Error::TimestampsOutOfOrder(format!(
                    "stream {i} ({}) goes back in time {} times",
                    s.media_type, s.backwards
                )));
            }
            let gap = s.seconds(s.max_gap);
            if !s.gaps.is_empty() && !gaps_allowed {
                return Err(Error::TimestampGap(format!(
                    "stream {i} ({}) has a {gap:.2} s gap",
                    s.media_type
                )));
            }
        }
        Ok(())
    }
}

/// The container duration ffmpeg prints for an input (`Duration: 00:00:12.10, ...`), or
/// `None` when it says `N/A`.
pub fn parse_duration(stderr: &str) -> Option<f64> {
    let rest = stderr.split("Duration: ").nth(1)?;
    let stamp = rest.split(',').next()?.trim();
    let mut parts = stamp.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_layouts() {
        let webm = [0x1A, 0x45, 0xDF, 0xA3, 1, 2];
        let mp4 = *b"\0\0\0\x18ftypisom";
        let moof = *b"\0\0\0\x18moof....";
        assert_eq!(Format::sniff(&webm).unwrap(), Format::Matroska);
        assert_eq!(Format::sniff(&mp4).unwrap(), Format::Mp4);
        assert_eq!(Format::sniff(&moof).unwrap_err().code(), "missing_header");
        assert_eq!(Format::sniff(b"").unwrap_err().code(), "missing_header");
        assert_eq!(
            Layout::detect(Format::Matroska, Some(&webm)),
            Layout::Restart
        );
        assert_eq!(
            Layout::detect(Format::Matroska, Some(b"\x41\xd4")),
            Layout::Timeslice
        );
        assert_eq!(Layout::detect(Format::Mp4, Some(&moof)), Layout::Timeslice);
        assert_eq!(Layout::detect(Format::Mp4, None), Layout::Timeslice);
        assert!(
            Layout::Timeslice
                .check_chunk(Format::Matroska, 3, &webm)
                .is_err()
        );
        assert!(
            Layout::Restart
                .check_chunk(Format::Matroska, 3, b"\x41")
                .is_err()
        );
        assert!(
            Layout::Restart
                .check_chunk(Format::Matroska, 3, &webm)
                .is_ok()
        );
    }

    #[test]
    fn containers_follow_codecs() {
        let mut vp8 = vec![0x1A, 0x45, 0xDF, 0xA3];
        vp8.extend_from_slice(b"....V_VP8....A_OPUS");
        assert_eq!(output_container(Format::Matroska, &vp8), Container::WebM);
        let mut avc = vec![0x1A, 0x45, 0xDF, 0xA3];
        avc.extend_from_slice(b"....V_MPEG4/ISO/AVC");
        assert_eq!(
            output_container(Format::Matroska, &avc),
            Container::Matroska
        );
        assert_eq!(output_container(Format::Mp4, b""), Container::Mp4);
    }

    #[test]
    fn stream_codecs_are_read_from_what_ffmpeg_lists() {
        let stderr = "Input #0, mov,mp4, from 'o.mp4':\n  Duration: 00:00:12.10\n  \
            Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 480x270\n  \
            Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz\n";
        assert_eq!(stream_codec(stderr, "Video").as_deref(), Some("h264"));
        assert_eq!(stream_codec(stderr, "Audio").as_deref(), Some("aac"));
        assert_eq!(
            stream_codec("  Stream #0:0: Audio: opus, 48000 Hz", "Audio").as_deref(),
            Some("opus")
        );
        assert_eq!(stream_codec(stderr, "Subtitle"), None);
    }

    #[test]
    fn an_mp4_is_remuxed_from_h264_and_re_encoded_from_vp8_only_when_asked() {
        let mkv = |ids: &str| {
            let mut h = vec![0x1A, 0x45, 0xDF, 0xA3];
            h.extend_from_slice(ids.as_bytes());
            h
        };
        let mp4 = OutputFormat {
            mp4: true,
            ..OutputFormat::default()
        };
        let plan = |header: &[u8], format, asked| output(format, header, asked);
        let avc = mkv("..V_MPEG4/ISO/AVC..A_OPUS");
        assert_eq!(
            plan(&avc, Format::Matroska, mp4).unwrap(),
            Output {
                container: Container::Mp4,
                h264: false,
                aac: false
            }
        );
        let aac = OutputFormat { aac: true, ..mp4 };
        assert!(plan(&avc, Format::Matroska, aac).unwrap().aac);
        let vp8 = mkv("..V_VP8..A_OPUS");
        assert!(matches!(
            plan(&vp8, Format::Matroska, mp4),
            Err(Error::TranscodeRequired { .. })
        ));
        let transcode = OutputFormat {
            transcode: true,
            ..mp4
        };
        assert_eq!(
            plan(&vp8, Format::Matroska, transcode).unwrap(),
            Output {
                container: Container::Mp4,
                h264: true,
                aac: true
            }
        );
        assert_eq!(
            plan(&vp8, Format::Matroska, OutputFormat::default())
                .unwrap()
                .container,
            Container::WebM
        );
        // An fMP4's brands may say avc1 whatever its video is: its sample entry decides.
        let mut vp9 = 24u32.to_be_bytes().to_vec();
        vp9.extend_from_slice(b"ftypisomavc1mp41iso6....moov....vp09....Opus");
        assert_eq!(codecs(Format::Mp4, &vp9), (Some("vp9"), Some("opus")));
        assert!(plan(&vp9, Format::Mp4, mp4).is_err());
    }

    #[test]
    fn framecrc_reports() {
        let mut r = FramecrcReport::default();
        for line in [
            "#tb 0: 1/1000",
            "#media_type 0: video",
            "#codec_id 0: vp8",
            "#dimensions 0: 480x270",
            "#tb 1: 1/1000",
            "#media_type 1: audio",
            "#codec_id 1: opus",
            "0,          0,          0,        1,    21348, 0x1e4b4e9d",
            "1,          0,          0,       20,      474, 0x4dfff13e",
            "0,         33,         33,        1,     1384, 0xc376a9a6, F=0x0, S=1, x, 39, 0x5",
            "1,         20,         20,       20,      474, 0x4dfff13e",
        ] {
            r.feed(line);
        }
        let v = r.video().unwrap();
        assert_eq!(
            (v.codec.as_str(), v.width, v.packets),
            ("vp8", Some(480), 2)
        );
        assert_eq!(r.audio().unwrap().packets, 2);
        assert!(r.check(false).is_ok());
        r.feed("0,         10,         10,        1,     1384, 0xc376a9a6");
        assert_eq!(
            r.check(false).unwrap_err().code(),
            "timestamps_out_of_order"
        );

        let mut gap = FramecrcReport::default();
        for line in [
            "#tb 0: 1/1000",
            "#media_type 0: audio",
            "0, 0, 0",
            "0, 5000, 5000",
        ] {
            gap.feed(line);
        }
        assert_eq!(gap.check(false).unwrap_err().code(), "timestamp_gap");
        assert!(gap.check(true).is_ok());
        assert_eq!(
            FramecrcReport::default().check(false).unwrap_err().code(),
            "output_invalid"
        );
    }

    #[test]
    fn durations() {
        let s = "Input #0, matroska,webm, from 'o.webm':\n  Duration: 00:01:12.10, start: 0.0";
        assert_eq!(parse_duration(s), Some(72.1));
        assert_eq!(parse_duration("  Duration: N/A, start: 0.0"), None);
    }
}
