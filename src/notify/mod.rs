//! The notifier port: every change to a recording becomes an [`Event`] with a per-recording,
//! monotonically increasing `version`. Events are kept (the last [`HISTORY`] per recording), so
//! a client that subscribes late or reconnects to another instance gets the current state and
//! everything after the last version it saw.

mod apigw;
mod fanout;
mod hub;
mod redis;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use self::apigw::ApiGatewayNotifier;
pub use self::hub::Hub;
pub use self::redis::RedisNotifier;
use crate::domain::RecordingId;
use crate::error::Result;

/// Events kept per recording for late subscribers.
pub const HISTORY: usize = 512;

/// What happened, as sent to clients (`type` plus the fields below, camelCase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum EventKind {
    ChunkSaved {
        index: u32,
        bytes_received: u64,
    },
    MergeProgress {
        percent: u8,
    },
    RecordingReady {
        download_url: String,
        /// The video's JPEG poster, when it has one; it expires with `download_url`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        poster_url: Option<String>,
        expires_at: String,
        duration_s: f64,
        size_bytes: u64,
        container: String,
        /// Merged by salvage; `lost` says what it left out.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        salvaged: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lost: Option<serde_json::Value>,
        /// Stopped by the sweeper after it was left unfinished.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        abandoned: bool,
    },
    /// Left unfinished: the sweeper stopped it (its merge follows) or deleted it.
    RecordingAbandoned {
        /// `merge` or `delete` (`ABANDONED`).
        action: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        chunk_count: Option<u32>,
    },
    RecordingError {
        code: String,
        message: String,
    },
    /// Deleted by its owner: nothing of it is left.
    RecordingDeleted,
    /// The recording's current status (the `GET /recordings/{id}` body), sent on subscribe.
    RecordingState {
        recording: serde_json::Value,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub recording_id: String,
    pub version: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What a subscriber receives: the kept events after the version it asked for, then the live
/// ones. Versions never repeat and never go back.
pub struct Subscription {
    pub backlog: Vec<Event>,
    pub live: BoxStream<'static, Event>,
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Record an event under the recording's next version and deliver it to every subscriber,
    /// on whichever instance.
    async fn publish(&self, id: &RecordingId, kind: EventKind) -> Result<Event>;

    /// Subscribe to a recording's events after version `after` (all kept ones when `None`).
    async fn subscribe(&self, id: &RecordingId, after: Option<u64>) -> Result<Subscription>;

    /// The last version published for the recording (0 when none).
    async fn version(&self, id: &RecordingId) -> Result<u64>;
}

/// Join a backlog and a live stream without duplicates: live events at or below the last
/// backlog version were already in the backlog.
pub(crate) fn splice(
    backlog: Vec<Event>,
    live: BoxStream<'static, Event>,
    after: u64,
) -> Subscription {
    use futures::StreamExt;
    let last = backlog.last().map_or(after, |e| e.version);
    Subscription {
        backlog,
        live: live
            .filter(move |e| std::future::ready(e.version > last))
            .boxed(),
    }
}
