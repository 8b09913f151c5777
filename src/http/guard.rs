//! What every HTTP request meets before its route: CORS (`CORS_ALLOWED_ORIGINS`), bounds on its
//! headers and body, a deadline (`REQUEST_TIMEOUT_SECS`; WebSockets are left out), and the
//! security headers on every answer. Refusals are the API's JSON errors.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, REFERRER_POLICY, RETRY_AFTER,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::extract::CHECKSUM_SHA256;
use crate::error::Error;

/// Most headers a request may carry, and most bytes in them (names and values).
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Which origins may call the API from a browser.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origins {
    /// Unset: the page's own origin only (no CORS headers; preflights are answered, denied).
    #[default]
    SameOrigin,
    /// `*`: any origin. Credentials are bearer tokens, never cookies, so this lends no
    /// ambient authority.
    Any,
    List(Vec<String>),
}

impl Origins {
    /// `CORS_ALLOWED_ORIGINS`: comma-separated `scheme://host[:port]`, or `*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let list: Vec<String> = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if list.iter().any(|o| o == "*") {
            return if list.len() == 1 {
                Ok(Self::Any)
            } else {
                Err("* stands alone".into())
            };
        }
        for o in &list {
            let rest = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| format!("{o:?} is not http(s)://host[:port]"))?;
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
                return Err(format!("{o:?} is an origin: scheme://host[:port], no path"));
            }
        }
        Ok(if list.is_empty() {
            Self::SameOrigin
        } else {
            Self::List(list)
        })
    }

    pub fn layer(&self) -> CorsLayer {
        let allow = match self {
            Origins::SameOrigin => AllowOrigin::list([]),
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => AllowOrigin::list(
                list.iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok())
                    .collect::<Vec<_>>(),
            ),
        };
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static(CHECKSUM_SHA256),
            ])
            .expose_headers([RETRY_AFTER, LOCATION])
            .max_age(Duration::from_secs(600))
    }
}

/// Bounds every request but a WebSocket's shares.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The largest body (a chunk and some room).
    pub max_body: u64,
    /// `REQUEST_TIMEOUT_SECS`: the whole request, its body included.
    pub timeout: Duration,
}

/// Refuse what is too big before it is read, and what takes too long.
pub async fn bounded(State(bounds): State<Bounds>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Error::HeadersTooLarge {
            max_headers: MAX_HEADERS,
            max_bytes: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > bounds.max_body) {
        return Error::BodyTooLarge {
            max: bounds.max_body,
        }
        .into_response();
    }
    match tokio::time::timeout(bounds.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => Error::RequestTimeout {
            secs: bounds.timeout.as_secs(),
        }
        .into_response(),
    }
}

/// `nosniff`, no referrer, no framing: on every answer that does not set its own.
pub fn secured<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_to_exact_origins() {
        assert_eq!(Origins::parse("").unwrap(), Origins::SameOrigin);
        assert_eq!(Origins::parse("*").unwrap(), Origins::Any);
        assert_eq!(
            Origins::parse("https://app.example, http://localhost:3000/").unwrap(),
            Origins::List(vec![
                "https://app.example".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "app.example",
            "https://app.example/path",
            "*, https://a.example",
            "ftp://x",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad}");
        }
    }
}
