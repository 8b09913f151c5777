//! The WebSocket API's routes. API Gateway holds the sockets; this function sees one event per
//! connect, disconnect and message:
//!
//! - `$connect` with `?recordingId=…&token=…`: the token is checked (a wrong one refuses the
//!   connection with 401) and the connection follows the recording from then on;
//! - `$default`: the control messages of `/ws` that make sense here: `subscribe` (replays the
//!   kept events after `lastVersion` and the current state, then live events arrive as they
//!   are published), `unsubscribe` and `status`. Replies and errors go back through the
//!   Management API, in the same shapes as on `/ws`;
//! - `$disconnect`: the connection is forgotten.
//!
//! A subscriber registers before the replay is read, so nothing falls between the two; a live
//! event may then arrive before replayed ones, and clients order events by `version`.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span, warn};

use crate::domain::RecordingId;
use crate::error::{Error, Result};
use crate::http::ws::{
    ClientMessage, MAX_RECORDINGS_PER_CONNECTION, error_reply, greeting, reply_to,
};
use crate::notify::ApiGatewayNotifier;
use crate::service::Recordings;

pub struct WsFunction {
    recordings: Arc<Recordings>,
    gateway: Arc<ApiGatewayNotifier>,
}

impl WsFunction {
    pub fn new(recordings: Arc<Recordings>, gateway: Arc<ApiGatewayNotifier>) -> Self {
        Self {
            recordings,
            gateway,
        }
    }

    /// Handle one route event. Only `$connect`'s status matters to API Gateway (non-2xx
    /// refuses the connection); messages are answered through the Management API.
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let ctx = &event.request_context;
        let route = ctx.route_key.clone().unwrap_or_default();
        let Some(connection_id) = ctx.connection_id.clone() else {
            return response(Err(Error::InvalidFrame("event has no connectionId".into())));
        };
        let span =
            info_span!("ws_route", %route, %connection_id, recording_id = tracing::field::Empty);
        async {
            match route.as_str() {
                "$connect" => {
                    let query = &event.query_string_parameters;
                    response(
                        self.connect(
                            &connection_id,
                            query.first("recordingId"),
                            query.first("token"),
                        )
                        .await,
                    )
                }
                "$disconnect" => response(self.gateway.unregister(&connection_id).await),
                _ => {
                    let reply = self.message(&connection_id, event.body.as_deref()).await;
                    if !reply.is_null() {
                        self.reply(&connection_id, &reply).await;
                    }
                    response(Ok(()))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn connect(
        &self,
        connection_id: &str,
        id: Option<&str>,
        token: Option<&str>,
    ) -> Result<()> {
        let id =
            RecordingId::parse(id.ok_or(Error::InvalidRecordingId("recordingId is required"))?)?;
        tracing::Span::current().record("recording_id", id.as_str());
        self.recordings.authorize(&id, token).await?;
        self.gateway.register(&id, connection_id).await
    }

    async fn message(&self, connection_id: &str, body: Option<&str>) -> Value {
        let msg = match serde_json::from_str::<ClientMessage>(body.unwrap_or_default()) {
            Ok(m) => m,
            Err(e) => return error_reply(&Error::InvalidJson(e.to_string()), Value::Null),
        };
        let request_id = msg.request_id();
        let result = match msg {
            ClientMessage::Subscribe {
                recording_id,
                token,
                last_version,
                request_id,
            } => {
                self.subscribe(
                    connection_id,
                    &recording_id,
                    token.as_deref(),
                    last_version,
                    request_id,
                )
                .await
            }
            ClientMessage::Unsubscribe { recording_id, .. } => {
                async {
                    let id = RecordingId::parse(&recording_id)?;
                    self.gateway.unfollow(&id, connection_id).await?;
                    Ok(json!({ "type": "unsubscribed", "recordingId": recording_id }))
                }
                .await
            }
            ClientMessage::Status { recording_id, .. } => {
                async {
                    let id = self.followed(connection_id, &recording_id).await?;
                    let view = self.recordings.status(&id).await?;
                    Ok(json!({ "type": "status", "recording": view }))
                }
                .await
            }
            ClientMessage::Create { .. }
            | ClientMessage::Auth { .. }
            | ClientMessage::Stop { .. } => Err(Error::UnsupportedMessage(
                "create, auth and stop go to the HTTP API in the serverless deployment".into(),
            )),
        };
        reply_to(request_id, result)
    }

    /// A recording this connection follows (it was authorised at connect or by a subscribe).
    async fn followed(&self, connection_id: &str, recording_id: &str) -> Result<RecordingId> {
        let id = RecordingId::parse(recording_id)?;
        if self
            .gateway
            .following(connection_id)
            .await?
            .iter()
            .any(|r| r == id.as_str())
        {
            Ok(id)
        } else {
            Err(Error::MissingToken)
        }
    }

    /// Follow a recording, then send the reply, the kept events after `last_version` and the
    /// current state. Returns `Null`: the reply is already sent.
    async fn subscribe(
        &self,
        connection_id: &str,
        recording_id: &str,
        token: Option<&str>,
        last_version: Option<u64>,
        request_id: Option<Value>,
    ) -> Result<Value> {
        let id = RecordingId::parse(recording_id)?;
        tracing::Span::current().record("recording_id", id.as_str());
        let following = self.gateway.following(connection_id).await?;
        let followed = following.iter().any(|r| r == id.as_str());
        if token.is_some() || !followed {
            if !followed && following.len() >= MAX_RECORDINGS_PER_CONNECTION {
                return Err(Error::ConnectionLimit(format!(
                    "a connection follows at most {MAX_RECORDINGS_PER_CONNECTION} recordings"
                )));
            }
            self.recordings.authorize(&id, token).await?;
            self.gateway.register(&id, connection_id).await?;
        }
        let backlog = self.gateway.history(&id, last_version.unwrap_or(0)).await?;
        let (reply, snapshot) =
            greeting(&self.recordings, &id, &backlog, last_version, request_id).await?;
        let mut messages = vec![reply];
        messages.extend(
            backlog
                .iter()
                .chain([&snapshot])
                .map(|e| serde_json::to_value(e).expect("serializable")),
        );
        for message in &messages {
            if !self.reply(connection_id, message).await {
                break;
            }
        }
        Ok(Value::Null)
    }

    /// Send one message to the connection; `false` when it could not be delivered.
    async fn reply(&self, connection_id: &str, message: &Value) -> bool {
        match self
            .gateway
            .send(connection_id, message.to_string().as_bytes())
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                debug!("connection gone");
                false
            }
            Err(e) => {
                warn!(error = %e, "reply not delivered");
                false
            }
        }
    }
}

/// The route's answer: 200, or the error's status and JSON body (which API Gateway uses to
/// refuse a `$connect`).
fn response(result: Result<()>) -> ApiGatewayProxyResponse {
    let mut res = ApiGatewayProxyResponse::default();
    match result {
        Ok(()) => res.status_code = 200,
        Err(e) => {
            if e.is_server_side() {
                warn!(error = %e, "route failed");
            }
            res.status_code = i64::from(e.status().as_u16());
            res.body = Some(Body::Text(e.to_json().to_string()));
        }
    }
    res
}
