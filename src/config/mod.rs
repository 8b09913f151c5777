//! Configuration from environment variables, validated once at start-up. Every variable is
//! documented in `.env.example`; a wrong value names the variable in its error.

pub mod doc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{ApiKeys, AuthConfig, JwtKeys, JwtSettings};
use crate::domain::Rate;
use crate::http::guard::{Origins, TrustedProxies};
use crate::service::{Limits, RateLimits};
use crate::store::S3Settings;
use crate::sweep::{Abandoned, SweepSettings};
use crate::webhook::{Sender, WebhookSecret, WebhookSettings};

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// A local directory; the app serves signed URLs itself.
    Fs {
        dir: PathBuf,
    },
    S3(S3Settings),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub bind: SocketAddr,
    pub public_base_url: String,
    pub storage: StorageConfig,
    /// Unset: in-process coordination, a single instance only.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one server.
    pub redis_prefix: String,
    pub limits: Limits,
    /// Secret for the filesystem store's signed URLs; random per process when unset.
    pub url_signing_secret: Option<String>,
    pub recording_ttl: Duration,
    pub log_format: LogFormat,
    pub merge: MergeConfig,
    /// `WEB_DIR`: serve the demo page from this directory (for working on `web/`).
    pub web_dir: Option<PathBuf>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `us-east-1` when only endpoint overrides are set.
    pub aws_region: Option<String>,
    pub serverless: ServerlessConfig,
    pub sweep: SweepSettings,
    /// `SHUTDOWN_GRACE_SECS`: on SIGTERM, how long merges in flight may take to finish before
    /// they are handed back to another instance.
    pub shutdown_grace: Duration,
    /// `AUTH_MODE` and its keys.
    pub auth: AuthConfig,
    /// `CORS_ALLOWED_ORIGINS`: who may call from a browser on another origin.
    pub cors_allowed_origins: Origins,
    /// `REQUEST_TIMEOUT_SECS`: the longest a request (body included, WebSockets aside) takes.
    pub request_timeout: Duration,
    /// `RATE_LIMIT_CREATES_PER_MIN` and `RATE_LIMIT_REQUESTS_PER_SEC`.
    pub rates: RateLimits,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `WEBHOOK_*`: the app's server told of each change in a recording's life.
    pub webhooks: WebhookSettings,
}

/// The serverless mode's adapters (each needs `REDIS_URL`).
#[derive(Clone, Debug, Default)]
pub struct ServerlessConfig {
    /// `MERGE_QUEUE_URL`: stop sends merge jobs to this SQS queue instead of the Redis Stream;
    /// the merge function consumes it.
    pub merge_queue_url: Option<String>,
    /// `WEBHOOK_QUEUE_URL`: webhook deliveries wait in this SQS queue instead of Redis; the
    /// merge function consumes it.
    pub webhook_queue_url: Option<String>,
    /// `SQS_ENDPOINT`: another SQS endpoint (LocalStack).
    pub sqs_endpoint: Option<String>,
    /// `APIGW_MANAGEMENT_ENDPOINT`: events go to API Gateway WebSocket connections through this
    /// Management API endpoint (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
    pub apigw_management_endpoint: Option<String>,
}

#[derive(Clone, Debug)]
pub struct MergeConfig {
    /// `FFMPEG_PATH`; unset: the bundled build.
    pub ffmpeg_path: Option<PathBuf>,
    /// Merges one instance runs at once.
    pub workers: usize,
    pub work_dir: PathBuf,
    pub keep_chunks: bool,
    /// With Redis: how long a merge job may go without its worker's heartbeat before another
    /// worker takes it over.
    pub lease: Duration,
    /// Deliveries of a merge job before a transient failure becomes the recording's failure
    /// (with SQS: set it to the queue's `maxReceiveCount`, so the recording is marked failed
    /// on the last delivery rather than left for the dead-letter queue).
    pub max_deliveries: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Build from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let err = |var: &'static str, message: String| ConfigError { var, message };

        let bind: SocketAddr = parse(var("BIND_ADDR"), "127.0.0.1:8080", "BIND_ADDR", |v| {
            v.parse()
                .map_err(|e| format!("{v:?} is not host:port ({e})"))
        })?;
        let public_base_url = match var("PUBLIC_BASE_URL") {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                u.trim_end_matches('/').to_owned()
            }
            Some(u) => {
                return Err(err(
                    "PUBLIC_BASE_URL",
                    format!("{u:?} must start with http:// or https://"),
                ));
            }
            None => format!("http://{bind}"),
        };
        // One region for every AWS client; endpoint overrides alone (LocalStack, MinIO) get
        // us-east-1, which such servers accept.
        let aws_region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| {
                (var("S3_ENDPOINT").is_some() || var("SQS_ENDPOINT").is_some())
                    .then(|| "us-east-1".to_owned())
            });
        let storage = match var("STORAGE").as_deref().unwrap_or("fs") {
            "fs" => StorageConfig::Fs {
                dir: PathBuf::from(var("STORAGE_DIR").unwrap_or_else(|| "./data".into())),
            },
            "s3" => {
                let bucket = var("S3_BUCKET")
                    .ok_or_else(|| err("S3_BUCKET", "required when STORAGE=s3".into()))?;
                if !(3..=63).contains(&bucket.len())
                    || !bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    })
                {
                    return Err(err(
                        "S3_BUCKET",
                        format!("{bucket:?} is not a valid bucket name"),
                    ));
                }
                StorageConfig::S3(S3Settings {
                    bucket,
                    region: aws_region.clone(),
                    endpoint: url_var(&var, "S3_ENDPOINT")?,
                    force_path_style: parse(
                        var("S3_FORCE_PATH_STYLE"),
                        "false",
                        "S3_FORCE_PATH_STYLE",
                        parse_bool,
                    )?,
                })
            }
            other => {
                return Err(err("STORAGE", format!("{other:?} is not one of: fs, s3")));
            }
        };
        let redis_url = var("REDIS_URL");
        if let Some(u) = &redis_url
            && !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://"))
        {
            return Err(err(
                "REDIS_URL",
                "must start with redis://, rediss:// or unix://".into(),
            ));
        }
        let redis_prefix = var("REDIS_PREFIX").unwrap_or_else(|| "screenrec:".into());
        if redis_prefix.len() > 64 || redis_prefix.contains(['{', '}', ' ']) {
            return Err(err(
                "REDIS_PREFIX",
                "must be at most 64 characters, without braces or spaces".into(),
            ));
        }
        let limits = Limits {
            max_chunk_bytes: parse(var("MAX_CHUNK_BYTES"), "16777216", "MAX_CHUNK_BYTES", |v| {
                ranged(v, 1024, 1 << 30)
            })?,
            max_chunks: parse(var("MAX_CHUNKS"), "100000", "MAX_CHUNKS", |v| {
                ranged(v, 1, 10_000_000).map(|n| n as u32)
            })?,
            presign_ttl: Duration::from_secs(parse(
                var("PRESIGN_TTL_SECS"),
                "900",
                "PRESIGN_TTL_SECS",
                |v| ranged(v, 1, 604_800),
            )?),
            max_recording_bytes: quota_var(&var, "MAX_RECORDING_BYTES")?,
            max_recording_secs: quota_var(&var, "MAX_RECORDING_SECS")?,
            max_active_recordings: quota_var(&var, "MAX_ACTIVE_RECORDINGS")?
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
            max_tenant_bytes: quota_var(&var, "MAX_TENANT_BYTES")?,
        };
        let url_signing_secret = var("URL_SIGNING_SECRET");
        if url_signing_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(err(
                "URL_SIGNING_SECRET",
                "must be at least 32 characters".into(),
            ));
        }
        let recording_ttl = Duration::from_secs(parse(
            var("RECORDING_TTL_SECS"),
            "604800",
            "RECORDING_TTL_SECS",
            |v| ranged(v, 60, 31_536_000),
        )?);
        let log_format = match var("LOG_FORMAT").as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(err(
                    "LOG_FORMAT",
                    format!("{other:?} is not one of: text, json"),
                ));
            }
        };
        let merge = MergeConfig {
            ffmpeg_path: var("FFMPEG_PATH").map(PathBuf::from),
            workers: parse(var("MERGE_WORKERS"), "2", "MERGE_WORKERS", |v| {
                ranged(v, 1, 64).map(|n| n as usize)
            })?,
            work_dir: var("MERGE_WORK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("screenrec")),
            keep_chunks: parse(var("KEEP_CHUNKS"), "false", "KEEP_CHUNKS", parse_bool)?,
            lease: Duration::from_secs(parse(
                var("MERGE_LEASE_SECS"),
                "60",
                "MERGE_LEASE_SECS",
                |v| ranged(v, 1, 3600),
            )?),
            max_deliveries: parse(
                var("MERGE_MAX_DELIVERIES"),
                "5",
                "MERGE_MAX_DELIVERIES",
                |v| ranged(v, 1, 1000).map(|n| n as u32),
            )?,
        };
        let serverless = ServerlessConfig {
            merge_queue_url: url_var(&var, "MERGE_QUEUE_URL")?,
            webhook_queue_url: url_var(&var, "WEBHOOK_QUEUE_URL")?,
            sqs_endpoint: url_var(&var, "SQS_ENDPOINT")?,
            apigw_management_endpoint: url_var(&var, "APIGW_MANAGEMENT_ENDPOINT")?,
        };
        for (name, set) in [
            ("MERGE_QUEUE_URL", serverless.merge_queue_url.is_some()),
            ("WEBHOOK_QUEUE_URL", serverless.webhook_queue_url.is_some()),
            (
                "APIGW_MANAGEMENT_ENDPOINT",
                serverless.apigw_management_endpoint.is_some(),
            ),
        ] {
            if set && redis_url.is_none() {
                return Err(err(name, "needs REDIS_URL".into()));
            }
        }
        let sweep = SweepSettings {
            interval: Duration::from_secs(parse(
                var("SWEEP_INTERVAL_SECS"),
                "300",
                "SWEEP_INTERVAL_SECS",
                |v| ranged(v, 1, 86_400),
            )?),
            abandon_after: Duration::from_secs(parse(
                var("ABANDON_AFTER_SECS"),
                "3600",
                "ABANDON_AFTER_SECS",
                |v| ranged(v, 1, 31_536_000),
            )?),
            abandoned: match var("ABANDONED").as_deref().unwrap_or("merge") {
                "merge" => Abandoned::Merge,
                "delete" => Abandoned::Delete,
                other => {
                    return Err(err(
                        "ABANDONED",
                        format!("{other:?} is not one of: merge, delete"),
                    ));
                }
            },
            retention: var("RETENTION_DAYS")
                .map(|v| {
                    ranged(&v, 1, 36_500)
                        .map(|days| Duration::from_secs(days * 86_400))
                        .map_err(|message| err("RETENTION_DAYS", message))
                })
                .transpose()?,
            stuck_after: merge.lease * 2,
        };
        let shutdown_grace = Duration::from_secs(parse(
            var("SHUTDOWN_GRACE_SECS"),
            "30",
            "SHUTDOWN_GRACE_SECS",
            |v| ranged(v, 0, 3600),
        )?);
        Ok(Self {
            bind,
            public_base_url,
            storage,
            redis_url,
            redis_prefix,
            limits,
            url_signing_secret,
            recording_ttl,
            log_format,
            merge,
            web_dir: var("WEB_DIR").map(PathBuf::from),
            aws_region,
            serverless,
            sweep,
            shutdown_grace,
            auth: auth_config(&var)?,
            cors_allowed_origins: var("CORS_ALLOWED_ORIGINS")
                .map(|v| Origins::parse(&v))
                .transpose()
                .map_err(|message| err("CORS_ALLOWED_ORIGINS", message))?
                .unwrap_or_default(),
            request_timeout: Duration::from_secs(parse(
                var("REQUEST_TIMEOUT_SECS"),
                "120",
                "REQUEST_TIMEOUT_SECS",
                |v| ranged(v, 1, 3600),
            )?),
            rates: RateLimits {
                creates: rate_var(&var, "RATE_LIMIT_CREATES_PER_MIN", "60", 60)?,
                requests: rate_var(&var, "RATE_LIMIT_REQUESTS_PER_SEC", "50", 1)?,
            },
            trusted_proxies: TrustedProxies::parse(&var("TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|message| err("TRUSTED_PROXIES", message))?,
            webhooks: webhook_settings(&var)?,
        })
    }
}

/// `WEBHOOK_*`: endpoints, their secret and the retry schedule.
fn webhook_settings(
    var: &impl Fn(&'static str) -> Option<String>,
) -> Result<WebhookSettings, ConfigError> {
    let allow_private = parse(
        var("WEBHOOK_ALLOW_PRIVATE"),
        "false",
        "WEBHOOK_ALLOW_PRIVATE",
        parse_bool,
    )?;
    let url = |name: &'static str, v: &str| {
        Sender::check_url(v.trim(), allow_private)
            .map(|_| v.trim().to_owned())
            .map_err(|message| ConfigError { var: name, message })
    };
    let mut tenant_urls = HashMap::new();
    for entry in var("WEBHOOK_TENANT_URLS").unwrap_or_default().split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let (tenant, endpoint) = entry.split_once('=').ok_or_else(|| ConfigError {
            var: "WEBHOOK_TENANT_URLS",
            message: format!("{entry:?} is not tenant=url"),
        })?;
        tenant_urls.insert(
            tenant.trim().to_owned(),
            url("WEBHOOK_TENANT_URLS", endpoint)?,
        );
    }
    let url = var("WEBHOOK_URL")
        .map(|v| url("WEBHOOK_URL", &v))
        .transpose()?;
    let secret = var("WEBHOOK_SECRET")
        .map(|v| WebhookSecret::parse(v.trim()))
        .transpose()
        .map_err(|message| ConfigError {
            var: "WEBHOOK_SECRET",
            message,
        })?;
    if secret.is_none() && (url.is_some() || !tenant_urls.is_empty()) {
        return Err(ConfigError {
            var: "WEBHOOK_SECRET",
            message: format!(
                "required with a webhook URL; a new one, for instance: {}",
                WebhookSecret::generate()
            ),
        });
    }
    Ok(WebhookSettings {
        url,
        tenant_urls,
        secret,
        allow_private,
        retry_min: Duration::from_millis(parse(
            var("WEBHOOK_RETRY_MIN_MS"),
            "5000",
            "WEBHOOK_RETRY_MIN_MS",
            |v| ranged(v, 1, 3_600_000),
        )?),
        retry_for: Duration::from_secs(parse(
            var("WEBHOOK_RETRY_FOR_SECS"),
            "86400",
            "WEBHOOK_RETRY_FOR_SECS",
            |v| ranged(v, 1, 7 * 86_400),
        )?),
        timeout: Duration::from_secs(parse(
            var("WEBHOOK_TIMEOUT_SECS"),
            "10",
            "WEBHOOK_TIMEOUT_SECS",
            |v| ranged(v, 1, 60),
        )?),
        workers: parse(var("WEBHOOK_WORKERS"), "4", "WEBHOOK_WORKERS", |v| {
            ranged(v, 1, 64).map(|n| n as usize)
        })?,
    })
}

/// `AUTH_MODE` (`none`, `api-key`, `jwt`) and the variables each needs.
fn auth_config(var: &impl Fn(&'static str) -> Option<String>) -> Result<AuthConfig, ConfigError> {
    let err = |var: &'static str, message: &str| ConfigError {
        var,
        message: message.to_owned(),
    };
    match var("AUTH_MODE").as_deref().unwrap_or("none") {
        "none" => Ok(AuthConfig::None),
        "api-key" => {
            let keys = var("API_KEYS").ok_or_else(|| {
                err(
                    "API_KEYS",
                    "AUTH_MODE=api-key needs tenant=sha256hex entries (screenrec keygen TENANT)",
                )
            })?;
            ApiKeys::parse(&keys)
                .map(AuthConfig::ApiKeys)
                .map_err(|message| ConfigError {
                    var: "API_KEYS",
                    message,
                })
        }
        "jwt" => {
            let keys = match (var("JWT_SECRET"), url_var(var, "JWT_JWKS_URL")?) {
                (Some(secret), None) if secret.len() >= 32 => JwtKeys::Secret(secret.into_bytes()),
                (Some(_), None) => return Err(err("JWT_SECRET", "must be at least 32 bytes")),
                (None, Some(url)) => JwtKeys::Jwks(url),
                (Some(_), Some(_)) => {
                    return Err(err(
                        "JWT_SECRET",
                        "set JWT_SECRET or JWT_JWKS_URL, not both",
                    ));
                }
                (None, None) => {
                    return Err(err(
                        "JWT_SECRET",
                        "AUTH_MODE=jwt needs JWT_SECRET or JWT_JWKS_URL",
                    ));
                }
            };
            Ok(AuthConfig::Jwt(JwtSettings {
                keys,
                issuer: var("JWT_ISSUER")
                    .ok_or_else(|| err("JWT_ISSUER", "AUTH_MODE=jwt needs the expected issuer"))?,
                audience: var("JWT_AUDIENCE").ok_or_else(|| {
                    err("JWT_AUDIENCE", "AUTH_MODE=jwt needs the expected audience")
                })?,
            }))
        }
        other => Err(ConfigError {
            var: "AUTH_MODE",
            message: format!("{other:?} is not one of: none, api-key, jwt"),
        }),
    }
}

fn parse<T>(
    value: Option<String>,
    default: &str,
    var: &'static str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    f(value.as_deref().unwrap_or(default)).map_err(|message| ConfigError { var, message })
}

/// A quota: a whole number of at least 1; unset, no quota.
fn quota_var(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Option<u64>, ConfigError> {
    var(name)
        .map(|v| ranged(&v, 1, u64::MAX))
        .transpose()
        .map_err(|message| ConfigError { var: name, message })
}

/// A rate limit variable: so many per `period_secs`; 0 turns the limit off.
fn rate_var(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
    default: &str,
    period_secs: u64,
) -> Result<Option<Rate>, ConfigError> {
    let count = parse(var(name), default, name, |v| ranged(v, 0, 1_000_000))?;
    Ok(Rate::new(count as u32, Duration::from_secs(period_secs)))
}

/// An optional `http(s)://` URL variable.
fn url_var(
    var: &impl Fn(&'static str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match var(name) {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => Err(ConfigError {
            var: name,
            message: format!("{u:?} must start with http:// or https://"),
        }),
        v => Ok(v),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true/false)")),
    }
}

fn ranged(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{v:?} must be a whole number from {min} to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let c = config(&[]).unwrap();
        assert!(matches!(c.storage, StorageConfig::Fs { .. }));
        assert!(c.redis_url.is_none());
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.limits.max_chunks, 100_000);
    }

    #[test]
    fn s3_settings() {
        let c = config(&[
            ("STORAGE", "s3"),
            ("S3_BUCKET", "recordings"),
            ("S3_ENDPOINT", "http://127.0.0.1:4566"),
            ("S3_FORCE_PATH_STYLE", "true"),
        ])
        .unwrap();
        let StorageConfig::S3(s3) = c.storage else {
            panic!("not s3")
        };
        assert!(s3.force_path_style);
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("STORAGE", "nfs")], "STORAGE"),
            (vec![("STORAGE", "s3")], "S3_BUCKET"),
            (
                vec![("STORAGE", "s3"), ("S3_BUCKET", "Bad_Bucket")],
                "S3_BUCKET",
            ),
            (
                vec![
                    ("STORAGE", "s3"),
                    ("S3_BUCKET", "okay"),
                    ("S3_ENDPOINT", "x"),
                ],
                "S3_ENDPOINT",
            ),
            (vec![("BIND_ADDR", "nowhere")], "BIND_ADDR"),
            (vec![("MAX_CHUNK_BYTES", "-5")], "MAX_CHUNK_BYTES"),
            (vec![("MAX_CHUNKS", "0")], "MAX_CHUNKS"),
            (vec![("PRESIGN_TTL_SECS", "forever")], "PRESIGN_TTL_SECS"),
            (vec![("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (vec![("URL_SIGNING_SECRET", "short")], "URL_SIGNING_SECRET"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![("MERGE_WORKERS", "0")], "MERGE_WORKERS"),
            (vec![("KEEP_CHUNKS", "maybe")], "KEEP_CHUNKS"),
            (vec![("PUBLIC_BASE_URL", "example.com")], "PUBLIC_BASE_URL"),
            (vec![("ABANDONED", "keep")], "ABANDONED"),
            (vec![("RETENTION_DAYS", "0")], "RETENTION_DAYS"),
            (vec![("SWEEP_INTERVAL_SECS", "soon")], "SWEEP_INTERVAL_SECS"),
        ] {
            let e = config(&pairs).unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
        }
    }
}
