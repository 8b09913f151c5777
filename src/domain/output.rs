//! What the app asks the merge to make of a recording: its own container (the default), or an
//! MP4 that plays in every browser, remuxed from H.264 and, when asked, re-encoded from VP8, VP9
//! or AV1, with Opus kept or converted to AAC.

use serde_json::{Value, json};

use super::MediaType;
use crate::error::{Error, Result};

/// Video codecs an MP4 for every browser does not carry as they are.
const TRANSCODED: [&str; 3] = ["vp8", "vp9", "av1"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputFormat {
    /// `"output": "mp4"`; otherwise the recording's own container.
    pub mp4: bool,
    /// `"transcode": true`: VP8, VP9 or AV1 video re-encoded to H.264, its audio to AAC.
    pub transcode: bool,
    /// `"audio": "aac"`: Opus (or Vorbis) audio converted to AAC, the video untouched.
    pub aac: bool,
}

/// A codec name as a `codecs` parameter or a container names it: `vp09.00.10.08` is `vp9`.
pub fn codec_family(codec: &str) -> &str {
    let codec = codec.split('.').next().unwrap_or(codec);
    match codec {
        "vp8" => "vp8",
        "vp9" | "vp09" => "vp9",
        "av1" | "av01" => "av1",
        "avc1" | "avc3" | "h264" => "h264",
        "hvc1" | "hev1" | "hevc" | "h265" => "hevc",
        "opus" => "opus",
        "vorbis" => "vorbis",
        "mp4a" | "aac" => "aac",
        other => other,
    }
}

impl OutputFormat {
    /// The create request's `output`, `transcode` and `audio`, for a recording of `media`: an
    /// MP4 of VP8, VP9 or AV1 (as its `codecs` say) needs `transcode`, and the other two apply
    /// to an MP4 only.
    pub fn parse(
        output: Option<&str>,
        transcode: Option<bool>,
        audio: Option<&str>,
        media: &MediaType,
    ) -> Result<Self> {
        let mp4 = match output {
            None | Some("native") => false,
            Some("mp4") => true,
            Some(other) => {
                return Err(Error::InvalidOutput(format!(
                    "output {other:?}: expected \"mp4\" or \"native\""
                )));
            }
        };
        let aac = match audio {
            None | Some("copy") => false,
            Some("aac") => true,
            Some(other) => {
                return Err(Error::InvalidOutput(format!(
                    "audio {other:?}: expected \"aac\" or \"copy\""
                )));
            }
        };
        let transcode = transcode.unwrap_or(false);
        if !mp4 && (transcode || aac) {
            return Err(Error::InvalidOutput(
                "transcode and audio apply to \"output\": \"mp4\" only".into(),
            ));
        }
        let format = Self {
            mp4,
            transcode,
            aac,
        };
        let video = media
            .codecs()
            .iter()
            .map(|c| codec_family(c))
            .find(|c| TRANSCODED.contains(c));
        if let Some(codec) = video {
            format.video_for_mp4(codec)?;
        }
        Ok(format)
    }

    /// Whether `video` (a codec family) goes into this format re-encoded: `TranscodeRequired`
    /// when an MP4 is asked for, without `transcode`, of a codec it does not carry.
    pub fn video_for_mp4(&self, video: &str) -> Result<bool> {
        if !self.mp4 || !TRANSCODED.contains(&video) {
            return Ok(false);
        }
        if !self.transcode {
            return Err(Error::TranscodeRequired {
                codec: video.to_owned(),
            });
        }
        Ok(true)
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// As the API shows it: `{"output": "mp4", "transcode": true, "audio": "aac"}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "output": if self.mp4 { "mp4" } else { "native" } });
        if self.transcode {
            v["transcode"] = json!(true);
        }
        if self.aac {
            v["audio"] = json!("aac");
        }
        v
    }

    /// Read back what [`to_json`](Self::to_json) wrote; anything else is the default.
    pub fn from_json(v: &Value) -> Self {
        Self {
            mp4: v["output"] == "mp4",
            transcode: v["transcode"] == true,
            aac: v["audio"] == "aac",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(s: &str) -> MediaType {
        MediaType::parse(s).unwrap()
    }

    #[test]
    fn an_mp4_of_vp8_or_vp9_needs_transcode() {
        let h264 = media("video/x-matroska;codecs=avc1,opus");
        let vp9 = media("video/webm;codecs=vp9,opus");
        let mp4 = OutputFormat::parse(Some("mp4"), None, None, &h264).unwrap();
        assert_eq!(
            mp4,
            OutputFormat {
                mp4: true,
                ..Default::default()
            }
        );
        assert!(matches!(
            OutputFormat::parse(Some("mp4"), None, None, &vp9),
            Err(Error::TranscodeRequired { codec }) if codec == "vp9"
        ));
        let vp9_mp4 = OutputFormat::parse(Some("mp4"), Some(true), None, &vp9).unwrap();
        assert!(vp9_mp4.video_for_mp4("vp9").unwrap());
        assert!(!vp9_mp4.video_for_mp4("h264").unwrap());
        // Codecs not named: decided at the merge.
        let webm = media("video/webm");
        let plain = OutputFormat::parse(Some("mp4"), None, Some("aac"), &webm).unwrap();
        assert!(plain.video_for_mp4("vp8").is_err());
        assert!(
            OutputFormat::parse(
                Some("mp4"),
                None,
                None,
                &media("video/mp4;codecs=vp09.00.10.08")
            )
            .is_err()
        );
    }

    #[test]
    fn options_apply_to_mp4_only_and_unknown_values_are_refused() {
        let webm = media("video/webm");
        for (output, transcode, audio) in [
            (Some("avi"), None, None),
            (Some(""), None, None),
            (None, Some(true), None),
            (Some("native"), None, Some("aac")),
            (Some("mp4"), None, Some("mp3")),
        ] {
            assert!(
                matches!(
                    OutputFormat::parse(output, transcode, audio, &webm),
                    Err(Error::InvalidOutput(_))
                ),
                "{output:?} {transcode:?} {audio:?}"
            );
        }
        assert!(
            OutputFormat::parse(None, None, None, &webm)
                .unwrap()
                .is_default()
        );
    }

    #[test]
    fn it_round_trips_through_json() {
        for f in [
            OutputFormat::default(),
            OutputFormat {
                mp4: true,
                transcode: true,
                aac: true,
            },
            OutputFormat {
                mp4: true,
                transcode: false,
                aac: true,
            },
        ] {
            assert_eq!(OutputFormat::from_json(&f.to_json()), f);
        }
    }
}
