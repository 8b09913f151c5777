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

use super::AppState;
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

/// A grant request: the chunk's `seq` and `size`, and optionally its `sha256` (base64), which
/// the presigned URL then binds.
#[derive(Deserialize)]
pub struct GrantBody {
    seq: serde_json::Number,
    size: Option<serde_json::Number>,
    sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopBody {
    chunk_count: serde_json::Number,
}

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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeBody {
    salvage: bool,
    chunk_count: Option<serde_json::Number>,
}

/// `POST /recordings/{id}/merge {"salvage": true}`: merge what can be merged of a recording
/// that could not be merged whole.
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
#[instrument(skip_all, fields(recording_id = %target.id))]
pub async fn download(
    State(app): State<AppState>,
    target: Target,
    Bearer(credential): Bearer,
) -> Result<Response> {
    redirect(&app, &target, credential, Asset::Video).await
}

/// `GET /recordings/{id}/poster`: 302 to a presigned URL of the merged video's JPEG poster.
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
