//! The `/recordings` REST routes: parse, call the service, shape the answer.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::instrument;
use utoipa::ToSchema;

use super::AppState;
use super::api_doc::ApiError;
use super::extract::{ApiJson, Bearer, CHECKSUM_SHA256, ClientIp, Target};
use crate::domain::Sha256Checksum;
use crate::error::{Error, Result};
use crate::service::{
    ChunkReceipt, CreateRequest, Created, DEFAULT_PAGE, Declared, Ingest, MAX_PAGE, Page,
    StatusView, UploadGrant, rfc3339,
};

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// A recording's id in a path: 26-character ULID, lower-case Crockford base32.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // described, not extracted: `Target` parses it
pub struct RecordingPath {
    /// Recording id (26-character ULID, lower-case Crockford base32).
    #[param(pattern = "^[0-7][0-9a-hjkmnp-tv-z]{25}$")]
    id: String,
}

/// A grant request: the chunk's `seq` and `size`, and optionally its `sha256` (base64), which
/// the presigned URL then binds.
#[derive(Deserialize, ToSchema)]
#[schema(as = GrantRequest)]
pub struct GrantBody {
    #[schema(value_type = u32, minimum = 0)]
    seq: serde_json::Number,
    /// The chunk's length in bytes. Signed into the URL as Content-Length: the storage refuses
    /// a body of another length, and the confirmation refuses an object of another length.
    #[schema(value_type = u64, minimum = 1, required = true)]
    size: Option<serde_json::Number>,
    /// Base64 of the chunk's SHA-256 digest. Signed into the URL: the upload must send it as
    /// x-amz-checksum-sha256 (listed in the grant's headers), and the storage refuses another
    /// body. It also claims the index for those bytes.
    #[schema(pattern = "^[A-Za-z0-9+/]{43}=$")]
    sha256: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StopRequest)]
pub struct StopBody {
    /// How many chunks the recording has (indices 0..chunkCount).
    #[schema(value_type = u32, minimum = 1)]
    chunk_count: serde_json::Number,
}

#[utoipa::path(
    post,
    path = "/recordings",
    tag = "recordings",
    summary = "Create a recording",
    description = "With AUTH_MODE=api-key or jwt, the owner's credential is required; the recording belongs to its tenant and owner.",
    request_body = CreateRequest,
    responses((status = 201, description = "Created; keep the upload token, it is shown once.", body = Created), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("ownerCredential" = []), ())
)]
pub async fn create(
    State(app): State<AppState>,
    Bearer(credential): Bearer,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Created>)> {
    let owner = app
        .recordings
        .creator(credential.as_deref(), body.owner.as_deref(), client)
        .await?;
    let created = app.recordings.create(&body, owner).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /recordings?limit=&cursor=`: the caller's recordings, newest first.
#[utoipa::path(
    get,
    path = "/recordings",
    tag = "recordings",
    summary = "List the caller's recordings, newest first",
    description = "An API key lists its tenant's recordings; a JWT its owner's own. Read from the store, so it works after coordinator state is lost.",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Recordings in the page (default 20)."),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page.", pattern = "^([0-9a-fA-F]{16}-[0-7][0-9a-hjkmnp-tv-z]{25})?$"),
    ),
    responses((status = 200, description = "A page", body = Page), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("ownerCredential" = []), ())
)]
pub async fn list(
    State(app): State<AppState>,
    Bearer(credential): Bearer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>> {
    let Query(query) = query.map_err(|e| Error::InvalidQuery(e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| Error::InvalidQuery(format!("limit is 1 to {MAX_PAGE}")))?,
    };
    let caller = app.recordings.owner_of(credential.as_deref()).await?;
    Ok(Json(
        app.recordings
            // An empty cursor is the first page, as no cursor is.
            .list(
                &caller,
                limit,
                query.cursor.as_deref().filter(|c| !c.is_empty()),
            )
            .await?,
    ))
}

#[utoipa::path(
    get,
    path = "/recordings/{id}",
    tag = "recordings",
    summary = "Recording status",
    params(RecordingPath),
    responses((status = 200, description = "The status; once ready, with presigned downloadUrl and posterUrl", body = StatusView), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []), ("ownerCredential" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn status(
    State(app): State<AppState>,
    target: Target,
    Bearer(credential): Bearer,
) -> Result<Json<StatusView>> {
    let meta = app
        .recordings
        .access(&target.id, credential.as_deref())
        .await?;
    Ok(Json(app.recordings.view(&meta).await))
}

/// `DELETE /recordings/{id}`: for its owner; 204 also when it is already gone.
#[utoipa::path(
    delete,
    path = "/recordings/{id}",
    tag = "recordings",
    summary = "Delete a recording: every object and all state; a merge in flight stops",
    params(RecordingPath),
    responses((status = 204, description = "Deleted, or already gone"), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("ownerCredential" = []), ())
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn delete(
    State(app): State<AppState>,
    target: Target,
    Bearer(credential): Bearer,
) -> Result<StatusCode> {
    let caller = app.recordings.owner_of(credential.as_deref()).await?;
    app.recordings.delete(&target.id, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /recordings/{id}/chunks {"seq", "size"}`: a presigned PUT for chunk `seq`.
#[utoipa::path(
    post,
    path = "/recordings/{id}/chunks",
    tag = "chunks",
    summary = "Presigned upload URL for chunk `seq`, binding its declared size and SHA-256",
    params(RecordingPath),
    request_body = GrantBody,
    responses((status = 200, description = "The upload URL, or alreadyStored", body = UploadGrant), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn grant(
    State(app): State<AppState>,
    target: Target,
    Bearer(token): Bearer,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<UploadGrant>> {
    let meta = app
        .recordings
        .authorize(&target.id, token.as_deref())
        .await?;
    let seq = app.recordings.parse_seq(&body.seq.to_string())?;
    let size = body.size.ok_or_else(|| {
        Error::InvalidJson("size is required: the upload URL binds the chunk's length".into())
    })?;
    let declared = Declared {
        size: size.as_u64().ok_or_else(|| {
            Error::InvalidJson(format!("size {size} is not a whole number of bytes"))
        })?,
        sha256: body
            .sha256
            .as_deref()
            .map(Sha256Checksum::parse)
            .transpose()?,
    };
    Ok(Json(
        app.recordings.grant_upload(&meta, seq, &declared).await?,
    ))
}

/// `PUT /recordings/{id}/chunks/{seq}`: the chunk's bytes through this server.
#[utoipa::path(
    put,
    path = "/recordings/{id}/chunks/{seq}",
    tag = "chunks",
    summary = "Upload chunk `seq` through the server",
    params(
        RecordingPath,
        ("seq" = u32, Path, description = "The client's 0-based chunk number; the stored index equals it.", minimum = 0),
        ("x-amz-checksum-sha256" = Option<String>, Header, description = "Base64 of the body's SHA-256. A body that differs is refused (400 checksum_mismatch) and nothing is stored.", pattern = "^[A-Za-z0-9+/]{43}=$"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Stored (or already stored with the same bytes: duplicate=true)", body = ChunkReceipt), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn put_chunk(
    State(app): State<AppState>,
    target: Target,
    Bearer(token): Bearer,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ChunkReceipt>> {
    let meta = app
        .recordings
        .authorize(&target.id, token.as_deref())
        .await?;
    let seq = app
        .recordings
        .parse_seq(target.seq.as_deref().unwrap_or(""))?;
    let checksum = headers
        .get(CHECKSUM_SHA256)
        .map(|v| Sha256Checksum::parse(v.to_str().unwrap_or_default()))
        .transpose()?;
    let max = app.recordings.limits().max_chunk_bytes;
    let too_large = Error::ChunkTooLarge { max };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large);
    }
    let bytes = axum::body::to_bytes(body, max as usize + 1)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                Error::ChunkTooLarge { max }
            } else {
                Error::InvalidBody(e.to_string())
            }
        })?;
    Ok(Json(
        app.recordings
            .put_chunk(&meta, Some(seq), bytes, checksum.as_ref(), Ingest::Server)
            .await?,
    ))
}

/// `POST /recordings/{id}/chunks/{seq}/complete`: confirm a presigned upload.
#[utoipa::path(
    post,
    path = "/recordings/{id}/chunks/{seq}/complete",
    tag = "chunks",
    summary = "Confirm a presigned upload; the server reads the object back and counts it",
    params(RecordingPath, ("seq" = u32, Path, description = "The client's 0-based chunk number; the stored index equals it.", minimum = 0)),
    responses((status = 200, description = "Counted (duplicate=true if it already was)", body = ChunkReceipt), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn confirm(
    State(app): State<AppState>,
    target: Target,
    Bearer(token): Bearer,
) -> Result<Json<ChunkReceipt>> {
    let meta = app
        .recordings
        .authorize(&target.id, token.as_deref())
        .await?;
    let seq = app
        .recordings
        .parse_seq(target.seq.as_deref().unwrap_or(""))?;
    Ok(Json(app.recordings.confirm_upload(&meta, seq).await?))
}

#[utoipa::path(
    post,
    path = "/recordings/{id}/stop",
    tag = "recordings",
    summary = "Stop with the final chunk count; queues the merge",
    params(RecordingPath),
    request_body = StopBody,
    responses((status = 202, description = "Stopping; the merge follows", body = StatusView), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn stop(
    State(app): State<AppState>,
    target: Target,
    Bearer(token): Bearer,
    ApiJson(body): ApiJson<StopBody>,
) -> Result<(StatusCode, Json<StatusView>)> {
    let meta = app
        .recordings
        .authorize(&target.id, token.as_deref())
        .await?;
    let count = body.chunk_count.as_i64().ok_or_else(|| {
        Error::InvalidChunkCount(format!("{} is not a whole number", body.chunk_count))
    })?;
    let view = app.recordings.stop(&meta, count).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = MergeRequest)]
pub struct MergeBody {
    /// Must be true: a whole merge starts at stop.
    #[schema(value_type = SalvageFlag)]
    salvage: bool,
    /// Chunks 0..chunkCount are the recording; defaults to the stopped count, else one past the
    /// highest chunk stored.
    #[schema(value_type = Option<u32>, minimum = 1)]
    chunk_count: Option<serde_json::Number>,
}

/// `true`, the only value a salvage request takes.
pub struct SalvageFlag;

impl utoipa::PartialSchema for SalvageFlag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Boolean)
            .enum_values(Some([true]))
            .into()
    }
}

impl ToSchema for SalvageFlag {}

/// What a redirect's body says: the presigned URL (`downloadUrl` or `posterUrl`) and when it
/// expires.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Redirect {
    #[schema(rename = "downloadUrl")]
    download_url: Option<String>,
    #[schema(rename = "posterUrl")]
    poster_url: Option<String>,
    #[schema(rename = "expiresAt", format = DateTime)]
    expires_at: String,
}

/// `POST /recordings/{id}/merge {"salvage": true}`: merge what can be merged of a recording
/// that could not be merged whole.
#[utoipa::path(
    post,
    path = "/recordings/{id}/merge",
    tag = "recordings",
    summary = "Salvage: merge what can be merged of a recording that could not be merged whole",
    params(RecordingPath),
    request_body = MergeBody,
    responses((status = 202, description = "The salvage is queued", body = StatusView), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn merge(
    State(app): State<AppState>,
    target: Target,
    Bearer(token): Bearer,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<(StatusCode, Json<StatusView>)> {
    let meta = app
        .recordings
        .authorize(&target.id, token.as_deref())
        .await?;
    if !body.salvage {
        return Err(Error::InvalidJson(
            "salvage must be true: a whole merge starts at stop".into(),
        ));
    }
    let count = body
        .chunk_count
        .map(|n| {
            n.as_i64()
                .ok_or_else(|| Error::InvalidChunkCount(format!("{n} is not a whole number")))
        })
        .transpose()?;
    let view = app.recordings.salvage(&meta, count).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// `GET /recordings/{id}/download`: 302 to a presigned URL of the merged video.
#[utoipa::path(
    get,
    path = "/recordings/{id}/download",
    tag = "recordings",
    summary = "Redirect to a presigned URL of the merged video",
    params(RecordingPath),
    responses((status = 302, description = "Location is the presigned URL", body = Redirect), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []), ("ownerCredential" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn download(
    State(app): State<AppState>,
    target: Target,
    Bearer(credential): Bearer,
) -> Result<Response> {
    redirect(&app, &target, credential, Asset::Video).await
}

/// `GET /recordings/{id}/poster`: 302 to a presigned URL of the merged video's JPEG poster.
#[utoipa::path(
    get,
    path = "/recordings/{id}/poster",
    tag = "recordings",
    summary = "Redirect to a presigned URL of the merged video's JPEG poster (404 no_poster when it has none)",
    params(RecordingPath),
    responses((status = 302, description = "Location is the presigned URL", body = Redirect), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError)),
    security(("uploadToken" = []), ("ownerCredential" = []))
)]
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn poster(
    State(app): State<AppState>,
    target: Target,
    Bearer(credential): Bearer,
) -> Result<Response> {
    redirect(&app, &target, credential, Asset::Poster).await
}

/// What of a ready recording a redirect goes to.
enum Asset {
    Video,
    Poster,
}

/// A 302 to a presigned URL of `asset`, which the JSON body also gives (`downloadUrl` or
/// `posterUrl`), with its expiry.
async fn redirect(
    app: &AppState,
    target: &Target,
    credential: Option<String>,
    asset: Asset,
) -> Result<Response> {
    let meta = app
        .recordings
        .access(&target.id, credential.as_deref())
        .await?;
    let records = app.recordings.records();
    let (field, url) = match asset {
        Asset::Video => ("downloadUrl", records.download(&meta).await?),
        Asset::Poster => ("posterUrl", records.poster(&meta).await?),
    };
    let body = Json(json!({ field: url.url, "expiresAt": rfc3339(url.expires_at) }));
    Ok((StatusCode::FOUND, [(LOCATION, url.url)], body).into_response())
}
