//! The HTTP transport: one axum [`Router`] that `screenrec serve` listens with and the Lambda
//! function hands to `lambda_http`.

mod error;
mod extract;
mod files;
pub mod guard;
mod recordings;
mod web;
pub mod ws;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::info_span;

pub use self::files::parse_range;
use self::guard::{Bounds, Origins, TrustedProxies};
use crate::error::{Error, Result};
use crate::metrics::RequestLabels;
use crate::service::Recordings;
use crate::shutdown::Shutdown;
use crate::store::FsStore;

/// The OpenAPI description of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub recordings: Arc<Recordings>,
    /// The filesystem store, when the app serves its signed URLs itself.
    pub files: Option<Arc<FsStore>>,
    /// `WEB_DIR`: serve the page from this directory instead of the copy in the binary.
    pub web_dir: Option<Arc<Path>>,
    /// Fires when the instance stops: WebSocket sessions then close with 1001.
    pub shutdown: Shutdown,
    /// Who may call from a browser, and the bounds on every request.
    pub origins: Origins,
    pub request_timeout: std::time::Duration,
    pub trusted_proxies: Arc<TrustedProxies>,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.recordings.limits().max_chunk_bytes as usize + 1;
    let bounds = Bounds {
        max_chunk: state.recordings.limits().max_chunk_bytes,
        // A chunk, and room for a JSON wrapping of one.
        max_body: body_limit as u64 + 64 * 1024,
        timeout: state.request_timeout,
    };
    // Stored objects are never a page: no script, no plugin, even if one were HTML.
    let files_policy = SetResponseHeaderLayer::overriding(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    let requests = Router::new()
        .route(
            "/recordings",
            post(recordings::create).get(recordings::list),
        )
        .route(
            "/recordings/{id}",
            get(recordings::status).delete(recordings::delete),
        )
        .route("/recordings/{id}/chunks", post(recordings::grant))
        .route("/recordings/{id}/chunks/{seq}", put(recordings::put_chunk))
        .route(
            "/recordings/{id}/chunks/{seq}/complete",
            post(recordings::confirm),
        )
        .route("/recordings/{id}/stop", post(recordings::stop))
        .route("/recordings/{id}/merge", post(recordings::merge))
        .route("/recordings/{id}/download", get(recordings::download))
        .route("/recordings/{id}/poster", get(recordings::poster))
        .route(
            "/files/{*key}",
            get(files::get).put(files::put).layer(files_policy),
        )
        .route("/", get(web::index))
        .route("/web/{name}", get(web::file))
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(bounds, guard::bounded));
    // A WebSocket lives for as long as its recording: no request deadline.
    let sockets = Router::new().route("/ws", get(ws::upgrade));
    guard::secured(requests.merge(sockets))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            measured,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(state.origins.layer())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            info_span!("http", method = %req.method(), route, uri = %req.uri())
        }))
        .with_state(state)
}

/// Count and time every request by its route's pattern.
async fn measured(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let labels = RequestLabels {
        route,
        method,
        status,
    };
    let metrics = app.recordings.records().metrics();
    metrics.request(labels, started.elapsed());
    response
}

/// `GET /metrics`: this instance's metrics, the merge queue's depth read from the queue.
async fn metrics_text(State(app): State<AppState>) -> impl IntoResponse {
    let records = app.recordings.records();
    let metrics = records.metrics();
    match records.queue().depth().await {
        Ok(Some(depth)) => {
            metrics.merge_queue_depth.set(depth as i64);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "merge queue depth unknown"),
    }
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

async fn readyz(State(app): State<AppState>) -> Result<impl IntoResponse> {
    app.recordings.ready().await?;
    Ok(Json(json!({ "status": "ready" })))
}

#[cfg(test)]
mod tests {
    /// Every code `Error::code` can give is in the description's error schema, and no other.
    #[test]
    fn the_description_names_every_error_code() {
        let source = include_str!("../error.rs");
        let body = &source[source.find("pub fn code(&self)").unwrap()..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        let mut codes: Vec<&str> = body
            .split("=> \"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        codes.sort_unstable();
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let listed = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
            ["enum"];
        let mut listed: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        assert!(codes.len() > 50, "{codes:?}");
        assert_eq!(listed, codes);
    }
}
