//! The real MediaRecorder recordings in `tests/fixtures/mediarecorder`, byte for byte as the
//! browser delivered them (each checked against its manifest's SHA-256 when loaded).

use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn root() -> PathBuf {
    std::env::var_os("SCREENREC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mediarecorder")
        })
}

#[derive(Clone)]
pub struct Recording {
    pub name: String,
    pub mime_type: String,
    pub chunks: Vec<Vec<u8>>,
}

impl Recording {
    pub fn load(name: &str) -> Self {
        let dir = root().join(name);
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join("manifest.json"))
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())),
        )
        .unwrap();
        let chunks = manifest["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let bytes = std::fs::read(dir.join(c["file"].as_str().unwrap())).unwrap();
                assert_eq!(
                    hex::encode(Sha256::digest(&bytes)),
                    c["sha256"].as_str().unwrap()
                );
                bytes
            })
            .collect();
        Self {
            name: name.to_owned(),
            mime_type: manifest["mimeType"].as_str().unwrap().to_owned(),
            chunks,
        }
    }

    pub fn all() -> Vec<Self> {
        let mut names: Vec<String> = std::fs::read_dir(root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("manifest.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.iter().map(|n| Self::load(n)).collect()
    }

    /// The chunks repeated until there are at least `n` (for long recordings in tests).
    pub fn repeated_to(&self, n: usize) -> Vec<Vec<u8>> {
        self.chunks
            .iter()
            .cycle()
            .take(n.max(self.chunks.len()))
            .cloned()
            .collect()
    }

    pub fn sha256_of(chunks: &[Vec<u8>]) -> String {
        let mut h = Sha256::new();
        for c in chunks {
            h.update(c);
        }
        hex::encode(h.finalize())
    }
}
