//! The HTTP transport: one axum [`Router`] that `screenrec serve` listens with and the Lambda
//! function hands to `lambda_http`.

pub mod api_doc;
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
use axum::routing::get;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::info_span;

use self::api_doc::{ApiDoc, ApiError};
pub use self::files::parse_range;
use self::guard::{Bounds, Origins, TrustedProxies};
use crate::error::{Error, Result};
use crate::metrics::RequestLabels;
use crate::service::Recordings;
use crate::shutdown::Shutdown;
use crate::store::FsStore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The signed file routes' description (their route is added by hand, see [`router`]).
#[derive(OpenApi)]
#[openapi(paths(files::get, files::put))]
struct FilesDoc;

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
    // Each described route is routed by its description (utoipa-axum): neither can go without
    // the other. The signed file URLs take a wildcard (`{*key}`), which a description cannot
    // name, so that route is added by hand and described from its handlers in `ApiDoc`.
    let (described, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(recordings::create, recordings::list))
        .routes(routes!(recordings::status, recordings::delete))
        .routes(routes!(recordings::grant))
        .routes(routes!(recordings::put_chunk))
        .routes(routes!(recordings::confirm))
        .routes(routes!(recordings::stop))
        .routes(routes!(recordings::merge))
        .routes(routes!(recordings::download))
        .routes(routes!(recordings::poster))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
        .split_for_parts();
    doc.merge(FilesDoc::openapi());
    let description: Arc<str> = api_doc::json(doc).into();
    let requests = described
        .route(
            "/files/{*key}",
            get(files::get).put(files::put).layer(files_policy),
        )
        .route("/", get(web::index))
        .route("/web/{name}", get(web::file))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(CONTENT_TYPE, "application/json")],
                    description.to_string(),
                )
            }),
        )
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(bounds, guard::bounded));
    // A WebSocket lives for as long as its recording: no request deadline. Its protocol is
    // described in the README (an OpenAPI description has no words for a WebSocket's messages).
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
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "This instance's metrics in the OpenMetrics text format (Prometheus scrapes it), every name prefixed screenrec_",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String))
)]
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

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the coordinator and the storage answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Ready", body = Object), (status = 503, response = ApiError))
)]
async fn readyz(State(app): State<AppState>) -> Result<impl IntoResponse> {
    app.recordings.ready().await?;
    Ok(Json(json!({ "status": "ready" })))
}

#[cfg(test)]
mod tests {
    /// `CODES`, which the description lists, is every code `Error::code` can give.
    #[test]
    fn the_listed_error_codes_are_every_code() {
        let source = include_str!("../error.rs");
        let body = &source[source.find("pub fn code(&self)").unwrap()..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        let mut codes: Vec<&str> = body
            .split("=> \"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        codes.sort_unstable();
        let mut listed = crate::error::CODES.to_vec();
        listed.sort_unstable();
        assert!(codes.len() > 50, "{codes:?}");
        assert_eq!(listed, codes);
    }
}
