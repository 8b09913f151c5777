//! API keys, for an app's backend: `srk_` and 64 hex digits. Only each key's SHA-256 is
//! configured (`API_KEYS=tenant=sha256hex,…`), so no key is kept in plain text anywhere.

use sha2::{Digest, Sha256};

use crate::domain::{Tenant, constant_time_eq, random_bytes};

/// What every API key begins with (an upload token is bare hex, a JWT has dots).
pub const PREFIX: &str = "srk_";

#[derive(Clone, Debug)]
pub struct ApiKeys(Vec<(Tenant, [u8; 32])>);

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Parse `API_KEYS`: comma-separated `tenant=sha256hex`. A tenant may have several keys
    /// (one line each), which is how a key is rotated.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (tenant, hash) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not tenant=sha256hex"))?;
            let tenant = Tenant::parse(tenant.trim()).map_err(|e| e.to_string())?;
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hash.trim(), &mut bytes).map_err(|_| {
                format!("the key hash of tenant {tenant:?} is not 64 hex digits (a SHA-256)")
            })?;
            keys.push((tenant, bytes));
        }
        if keys.is_empty() {
            return Err("no key: add tenant=sha256hex (screenrec keygen TENANT prints one)".into());
        }
        Ok(Self(keys))
    }

    /// The tenant whose key this is. Every configured hash is compared, each in constant time,
    /// so the time taken says nothing about which, or whether, one matched.
    pub fn tenant_of(&self, key: &str) -> Option<Tenant> {
        let presented = digest(key);
        let mut found = None;
        for (tenant, hash) in &self.0 {
            if constant_time_eq(hash, &presented) && found.is_none() {
                found = Some(tenant.clone());
            }
        }
        found
    }
}

/// A new random key for `tenant`, and the `API_KEYS` entry that admits it.
pub fn generate(tenant: &Tenant) -> (String, String) {
    let key = format!("{PREFIX}{}", hex::encode(random_bytes::<32>()));
    let entry = format!("{}={}", tenant.as_str(), hex::encode(digest(&key)));
    (key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_admitted_by_its_entry_only() {
        let acme = Tenant::parse("acme").unwrap();
        let (key, entry) = generate(&acme);
        assert!(key.starts_with(PREFIX) && key.len() == PREFIX.len() + 64);
        let (other_key, other_entry) = generate(&Tenant::parse("globex").unwrap());
        let keys = ApiKeys::parse(&format!("{entry}, {other_entry}")).unwrap();
        assert_eq!(keys.tenant_of(&key), Some(acme));
        assert_eq!(keys.tenant_of(&other_key).unwrap().as_str(), "globex");
        assert_eq!(keys.tenant_of(&format!("{key}x")), None);
        assert_eq!(keys.tenant_of(""), None);
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["", "acme", "acme=abc", &format!("={}", "0".repeat(64))] {
            assert!(ApiKeys::parse(bad).is_err(), "{bad:?}");
        }
    }
}
