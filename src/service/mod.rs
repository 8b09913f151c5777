//! The recording use cases, written once against the ports. Every transport (HTTP, WebSocket,
//! Lambda) calls these and only maps their results.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use utoipa::ToSchema;

mod owned;

pub use owned::{DEFAULT_PAGE, MAX_PAGE, Page};

use crate::auth::Auth;
use crate::coord::{Claim, Coordinator, NewRecording, RecordingMeta, Slot, StateUpdate};
use crate::domain::{
    ChunkDigest, ChunkIndex, ChunkRecord, MediaType, Metadata, ObjectKey, OutputFormat, Owner,
    Rate, RecordingId, RecordingState, Sha256Checksum, UploadToken,
};
use crate::error::{Error, Result};
use crate::notify::{EventKind, Notifier};
use crate::queue::MergeJob;
use crate::records::Records;
use crate::store::{ObjectStore, Presign, PresignedUrl, read_all};
use crate::webhook::WebhookType;

/// Indices a chunk may find already stored before its write gives up (see `put_chunk`).
const MAX_REUSED_INDICES: usize = 8;

/// Limits that every instance applies the same way.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_chunk_bytes: u64,
    pub max_chunks: u32,
    pub presign_ttl: Duration,
    /// `MAX_RECORDING_BYTES`: the most a recording's chunks may hold.
    pub max_recording_bytes: Option<u64>,
    /// `MAX_RECORDING_SECS`: how long after create a recording takes chunks.
    pub max_recording_secs: Option<u64>,
    /// `MAX_ACTIVE_RECORDINGS`: unfinished recordings per owner.
    pub max_active_recordings: Option<u32>,
    /// `MAX_TENANT_BYTES`: the most a tenant's recordings may hold, together.
    pub max_tenant_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_chunk_bytes: 16 * 1024 * 1024,
            max_chunks: 100_000,
            presign_ttl: Duration::from_secs(900),
            max_recording_bytes: None,
            max_recording_secs: None,
            max_active_recordings: None,
            max_tenant_bytes: None,
        }
    }
}

pub struct Recordings {
    records: Arc<Records>,
    notifier: Arc<dyn Notifier>,
    auth: Auth,
    rates: RateLimits,
}

/// The rate limits every instance shares (through the coordinator). `None`: no limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct RateLimits {
    /// `RATE_LIMIT_CREATES_PER_MIN`, per owner and per client address.
    pub creates: Option<Rate>,
    /// `RATE_LIMIT_REQUESTS_PER_SEC`, per recording.
    pub requests: Option<Rate>,
}

/// How a chunk came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingest {
    /// A PUT through the API.
    Server,
    /// A PUT straight to storage on a presigned URL, then confirmed.
    Presigned,
    /// A binary frame on the WebSocket.
    WebSocket,
}

impl Ingest {
    pub const ALL: [Self; 3] = [Self::Server, Self::Presigned, Self::WebSocket];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Presigned => "presigned",
            Self::WebSocket => "websocket",
        }
    }
}

/// What a create asks for, over HTTP or the WebSocket.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    /// The recorder's `mimeType`: WebM, Matroska or MP4, with its codecs.
    #[schema(
        example = "video/webm;codecs=vp8,opus",
        min_length = 1,
        max_length = 255
    )]
    pub mime_type: String,
    /// The app's user the recording is for (with an API key, or AUTH_MODE=none). A JWT's sub
    /// is the owner; naming another is refused.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    pub owner: Option<String>,
    /// The app's own strings: at most 8, each at most 46 characters under a key of 1 to 16,
    /// none with a control character; returned wherever the recording is.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<serde_json::Value>,
    /// `mp4`: an MP4 for every browser (H.264 remuxed, moov first); `native` (the default): the
    /// recording's own container. An MP4 of VP8, VP9 or AV1 needs `transcode`: without it, the
    /// merge fails with `transcode_required`.
    #[schema(value_type = Option<OutputName>)]
    pub output: Option<String>,
    /// With `mp4` (ignored otherwise): re-encode VP8, VP9 or AV1 video to H.264 and its audio
    /// to AAC.
    pub transcode: Option<bool>,
    /// With `mp4` (ignored otherwise): `aac` converts Opus audio; `copy` (the default) keeps it.
    #[schema(value_type = Option<AudioName>)]
    pub audio: Option<String>,
}

/// The outputs create takes.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum OutputName {
    Native,
    Mp4,
}

/// The audio choices of an MP4.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AudioName {
    Copy,
    Aac,
}

impl CreateRequest {
    /// A recording of `mime_type`, with everything else as default.
    pub fn of(mime_type: &str) -> Self {
        Self {
            mime_type: mime_type.to_owned(),
            owner: None,
            metadata: None,
            output: None,
            transcode: None,
            audio: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub recording_id: String,
    pub upload_token: String,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReceipt {
    #[schema(value_type = u32)]
    pub index: ChunkIndex,
    /// The same bytes were already stored; nothing was written.
    pub duplicate: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadGrant {
    #[schema(value_type = u32)]
    pub index: ChunkIndex,
    /// Absent when the chunk is already stored: there is nothing to upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    /// Headers the upload must send as they are (the declared checksum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub already_stored: bool,
}

impl UploadGrant {
    /// The answer for a chunk that is stored already: nothing to upload.
    fn stored(index: ChunkIndex) -> Self {
        Self {
            index,
            upload_url: None,
            method: None,
            headers: None,
            expires_at: None,
            already_stored: true,
        }
    }
}

/// The lease a grant that declares only a chunk's size takes on its index, held by the size
/// for the URL's lifetime: the confirmation of an object of another size cannot take it.
fn declared_size_lease(id: &RecordingId, seq: ChunkIndex) -> String {
    format!("declared:{id}:{seq}")
}

/// What a client declares of a chunk before uploading it: its size, and optionally its SHA-256.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    pub size: u64,
    pub sha256: Option<Sha256Checksum>,
}

/// What clients see of a recording.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Status)]
pub struct StatusView {
    pub recording_id: String,
    #[schema(value_type = RecordingStatus)]
    pub status: &'static str,
    pub mime_type: String,
    pub chunks_received: u32,
    pub bytes_received: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_count: Option<u32>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Once failed: why, with a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::http::api_doc::ErrorDetail>)]
    pub error: Option<serde_json::Value>,
    /// Once ready: the merged video as measured (container, codecs, duration, size, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Merged by salvage (asked for after a failure): `lost` lists what the video lacks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub salvaged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::merge::salvage::Lost>>)]
    pub lost: Option<serde_json::Value>,
    /// Left unfinished and stopped by the sweeper, which merged what had arrived.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// The app's own data, given at create.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub metadata: Option<serde_json::Value>,
    /// The output asked for at create, unless the default: `{output, transcode?, audio?}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub format: Option<serde_json::Value>,
    /// Once ready: a presigned URL of the video (what `GET …/download` redirects to), so a
    /// client that polls needs no redirect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// Once ready, when the video has a picture: a presigned URL of its JPEG poster (what
    /// `GET …/poster` redirects to). It expires with `downloadUrl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// Where a recording is in its life.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RecordingStatus {
    Recording,
    Stopping,
    Merging,
    Ready,
    Failed,
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339_ms(ms: u64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

impl StatusView {
    pub fn of(meta: &RecordingMeta) -> Self {
        let output: Option<serde_json::Value> = meta
            .output
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok());
        Self {
            recording_id: meta.id.to_string(),
            status: meta.state.as_str(),
            mime_type: meta.mime_type.clone(),
            chunks_received: meta.chunks_received,
            bytes_received: meta.bytes_received,
            chunk_count: meta.chunk_count,
            created_at: rfc3339_ms(meta.created_at_ms),
            updated_at: rfc3339_ms(meta.updated_at_ms),
            error: meta
                .failure
                .as_ref()
                .map(|f| json!({"code": f.code, "message": f.message})),
            salvaged: output.as_ref().is_some_and(|o| o["salvaged"] == true),
            lost: output.as_ref().and_then(|o| o.get("lost").cloned()),
            abandoned: meta.abandoned,
            metadata: (!meta.metadata.is_empty()).then(|| meta.metadata.to_json()),
            format: (!meta.format.is_default()).then(|| meta.format.to_json()),
            output,
            download_url: None,
            poster_url: None,
            expires_at: None,
        }
    }
}

impl Recordings {
    pub fn new(
        records: Arc<Records>,
        notifier: Arc<dyn Notifier>,
        auth: Auth,
        rates: RateLimits,
    ) -> Self {
        Self {
            records,
            notifier,
            auth,
            rates,
        }
    }

    /// Count one request against `rate` under `key`; refused with when to come back.
    async fn throttle(&self, key: &str, rate: Option<Rate>, limit: &'static str) -> Result<()> {
        let Some(rate) = rate else {
            return Ok(());
        };
        match self.coordinator().throttle(key, rate).await? {
            None => Ok(()),
            Some(retry_after) => Err(Error::RateLimited { limit, retry_after }),
        }
    }

    /// Count one request to recording `id` against `RATE_LIMIT_REQUESTS_PER_SEC`.
    pub async fn throttle_recording(&self, id: &RecordingId) -> Result<()> {
        self.throttle(
            &format!("rec:{id}"),
            self.rates.requests,
            "requests for this recording",
        )
        .await
    }

    /// Count one create by `owner`, from `client` when its address is known, against
    /// `RATE_LIMIT_CREATES_PER_MIN`.
    pub async fn throttle_create(&self, owner: &Owner, client: Option<IpAddr>) -> Result<()> {
        let subject = owner.subject.as_ref().map_or("-".into(), |s| s.key_part());
        let by_owner = format!("create:{}:{subject}", owner.tenant.key_part());
        self.throttle(
            &by_owner,
            self.rates.creates,
            "recordings created by this owner",
        )
        .await?;
        if let Some(ip) = client {
            self.throttle(
                &format!("create:ip:{ip}"),
                self.rates.creates,
                "recordings created from this address",
            )
            .await?;
        }
        Ok(())
    }

    /// The record (manifests and chunks in the store) and the ports behind it.
    pub fn records(&self) -> &Arc<Records> {
        &self.records
    }

    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    /// Count a committed chunk of `size` bytes, come `via` one ingest path: its tenant's bytes,
    /// the metrics and the `chunkSaved` event. The chunk is stored whatever happens here, so a
    /// failure is logged, not returned.
    async fn chunk_saved(
        &self,
        meta: &RecordingMeta,
        index: ChunkIndex,
        size: u64,
        committed: Option<u64>,
        via: Ingest,
    ) -> ChunkReceipt {
        let id = &meta.id;
        if let Some(bytes_received) = committed {
            self.records.metrics().chunk(via.as_str(), size);
            self.records
                .add_tenant_bytes(&meta.owner.tenant, size as i64)
                .await;
            let kind = EventKind::ChunkSaved {
                index: index.get(),
                bytes_received,
            };
            if let Err(e) = self.notifier.publish(id, kind).await {
                warn!(recording_id = %id, error = %e, "chunkSaved not published");
            }
        }
        ChunkReceipt {
            index,
            duplicate: committed.is_none(),
        }
    }

    pub fn limits(&self) -> &Limits {
        self.records.limits()
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        self.records.store()
    }

    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        self.records.coordinator()
    }

    /// Create a recording of `owner` (see [`Recordings::creator`]) as `request` asks: its
    /// coordination state, its manifest, its entries in its tenant's and owner's listings, and
    /// its `active/` marker.
    pub async fn create(&self, request: &CreateRequest, owner: Owner) -> Result<Created> {
        let media = MediaType::parse(&request.mime_type)?;
        let metadata = request
            .metadata
            .as_ref()
            .map(Metadata::parse)
            .transpose()?
            .unwrap_or_default();
        let format = OutputFormat::parse(
            request.output.as_deref(),
            request.transcode,
            request.audio.as_deref(),
        )?;
        if let Some(max) = self.limits().max_active_recordings
            && self.records.unfinished_of(&owner, max).await? >= max
        {
            return Err(Error::QuotaExceeded {
                quota: "MAX_ACTIVE_RECORDINGS",
                limit: u64::from(max),
            });
        }
        let id = RecordingId::generate();
        let token = UploadToken::generate();
        let new = NewRecording {
            id: id.clone(),
            mime_type: media.to_string(),
            token_hash: token.hash(),
            owner,
            metadata,
            format,
        };
        self.coordinator().create(&new).await?;
        let created = self.records.record(&id).await?;
        // Found by the sweeper until it is finished (its merge removes it), and in the
        // listings until it is deleted.
        let mut markers = ObjectKey::actives(&new.owner, &id).to_vec();
        markers.extend(ObjectKey::listings(&new.owner, &id));
        for marker in &markers {
            self.store()
                .put(marker, Bytes::new(), "application/octet-stream")
                .await?;
        }
        info!(recording_id = %id, mime_type = %media, tenant = new.owner.tenant.as_str(), "recording created");
        let webhooks = self.records.webhooks();
        webhooks.announce(WebhookType::Created, &created).await;
        Ok(Created {
            recording_id: id.to_string(),
            upload_token: token.as_str().to_owned(),
        })
    }

    /// Resolve a recording for a caller: the token must be present, the recording must exist
    /// and the token must match.
    pub async fn authorize(&self, id: &RecordingId, token: Option<&str>) -> Result<RecordingMeta> {
        let token = UploadToken::parse(token.ok_or(Error::MissingToken)?)?;
        let meta = self
            .records
            .meta(id)
            .await?
            .ok_or(Error::RecordingNotFound)?;
        meta.token_hash.verify(&token)?;
        self.throttle_recording(id).await?;
        Ok(meta)
    }

    /// Run `op` against the coordinator; if it has lost the recording (a Redis restart, a
    /// flush), rebuild the recording from the store and run `op` once more.
    async fn rebuilding<T, Fut>(&self, id: &RecordingId, op: impl Fn() -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(Error::RecordingNotFound) => {
                self.records
                    .meta(id)
                    .await?
                    .ok_or(Error::RecordingNotFound)?;
                op().await
            }
            done => done,
        }
    }

    pub fn parse_seq(&self, raw: &str) -> Result<ChunkIndex> {
        ChunkIndex::parse_seq(raw, self.limits().max_chunks)
    }

    fn check_size(&self, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::EmptyChunk);
        }
        if size > self.limits().max_chunk_bytes {
            return Err(Error::ChunkTooLarge {
                max: self.limits().max_chunk_bytes,
            });
        }
        Ok(())
    }

    /// Store a chunk that came through this server. With `seq`, `index = seq`; without, the
    /// coordinator hands out the next index. Re-sending the same bytes is harmless. A body
    /// that differs from its declared checksum is refused, and nothing is stored.
    pub async fn put_chunk(
        &self,
        meta: &RecordingMeta,
        seq: Option<ChunkIndex>,
        body: Bytes,
        checksum: Option<&Sha256Checksum>,
        via: Ingest,
    ) -> Result<ChunkReceipt> {
        self.check_size(body.len() as u64)?;
        let digest = ChunkDigest::of(&body);
        if let Some(declared) = checksum {
            declared.check(&digest)?;
        }
        let slot = seq.map_or(Slot::Next, Slot::Seq);
        if let Err(over) = self.check_quota(meta, digest.size).await {
            // A retry of a chunk that is stored is a duplicate, not more bytes.
            let index = self.stored_already(meta, slot, Some(&digest)).await?;
            return index
                .map(|index| ChunkReceipt {
                    index,
                    duplicate: true,
                })
                .ok_or(over);
        }
        let coord = self.coordinator();
        // A handed-out index may already hold a chunk if the coordinator lost state: the
        // write never replaces one (`If-None-Match`). A seq is the client's, so other bytes
        // there are a conflict; a next index was reused, so the stored chunk is recorded and
        // this one claims another.
        let max = self.limits().max_chunks;
        for _ in 0..MAX_REUSED_INDICES {
            let claim = self
                .rebuilding(&meta.id, || coord.claim(&meta.id, slot, &digest, max))
                .await?;
            let index = claim.index();
            if claim == Claim::Stored(index) {
                return Ok(ChunkReceipt {
                    index,
                    duplicate: true,
                });
            }
            let key = ObjectKey::chunk(&meta.id, index);
            let put = self
                .store()
                .put_new(&key, body.clone(), &meta.mime_type, &digest);
            if let Some(existing) = put.await? {
                let existing = self.records.digest_of(&key, existing).await?;
                if existing != digest {
                    if slot != Slot::Next {
                        return Err(Error::ChunkConflict { index: index.get() });
                    }
                    warn!(recording_id = %meta.id, index = index.get(), "index already stored; recorded, and another claimed");
                    coord.adopt(&meta.id, index, &existing, &digest).await?;
                    continue;
                }
            }
            let committed = self
                .rebuilding(&meta.id, || coord.commit(&meta.id, index, &digest))
                .await?;
            if meta.indexing.is_none() {
                // The first chunk fixed the recording's indexing: the record keeps it.
                if let Err(e) = self.records.record(&meta.id).await {
                    warn!(recording_id = %meta.id, error = %e, "manifest not updated");
                }
            }
            let size = digest.size;
            return Ok(self.chunk_saved(meta, index, size, committed, via).await);
        }
        Err(Error::Coordination(format!(
            "{MAX_REUSED_INDICES} indices in a row were already stored"
        )))
    }

    /// Hand out a presigned PUT for chunk `seq`, so the browser uploads straight to storage.
    /// What the client declares is signed into the URL, so the storage itself refuses another
    /// body: the size binds `Content-Length`, a declared SHA-256 the body (sent as
    /// `x-amz-checksum-sha256`). The confirmation holds the object to them too, for a storage
    /// that checks no signature: a declared SHA-256 claims the index for those bytes, and a
    /// size alone is held by [`declared_size_lease`] for the URL's lifetime.
    pub async fn grant_upload(
        &self,
        meta: &RecordingMeta,
        seq: ChunkIndex,
        declared: &Declared,
    ) -> Result<UploadGrant> {
        self.check_size(declared.size)?;
        if let Err(over) = self.check_quota(meta, declared.size).await {
            let digest = declared.sha256.as_ref().map(|sha256| ChunkDigest {
                sha256: sha256.hex(),
                size: declared.size,
            });
            return match self
                .stored_already(meta, Slot::Seq(seq), digest.as_ref())
                .await?
            {
                Some(index) => Ok(UploadGrant::stored(index)),
                None => Err(over),
            };
        }
        let coord = self.coordinator();
        let stored = match &declared.sha256 {
            Some(sha256) => {
                let digest = ChunkDigest {
                    sha256: sha256.hex(),
                    size: declared.size,
                };
                let (max, slot) = (self.limits().max_chunks, Slot::Seq(seq));
                let claim = self
                    .rebuilding(&meta.id, || coord.claim(&meta.id, slot, &digest, max))
                    .await?;
                matches!(claim, Claim::Stored(_))
            }
            None => {
                let known = self
                    .rebuilding(&meta.id, || coord.reserve(&meta.id, seq))
                    .await?;
                if known.as_ref().is_some_and(|k| k.stored) {
                    true
                } else {
                    let (lease, size) = (declared_size_lease(&meta.id, seq), declared.size);
                    let ttl = self.limits().presign_ttl;
                    if !coord.lease(&lease, &size.to_string(), ttl).await? {
                        return Err(Error::ChunkConflict { index: seq.get() });
                    }
                    false
                }
            }
        };
        if stored {
            return Ok(UploadGrant::stored(seq));
        }
        let op = Presign::Put {
            size: Some(declared.size),
            sha256: declared.sha256.as_ref(),
        };
        let PresignedUrl {
            url,
            method,
            expires_at,
            headers,
        } = self
            .store()
            .presign(
                &ObjectKey::chunk(&meta.id, seq),
                op,
                self.limits().presign_ttl,
            )
            .await?;
        Ok(UploadGrant {
            index: seq,
            upload_url: Some(url),
            method: Some(method),
            headers: (!headers.is_empty()).then(|| headers.into_iter().collect()),
            expires_at: Some(rfc3339(expires_at)),
            already_stored: false,
        })
    }

    /// Confirm a presigned upload: read the object back, check it and count it. Only then is
    /// the chunk received.
    pub async fn confirm_upload(
        &self,
        meta: &RecordingMeta,
        seq: ChunkIndex,
    ) -> Result<ChunkReceipt> {
        let key = ObjectKey::chunk(&meta.id, seq);
        let info = self
            .store()
            .head(&key)
            .await?
            .ok_or(Error::ChunkNotUploaded { index: seq.get() })?;
        let checked = match self.check_size(info.size) {
            Ok(()) => self.check_quota(meta, info.size).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            // A stored chunk confirmed again is a duplicate. Anything else is refused as a
            // presigned PUT cannot refuse it: the object goes.
            if let Some(index) = self.stored_already(meta, Slot::Seq(seq), None).await? {
                return Ok(ChunkReceipt {
                    index,
                    duplicate: true,
                });
            }
            self.store().delete(&key).await?;
            return Err(e);
        }
        let body = read_all(self.store().as_ref(), &key, Some(info.size)).await?;
        let digest = ChunkDigest::of(&body);
        // The grant declared these bytes: an object that is not them goes, uncounted.
        let coord = self.coordinator();
        if let Some(known) = self
            .rebuilding(&meta.id, || coord.reserve(&meta.id, seq))
            .await?
            && !known.stored
            && known.digest != digest
        {
            self.store().delete(&key).await?;
            let declared = Sha256Checksum::from_hex(&known.digest.sha256)?;
            return Err(match declared.check(&digest) {
                Err(mismatch) => mismatch,
                Ok(()) => Error::ChecksumMismatch(format!(
                    "{} bytes arrived, {} were declared",
                    digest.size, known.digest.size
                )),
            });
        }
        // A grant that declared only the size holds it: an object of another size goes.
        let (lease, size) = (declared_size_lease(&meta.id, seq), digest.size.to_string());
        let ttl = self.limits().presign_ttl;
        if !coord.lease(&lease, &size, ttl).await? {
            self.store().delete(&key).await?;
            return Err(Error::ChecksumMismatch(format!(
                "{} bytes arrived, another size was declared",
                digest.size
            )));
        }
        let (max, slot) = (self.limits().max_chunks, Slot::Seq(seq));
        let claim = self
            .rebuilding(&meta.id, || coord.claim(&meta.id, slot, &digest, max))
            .await?;
        let receipt = match claim {
            Claim::Stored(index) => ChunkReceipt {
                index,
                duplicate: true,
            },
            _ => {
                let committed = self
                    .rebuilding(&meta.id, || coord.commit(&meta.id, seq, &digest))
                    .await?;
                self.chunk_saved(meta, seq, digest.size, committed, Ingest::Presigned)
                    .await
            }
        };
        coord.release(&lease, &size).await?;
        Ok(receipt)
    }

    /// Where the chunk `slot` names is stored already: at `seq`, with `digest` when it is
    /// known, or, for the next index, wherever `digest` is. So a retry at a quota's limit
    /// gets its receipt again, not a refusal.
    async fn stored_already(
        &self,
        meta: &RecordingMeta,
        slot: Slot,
        digest: Option<&ChunkDigest>,
    ) -> Result<Option<ChunkIndex>> {
        let chunks = self.coordinator().chunks(&meta.id).await?;
        let same = |c: &ChunkRecord| c.stored && digest.is_none_or(|d| c.digest == *d);
        Ok(match slot {
            Slot::Seq(seq) => chunks.get(&seq.get()).is_some_and(same).then_some(seq),
            Slot::Next => chunks
                .iter()
                .find(|(_, c)| same(c))
                .map(|(i, _)| ChunkIndex::new(*i)),
        })
    }

    /// A recording's quotas, before `incoming` more bytes: `MAX_RECORDING_SECS` since create,
    /// `MAX_RECORDING_BYTES` in all, and `MAX_TENANT_BYTES` across its tenant's recordings.
    /// What is stored stays; the recording can still be stopped and merged.
    async fn check_quota(&self, meta: &RecordingMeta, incoming: u64) -> Result<()> {
        let limits = self.limits();
        if let Some(secs) = limits.max_recording_secs
            && crate::coord::now_ms().saturating_sub(meta.created_at_ms) > secs * 1000
        {
            return Err(Error::QuotaExceeded {
                quota: "MAX_RECORDING_SECS",
                limit: secs,
            });
        }
        if let Some(max) = limits.max_recording_bytes
            && meta.bytes_received + incoming > max
        {
            return Err(Error::QuotaExceeded {
                quota: "MAX_RECORDING_BYTES",
                limit: max,
            });
        }
        if let Some(max) = limits.max_tenant_bytes
            && self.records.tenant_bytes(&meta.owner.tenant).await? + incoming > max
        {
            return Err(Error::QuotaExceeded {
                quota: "MAX_TENANT_BYTES",
                limit: max,
            });
        }
        Ok(())
    }

    fn chunk_count(&self, count: i64) -> Result<u32> {
        let max = i64::from(self.limits().max_chunks);
        if !(1..=max).contains(&count) {
            return Err(Error::InvalidChunkCount(format!(
                "it must be between 1 and {max}"
            )));
        }
        Ok(count as u32)
    }

    /// Record the final chunk count. Succeeds only when chunks `0..count` are all stored, and
    /// then hands the recording to the merge queue.
    pub async fn stop(&self, meta: &RecordingMeta, count: i64) -> Result<StatusView> {
        let count = i64::from(self.chunk_count(count)?);
        let coord = self.coordinator();
        match self
            .rebuilding(&meta.id, || coord.stop(&meta.id, count as u32))
            .await
        {
            Ok(()) => match self.records.record(&meta.id).await {
                Ok(stopped) => {
                    let webhooks = self.records.webhooks();
                    webhooks.announce(WebhookType::Stopped, &stopped).await;
                }
                Err(e) => {
                    warn!(recording_id = %meta.id, error = %e, "manifest not updated at stop")
                }
            },
            // The same stop again (a client retrying after a lost answer) is idempotent: it
            // answers the current status. While no worker has taken the merge yet, the job is
            // queued again, in case the first stop could not queue it; a job that runs twice
            // merges once. Another count is still refused.
            Err(Error::AlreadyStopped { state }) => {
                let current = self
                    .records
                    .meta(&meta.id)
                    .await?
                    .ok_or(Error::RecordingNotFound)?;
                if current.chunk_count != Some(count as u32) {
                    return Err(Error::AlreadyStopped { state });
                }
                if current.state != RecordingState::Stopping {
                    return Ok(self.view(&current).await);
                }
            }
            Err(e) => return Err(e),
        }
        self.records
            .queue()
            .enqueue(MergeJob {
                recording_id: meta.id.to_string(),
            })
            .await?;
        info!(recording_id = %meta.id, chunk_count = count, "recording stopped, merge queued");
        self.status(&meta.id).await
    }

    /// Merge what can be merged: for a recording that failed (frames lost, chunks missing, a
    /// gap), or one still recording whose chunks will not all arrive. Damaged and missing
    /// stretches are left out and listed in the result's `lost`. `count` defaults to the
    /// stopped count, or to one past the highest chunk stored. Asking again while the salvage
    /// runs, or once it is ready, answers the current status.
    pub async fn salvage(&self, meta: &RecordingMeta, count: Option<i64>) -> Result<StatusView> {
        let count = count.map(|c| self.chunk_count(c)).transpose()?;
        let from = meta.state;
        let count = match from {
            RecordingState::Ready => return Ok(self.view(meta).await),
            RecordingState::Stopping | RecordingState::Merging if meta.salvage => {
                return Ok(self.view(meta).await);
            }
            RecordingState::Stopping | RecordingState::Merging => {
                return Err(Error::AlreadyStopped {
                    state: from.as_str(),
                });
            }
            RecordingState::Failed => count.or(meta.chunk_count),
            RecordingState::Recording => count.or(self
                .coordinator()
                .chunks(&meta.id)
                .await?
                .iter()
                .filter(|(_, c)| c.stored)
                .map(|(i, _)| i + 1)
                .next_back()),
        }
        .ok_or(Error::MissingChunks {
            count: 0,
            missing_total: 0,
            missing: Vec::new(),
        })?;
        let update = StateUpdate {
            chunk_count: Some(count),
            salvage: true,
            ..StateUpdate::default()
        };
        if !self
            .coordinator()
            .transition(&meta.id, from, RecordingState::Stopping, update)
            .await?
        {
            // It moved on meanwhile (a stop, a merge): answer from where it is now.
            let now = self
                .records
                .meta(&meta.id)
                .await?
                .ok_or(Error::RecordingNotFound)?;
            return if now.salvage || now.state == RecordingState::Ready {
                Ok(self.view(&now).await)
            } else {
                Err(Error::AlreadyStopped {
                    state: now.state.as_str(),
                })
            };
        }
        if let Err(e) = self.write_manifest(&meta.id).await {
            warn!(recording_id = %meta.id, error = %e, "manifest not updated at salvage");
        }
        self.records
            .queue()
            .enqueue(MergeJob {
                recording_id: meta.id.to_string(),
            })
            .await?;
        info!(recording_id = %meta.id, chunk_count = count, from = %from, "salvage queued");
        self.status(&meta.id).await
    }

    pub async fn status(&self, id: &RecordingId) -> Result<StatusView> {
        let meta = self
            .records
            .meta(id)
            .await?
            .ok_or(Error::RecordingNotFound)?;
        Ok(self.view(&meta).await)
    }

    /// What clients see of a recording (see [`Records::view`]).
    pub async fn view(&self, meta: &RecordingMeta) -> StatusView {
        self.records.view(meta).await
    }

    pub async fn write_manifest(&self, id: &RecordingId) -> Result<()> {
        self.records.record(id).await.map(drop)
    }

    /// Whether the dependencies answer.
    pub async fn ready(&self) -> Result<()> {
        self.coordinator().ping().await?;
        self.store().ping().await
    }
}

/// An embedded service on a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::coord::MemoryCoordinator;
    use crate::notify::Hub;
    use crate::queue::MergeQueue;
    use crate::store::{FsStore, UrlSigner};

    pub(crate) struct Fixture {
        pub dir: tempfile::TempDir,
        pub store: Arc<dyn ObjectStore>,
        pub coord: Arc<dyn Coordinator>,
        pub notifier: Arc<Hub>,
        pub recordings: Recordings,
        pub id: RecordingId,
        pub meta: RecordingMeta,
    }

    /// A filesystem store under `root`.
    pub(crate) async fn fs_store(root: &std::path::Path) -> FsStore {
        FsStore::open(root, UrlSigner::new(vec![7; 32]), "http://x")
            .await
            .unwrap()
    }

    /// The service with `queue`, and one recording holding `chunks` small chunks.
    pub(crate) async fn with_recording(queue: Arc<dyn MergeQueue>, chunks: u32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(fs_store(dir.path()).await);
        let coord: Arc<dyn Coordinator> = Arc::new(MemoryCoordinator::new());
        let notifier = Arc::new(Hub::new());
        let webhooks = Arc::new(crate::webhook::Webhooks::none());
        let records = Records::new(
            store.clone(),
            coord.clone(),
            queue,
            webhooks,
            Arc::new(crate::metrics::Metrics::new()),
            Limits::default(),
        );
        let recordings = Recordings::new(
            Arc::new(records),
            notifier.clone(),
            Auth::None,
            RateLimits::default(),
        );
        let created = recordings
            .create(&CreateRequest::of("video/webm"), Owner::anonymous())
            .await
            .unwrap();
        let id = RecordingId::parse(&created.recording_id).unwrap();
        let meta = recordings
            .authorize(&id, Some(&created.upload_token))
            .await
            .unwrap();
        for i in 0..chunks {
            let body = Bytes::from(vec![i as u8; 10]);
            recordings
                .put_chunk(&meta, Some(ChunkIndex::new(i)), body, None, Ingest::Server)
                .await
                .unwrap();
        }
        Fixture {
            dir,
            store,
            coord,
            notifier,
            recordings,
            id,
            meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::queue::{MergeJob, MergeQueue};

    /// A queue that refuses its first job, as an unreachable Redis or SQS would.
    #[derive(Default)]
    struct FlakyQueue {
        refused: AtomicBool,
        jobs: Mutex<Vec<MergeJob>>,
    }

    #[async_trait]
    impl MergeQueue for FlakyQueue {
        async fn enqueue(&self, job: MergeJob) -> Result<()> {
            if !self.refused.swap(true, Ordering::SeqCst) {
                return Err(Error::Coordination("queue unreachable".into()));
            }
            self.jobs.lock().unwrap().push(job);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_retried_stop_is_idempotent_and_requeues_a_job_that_was_not_queued() {
        let queue = Arc::new(FlakyQueue::default());
        let testing::Fixture {
            recordings,
            coord,
            id,
            meta,
            ..
        } = testing::with_recording(queue.clone(), 1).await;

        let first = recordings.stop(&meta, 1).await.unwrap_err();
        assert!(first.is_server_side(), "{first}");
        assert!(queue.jobs.lock().unwrap().is_empty());
        let view = recordings.stop(&meta, 1).await.unwrap();
        assert_eq!(view.status, "stopping");
        assert_eq!(queue.jobs.lock().unwrap().len(), 1);
        // Another count is still refused.
        let other = recordings.stop(&meta, 2).await.unwrap_err();
        assert_eq!(other.code(), "already_stopped");

        // Once a worker has the merge, the same stop answers the status and queues nothing.
        assert!(
            coord
                .transition(
                    &id,
                    RecordingState::Stopping,
                    RecordingState::Merging,
                    Default::default(),
                )
                .await
                .unwrap()
        );
        let view = recordings.stop(&meta, 1).await.unwrap();
        assert_eq!(view.status, "merging");
        assert_eq!(queue.jobs.lock().unwrap().len(), 1);
        let other = recordings.stop(&meta, 2).await.unwrap_err();
        assert_eq!(other.code(), "already_stopped");
    }
}
