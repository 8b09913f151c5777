//! HMAC-signed, expiring URLs for the filesystem store: the stand-in for S3 presigned URLs when
//! the app itself serves the bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{ObjectKey, Sha256Checksum};
use crate::error::{Error, Result};

/// What a signed URL allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedOp {
    Get,
    Put,
}

impl SignedOp {
    fn as_str(self) -> &'static str {
        match self {
            SignedOp::Get => "GET",
            SignedOp::Put => "PUT",
        }
    }
}

/// What a signed URL binds besides the operation, the key and the expiry: a download's file
/// name; an upload's size and SHA-256 (hex), when the uploader declared them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Terms {
    pub name: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

impl Terms {
    fn query(&self) -> String {
        let mut q = String::new();
        if !self.name.is_empty() {
            q.push_str("&name=");
            q.push_str(&self.name);
        }
        if let Some(size) = self.size {
            q.push_str(&format!("&size={size}"));
        }
        if let Some(sha) = &self.sha256 {
            q.push_str("&sha256=");
            q.push_str(sha);
        }
        q
    }

    /// The declared checksum, if any.
    pub fn checksum(&self) -> crate::error::Result<Option<Sha256Checksum>> {
        self.sha256
            .as_deref()
            .map(Sha256Checksum::from_hex)
            .transpose()
    }
}

#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl UrlSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    fn mac(&self, op: SignedOp, key: &ObjectKey, expires: u64, terms: &Terms) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        let size = terms.size.map(|s| s.to_string()).unwrap_or_default();
        let sha = terms.sha256.as_deref().unwrap_or_default();
        for part in [
            op.as_str(),
            key.as_str(),
            &expires.to_string(),
            &terms.name,
            &size,
            sha,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The query string (without `?`) that authorises `op` on `key` with `terms` until
    /// `now + ttl`.
    pub fn sign(
        &self,
        op: SignedOp,
        key: &ObjectKey,
        ttl: Duration,
        terms: &Terms,
    ) -> (String, SystemTime) {
        let expires_at = SystemTime::now() + ttl;
        let expires = expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sig = hex::encode(self.mac(op, key, expires, terms).finalize().into_bytes());
        (
            format!("expires={expires}&sig={sig}{}", terms.query()),
            expires_at,
        )
    }

    /// Check a signature presented with a request.
    pub fn verify(
        &self,
        op: SignedOp,
        key: &ObjectKey,
        expires: u64,
        terms: &Terms,
        sig_hex: &str,
    ) -> Result<()> {
        let sig = hex::decode(sig_hex).map_err(|_| Error::InvalidSignature)?;
        self.mac(op, key, expires, terms)
            .verify_slice(&sig)
            .map_err(|_| Error::InvalidSignature)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        if now > expires {
            return Err(Error::UrlExpired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordingId;

    fn parse(query: &str) -> (u64, String) {
        let mut expires = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap(),
                Some(("sig", v)) => sig = v.to_string(),
                _ => {}
            }
        }
        (expires, sig)
    }

    fn named(name: &str) -> Terms {
        Terms {
            name: name.into(),
            ..Terms::default()
        }
    }

    #[test]
    fn signatures_bind_op_key_and_terms() {
        let s = UrlSigner::new(b"secret".to_vec());
        let key = ObjectKey::manifest(&RecordingId::generate());
        let other = ObjectKey::manifest(&RecordingId::generate());
        let a = named("a.webm");
        let (q, _) = s.sign(SignedOp::Get, &key, Duration::from_secs(60), &a);
        let (exp, sig) = parse(&q);
        assert!(s.verify(SignedOp::Get, &key, exp, &a, &sig).is_ok());
        assert!(s.verify(SignedOp::Put, &key, exp, &a, &sig).is_err());
        assert!(s.verify(SignedOp::Get, &other, exp, &a, &sig).is_err());
        assert!(s.verify(SignedOp::Get, &key, exp + 1, &a, &sig).is_err());
        assert!(
            s.verify(SignedOp::Get, &key, exp, &named("b.webm"), &sig)
                .is_err()
        );
        let e = s.verify(SignedOp::Get, &key, 1, &a, &sig).unwrap_err();
        assert_eq!(e.code(), "invalid_signature");
        // An upload's declared size and checksum are bound too.
        let upload = Terms {
            size: Some(10),
            sha256: Some("ab".repeat(32)),
            ..Terms::default()
        };
        let (q, _) = s.sign(SignedOp::Put, &key, Duration::from_secs(60), &upload);
        assert!(q.contains("&size=10&sha256=abab"), "{q}");
        let (exp, sig) = parse(&q);
        assert!(s.verify(SignedOp::Put, &key, exp, &upload, &sig).is_ok());
        for changed in [
            Terms {
                size: Some(11),
                ..upload.clone()
            },
            Terms {
                sha256: Some("cd".repeat(32)),
                ..upload.clone()
            },
            Terms {
                sha256: None,
                ..upload.clone()
            },
        ] {
            assert!(s.verify(SignedOp::Put, &key, exp, &changed, &sig).is_err());
        }
    }

    #[test]
    fn expired_urls_are_refused() {
        let s = UrlSigner::new(b"secret".to_vec());
        let key = ObjectKey::manifest(&RecordingId::generate());
        let past = 1_000;
        let none = Terms::default();
        let sig = hex::encode(
            s.mac(SignedOp::Get, &key, past, &none)
                .finalize()
                .into_bytes(),
        );
        let e = s
            .verify(SignedOp::Get, &key, past, &none, &sig)
            .unwrap_err();
        assert_eq!(e.code(), "url_expired");
    }
}
