use crate::error::{Error, Result};

/// The container a recorder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    WebM,
    Matroska,
    Mp4,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Self::WebM => "webm",
            Self::Matroska => "mkv",
            Self::Mp4 => "mp4",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "webm" => Some(Self::WebM),
            "mkv" => Some(Self::Matroska),
            "mp4" | "m4v" => Some(Self::Mp4),
            _ => None,
        }
    }
}

/// A recorder's `mimeType` (`video/webm;codecs=vp8,opus`), checked to be a container screenrec
/// can merge, and kept in a normalised form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    essence: String,
    codecs: Vec<String>,
    container: Container,
}

const MAX_LEN: usize = 255;

impl MediaType {
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidMimeType(format!("{why}: {:?}", truncate(raw)));
        if raw.is_empty() || raw.len() > MAX_LEN {
            return Err(invalid("it must be 1 to 255 characters"));
        }
        // MediaRecorder writes `codecs=vp8,opus` unquoted, which RFC 2045 parsers refuse, so
        // parameters are split here and only the essence goes through `mime`.
        let mut parts = raw.split(';');
        let essence_raw = parts.next().unwrap_or_default().trim();
        let parsed: mime::Mime = essence_raw
            .parse()
            .map_err(|_| invalid("not a media type"))?;
        let essence = parsed.essence_str().to_ascii_lowercase();
        let container = match essence.as_str() {
            "video/webm" | "audio/webm" => Container::WebM,
            "video/x-matroska" | "video/matroska" | "audio/x-matroska" => Container::Matroska,
            "video/mp4" | "audio/mp4" => Container::Mp4,
            _ => {
                return Err(invalid(
                    "expected video/webm, video/x-matroska or video/mp4",
                ));
            }
        };
        let mut codecs = Vec::new();
        for param in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = param
                .split_once('=')
                .ok_or_else(|| invalid("a parameter has no value"))?;
            if name.trim().eq_ignore_ascii_case("codecs") {
                codecs = value
                    .trim()
                    .trim_matches('"')
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty())
                    .collect();
            }
        }
        if codecs
            .iter()
            .any(|c| !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        {
            return Err(invalid("codecs may hold only letters, digits and dots"));
        }
        Ok(Self {
            essence,
            codecs,
            container,
        })
    }

    pub fn container(&self) -> Container {
        self.container
    }

    pub fn codecs(&self) -> &[String] {
        &self.codecs
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.essence)?;
        if !self.codecs.is_empty() {
            write!(f, ";codecs={}", self.codecs.join(","))?;
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_types_parse() {
        let m = MediaType::parse("video/webm;codecs=vp8,opus").unwrap();
        assert_eq!(m.container(), Container::WebM);
        assert_eq!(m.codecs(), ["vp8", "opus"]);
        assert_eq!(m.to_string(), "video/webm;codecs=vp8,opus");
        let m = MediaType::parse("video/x-matroska;codecs=avc1").unwrap();
        assert_eq!(m.container(), Container::Matroska);
        let m = MediaType::parse("video/mp4; codecs=\"avc1.42E01E,opus\"").unwrap();
        assert_eq!(m.container(), Container::Mp4);
        assert_eq!(m.codecs(), ["avc1.42e01e", "opus"]);
        assert_eq!(
            MediaType::parse("VIDEO/WEBM").unwrap().to_string(),
            "video/webm"
        );
    }

    #[test]
    fn other_types_are_refused() {
        for bad in [
            "",
            "text/html",
            "video/ogg",
            "video",
            "video/webm;codecs=\"vp8<script>\"",
        ] {
            assert!(MediaType::parse(bad).is_err(), "{bad:?}");
        }
        assert!(MediaType::parse(&"video/webm;x=".repeat(40)).is_err());
    }
}
