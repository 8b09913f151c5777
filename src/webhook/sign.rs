//! Standard Webhooks signatures: `v1,` and the base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the secret's decoded bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The least a secret may hold, decoded (the spec's minimum).
const MIN_KEY_BYTES: usize = 24;

/// `WEBHOOK_SECRET`: `whsec_` and the base64 of the key.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    pub fn parse(s: &str) -> Result<Self, String> {
        let encoded = s
            .strip_prefix("whsec_")
            .ok_or("it must start with whsec_")?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| format!("what follows whsec_ is not base64: {e}"))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "its key is {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// A new random secret, as `WEBHOOK_SECRET` takes it.
    pub fn generate() -> String {
        format!(
            "whsec_{}",
            STANDARD.encode(crate::domain::random_bytes::<32>())
        )
    }

    /// The `webhook-signature` header of one attempt.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_specification_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_whsec_or_too_short() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_not base64!").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err());
        assert!(WebhookSecret::parse(&WebhookSecret::generate()).is_ok());
    }
}
