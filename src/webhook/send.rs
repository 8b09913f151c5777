//! One delivery attempt over HTTP: signed as Standard Webhooks asks, to a public address only
//! (unless private ones are allowed), no redirect followed, within a timeout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, USER_AGENT};

use super::sign::WebhookSecret;

/// How one attempt went.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// Anything else that may go better later: another status, a timeout, a connection refused.
    Failed(String),
    /// Never to be sent: the address is not public, or the URL is not one.
    Refused(String),
}

/// Whether `ip` is on the public internet: not loopback, private, link-local, shared,
/// documentation, benchmarking, multicast, reserved or unspecified (nor an IPv6 form of one).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0; 6]) // IPv4-compatible and the like
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b & 0xfe) == 18) // benchmarking
        || a >= 240) // reserved
}

/// Resolves names to public addresses only, so a name cannot lead a delivery inside.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Sends signed deliveries.
pub struct Sender {
    http: reqwest::Client,
    secret: WebhookSecret,
    allow_private: bool,
}

impl Sender {
    pub fn new(secret: WebhookSecret, timeout: Duration, allow_private: bool) -> Self {
        let mut http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if !allow_private {
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        Self {
            http: http.build().expect("an HTTP client"),
            secret,
            allow_private,
        }
    }

    /// Whether `url` may be sent to at all: http or https, and, unless private addresses are
    /// allowed, not an IP address that is not public. (A name is checked when it resolves.)
    pub fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} is not http or https"));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(format!("{url:?} has no host")),
        };
        if let Some(ip) = literal
            && !allow_private
            && !is_public(ip)
        {
            return Err(format!(
                "{ip} is not a public address (WEBHOOK_ALLOW_PRIVATE=true allows it)"
            ));
        }
        Ok(parsed)
    }

    /// One attempt: POST `body` to `url`, signed for `id` at `timestamp` (Unix seconds).
    pub async fn send(&self, url: &str, id: &str, timestamp: u64, body: &[u8]) -> Attempt {
        let url = match Self::check_url(url, self.allow_private) {
            Ok(url) => url,
            Err(e) => return Attempt::Refused(e),
        };
        let sent = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("screenrec/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(id, timestamp, body))
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => Attempt::Failed(format!("answered {}", r.status())),
            Err(e) if is_refused_name(&e) => Attempt::Refused(chain(&e)),
            Err(e) => Attempt::Failed(chain(&e)),
        }
    }
}

/// Whether the error is the resolver's refusal of every address of a name.
fn is_refused_name(e: &reqwest::Error) -> bool {
    chain(e).contains("resolves to no public address")
}

/// An error with its causes, for the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "ff02::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_send() {
        assert!(Sender::check_url("https://example.com/hook", false).is_ok());
        assert!(Sender::check_url("http://127.0.0.1:9/hook", false).is_err());
        assert!(Sender::check_url("http://[::1]/hook", false).is_err());
        assert!(Sender::check_url("http://169.254.169.254/latest", false).is_err());
        assert!(Sender::check_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(Sender::check_url("file:///etc/passwd", true).is_err());
        assert!(Sender::check_url("not a url", true).is_err());
    }
}
