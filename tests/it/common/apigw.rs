//! A stand-in for the API Gateway Management API on port 0: records every `POST
//! /@connections/{id}` and answers by connection id: `gone…` 410, `flaky…` 500 once then 200,
//! `down…` always 500, others 200.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

#[derive(Clone, Default)]
pub struct ManagementApi {
    pub endpoint: String,
    seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>,
}

impl ManagementApi {
    pub async fn spawn() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Self {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
        };
        let router = axum::Router::new()
            .route("/@connections/{connection}", axum::routing::post(post))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        api
    }

    /// Every request so far: connection id, headers, body.
    pub fn seen(&self) -> Vec<(String, HeaderMap, Bytes)> {
        self.seen.lock().unwrap().clone()
    }

    /// The JSON messages posted to one connection, in order.
    pub fn messages(&self, connection: &str) -> Vec<Value> {
        self.seen()
            .iter()
            .filter(|(c, _, _)| c == connection)
            .map(|(_, _, body)| serde_json::from_slice(body).unwrap())
            .collect()
    }

    /// Wait until a message posted to `connection` satisfies `pred`, and return it.
    pub async fn wait_for(
        &self,
        connection: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.messages(connection).into_iter().find(|m| pred(m)) {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such message to {connection} within {timeout:?}; got {:?}",
                self.messages(connection)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn post(
    State(api): State<ManagementApi>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let earlier = {
        let mut seen = api.seen.lock().unwrap();
        let earlier = seen.iter().filter(|(c, _, _)| *c == connection).count();
        seen.push((connection.clone(), headers, body));
        earlier
    };
    let error = |status, kind| (status, [("x-amzn-errortype", kind)], "{}").into_response();
    match connection.as_str() {
        c if c.starts_with("gone") => error(StatusCode::GONE, "GoneException"),
        c if c.starts_with("flaky") && earlier == 0 => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
        ),
        c if c.starts_with("down") => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
        ),
        _ => StatusCode::OK.into_response(),
    }
}
