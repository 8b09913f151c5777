//! How a library [`Error`] becomes an HTTP response: `{"error": {"code", "message", ...}}` with
//! the status from [`Error::status`].

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.is_server_side() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        let status = self.status();
        let mut response = (status, Json(json!({ "error": self.to_json() }))).into_response();
        if let Error::RangeNotSatisfiable { size } = &self
            && let Ok(v) = format!("bytes */{size}").parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        if let Error::UpgradeRequired(_) = &self {
            // RFC 9110: a 426 names the protocol to switch to.
            response.headers_mut().insert(
                axum::http::header::UPGRADE,
                axum::http::HeaderValue::from_static("websocket"),
            );
        }
        if let Error::RateLimited { retry_after, .. } = self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}
