//! Who may record, and whose recordings are whose (`AUTH_MODE`).
//!
//! Two kinds of credential reach the API. The upload token, made at create, is scoped to one
//! recording and is all a browser holds. The owner's credential, an API key (`api-key`) or a
//! JWT (`jwt`), creates recordings and reaches the owner's routes: the list, and any of its
//! recordings by id, including delete. With `none`, anyone may create, and the owner's routes
//! need no credential: it is for one user on one machine.

mod jwt;
mod keys;

pub use jwt::{JwtKeys, JwtSettings, JwtVerifier};
pub use keys::{ApiKeys, PREFIX as API_KEY_PREFIX, generate as generate_api_key};

use crate::domain::Owner;
use crate::error::{Error, Result};

pub enum Auth {
    None,
    ApiKeys(ApiKeys),
    Jwt(Box<JwtVerifier>),
}

/// `AUTH_MODE` with what it needs.
#[derive(Clone, Debug)]
pub enum AuthConfig {
    None,
    ApiKeys(ApiKeys),
    Jwt(JwtSettings),
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Self {
        match config {
            AuthConfig::None => Auth::None,
            AuthConfig::ApiKeys(keys) => Auth::ApiKeys(keys.clone()),
            AuthConfig::Jwt(settings) => Auth::Jwt(Box::new(JwtVerifier::new(settings.clone()))),
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Auth::None)
    }

    /// The owner a bearer credential speaks for. `none`: the anonymous owner, whatever is sent.
    pub async fn owner(&self, bearer: Option<&str>) -> Result<Owner> {
        match self {
            Auth::None => Ok(Owner::anonymous()),
            Auth::ApiKeys(keys) => {
                let key = bearer.ok_or(Error::MissingCredentials)?;
                let tenant = keys
                    .tenant_of(key)
                    .ok_or_else(|| Error::InvalidCredentials("unknown API key".into()))?;
                Ok(Owner {
                    tenant,
                    subject: None,
                })
            }
            Auth::Jwt(jwt) => jwt.verify(bearer.ok_or(Error::MissingCredentials)?).await,
        }
    }
}
