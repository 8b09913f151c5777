//! The demo recorder page and the browser client library, served at `/` and `/web/{name}`.
//!
//! The files in `web/` are compiled into the binary, so `screenrec serve` needs nothing beside
//! it. `WEB_DIR` serves them from a directory instead, for working on the page without a rebuild.

use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::{Error, Result};

/// Every file the page is made of: its name under `web/`, its media type and its contents.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
    (
        "screenrec.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/screenrec.js"),
    ),
    (
        "screenrec.d.ts",
        "text/plain; charset=utf-8",
        include_str!("../../web/screenrec.d.ts"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/favicon.svg"),
    ),
];

/// Scripts and styles only from this origin; uploads, sockets and the finished video may be on
/// the object store's origin (presigned URLs).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' http: https: ws: wss:; media-src 'self' http: https: blob:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub async fn index(State(app): State<AppState>) -> Result<Response> {
    asset(app.web_dir.as_deref(), "index.html").await
}

pub async fn file(State(app): State<AppState>, UrlPath(name): UrlPath<String>) -> Result<Response> {
    asset(app.web_dir.as_deref(), &name).await
}

async fn asset(dir: Option<&Path>, name: &str) -> Result<Response> {
    let &(name, media_type, embedded) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or(Error::NotFound)?;
    let body = match dir {
        Some(dir) => tokio::fs::read_to_string(dir.join(name))
            .await
            .map_err(|e| Error::Internal(format!("web asset {name}: {e}")))?,
        None => embedded.to_owned(),
    };
    let mut res = (
        [(CONTENT_TYPE, media_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response();
    if name.ends_with(".html") {
        res.headers_mut()
            .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to `web/` but not to [`ASSETS`] would be missing from the binary.
    #[test]
    fn every_web_file_is_served() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let served = ASSETS.iter().any(|(n, _, _)| *n == name);
            let tooling = entry.file_type().unwrap().is_dir()
                || matches!(
                    name.as_str(),
                    "package.json" | "package-lock.json" | "README.md"
                );
            assert!(served || tooling, "web/{name} is not in ASSETS");
        }
    }
}
