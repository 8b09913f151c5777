//! S3 object store: AWS S3, MinIO, Ceph RGW, LocalStack, moto, s3s-fs. Checksums only when the
//! operation requires them, since many S3 API servers reject aws-chunked bodies.

use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream as SdkStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;

use super::{
    ByteStream, Listed, ObjectInfo, ObjectStore, PartUpload, Presign, PresignedUrl, SHA256_METADATA,
};
use crate::domain::{ChunkDigest, ObjectKey, Sha256Checksum};
use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
}

pub struct S3Store {
    client: Client,
    bucket: String,
}

fn s3_err(what: &str, e: impl std::error::Error) -> Error {
    Error::Storage(format!("{what}: {}", DisplayErrorContext(e)))
}

impl S3Store {
    /// Build a client from the standard AWS configuration chain (environment, profile, IMDS,
    /// Lambda role) plus these settings. No request is made.
    /// Connect with the SDK configuration loaded from the environment.
    pub async fn connect(settings: &S3Settings) -> Self {
        Self::new(
            &crate::aws::sdk_config(settings.region.as_deref()).await,
            settings,
        )
    }

    pub fn new(sdk: &aws_config::SdkConfig, settings: &S3Settings) -> Self {
        let mut config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(region) = &settings.region {
            config = config.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// How many times a read that broke off in the middle of a body (a connection reset) goes on
/// from where it stopped, before the error is the reader's.
const BODY_RESUMES: u32 = 3;

/// An object being read. The SDK retries a request that fails before its answer; a body cut
/// short is resumed here, with a ranged GET of what is left of the same version (`If-Match`).
struct Reading {
    client: Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    size: Option<u64>,
    body: SdkStream,
    delivered: u64,
    resumes: u32,
}

impl Reading {
    async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            let e = match self.body.next().await? {
                Ok(piece) => {
                    self.delivered += piece.len() as u64;
                    return Some(Ok(piece));
                }
                Err(e) => e,
            };
            if self.size == Some(self.delivered) {
                return None;
            }
            if self.resumes == 0 {
                return Some(Err(s3_err("reading object body", e)));
            }
            self.resumes -= 1;
            tracing::warn!(
                key = %self.key,
                offset = self.delivered,
                error = %DisplayErrorContext(&e),
                "object read broke off; resuming where it stopped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .range(format!("bytes={}-", self.delivered))
                .set_if_match(self.etag.clone())
                .send()
                .await
            {
                Ok(out) => self.body = out.body,
                Err(e) => return Some(Err(s3_err("resuming GetObject", e))),
            }
        }
    }
}

/// A multipart upload on S3.
struct S3Upload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    parts: std::sync::Mutex<std::collections::BTreeMap<i32, Option<String>>>,
}

#[async_trait]
impl PartUpload for S3Upload {
    async fn part(&self, number: u32, path: &Path, offset: u64, len: u64) -> Result<()> {
        let body = SdkStream::read_from()
            .path(path)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| Error::Storage(format!("reading {}: {e}", path.display())))?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number as i32)
            .content_length(len as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_err("UploadPart", e))?;
        self.parts
            .lock()
            .expect("parts lock")
            .insert(number as i32, out.e_tag().map(str::to_owned));
        Ok(())
    }

    async fn complete(self: Box<Self>) -> Result<()> {
        let parts = self
            .parts
            .lock()
            .expect("parts lock")
            .iter()
            .map(|(n, etag)| {
                CompletedPart::builder()
                    .part_number(*n)
                    .set_e_tag(etag.clone())
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_err("CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &ObjectKey, body: Bytes, content_type: &str) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(body.len() as i64)
            .body(SdkStream::from(body))
            .send()
            .await
            .map_err(|e| s3_err("PutObject", e))?;
        Ok(())
    }

    async fn put_new(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        digest: &ChunkDigest,
    ) -> Result<Option<ObjectInfo>> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(body.len() as i64)
            .metadata(SHA256_METADATA, &digest.sha256)
            .if_none_match("*")
            .body(SdkStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            // 412: something is there. (409 is S3's answer to a write racing another.)
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) =>
            {
                match self.head(key).await? {
                    Some(info) => Ok(Some(info)),
                    None => Err(Error::Storage(format!(
                        "PutObject {key}: refused as existing, then not found"
                    ))),
                }
            }
            Err(e) => Err(s3_err("PutObject", e)),
        }
    }

    async fn list_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<Listed>> {
        let max = max.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_start_after(after.map(str::to_owned))
            .max_keys(max.min(1000) as i32)
            .into_paginator()
            .send();
        while out.len() < max
            && let Some(page) = pages.next().await
        {
            let page = page.map_err(|e| s3_err("ListObjectsV2", e))?;
            out.extend(page.contents().iter().filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                })
            }));
        }
        out.truncate(max);
        Ok(out)
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Err(Error::NotFound);
            }
            Err(e) => return Err(s3_err("GetObject", e)),
        };
        let reading = Reading {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.as_str().to_owned(),
            etag: out.e_tag().map(str::to_owned),
            size: out.content_length().map(|n| n.max(0) as u64),
            body: out.body,
            delivered: 0,
            resumes: BODY_RESUMES,
        };
        Ok(
            futures::stream::unfold(Some(reading), |reading| async move {
                let mut r = reading?;
                match r.next().await {
                    Some(Ok(piece)) => Some((Ok(piece), Some(r))),
                    Some(Err(e)) => Some((Err(e), None)),
                    None => None,
                }
            })
            .boxed(),
        )
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                sha256: out.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(s3_err("HeadObject", e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| s3_err("DeleteObject", e))?;
        Ok(())
    }

    async fn begin_upload(
        &self,
        key: &ObjectKey,
        content_type: &str,
    ) -> Result<Box<dyn PartUpload>> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| s3_err("CreateMultipartUpload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| Error::Storage("CreateMultipartUpload returned no upload id".into()))?
            .to_owned();
        Ok(Box::new(S3Upload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.as_str().to_owned(),
            upload_id,
            parts: Default::default(),
        }))
    }

    async fn abort_stale_uploads(&self, age: Duration) -> Result<u32> {
        let before = SystemTime::now() - age;
        let mut aborted = 0;
        let (mut key_marker, mut id_marker) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_err("ListMultipartUploads", e))?;
            for upload in page.uploads() {
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                let (Some(key), Some(id), Some(started)) =
                    (upload.key(), upload.upload_id(), started)
                else {
                    continue;
                };
                if started < before {
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await
                        .map_err(|e| s3_err("AbortMultipartUpload", e))?;
                    aborted += 1;
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
        }
    }

    async fn presign(
        &self,
        key: &ObjectKey,
        op: Presign<'_>,
        ttl: Duration,
    ) -> Result<PresignedUrl> {
        let config = PresigningConfig::expires_in(ttl)
            .map_err(|e| Error::Internal(format!("presign lifetime: {e}")))?;
        let expires_at = SystemTime::now() + ttl;
        let request = match op {
            Presign::Put { size, sha256 } => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .set_content_length(size.map(|s| s as i64))
                .set_checksum_sha256(sha256.map(Sha256Checksum::base64))
                .set_metadata(sha256.map(|c| [(SHA256_METADATA.to_owned(), c.hex())].into()))
                .presigned(config)
                .await
                .map_err(|e| s3_err("presigning PutObject", e))?,
            Presign::Get {
                file_name,
                content_type,
            } => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .response_content_disposition(format!("attachment; filename=\"{file_name}\""))
                .response_content_type(content_type)
                .presigned(config)
                .await
                .map_err(|e| s3_err("presigning GetObject", e))?,
        };
        // The client sends the body, and with it its length: only the other headers are its to
        // set.
        let headers = request
            .headers()
            .filter(|(name, _)| {
                !["host", "content-length"].contains(&name.to_ascii_lowercase().as_str())
            })
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(PresignedUrl {
            url: request.uri().to_owned(),
            method: match op {
                Presign::Put { .. } => "PUT",
                Presign::Get { .. } => "GET",
            },
            expires_at,
            headers,
        })
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| s3_err("HeadBucket", e))?;
        Ok(())
    }
}
