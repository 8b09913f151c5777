//! Whose a recording is: a tenant (the holder of an API key, or a JWT's `tenant` claim or
//! issuer) and, within it, an owner (a JWT's `sub`, or the user an API key's holder names at
//! create). And the app's own metadata about the recording.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The longest tenant or owner name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The largest metadata map, as compact JSON: what the bounds below imply (8 entries of a 16
/// and a 46 character string, each character at most 4 bytes, come to 2034 bytes).
pub const MAX_METADATA_BYTES: usize = 2048;
/// Metadata's bounds, as the API description states them.
pub const MAX_METADATA_ENTRIES: usize = 8;
pub const MAX_METADATA_KEY_CHARS: usize = 16;
pub const MAX_METADATA_VALUE_CHARS: usize = 46;
/// A string without control characters (U+0000–U+001F, U+007F–U+009F), as `char::is_control`
/// has them.
pub const NO_CONTROLS_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// A name (tenant or owner): 1 to 256 characters, none of them a control character (what the
/// API description's `NAME_PATTERN` and length say).
fn checked_name(what: &'static str, s: &str) -> Result<String> {
    if s.is_empty() || s.chars().count() > MAX_NAME_CHARS || s.chars().any(char::is_control) {
        return Err(Error::InvalidOwner(format!(
            "a {what} is 1 to {MAX_NAME_CHARS} characters, none of them a control character"
        )));
    }
    Ok(s.to_owned())
}

/// A name as it appears in object keys: the first 128 bits of its SHA-256, hex, so that no
/// name, whatever its characters, shapes a key.
fn key_part(name: &str) -> String {
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant of every recording when anyone may record (`AUTH_MODE=none`), and of the
    /// recordings made before tenants existed.
    pub const DEFAULT: &str = "default";

    pub fn parse(s: &str) -> Result<Self> {
        checked_name("tenant", s).map(Self)
    }

    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key_part(&self) -> String {
        key_part(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    pub fn parse(s: &str) -> Result<Self> {
        checked_name("owner", s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key_part(&self) -> String {
        key_part(&self.0)
    }
}

/// Whom a recording belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub tenant: Tenant,
    /// The owner within the tenant, when one was named.
    pub subject: Option<Subject>,
}

impl Owner {
    pub fn anonymous() -> Self {
        Self {
            tenant: Tenant::default_tenant(),
            subject: None,
        }
    }

    /// An owner as stored. A recording made before tenants existed is the default tenant's.
    pub fn stored(tenant: Option<&str>, subject: Option<&str>) -> Self {
        Self {
            tenant: tenant
                .and_then(|t| Tenant::parse(t).ok())
                .unwrap_or_else(Tenant::default_tenant),
            subject: subject.and_then(|s| Subject::parse(s).ok()),
        }
    }

    /// Whether a caller speaking for `self` may see and delete a recording of `owner`: the
    /// same tenant, and, when the caller is one owner (a JWT's subject), the same owner. A
    /// caller for a whole tenant (an API key) sees all of it.
    pub fn may_see(&self, owner: &Owner) -> bool {
        self.tenant == owner.tenant
            && self
                .subject
                .as_ref()
                .is_none_or(|s| owner.subject.as_ref() == Some(s))
    }
}

/// The app's own data about a recording: at most [`MAX_METADATA_ENTRIES`] strings of at most
/// [`MAX_METADATA_VALUE_CHARS`] characters, under keys of 1 to [`MAX_METADATA_KEY_CHARS`],
/// none with a control character (so at most [`MAX_METADATA_BYTES`] of JSON), returned
/// everywhere the recording is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(v: &Value) -> Result<Self> {
        let bad = |why: &str| Error::InvalidMetadata(why.to_owned());
        let object = v
            .as_object()
            .ok_or_else(|| bad("metadata is an object of strings"))?;
        if object.len() > MAX_METADATA_ENTRIES {
            return Err(bad("metadata has at most 8 entries"));
        }
        let printable = |s: &str| !s.chars().any(char::is_control);
        let mut map = BTreeMap::new();
        for (k, v) in object {
            let v = v
                .as_str()
                .ok_or_else(|| bad("every metadata value is a string"))?;
            let key_chars = k.chars().count();
            if key_chars == 0 || key_chars > MAX_METADATA_KEY_CHARS || !printable(k) {
                return Err(bad(
                    "a metadata key is 1 to 16 characters, none a control character",
                ));
            }
            if v.chars().count() > MAX_METADATA_VALUE_CHARS || !printable(v) {
                return Err(bad(
                    "a metadata value is at most 46 characters, none a control character",
                ));
            }
            map.insert(k.clone(), v.to_owned());
        }
        let parsed = Self(map);
        if parsed.to_json().to_string().len() > MAX_METADATA_BYTES {
            return Err(bad("metadata is at most 2048 bytes of JSON"));
        }
        Ok(parsed)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.0).expect("a map of strings is JSON")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(Tenant::parse("acme").is_ok());
        assert!(Tenant::parse("https://issuer.example/").is_ok());
        assert!(Tenant::parse("").is_err());
        assert!(Tenant::parse("a\nb").is_err());
        assert!(Subject::parse(&"x".repeat(257)).is_err());
        let t = Tenant::parse("../../etc").unwrap();
        assert!(t.key_part().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(t.key_part().len(), 32);
    }

    #[test]
    fn a_tenant_key_sees_its_tenant_and_a_subject_only_its_own() {
        let acme = Tenant::parse("acme").unwrap();
        let alice = Owner {
            tenant: acme.clone(),
            subject: Some(Subject::parse("alice").unwrap()),
        };
        let bob = Owner {
            tenant: acme.clone(),
            subject: Some(Subject::parse("bob").unwrap()),
        };
        let tenant = Owner {
            tenant: acme,
            subject: None,
        };
        let other = Owner {
            tenant: Tenant::parse("globex").unwrap(),
            subject: None,
        };
        assert!(tenant.may_see(&alice) && tenant.may_see(&bob) && tenant.may_see(&tenant));
        assert!(alice.may_see(&alice) && !alice.may_see(&bob) && !alice.may_see(&tenant));
        assert!(!other.may_see(&alice) && !alice.may_see(&other) && !other.may_see(&tenant));
    }

    #[test]
    fn metadata_is_a_small_map_of_strings() {
        let m = Metadata::parse(&json!({"course": "rust-101", "lesson": "3"})).unwrap();
        assert_eq!(m.to_json(), json!({"course": "rust-101", "lesson": "3"}));
        // The largest there is: 8 entries at their longest, in 4-byte characters.
        let widest: serde_json::Map<String, Value> = (0..8)
            .map(|i| (format!("{i}{}", "𝕜".repeat(15)), json!("𝕧".repeat(46))))
            .collect();
        let widest = Metadata::parse(&Value::Object(widest)).unwrap();
        assert!(widest.to_json().to_string().len() <= MAX_METADATA_BYTES);
        for bad in [
            json!([]),
            json!("x"),
            json!({"n": 1}),
            json!({"n": null}),
            json!({"big": "x".repeat(2048)}),
            json!({"long": "x".repeat(47)}),
            json!({"a-key-of-17-chars": "x"}),
            json!({"": "x"}),
            json!({"k": "a\nb"}),
            json!({"a": "", "b": "", "c": "", "d": "", "e": "", "f": "", "g": "", "h": "", "i": ""}),
        ] {
            let e = Metadata::parse(&bad).unwrap_err();
            assert_eq!(e.code(), "invalid_metadata", "{bad}");
        }
    }
}
