//! The library's error type. Every failure a client can cause or see is one variant here, and
//! [`Error::code`] and [`Error::status`] are the only place that maps it to a stable JSON error
//! code and an HTTP status.

use axum::http::StatusCode;
use serde_json::{Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- identifiers and request shape -------------------------------------------------------
    #[error("recording id is not valid: {0}")]
    InvalidRecordingId(&'static str),
    #[error("recording not found")]
    RecordingNotFound,
    #[error("missing bearer token: send `Authorization: Bearer <uploadToken>`")]
    MissingToken,
    #[error("the upload token does not match this recording")]
    InvalidToken,
    #[error("missing credentials: send `Authorization: Bearer <API key or JWT>`")]
    MissingCredentials,
    #[error("credentials are not valid: {0}")]
    InvalidCredentials(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("owner is not valid: {0}")]
    InvalidOwner(String),
    #[error("metadata is not valid: {0}")]
    InvalidMetadata(String),
    #[error("cursor is not valid")]
    InvalidCursor,
    #[error("query is not valid: {0}")]
    InvalidQuery(String),
    #[error(
        "request headers are too large: at most {max_headers} headers of {max_bytes} bytes in all"
    )]
    HeadersTooLarge {
        max_headers: usize,
        max_bytes: usize,
    },
    #[error("request body is larger than the limit of {max} bytes")]
    BodyTooLarge { max: u64 },
    #[error("request took longer than {secs} s")]
    RequestTimeout { secs: u64 },
    #[error("quota reached: {quota} is {limit}")]
    QuotaExceeded { quota: &'static str, limit: u64 },
    #[error("too many {limit}; try again in {} ms", retry_after.as_millis())]
    RateLimited {
        limit: &'static str,
        retry_after: std::time::Duration,
    },
    #[error("seq is not valid: {0}")]
    InvalidSeq(String),
    #[error("chunkCount is not valid: {0}")]
    InvalidChunkCount(String),
    #[error("mimeType is not supported: {0}")]
    InvalidMimeType(String),
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    #[error("an MP4 of {codec} video needs \"transcode\": true (it is re-encoded to H.264)")]
    TranscodeRequired { codec: String },
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("not a WebSocket handshake: {0}")]
    UpgradeRequired(String),
    #[error("unsupported content type: {0}")]
    UnsupportedContentType(String),
    #[error("invalid WebSocket frame: {0}")]
    InvalidFrame(String),
    #[error("request body could not be read: {0}")]
    InvalidBody(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("connection limit reached: {0}")]
    ConnectionLimit(String),
    #[error("message not supported here: {0}")]
    UnsupportedMessage(String),

    // --- chunks ------------------------------------------------------------------------------
    #[error("checksum is not valid: {0}")]
    InvalidChecksum(String),
    #[error("the chunk's bytes differ from its declared checksum: {0}")]
    ChecksumMismatch(String),
    #[error("chunk is empty")]
    EmptyChunk,
    #[error("chunk is larger than the limit of {max} bytes")]
    ChunkTooLarge { max: u64 },
    #[error("chunk {index} is already stored with different bytes")]
    ChunkConflict { index: u32 },
    #[error("chunk {index} has not been uploaded")]
    ChunkNotUploaded { index: u32 },
    #[error("recording already has the maximum of {max} chunks")]
    TooManyChunks { max: u32 },
    #[error(
        "this recording's chunks are numbered by {existing}; do not mix seq and no-seq uploads"
    )]
    IndexingConflict { existing: &'static str },

    // --- lifecycle ---------------------------------------------------------------------------
    #[error("recording is {state}, it no longer accepts chunks")]
    NotRecording { state: &'static str },
    #[error("recording was already stopped (it is {state})")]
    AlreadyStopped { state: &'static str },
    #[error("{} of {count} chunks are missing", missing_total)]
    MissingChunks {
        count: u32,
        missing_total: u32,
        missing: Vec<u32>,
    },
    #[error("chunks were stored beyond chunkCount {count}")]
    ChunkCountMismatch { count: u32, beyond: Vec<u32> },
    #[error("recording is {state}, not ready for download")]
    NotReady { state: &'static str },
    #[error("the recording has no poster (its video has no picture, or none could be cut)")]
    NoPoster,

    // --- merge ---------------------------------------------------------------------------------
    #[error("chunk {index} was given twice")]
    DuplicateChunk { index: u32 },
    #[error("chunk 0 does not begin with a container header ({0})")]
    MissingHeader(String),
    #[error("chunks mix layouts: {0}")]
    MixedChunkLayout(String),
    #[error("chunk {index} in storage does not match the bytes that were received")]
    ChunkCorrupted { index: u32 },
    #[error("ffmpeg failed: {0}")]
    FfmpegFailed(String),
    #[error("frames would be lost{}: {detail}", at_chunk(*.chunk))]
    FramesLost { chunk: Option<u32>, detail: String },
    #[error("merged output is not valid: {0}")]
    OutputInvalid(String),
    #[error("merged output has timestamps out of order: {0}")]
    TimestampsOutOfOrder(String),
    #[error("merged output has a gap in its timestamps: {0}")]
    TimestampGap(String),
    #[error("ffmpeg not found: {0}")]
    FfmpegMissing(String),

    // --- signed URLs served by the app (filesystem storage) --------------------------------
    #[error("signed URL is not valid")]
    InvalidSignature,
    #[error("signed URL has expired")]
    UrlExpired,
    #[error("requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("not found")]
    NotFound,

    // --- infrastructure ----------------------------------------------------------------------
    #[error("object storage failed: {0}")]
    Storage(String),
    #[error("coordination store failed: {0}")]
    Coordination(String),
    #[error("credentials cannot be checked now: {0}")]
    AuthUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Every code [`Error::code`] gives, for the API description (a test holds the two together).
pub const CODES: &[&str] = &[
    "invalid_recording_id",
    "recording_not_found",
    "missing_token",
    "invalid_token",
    "missing_credentials",
    "invalid_credentials",
    "forbidden",
    "invalid_owner",
    "invalid_metadata",
    "invalid_cursor",
    "invalid_query",
    "headers_too_large",
    "body_too_large",
    "request_timeout",
    "rate_limited",
    "quota_exceeded",
    "invalid_seq",
    "invalid_chunk_count",
    "invalid_mime_type",
    "invalid_output",
    "upgrade_required",
    "transcode_required",
    "invalid_json",
    "unsupported_content_type",
    "invalid_frame",
    "invalid_body",
    "method_not_allowed",
    "connection_limit",
    "unsupported_message",
    "invalid_checksum",
    "checksum_mismatch",
    "empty_chunk",
    "chunk_too_large",
    "chunk_conflict",
    "chunk_not_uploaded",
    "too_many_chunks",
    "indexing_conflict",
    "recording_not_active",
    "already_stopped",
    "missing_chunks",
    "chunk_count_mismatch",
    "not_ready",
    "duplicate_chunk",
    "missing_header",
    "mixed_chunk_layout",
    "chunk_corrupted",
    "ffmpeg_failed",
    "frames_lost",
    "output_invalid",
    "timestamps_out_of_order",
    "timestamp_gap",
    "ffmpeg_missing",
    "invalid_signature",
    "url_expired",
    "range_not_satisfiable",
    "not_found",
    "no_poster",
    "storage_unavailable",
    "coordination_unavailable",
    "auth_unavailable",
    "internal",
];

impl Error {
    /// The stable, machine-readable error code sent to clients.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidRecordingId(_) => "invalid_recording_id",
            RecordingNotFound => "recording_not_found",
            MissingToken => "missing_token",
            InvalidToken => "invalid_token",
            MissingCredentials => "missing_credentials",
            InvalidCredentials(_) => "invalid_credentials",
            Forbidden(_) => "forbidden",
            InvalidOwner(_) => "invalid_owner",
            InvalidMetadata(_) => "invalid_metadata",
            InvalidCursor => "invalid_cursor",
            InvalidQuery(_) => "invalid_query",
            HeadersTooLarge { .. } => "headers_too_large",
            BodyTooLarge { .. } => "body_too_large",
            RequestTimeout { .. } => "request_timeout",
            RateLimited { .. } => "rate_limited",
            QuotaExceeded { .. } => "quota_exceeded",
            InvalidSeq(_) => "invalid_seq",
            InvalidChunkCount(_) => "invalid_chunk_count",
            InvalidMimeType(_) => "invalid_mime_type",
            InvalidOutput(_) => "invalid_output",
            UpgradeRequired(_) => "upgrade_required",
            TranscodeRequired { .. } => "transcode_required",
            InvalidJson(_) => "invalid_json",
            UnsupportedContentType(_) => "unsupported_content_type",
            InvalidFrame(_) => "invalid_frame",
            InvalidBody(_) => "invalid_body",
            MethodNotAllowed => "method_not_allowed",
            ConnectionLimit(_) => "connection_limit",
            UnsupportedMessage(_) => "unsupported_message",
            InvalidChecksum(_) => "invalid_checksum",
            ChecksumMismatch(_) => "checksum_mismatch",
            EmptyChunk => "empty_chunk",
            ChunkTooLarge { .. } => "chunk_too_large",
            ChunkConflict { .. } => "chunk_conflict",
            ChunkNotUploaded { .. } => "chunk_not_uploaded",
            TooManyChunks { .. } => "too_many_chunks",
            IndexingConflict { .. } => "indexing_conflict",
            NotRecording { .. } => "recording_not_active",
            AlreadyStopped { .. } => "already_stopped",
            MissingChunks { .. } => "missing_chunks",
            ChunkCountMismatch { .. } => "chunk_count_mismatch",
            NotReady { .. } => "not_ready",
            DuplicateChunk { .. } => "duplicate_chunk",
            MissingHeader(_) => "missing_header",
            MixedChunkLayout(_) => "mixed_chunk_layout",
            ChunkCorrupted { .. } => "chunk_corrupted",
            FfmpegFailed(_) => "ffmpeg_failed",
            FramesLost { .. } => "frames_lost",
            OutputInvalid(_) => "output_invalid",
            TimestampsOutOfOrder(_) => "timestamps_out_of_order",
            TimestampGap(_) => "timestamp_gap",
            FfmpegMissing(_) => "ffmpeg_missing",
            InvalidSignature => "invalid_signature",
            UrlExpired => "url_expired",
            RangeNotSatisfiable { .. } => "range_not_satisfiable",
            NotFound => "not_found",
            NoPoster => "no_poster",
            Storage(_) => "storage_unavailable",
            Coordination(_) => "coordination_unavailable",
            AuthUnavailable(_) => "auth_unavailable",
            Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            InvalidRecordingId(_)
            | InvalidSeq(_)
            | InvalidChunkCount(_)
            | InvalidMimeType(_)
            | InvalidOutput(_)
            | TranscodeRequired { .. }
            | InvalidJson(_)
            | InvalidFrame(_)
            | InvalidBody(_)
            | UnsupportedMessage(_)
            | InvalidChecksum(_)
            | ChecksumMismatch(_)
            | InvalidOwner(_)
            | InvalidMetadata(_)
            | InvalidCursor
            | InvalidQuery(_)
            | EmptyChunk => StatusCode::BAD_REQUEST,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ConnectionLimit(_) | RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            MissingToken | InvalidToken | MissingCredentials | InvalidCredentials(_) => {
                StatusCode::UNAUTHORIZED
            }
            Forbidden(_) | QuotaExceeded { .. } => StatusCode::FORBIDDEN,
            InvalidSignature | UrlExpired => StatusCode::FORBIDDEN,
            RecordingNotFound | NotFound | NoPoster => StatusCode::NOT_FOUND,
            UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ChunkTooLarge { .. } | BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            TooManyChunks { .. }
            | DuplicateChunk { .. }
            | MissingHeader(_)
            | MixedChunkLayout(_)
            | ChunkCorrupted { .. }
            | FfmpegFailed(_)
            | FramesLost { .. }
            | OutputInvalid(_)
            | TimestampsOutOfOrder(_)
            | TimestampGap(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ChunkConflict { .. }
            | ChunkNotUploaded { .. }
            | IndexingConflict { .. }
            | NotRecording { .. }
            | AlreadyStopped { .. }
            | MissingChunks { .. }
            | ChunkCountMismatch { .. }
            | NotReady { .. } => StatusCode::CONFLICT,
            Storage(_) | Coordination(_) | AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) | FfmpegMissing(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON error object: `{"code", "message", ...details}`.
    pub fn to_json(&self) -> Value {
        let mut body = json!({ "code": self.code(), "message": self.to_string() });
        match self {
            Error::MissingChunks {
                count,
                missing_total,
                missing,
            } => {
                body["chunkCount"] = json!(count);
                body["missingTotal"] = json!(missing_total);
                body["missing"] = json!(missing);
            }
            Error::ChunkCountMismatch { count, beyond } => {
                body["chunkCount"] = json!(count);
                body["beyond"] = json!(beyond);
            }
            Error::ChunkConflict { index }
            | Error::ChunkNotUploaded { index }
            | Error::DuplicateChunk { index }
            | Error::ChunkCorrupted { index } => {
                body["index"] = json!(index);
            }
            Error::FramesLost {
                chunk: Some(index), ..
            } => body["index"] = json!(index),
            Error::QuotaExceeded { quota, limit } => {
                body["quota"] = json!(quota);
                body["limit"] = json!(limit);
            }
            Error::RateLimited { retry_after, .. } => {
                body["retryAfterMs"] = json!(retry_after.as_millis() as u64);
            }
            _ => {}
        }
        body
    }

    pub fn is_server_side(&self) -> bool {
        self.status().is_server_error()
    }

    /// A chunk that cannot be used as it is: missing, changed since it was received, damaged,
    /// or not of the recording's layout. A salvage leaves such a chunk out.
    pub fn is_bad_chunk(&self) -> bool {
        matches!(
            self,
            Error::MissingChunks { .. }
                | Error::ChunkCorrupted { .. }
                | Error::FramesLost { .. }
                | Error::MixedChunkLayout(_)
        )
    }

    /// Whether a merge that failed with this error may succeed if tried again (the
    /// infrastructure failed), as opposed to a problem with the recording itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Storage(_) | Error::Coordination(_) | Error::Internal(_)
        )
    }
}

fn at_chunk(chunk: Option<u32>) -> String {
    chunk.map(|c| format!(" at chunk {c}")).unwrap_or_default()
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Error::Coordination(e.to_string())
    }
}
