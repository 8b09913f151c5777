//! What every HTTP request meets before its route: CORS (`CORS_ALLOWED_ORIGINS`), bounds on its
//! headers and body, a deadline (`REQUEST_TIMEOUT_SECS`; WebSockets are left out), and the
//! security headers on every answer. Refusals are the API's JSON errors.

use std::net::IpAddr;
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

/// `TRUSTED_PROXIES`: the addresses (CIDR blocks) whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Comma-separated addresses or `address/prefix` blocks, IPv4 or IPv6.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (addr, bits) = entry.split_once('/').unwrap_or((entry, ""));
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an address or address/prefix"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                "" => max,
                b => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{entry:?}: the prefix is 0 to {max}"))?,
            };
            blocks.push((addr, bits));
        }
        Ok(Self(blocks))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }

    /// The client behind `peer`: `peer` itself unless it is trusted, else the rightmost
    /// address of `X-Forwarded-For` that is not trusted (each trusted proxy appends the
    /// address it got the request from; only those entries can be believed).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for.unwrap_or("").rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// Bounds every request but a WebSocket's shares.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The largest chunk: every PUT body is one.
    pub max_chunk: u64,
    /// The largest other body.
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
    if let Some(n) = declared {
        // Every PUT body is a chunk (through the server, or to a signed file URL).
        if req.method() == Method::PUT && n > bounds.max_chunk {
            return Error::ChunkTooLarge {
                max: bounds.max_chunk,
            }
            .into_response();
        }
        if n > bounds.max_body {
            return Error::BodyTooLarge {
                max: bounds.max_body,
            }
            .into_response();
        }
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
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(trusted.contains(ip("10.1.2.3")) && !trusted.contains(ip("11.0.0.1")));
        assert!(trusted.contains(ip("::1")) && trusted.contains(ip("::ffff:10.0.0.1")));
        // A stranger's header is ignored.
        assert_eq!(
            trusted.client(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // Behind two proxies, the first untrusted hop from the right; a spoofed left part is
        // never reached.
        assert_eq!(
            trusted.client(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.7, 10.0.0.2")),
            ip("198.51.100.7")
        );
        assert_eq!(trusted.client(ip("10.0.0.1"), None), ip("10.0.0.1"));
        assert_eq!(trusted.client(ip("10.0.0.1"), Some("junk")), ip("10.0.0.1"));
        for bad in ["10.0.0.0/33", "x", "::1/129"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
    }

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
