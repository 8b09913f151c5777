//! Request extractors that turn every malformed request into a library [`Error`], so clients
//! always get the JSON error shape.

use axum::extract::rejection::JsonRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::domain::RecordingId;
use crate::error::Error;

/// The header a chunk's SHA-256 comes with (the name S3 uses).
pub const CHECKSUM_SHA256: &str = "x-amz-checksum-sha256";

/// JSON body; a wrong content type is 415 `unsupported_content_type`, bad JSON is 400
/// `invalid_json`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::UnsupportedContentType(
                "send Content-Type: application/json".into(),
            )),
            Err(e) => Err(Error::InvalidJson(e.body_text())),
        }
    }
}

/// The `Authorization: Bearer <token>` value, if any.
pub struct Bearer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned());
        Ok(Self(token))
    }
}

/// The client's address (see [`TrustedProxies::client`]); `None` when there is no peer
/// address (behind API Gateway, which limits rates itself).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Ok(Self(peer.map(|p| app.trusted_proxies.client(p, forwarded))))
    }
}

/// The `{id}` and optional `{seq}` path parameters, the id already validated.
pub struct Target {
    pub id: RecordingId,
    pub seq: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Target {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::InvalidRecordingId("it is not valid UTF-8"))?;
        let mut id = None;
        let mut seq = None;
        for (name, value) in &params {
            match name {
                "id" => id = Some(RecordingId::parse(value)?),
                "seq" => seq = Some(value.to_owned()),
                _ => {}
            }
        }
        Ok(Self {
            id: id.ok_or(Error::NotFound)?,
            seq,
        })
    }
}
