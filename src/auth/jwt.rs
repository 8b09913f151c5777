//! JWTs, for a browser or an app that already holds one: HS256 with `JWT_SECRET`, or RS256,
//! ES256 and EdDSA with the keys of `JWT_JWKS_URL`. The issuer, the audience, `exp`, `sub`
//! (and `nbf` when present) are checked; `sub` is the owner, a `tenant` claim (default: the
//! issuer) the tenant.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use tracing::warn;

use crate::domain::{Owner, Subject, Tenant};
use crate::error::{Error, Result};

/// How long a fetched key set is used before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid` fetches the set again at most this often, so that tokens with made-up key
/// ids cannot make every request a fetch.
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(1);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// Where the signing keys come from.
#[derive(Clone, Debug)]
pub enum JwtKeys {
    /// `JWT_SECRET`: HS256.
    Secret(Vec<u8>),
    /// `JWT_JWKS_URL`: RS256, ES256 or EdDSA, by `kid`.
    Jwks(String),
}

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub keys: JwtKeys,
    pub issuer: String,
    pub audience: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    tenant: Option<String>,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    jwks: Option<JwksCache>,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        let jwks = match &settings.keys {
            JwtKeys::Jwks(url) => Some(JwksCache::new(url.clone())),
            JwtKeys::Secret(_) => None,
        };
        Self { settings, jwks }
    }

    /// The owner a valid token speaks for.
    pub async fn verify(&self, token: &str) -> Result<Owner> {
        let invalid = |why: String| Error::InvalidCredentials(why);
        // An unknown algorithm, `none` included, fails here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("not a JWT this server accepts: {e}")))?;
        let (key, alg) = match (&self.settings.keys, &self.jwks) {
            (JwtKeys::Secret(secret), _) => {
                if header.alg != Algorithm::HS256 {
                    return Err(invalid(format!("algorithm {:?} is not HS256", header.alg)));
                }
                (DecodingKey::from_secret(secret), Algorithm::HS256)
            }
            (JwtKeys::Jwks(_), Some(jwks)) => {
                if !matches!(
                    header.alg,
                    Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
                ) {
                    return Err(invalid(format!(
                        "algorithm {:?} is not RS256, ES256 or EdDSA",
                        header.alg
                    )));
                }
                let jwk = jwks.key(header.kid.as_deref()).await?;
                if let Some(declared) = jwk.common.key_algorithm
                    && format!("{declared:?}") != format!("{:?}", header.alg)
                {
                    return Err(invalid("the token's algorithm is not its key's".into()));
                }
                let key = DecodingKey::from_jwk(&jwk)
                    .map_err(|e| invalid(format!("its key cannot be used: {e}")))?;
                (key, header.alg)
            }
            (JwtKeys::Jwks(_), None) => unreachable!("a JWKS verifier has a cache"),
        };
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| invalid(format!("{e}")))?
            .claims;
        let tenant = claims.tenant.as_deref().unwrap_or(&claims.iss);
        Ok(Owner {
            tenant: Tenant::parse(tenant).map_err(|e| invalid(format!("tenant claim: {e}")))?,
            subject: Some(
                Subject::parse(&claims.sub).map_err(|e| invalid(format!("sub claim: {e}")))?,
            ),
        })
    }
}

struct Fetched {
    set: JwkSet,
    at: Instant,
}

/// The JWKS, fetched on first use and again after [`JWKS_TTL`], or at once (but at most every
/// [`JWKS_REFETCH_AFTER`]) when a token names a key id it lacks, since that is how a key
/// rotation shows. When a fetch fails the set already held is used, however old.
struct JwksCache {
    url: String,
    http: reqwest::Client,
    fetched: RwLock<Option<Fetched>>,
    fetching: Mutex<()>,
}

impl JwksCache {
    fn new(url: String) -> Self {
        Self {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            fetched: RwLock::new(None),
            fetching: Mutex::new(()),
        }
    }

    /// `kid`'s key; without a `kid`, the set's only key.
    fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
        match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        }
    }

    async fn key(&self, kid: Option<&str>) -> Result<Jwk> {
        if let Some(f) = &*self.fetched.read().await
            && f.at.elapsed() < JWKS_TTL
            && let Some(key) = Self::find(&f.set, kid)
        {
            return Ok(key);
        }
        // One fetch at a time; whoever waited here may find the set just fetched.
        let _fetching = self.fetching.lock().await;
        let due = self.fetched.read().await.as_ref().is_none_or(|f| {
            let age = f.at.elapsed();
            age >= JWKS_REFETCH_AFTER && (age >= JWKS_TTL || Self::find(&f.set, kid).is_none())
        });
        if due {
            match self.fetch().await {
                Ok(set) => {
                    *self.fetched.write().await = Some(Fetched {
                        set,
                        at: Instant::now(),
                    })
                }
                Err(e) => {
                    warn!(url = %self.url, error = %e, "JWKS not fetched; the keys held are used")
                }
            }
        }
        match &*self.fetched.read().await {
            Some(f) => Self::find(&f.set, kid).ok_or_else(|| {
                Error::InvalidCredentials(format!("no key {kid:?} in the issuer's key set"))
            }),
            None => Err(Error::AuthUnavailable(format!(
                "the key set at {} could not be fetched",
                self.url
            ))),
        }
    }

    async fn fetch(&self) -> std::result::Result<JwkSet, String> {
        let res = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("{} answered {}", self.url, res.status()));
        }
        res.json::<JwkSet>().await.map_err(|e| e.to_string())
    }
}
