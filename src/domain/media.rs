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

/// The media types a recorder writes that screenrec merges, and their containers.
const ESSENCES: [(&str, Container); 7] = [
    ("video/webm", Container::WebM),
    ("audio/webm", Container::WebM),
    ("video/x-matroska", Container::Matroska),
    ("video/matroska", Container::Matroska),
    ("audio/x-matroska", Container::Matroska),
    ("video/mp4", Container::Mp4),
    ("audio/mp4", Container::Mp4),
];

/// What [`MediaType::parse`] accepts, as the API description states it: an essence of
/// [`ESSENCES`], then optionally `;codecs=` (a space may follow the `;`) and a list of codecs of
/// letters, digits and dots, separated by `,` (a space may follow it), in double quotes or not.
pub const PATTERN: &str = concat!(
    "^(video/webm|audio/webm|video/x-matroska|video/matroska|audio/x-matroska|video/mp4|audio/mp4)",
    "(; ?codecs=([A-Za-z0-9.]+(, ?[A-Za-z0-9.]+)*|\"[A-Za-z0-9.]+(, ?[A-Za-z0-9.]+)*\"))?$"
);

impl MediaType {
    /// A `mimeType` as [`PATTERN`] describes it, at most 255 characters; anything else is
    /// `invalid_mime_type`.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidMimeType(format!("{why}: {:?}", truncate(raw)));
        if raw.is_empty() || raw.chars().count() > MAX_LEN {
            return Err(invalid("it must be 1 to 255 characters"));
        }
        let (essence, params) = match raw.split_once(';') {
            Some((essence, params)) => (essence, Some(params)),
            None => (raw, None),
        };
        // `mime` reads the type as RFC 6838 has it; the essence must also be written as it
        // writes it (lower case, nothing around).
        let parsed: Option<mime::Mime> = essence.parse().ok();
        let known = parsed.filter(|m| m.essence_str() == essence);
        let found = known.and_then(|m| ESSENCES.iter().find(|(e, _)| *e == m.essence_str()));
        let Some((_, container)) = found else {
            return Err(invalid(
                "expected video/webm, video/x-matroska or video/mp4 (or their audio/ forms)",
            ));
        };
        let codecs = match params {
            None => Vec::new(),
            Some(params) => {
                let list = params
                    .strip_prefix(' ')
                    .unwrap_or(params)
                    .strip_prefix("codecs=")
                    .ok_or_else(|| invalid("the only parameter is codecs="))?;
                let list = match list.strip_prefix('"') {
                    Some(quoted) => quoted
                        .strip_suffix('"')
                        .ok_or_else(|| invalid("a quoted codecs list has no closing quote"))?,
                    None => list,
                };
                let mut codecs = Vec::new();
                for (i, item) in list.split(',').enumerate() {
                    let item = if i > 0 {
                        item.strip_prefix(' ').unwrap_or(item)
                    } else {
                        item
                    };
                    if item.is_empty()
                        || !item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
                    {
                        return Err(invalid(
                            "codecs are letters, digits and dots, separated by commas",
                        ));
                    }
                    codecs.push(item.to_ascii_lowercase());
                }
                codecs
            }
        };
        Ok(Self {
            essence: essence.to_owned(),
            codecs,
            container: *container,
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
        // What a recorder writes, exactly: not upper case, other parameters or stray spaces.
        for refused in [
            "VIDEO/WEBM",
            "video/webm;",
            "video/webm;x=1",
            "video/webm;  codecs=vp8",
            "video/webm;codecs=vp8,",
            "video/webm;codecs=\"vp8",
            "video/webm ",
        ] {
            assert!(MediaType::parse(refused).is_err(), "{refused:?}");
        }
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
