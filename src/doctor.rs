//! `screenrec doctor`: each thing the service depends on, checked the way the service uses it,
//! and said in one line: the storage (a put, a get and a delete), the coordinator (Redis, and
//! whether it keeps an append-only file), ffmpeg (and the encoders the merge uses) and the
//! webhook endpoints (that they resolve to addresses deliveries may go to).

use std::time::Duration;

use bytes::Bytes;

use crate::app;
use crate::config::Config;
use crate::domain::{ChunkDigest, ObjectKey};
use crate::error::{Error, Result};
use crate::merge::Ffmpeg;
use crate::store::read_all;
use crate::webhook::is_public;

/// The longest one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but not as it should in production.
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// What one check found.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<4}  {}: {}",
            self.verdict.as_str(),
            self.name,
            self.detail
        )
    }
}

fn check(name: &'static str, outcome: Result<(Verdict, String)>) -> Check {
    match outcome {
        Ok((verdict, detail)) => Check {
            name,
            verdict,
            detail,
        },
        Err(e) => Check {
            name,
            verdict: Verdict::Fail,
            detail: format!("{}: {e}", e.code()),
        },
    }
}

async fn within<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CHECK_TIMEOUT, f)
        .await
        .map_err(|_| Error::Internal(format!("{what}: no answer within {CHECK_TIMEOUT:?}")))?
}

/// Every check, in order.
pub async fn run(config: &Config) -> Vec<Check> {
    vec![
        check("storage", within("storage", storage(config)).await),
        check("coordination", within("redis", coordination(config)).await),
        check("ffmpeg", within("ffmpeg", ffmpeg(config)).await),
        check("webhooks", within("webhooks", webhooks(config)).await),
    ]
}

async fn storage(config: &Config) -> Result<(Verdict, String)> {
    let aws = app::aws(config).await;
    let (store, _) = app::storage(config, aws.as_ref()).await?;
    let key = ObjectKey::probe();
    let body = Bytes::from_static(b"screenrec doctor");
    store.put(&key, body.clone(), "text/plain").await?;
    let read = read_all(store.as_ref(), &key, None).await;
    let deleted = store.delete(&key).await;
    if read? != body {
        return Err(Error::Storage(format!("{key} read back other bytes")));
    }
    deleted?;
    let digest = ChunkDigest::of(&body);
    let conditional = store
        .put_new(&key, body.clone(), "text/plain", &digest)
        .await;
    let again = store.put_new(&key, body, "text/plain", &digest).await;
    store.delete(&key).await?;
    let where_ = match &config.storage {
        crate::config::StorageConfig::Fs { dir } => format!("directory {}", dir.display()),
        crate::config::StorageConfig::S3(s3) => format!("S3 bucket {}", s3.bucket),
    };
    match (conditional?, again?) {
        (None, Some(_)) => Ok((
            Verdict::Ok,
            format!("{where_}: put, get, delete and a conditional put"),
        )),
        _ => Ok((
            Verdict::Fail,
            format!(
                "{where_}: a second If-None-Match put was not refused; chunks could be overwritten"
            ),
        )),
    }
}

async fn coordination(config: &Config) -> Result<(Verdict, String)> {
    let Some(url) = &config.redis_url else {
        return Ok((
            Verdict::Ok,
            "in process (no REDIS_URL): one instance only".into(),
        ));
    };
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    match aof.get(1).map(String::as_str) {
        Some("yes") => Ok((Verdict::Ok, "Redis answers; append-only file on".into())),
        Some(_) => Ok((
            Verdict::Warn,
            "Redis answers, but keeps no append-only file (appendonly no): a restart loses recent indices and leases; screenrec rebuilds from the store, but set appendonly yes".into(),
        )),
        None => Ok((
            Verdict::Ok,
            "Redis answers (its persistence settings are not readable: CONFIG is disabled)".into(),
        )),
    }
}

async fn ffmpeg(config: &Config) -> Result<(Verdict, String)> {
    let ffmpeg = Ffmpeg::locate(config.merge.ffmpeg_path.as_deref())?;
    let out = tokio::process::Command::new(ffmpeg.path())
        .args(["-hide_banner", "-encoders"])
        .output()
        .await
        .map_err(|e| Error::FfmpegMissing(format!("{}: {e}", ffmpeg.path().display())))?;
    let encoders = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = ["mjpeg"]
        .into_iter()
        .filter(|e| !encoders.split_whitespace().any(|w| w == *e))
        .collect();
    let path = ffmpeg.path().display();
    match missing.as_slice() {
        [] => Ok((Verdict::Ok, format!("{path} runs, with the mjpeg encoder"))),
        missing => Ok((
            Verdict::Warn,
            format!("{path} lacks the {missing:?} encoder: recordings get no poster"),
        )),
    }
}

async fn webhooks(config: &Config) -> Result<(Verdict, String)> {
    let settings = &config.webhooks;
    let urls: Vec<&String> = settings
        .url
        .iter()
        .chain(settings.tenant_urls.values())
        .collect();
    if urls.is_empty() {
        return Ok((Verdict::Ok, "none configured".into()));
    }
    for url in &urls {
        let parsed = url::Url::parse(url).map_err(|e| Error::Internal(format!("{url}: {e}")))?;
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let found: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Internal(format!("{url}: {host} does not resolve: {e}")))?
            .map(|a| a.ip())
            .collect();
        if !settings.allow_private && !found.iter().any(|ip| is_public(*ip)) {
            return Ok((
                Verdict::Fail,
                format!(
                    "{url}: {host} resolves to {found:?}, no public address: every delivery would be refused (WEBHOOK_ALLOW_PRIVATE=true allows it)"
                ),
            ));
        }
    }
    Ok((
        Verdict::Ok,
        format!(
            "{} endpoint(s) resolve to addresses deliveries may reach",
            urls.len()
        ),
    ))
}
