//! `/files/{key}`: the app-served signed URLs of the filesystem store, with HTTP Range support.
//! Only mounted when storage is a local directory.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde::Deserialize;

use super::api_doc::ApiError;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::AppState;
use super::extract::CHECKSUM_SHA256;
use crate::domain::{ObjectKey, Sha256Checksum};
use crate::error::{Error, Result};
use crate::store::{FsStore, SignedOp, Terms};

#[derive(Deserialize)]
pub struct SignedQuery {
    expires: u64,
    sig: String,
    #[serde(default)]
    name: String,
    size: Option<u64>,
    sha256: Option<String>,
}

fn authorize<'a>(
    app: &'a AppState,
    op: SignedOp,
    raw_key: &str,
    query: Result<Query<SignedQuery>, QueryRejection>,
) -> Result<(&'a FsStore, ObjectKey, Terms)> {
    let fs = app.files.as_deref().ok_or(Error::NotFound)?;
    let key = ObjectKey::parse(raw_key)?;
    let Query(q) = query.map_err(|_| Error::InvalidSignature)?;
    let terms = Terms {
        name: q.name,
        size: q.size,
        sha256: q.sha256,
    };
    fs.signer().verify(op, &key, q.expires, &terms, &q.sig)?;
    Ok((fs, key, terms))
}

fn content_type(key: &ObjectKey) -> &'static str {
    match key.file_name().rsplit_once('.').map(|(_, ext)| ext) {
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("mp4") => "video/mp4",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Parse a `Range` header against an object of `size` bytes into an inclusive byte range.
/// `Ok(None)` means serve the whole object (no header, or one this server does not handle,
/// such as several ranges); an unsatisfiable range is an error.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let unsatisfiable = Error::RangeNotSatisfiable { size };
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
        (Ok(s), Err(_)) if end.is_empty() => (s, size.saturating_sub(1)),
        (Err(_), Ok(n)) if start.is_empty() => {
            if n == 0 {
                return Err(unsatisfiable);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if size == 0 || range.0 >= size {
        return Err(unsatisfiable);
    }
    Ok(Some(range))
}

/// A download through a signed URL (the directory store's presigned GET); one byte range.
#[utoipa::path(
    get,
    path = "/files/{key}",
    tag = "files",
    summary = "Signed download (directory storage only); supports Range",
    params(
        ("key" = String, Path, description = "The object key the URL was signed for (may hold slashes)."),
        ("expires" = u64, Query),
        ("sig" = String, Query),
        ("name" = Option<String>, Query, description = "Signed: the download's file name."),
        ("Range" = Option<String>, Header, description = "One byte range: bytes=start-end."),
    ),
    responses(
        (status = 200, description = "The object", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "A byte range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = "4XX", response = ApiError),
        (status = "5XX", response = ApiError),
    )
)]
pub async fn get(
    State(app): State<AppState>,
    Path(raw_key): Path<String>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let (fs, key, terms) = authorize(&app, SignedOp::Get, &raw_key, query)?;
    let (mut file, size) = fs.open_read(&key).await?;
    let range = parse_range(headers.get(RANGE).and_then(|v| v.to_str().ok()), size)?;
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Error::Storage(format!("seeking {key}: {e}")))?;
    }
    let body = Body::from_stream(
        ReaderStream::with_capacity(file.take(len), 256 * 1024).map_err(axum::Error::new),
    );
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&key)));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}"))
    {
        h.insert(CONTENT_RANGE, v);
    }
    if !terms.name.is_empty()
        && let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", terms.name))
    {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// An upload through a signed URL, held to what it signed as S3 holds a presigned PUT: a
/// signed size or checksum that the request does not carry is a signature that does not match
/// (403), and a body that differs from the checksum it is sent with is `checksum_mismatch`.
#[utoipa::path(
    put,
    path = "/files/{key}",
    tag = "files",
    summary = "Signed upload (directory storage only)",
    params(
        ("key" = String, Path, description = "The object key the URL was signed for (may hold slashes)."),
        ("expires" = u64, Query),
        ("sig" = String, Query),
        ("size" = Option<u64>, Query, description = "Signed: the body must be this long (403 invalid_signature otherwise)."),
        ("sha256" = Option<String>, Query, description = "Signed (hex): the request must send the same digest as x-amz-checksum-sha256 (403 invalid_signature otherwise) and the body must match it."),
        ("x-amz-checksum-sha256" = Option<String>, Header, description = "Base64 of the body's SHA-256. A body that differs is refused (400 checksum_mismatch) and nothing is stored.", pattern = "^[A-Za-z0-9+/]{43}=$"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Stored"), (status = "4XX", response = ApiError), (status = "5XX", response = ApiError))
)]
pub async fn put(
    State(app): State<AppState>,
    Path(raw_key): Path<String>,
    query: Result<Query<SignedQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let (fs, key, terms) = authorize(&app, SignedOp::Put, &raw_key, query)?;
    let sent = headers
        .get(CHECKSUM_SHA256)
        .map(|v| Sha256Checksum::parse(v.to_str().unwrap_or_default()))
        .transpose()?;
    let signed = terms.checksum()?;
    if signed.is_some() && sent != signed {
        return Err(Error::InvalidSignature);
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if terms.size.is_some() && length.is_some() && length != terms.size {
        return Err(Error::InvalidSignature);
    }
    let max = app.recordings.limits().max_chunk_bytes;
    let stream = body
        .into_data_stream()
        .map_err(|e| Error::InvalidBody(e.to_string()));
    let size = terms.size;
    fs.put_stream(&key, stream, max, |digest| {
        if size.is_some_and(|s| s != digest.size) {
            return Err(Error::InvalidSignature);
        }
        sent.map_or(Ok(()), |c| c.check(digest))
    })
    .await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100).unwrap(),
            Some((50, 99))
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 100).unwrap(), None);
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=-0"), 100).is_err());
        assert!(parse_range(Some("bytes=0-0"), 0).is_err());
    }
}
