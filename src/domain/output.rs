//! What the app asks the merge to make of a recording: its own container (the default), or an
//! MP4 that plays in every browser, remuxed from H.264 and, when asked, re-encoded from VP8, VP9
//! or AV1, with Opus kept or converted to AAC. Every combination the API description allows is
//! accepted at create; the codecs are checked at the merge.

use serde_json::{Value, json};

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

impl OutputFormat {
    /// The create request's `output`, `transcode` and `audio`. `transcode` and `audio` apply to
    /// an MP4 and are ignored otherwise; whether the recording's codecs need `transcode` is
    /// decided at the merge, from its chunks (`transcode_required` then), since a media type
    /// may not name them, or name them wrongly.
    pub fn parse(
        output: Option<&str>,
        transcode: Option<bool>,
        audio: Option<&str>,
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
        Ok(Self {
            mp4,
            transcode: mp4 && transcode.unwrap_or(false),
            aac: mp4 && aac,
        })
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

    #[test]
    fn an_mp4_of_vp8_or_vp9_needs_transcode() {
        let mp4 = OutputFormat::parse(Some("mp4"), None, None).unwrap();
        assert_eq!(
            mp4,
            OutputFormat {
                mp4: true,
                ..Default::default()
            }
        );
        assert!(matches!(
            mp4.video_for_mp4("vp9"),
            Err(Error::TranscodeRequired { codec }) if codec == "vp9"
        ));
        assert!(!mp4.video_for_mp4("h264").unwrap());
        let transcoded = OutputFormat::parse(Some("mp4"), Some(true), Some("aac")).unwrap();
        assert!(transcoded.video_for_mp4("vp8").unwrap());
        assert!(!transcoded.video_for_mp4("h264").unwrap());
        // The native output re-encodes nothing, whatever else is asked.
        let native = OutputFormat::parse(Some("native"), Some(true), Some("aac")).unwrap();
        assert!(native.is_default());
        assert!(!native.video_for_mp4("vp8").unwrap());
    }

    #[test]
    fn unknown_values_are_refused() {
        for (output, audio) in [
            (Some("avi"), None),
            (Some(""), None),
            (Some("mp4"), Some("mp3")),
        ] {
            assert!(
                matches!(
                    OutputFormat::parse(output, None, audio),
                    Err(Error::InvalidOutput(_))
                ),
                "{output:?} {audio:?}"
            );
        }
        assert!(OutputFormat::parse(None, None, None).unwrap().is_default());
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
