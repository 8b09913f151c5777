use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The per-recording secret handed to the client at create time. Only its hash is stored.
#[derive(Clone)]
pub struct UploadToken(String);

impl UploadToken {
    pub fn generate() -> Self {
        Self(hex::encode(super::random_bytes::<32>()))
    }

    /// Wrap a token presented by a client. Its shape is checked so that garbage never reaches
    /// the comparison; a well-formed but wrong token fails in [`TokenHash::verify`].
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidToken)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl std::fmt::Debug for UploadToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadToken(..)")
    }
}

/// SHA-256 of an upload token, hex. What the coordinator stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison of the presented token's hash with the stored one.
    pub fn verify(&self, token: &UploadToken) -> Result<()> {
        let presented = token.hash();
        if super::constant_time_eq(self.0.as_bytes(), presented.0.as_bytes()) {
            Ok(())
        } else {
            Err(Error::InvalidToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_verifies_against_its_hash_only() {
        let t = UploadToken::generate();
        let other = UploadToken::generate();
        let h = t.hash();
        assert!(h.verify(&t).is_ok());
        assert!(h.verify(&other).is_err());
        assert!(h.verify(&UploadToken::parse(t.as_str()).unwrap()).is_ok());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(UploadToken::parse("abc").is_err());
        assert!(UploadToken::parse(&"g".repeat(64)).is_err());
    }
}
