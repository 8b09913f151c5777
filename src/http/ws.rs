//! `/ws`: the same operations as the REST API over one WebSocket. JSON text messages carry
//! control operations; binary messages carry chunks (format in [`parse_chunk_frame`] and the
//! README). Every request gets exactly one reply, in order.

use std::collections::HashMap;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span};

use super::AppState;
use crate::coord::RecordingMeta;
use crate::domain::RecordingId;
use crate::error::{Error, Result};

/// Recordings one connection may act on at once.
pub const MAX_RECORDINGS_PER_CONNECTION: usize = 16;
/// Binary frame format version.
pub const FRAME_VERSION: u8 = 1;
const FLAG_SEQ: u8 = 0b0000_0001;

#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
enum ClientMessage {
    Create {
        mime_type: String,
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

pub async fn upgrade(State(app): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = app.recordings.limits().max_chunk_bytes as usize + 64;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(app, socket).instrument(info_span!("ws")))
}

struct Session {
    app: AppState,
    recordings: HashMap<RecordingId, RecordingMeta>,
}

async fn session(app: AppState, mut socket: WebSocket) {
    let mut session = Session {
        app,
        recordings: HashMap::new(),
    };
    while let Some(Ok(msg)) = socket.recv().await {
        let reply = match msg {
            Message::Text(text) => session.on_text(text.as_str()).await,
            Message::Binary(frame) => session.on_chunk(frame).await,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    debug!("websocket closed");
}

fn error_reply(e: &Error, extra: Value) -> Value {
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
        let request_id = match &msg {
            ClientMessage::Create { request_id, .. }
            | ClientMessage::Auth { request_id, .. }
            | ClientMessage::Stop { request_id, .. }
            | ClientMessage::Status { request_id, .. } => request_id.clone(),
        };
        match self.on_message(msg).await {
            Ok(mut reply) => {
                if request_id.is_some() {
                    reply["requestId"] = json!(request_id);
                }
                reply
            }
            Err(e) => error_reply(&e, json!({ "requestId": request_id })),
        }
    }

    async fn on_message(&mut self, msg: ClientMessage) -> Result<Value> {
        let recordings = &self.app.recordings;
        match msg {
            ClientMessage::Create { mime_type, .. } => {
                let created = recordings.create(&mime_type).await?;
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
                if !self.recordings.contains_key(&id)
                    && self.recordings.len() >= MAX_RECORDINGS_PER_CONNECTION
                {
                    return Err(Error::ConnectionLimit(format!(
                        "at most {MAX_RECORDINGS_PER_CONNECTION} recordings per connection"
                    )));
                }
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
                .put_chunk(meta, seq, frame.payload)
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
