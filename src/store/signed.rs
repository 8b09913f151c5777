//! HMAC-signed, expiring URLs for the filesystem store: the stand-in for S3 presigned URLs when
//! the app itself serves the bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::ObjectKey;
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

    fn mac(&self, op: SignedOp, key: &ObjectKey, expires: u64, file_name: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes a key of any length");
        for part in [op.as_str(), key.as_str(), &expires.to_string(), file_name] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    /// The query string (without `?`) that authorises `op` on `key` until `now + ttl`.
    pub fn sign(
        &self,
        op: SignedOp,
        key: &ObjectKey,
        ttl: Duration,
        file_name: &str,
    ) -> (String, SystemTime) {
        let expires_at = SystemTime::now() + ttl;
        let expires = expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sig = hex::encode(
            self.mac(op, key, expires, file_name)
                .finalize()
                .into_bytes(),
        );
        let mut query = format!("expires={expires}&sig={sig}");
        if !file_name.is_empty() {
            query.push_str("&name=");
            query.push_str(file_name);
        }
        (query, expires_at)
    }

    /// Check a signature presented with a request.
    pub fn verify(
        &self,
        op: SignedOp,
        key: &ObjectKey,
        expires: u64,
        file_name: &str,
        sig_hex: &str,
    ) -> Result<()> {
        let sig = hex::decode(sig_hex).map_err(|_| Error::InvalidSignature)?;
        self.mac(op, key, expires, file_name)
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

    #[test]
    fn signatures_bind_op_key_and_name() {
        let s = UrlSigner::new(b"secret".to_vec());
        let key = ObjectKey::manifest(&RecordingId::generate());
        let other = ObjectKey::manifest(&RecordingId::generate());
        let (q, _) = s.sign(SignedOp::Get, &key, Duration::from_secs(60), "a.webm");
        let (exp, sig) = parse(&q);
        assert!(s.verify(SignedOp::Get, &key, exp, "a.webm", &sig).is_ok());
        assert!(s.verify(SignedOp::Put, &key, exp, "a.webm", &sig).is_err());
        assert!(
            s.verify(SignedOp::Get, &other, exp, "a.webm", &sig)
                .is_err()
        );
        assert!(
            s.verify(SignedOp::Get, &key, exp + 1, "a.webm", &sig)
                .is_err()
        );
        assert!(s.verify(SignedOp::Get, &key, exp, "b.webm", &sig).is_err());
        let e = s
            .verify(SignedOp::Get, &key, 1, "a.webm", &sig)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_signature");
    }

    #[test]
    fn expired_urls_are_refused() {
        let s = UrlSigner::new(b"secret".to_vec());
        let key = ObjectKey::manifest(&RecordingId::generate());
        let past = 1_000;
        let sig = hex::encode(s.mac(SignedOp::Get, &key, past, "").finalize().into_bytes());
        let e = s.verify(SignedOp::Get, &key, past, "", &sig).unwrap_err();
        assert_eq!(e.code(), "url_expired");
    }
}
