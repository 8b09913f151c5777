//! `/ws`: the same operations as the REST API over one WebSocket. JSON text messages carry
//! control operations; binary messages carry chunks (format in [`parse_chunk_frame`] and the
//! README). Every request gets exactly one reply, in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{Instrument, debug, info_span};

use super::AppState;
use super::extract::ClientIp;
use crate::coord::RecordingMeta;
use crate::domain::RecordingId;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::notify::{Event, EventKind, Subscription};
use crate::service::{CreateRequest, Ingest, Recordings};

/// Recordings one connection may act on at once.
pub const MAX_RECORDINGS_PER_CONNECTION: usize = 16;
/// Binary frame format version.
pub const FRAME_VERSION: u8 = 1;
const FLAG_SEQ: u8 = 0b0000_0001;

/// A control message from a client (the serverless ws function takes the same ones).
#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub(crate) enum ClientMessage {
    /// The fields of [`CreateRequest`] (no `flatten`: it would let unknown fields through),
    /// and the owner's credential.
    Create {
        mime_type: String,
        /// The owner's API key or JWT, where `AUTH_MODE` asks for one.
        credential: Option<String>,
        owner: Option<String>,
        metadata: Option<Value>,
        output: Option<String>,
        transcode: Option<bool>,
        audio: Option<String>,
        request_id: Option<Value>,
    },
    Auth {
        recording_id: String,
        token: String,
        request_id: Option<Value>,
    },
    Stop {
        recording_id: String,
        chunk_count: serde_json::Number,
        request_id: Option<Value>,
    },
    Status {
        recording_id: String,
        request_id: Option<Value>,
    },
    /// Receive the recording's events: those after `last_version`, then live ones.
    Subscribe {
        recording_id: String,
        /// Needed unless the recording was authorised on this connection with `auth`.
        token: Option<String>,
        last_version: Option<u64>,
        request_id: Option<Value>,
    },
    Unsubscribe {
        recording_id: String,
        request_id: Option<Value>,
    },
}

/// A decoded binary chunk frame.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkFrame {
    pub recording_id: RecordingId,
    pub seq: Option<u32>,
    pub payload: Bytes,
}

/// Decode a binary chunk frame:
///
/// ```text
/// byte 0      version, 1
/// byte 1      flags: bit 0 set = a seq follows the id
/// byte 2      n, the recording id's length (26)
/// 3..3+n      the recording id, ASCII
/// next 4      seq, unsigned 32-bit big-endian (only with flag bit 0)
/// rest        the chunk's bytes
/// ```
pub fn parse_chunk_frame(frame: Bytes) -> Result<ChunkFrame> {
    let bad = |why: &str| Error::InvalidFrame(why.to_owned());
    if frame.len() < 3 {
        return Err(bad(
            "a chunk frame starts with version, flags and id length",
        ));
    }
    if frame[0] != FRAME_VERSION {
        return Err(bad("unknown frame version (expected 1)"));
    }
    let flags = frame[1];
    if flags & !FLAG_SEQ != 0 {
        return Err(bad("unknown flag bits"));
    }
    let id_len = usize::from(frame[2]);
    let id_end = 3 + id_len;
    let id = frame
        .get(3..id_end)
        .ok_or_else(|| bad("frame ends inside the recording id"))?;
    let recording_id =
        RecordingId::parse(std::str::from_utf8(id).map_err(|_| bad("id is not ASCII"))?)?;
    let (seq, body_start) = if flags & FLAG_SEQ != 0 {
        let raw = frame
            .get(id_end..id_end + 4)
            .ok_or_else(|| bad("frame ends inside the seq"))?;
        (
            Some(u32::from_be_bytes(raw.try_into().expect("4 bytes"))),
            id_end + 4,
        )
    } else {
        (None, id_end)
    };
    Ok(ChunkFrame {
        recording_id,
        seq,
        payload: frame.slice(body_start..),
    })
}

/// Build a chunk frame (the inverse of [`parse_chunk_frame`]; clients and tests use it).
pub fn encode_chunk_frame(id: &RecordingId, seq: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + id.as_str().len() + 4 + payload.len());
    out.push(FRAME_VERSION);
    out.push(if seq.is_some() { FLAG_SEQ } else { 0 });
    out.push(id.as_str().len() as u8);
    out.extend_from_slice(id.as_str().as_bytes());
    if let Some(seq) = seq {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Messages queued for one connection. A client that lets more pile up is too slow: it is
/// disconnected, and never holds up anyone else.
pub const OUTBOX: usize = 256;
const PING_EVERY: Duration = Duration::from_secs(20);
/// A connection that sends nothing (not even a pong) for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// `GET /ws`: the WebSocket (control messages and chunk frames; see the README). A request that
/// is not a handshake is 426 `upgrade_required`.
pub async fn upgrade(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    // Not a WebSocket handshake: a JSON error like every other, not axum's plain text.
    let ws = ws.map_err(|e| Error::UpgradeRequired(e.body_text()))?;
    // Twice the chunk limit: a chunk somewhat over it is read and refused with a
    // `chunk_too_large` error frame naming its seq, on a socket that stays open; only a
    // message over this closes the socket (1009), and a browser may see that close as a reset.
    let max = (app.recordings.limits().max_chunk_bytes as usize).saturating_mul(2) + 64;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(app, client, socket).instrument(info_span!("ws"))))
}

/// One open connection in `screenrec_websocket_connections`, for as long as it lives.
struct Open(Arc<Metrics>);

impl Open {
    fn count(metrics: &Arc<Metrics>) -> Self {
        metrics.websockets.inc();
        Self(metrics.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.websockets.dec();
    }
}

struct Session {
    app: AppState,
    /// The client's address, for the create rate limit.
    client: Option<std::net::IpAddr>,
    recordings: HashMap<RecordingId, RecordingMeta>,
    subscriptions: HashMap<RecordingId, tokio::task::JoinHandle<()>>,
    out: mpsc::Sender<Message>,
    /// Fired when this connection must close (its outbox overflowed, or a subscription fell
    /// behind).
    overflow: Arc<Notify>,
}

fn text(v: &Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn session(app: AppState, client: Option<std::net::IpAddr>, socket: WebSocket) {
    let _open = Open::count(app.recordings.records().metrics());
    let (sink, mut stream) = socket.split();
    let (out, outbox) = mpsc::channel::<Message>(OUTBOX);
    let (closing, closed) = oneshot::channel::<CloseFrame>();
    let writer = tokio::spawn(write(sink, outbox, closed));
    let mut session = Session {
        app,
        client,
        recordings: HashMap::new(),
        subscriptions: HashMap::new(),
        out,
        overflow: Arc::new(Notify::new()),
    };
    let overflow = session.overflow.clone();
    let shutdown = session.app.shutdown.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            msg = stream.next() => {
                let reply = match msg {
                    Some(Ok(Message::Text(t))) => session.on_text(t.as_str()).await,
                    Some(Ok(Message::Binary(frame))) => session.on_chunk(frame).await,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(e)) => {
                        debug!(error = %e, "websocket read failed");
                        break Some((close_code::SIZE, "message too large or malformed"));
                    }
                };
                last_heard = Instant::now();
                if !reply.is_null() && session.out.try_send(text(&reply)).is_err() {
                    break Some((close_code::POLICY, "client too slow"));
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE {
                    break Some((close_code::POLICY, "idle"));
                }
                if session.out.try_send(Message::Ping(Bytes::new())).is_err() {
                    break Some((close_code::POLICY, "client too slow"));
                }
            }
            () = overflow.notified() => break Some((close_code::POLICY, "client too slow")),
            // The client reconnects, to another instance, with its last version.
            () = shutdown.fired() => break Some((close_code::AWAY, "server shutting down")),
        }
    };
    for (_, task) in session.subscriptions.drain() {
        task.abort();
    }
    if let Some((code, reason)) = close {
        debug!(code, reason, "closing websocket");
        let _ = closing.send(CloseFrame {
            code,
            reason: reason.into(),
        });
    }
    drop(session);
    let _ = writer.await;
    debug!("websocket closed");
}

/// How long a closing socket may take to take its close frame before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The connection's only writer: queued messages in order; on `closed`, the close frame goes
/// next, ahead of whatever is still queued (a slow client would never reach it otherwise),
/// and the socket is dropped after [`CLOSE_GRACE`] at most.
async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut outbox: mpsc::Receiver<Message>,
    mut closed: oneshot::Receiver<CloseFrame>,
) {
    let frame = loop {
        tokio::select! {
            biased;
            frame = &mut closed => break frame.ok(),
            msg = outbox.recv() => {
                let Some(msg) = msg else { break None };
                tokio::select! {
                    sent = sink.send(msg) => if sent.is_err() { return },
                    // A send stuck on a full socket gives way to the close; the frame being
                    // written stays whole in the socket's buffer.
                    frame = &mut closed => break frame.ok(),
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if let Some(frame) = frame {
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    })
    .await;
}

impl ClientMessage {
    pub(crate) fn request_id(&self) -> Option<Value> {
        match self {
            ClientMessage::Create { request_id, .. }
            | ClientMessage::Auth { request_id, .. }
            | ClientMessage::Stop { request_id, .. }
            | ClientMessage::Status { request_id, .. }
            | ClientMessage::Subscribe { request_id, .. }
            | ClientMessage::Unsubscribe { request_id, .. } => request_id.clone(),
        }
    }
}

/// A reply to a request: `reply` with the request's `requestId`, or the error frame.
pub(crate) fn reply_to(request_id: Option<Value>, reply: Result<Value>) -> Value {
    match reply {
        Ok(Value::Null) => Value::Null,
        Ok(mut reply) => {
            if request_id.is_some() {
                reply["requestId"] = json!(request_id);
            }
            reply
        }
        Err(e) => error_reply(&e, json!({ "requestId": request_id })),
    }
}

/// What a new subscriber gets before live events: the `subscribed` reply and the snapshot
/// (`recordingState`) that goes after the kept events in `backlog`.
pub(crate) async fn greeting(
    recordings: &Recordings,
    id: &RecordingId,
    backlog: &[Event],
    last_version: Option<u64>,
    request_id: Option<Value>,
) -> Result<(Value, Event)> {
    let state = recordings.status(id).await?;
    let version = match backlog.last() {
        Some(e) => e.version,
        None => recordings
            .notifier()
            .version(id)
            .await?
            .max(last_version.unwrap_or(0)),
    };
    let snapshot = Event {
        recording_id: id.to_string(),
        version,
        kind: EventKind::RecordingState {
            recording: serde_json::to_value(state).expect("serializable"),
        },
    };
    let reply = json!({ "type": "subscribed", "recordingId": id.as_str(), "version": version });
    Ok((reply_to(request_id, Ok(reply)), snapshot))
}

pub(crate) fn error_reply(e: &Error, extra: Value) -> Value {
    let mut reply = json!({ "type": "error", "error": e.to_json() });
    if let (Some(obj), Value::Object(extra)) = (reply.as_object_mut(), extra) {
        obj.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
    }
    reply
}

impl Session {
    async fn on_text(&mut self, text: &str) -> Value {
        let msg = match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => m,
            Err(e) => return error_reply(&Error::InvalidJson(e.to_string()), Value::Null),
        };
        let request_id = msg.request_id();
        reply_to(request_id, self.on_message(msg).await)
    }

    async fn on_message(&mut self, msg: ClientMessage) -> Result<Value> {
        let recordings = &self.app.recordings;
        match msg {
            ClientMessage::Create {
                mime_type,
                credential,
                owner,
                metadata,
                output,
                transcode,
                audio,
                ..
            } => {
                let request = CreateRequest {
                    mime_type,
                    owner,
                    metadata,
                    output,
                    transcode,
                    audio,
                };
                let owner = recordings
                    .creator(credential.as_deref(), request.owner.as_deref(), self.client)
                    .await?;
                let created = recordings.create(&request, owner).await?;
                let mut reply = serde_json::to_value(created).expect("serializable");
                reply["type"] = json!("created");
                Ok(reply)
            }
            ClientMessage::Auth {
                recording_id,
                token,
                ..
            } => {
                let id = RecordingId::parse(&recording_id)?;
                self.admit(&id)?;
                let meta = recordings.authorize(&id, Some(&token)).await?;
                self.recordings.insert(id, meta);
                Ok(json!({ "type": "authorized", "recordingId": recording_id }))
            }
            ClientMessage::Stop {
                recording_id,
                chunk_count,
                ..
            } => {
                let meta = self.authorized(&recording_id)?;
                let count = chunk_count.as_i64().ok_or_else(|| {
                    Error::InvalidChunkCount(format!("{chunk_count} is not a whole number"))
                })?;
                let view = recordings.stop(meta, count).await?;
                Ok(json!({ "type": "stopped", "recording": view }))
            }
            ClientMessage::Status { recording_id, .. } => {
                let meta = self.authorized(&recording_id)?;
                let view = recordings.status(&meta.id).await?;
                Ok(json!({ "type": "status", "recording": view }))
            }
            ClientMessage::Subscribe {
                recording_id,
                token,
                last_version,
                request_id,
            } => {
                let id = RecordingId::parse(&recording_id)?;
                self.admit(&id)?;
                if !self.recordings.contains_key(&id) || token.is_some() {
                    let meta = recordings.authorize(&id, token.as_deref()).await?;
                    self.recordings.insert(id.clone(), meta);
                }
                self.subscribe(id, last_version, request_id).await?;
                Ok(Value::Null)
            }
            ClientMessage::Unsubscribe { recording_id, .. } => {
                let id = RecordingId::parse(&recording_id)?;
                if let Some(task) = self.subscriptions.remove(&id) {
                    task.abort();
                }
                Ok(json!({ "type": "unsubscribed", "recordingId": recording_id }))
            }
        }
    }

    /// Start forwarding a recording's events: the reply, the kept events after
    /// `last_version`, the current state, then live events, in version order.
    async fn subscribe(
        &mut self,
        id: RecordingId,
        last_version: Option<u64>,
        request_id: Option<Value>,
    ) -> Result<()> {
        if let Some(old) = self.subscriptions.remove(&id) {
            old.abort();
        }
        let recordings = &self.app.recordings;
        let Subscription { backlog, mut live } =
            recordings.notifier().subscribe(&id, last_version).await?;
        let (reply, snapshot) =
            greeting(recordings, &id, &backlog, last_version, request_id).await?;
        if self.out.try_send(text(&reply)).is_err() {
            self.overflow.notify_one();
            return Ok(());
        }
        let (out, overflow) = (self.out.clone(), self.overflow.clone());
        let task = tokio::spawn(async move {
            let send = |e: &Event| {
                out.try_send(text(&serde_json::to_value(e).expect("serializable")))
                    .is_ok()
            };
            if !(backlog.iter().all(send) && send(&snapshot)) {
                overflow.notify_one();
                return;
            }
            while let Some(event) = live.next().await {
                if !send(&event) {
                    overflow.notify_one();
                    return;
                }
            }
            // The live stream ended because this subscriber fell behind.
            overflow.notify_one();
        });
        self.subscriptions.insert(id, task);
        Ok(())
    }

    /// A connection acts on (and subscribes to) at most
    /// [`MAX_RECORDINGS_PER_CONNECTION`] recordings.
    fn admit(&self, id: &RecordingId) -> Result<()> {
        if self.recordings.contains_key(id) || self.recordings.len() < MAX_RECORDINGS_PER_CONNECTION
        {
            Ok(())
        } else {
            Err(Error::ConnectionLimit(format!(
                "at most {MAX_RECORDINGS_PER_CONNECTION} recordings per connection"
            )))
        }
    }

    fn authorized(&self, raw_id: &str) -> Result<&RecordingMeta> {
        let id = RecordingId::parse(raw_id)?;
        self.recordings.get(&id).ok_or(Error::MissingToken)
    }

    async fn on_chunk(&mut self, frame: Bytes) -> Value {
        let frame = match parse_chunk_frame(frame) {
            Ok(f) => f,
            Err(e) => return error_reply(&e, Value::Null),
        };
        let context = json!({ "recordingId": frame.recording_id.as_str(), "seq": frame.seq });
        let result = async {
            let meta = self
                .recordings
                .get(&frame.recording_id)
                .ok_or(Error::MissingToken)?;
            let seq = frame
                .seq
                .map(|s| self.app.recordings.parse_seq(&s.to_string()))
                .transpose()?;
            self.app
                .recordings
                .throttle_recording(&frame.recording_id)
                .await?;
            self.app
                .recordings
                .put_chunk(meta, seq, frame.payload, None, Ingest::WebSocket)
                .await
        }
        .instrument(info_span!("chunk", recording_id = %frame.recording_id))
        .await;
        match result {
            Ok(receipt) => {
                let mut reply = context;
                reply["type"] = json!("chunkAck");
                reply["index"] = json!(receipt.index);
                reply["duplicate"] = json!(receipt.duplicate);
                reply
            }
            Err(e) => error_reply(&e, context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let id = RecordingId::generate();
        for seq in [None, Some(0), Some(u32::MAX)] {
            let raw = encode_chunk_frame(&id, seq, b"chunk bytes");
            let f = parse_chunk_frame(Bytes::from(raw)).unwrap();
            assert_eq!(f.recording_id, id);
            assert_eq!(f.seq, seq);
            assert_eq!(&f.payload[..], b"chunk bytes");
        }
    }

    #[test]
    fn garbage_frames_are_refused() {
        let id = RecordingId::generate();
        let good = encode_chunk_frame(&id, Some(3), b"x");
        let mut bad_flags = good.clone();
        bad_flags[1] = 0x80;
        let mut bad_version = good.clone();
        bad_version[0] = 9;
        let mut bad_id = good.clone();
        bad_id[3] = b'/';
        for frame in [
            vec![],
            vec![1, 0],
            bad_flags,
            bad_version,
            bad_id,
            good[..20].to_vec(),
            good[..31].to_vec(),
        ] {
            assert!(parse_chunk_frame(Bytes::from(frame)).is_err());
        }
    }
}
