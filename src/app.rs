//! Wiring: build the adapters a [`Config`] asks for, and serve the router until shutdown.

use std::future::Future;
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

use crate::config::{Config, StorageConfig};
use crate::coord::{Coordinator, MemoryCoordinator, RedisCoordinator};
use crate::domain::random_bytes;
use crate::error::{Error, Result};
use crate::http::{AppState, router};
use crate::merge::{Ffmpeg, MergeSettings, Merger, run_stream_workers, run_workers};
use crate::notify::{ApiGatewayNotifier, Hub, Notifier, RedisNotifier};
use crate::queue::{ChannelQueue, MergeJob, MergeQueue, RedisQueue, SqsQueue};
use crate::service::Recordings;
use crate::store::{FsStore, ObjectStore, S3Store, UrlSigner};

/// Where this instance's merge workers take jobs from.
pub enum Jobs {
    /// The in-process channel of the embedded mode.
    Local(UnboundedReceiver<MergeJob>),
    /// The Redis Stream shared by every instance.
    Stream(Arc<RedisQueue>),
    /// SQS: the merge function consumes the queue, not this process.
    External,
}

/// The adapters a [`Config`] asks for, connected, and the use cases over them. Each way of
/// running takes what it needs: `screenrec serve` all of it, each Lambda function a part.
pub struct Core {
    pub config: Config,
    pub store: Arc<dyn ObjectStore>,
    /// The filesystem store, when the app serves its signed URLs itself.
    pub files: Option<Arc<FsStore>>,
    pub coord: Arc<dyn Coordinator>,
    pub notifier: Arc<dyn Notifier>,
    /// Serverless: the API Gateway notifier, whose connection registry the ws function keeps.
    pub gateway: Option<Arc<ApiGatewayNotifier>>,
    pub recordings: Arc<Recordings>,
    pub jobs: Jobs,
}

impl Core {
    pub async fn connect(config: &Config) -> Result<Self> {
        let aws = match uses_aws(config) {
            true => Some(crate::aws::sdk_config(config.aws_region.as_deref()).await),
            false => None,
        };
        let (store, files): (Arc<dyn ObjectStore>, Option<Arc<FsStore>>) = match &config.storage {
            StorageConfig::Fs { dir } => {
                let secret = match &config.url_signing_secret {
                    Some(s) => s.as_bytes().to_vec(),
                    None => random_bytes::<32>().to_vec(),
                };
                let fs = Arc::new(
                    FsStore::open(dir, UrlSigner::new(secret), &config.public_base_url).await?,
                );
                info!(dir = %dir.display(), "storage: local directory");
                (fs.clone(), Some(fs))
            }
            StorageConfig::S3(s3) => {
                info!(bucket = %s3.bucket, endpoint = ?s3.endpoint, "storage: S3");
                let sdk = aws.as_ref().expect("loaded for S3");
                (Arc::new(S3Store::new(sdk, s3)), None)
            }
        };
        let Coordination {
            coord,
            notifier,
            gateway,
            queue,
            jobs,
        } = coordination(config, aws.as_ref()).await?;
        let recordings = Arc::new(Recordings::new(
            store.clone(),
            coord.clone(),
            queue,
            notifier.clone(),
            config.limits.clone(),
        ));
        Ok(Self {
            config: config.clone(),
            store,
            files,
            coord,
            notifier,
            gateway,
            recordings,
            jobs,
        })
    }

    pub fn state(&self) -> AppState {
        AppState {
            recordings: self.recordings.clone(),
            files: self.files.clone(),
            web_dir: self.config.web_dir.as_deref().map(Arc::from),
        }
    }

    pub fn router(&self) -> Router {
        router(self.state())
    }

    /// The merge engine, with the ffmpeg it runs (an error names what is missing).
    pub fn merger(&self) -> Result<Arc<Merger>> {
        let ffmpeg = Ffmpeg::locate(self.config.merge.ffmpeg_path.as_deref())?;
        info!(ffmpeg = %ffmpeg.path().display(), "merge: ffmpeg");
        let merge = &self.config.merge;
        Ok(Arc::new(Merger::new(
            self.store.clone(),
            self.coord.clone(),
            self.notifier.clone(),
            MergeSettings {
                ffmpeg,
                work_dir: merge.work_dir.clone(),
                keep_chunks: merge.keep_chunks,
                max_deliveries: merge.max_deliveries,
            },
            self.config.limits.presign_ttl,
        )))
    }
}

struct Coordination {
    coord: Arc<dyn Coordinator>,
    notifier: Arc<dyn Notifier>,
    gateway: Option<Arc<ApiGatewayNotifier>>,
    queue: Arc<dyn MergeQueue>,
    jobs: Jobs,
}

/// In process without Redis; with it, Redis for state, and the Redis Stream or SQS for merge
/// jobs, and Redis pub/sub or API Gateway for events.
async fn coordination(config: &Config, aws: Option<&SdkConfig>) -> Result<Coordination> {
    let Some(url) = &config.redis_url else {
        warn!("REDIS_URL is unset: in-process coordination, single instance only");
        let (queue, rx) = ChannelQueue::new();
        return Ok(Coordination {
            coord: Arc::new(MemoryCoordinator::new()),
            notifier: Arc::new(Hub::new()),
            gateway: None,
            queue: Arc::new(queue),
            jobs: Jobs::Local(rx),
        });
    };
    let (prefix, ttl) = (&config.redis_prefix, config.recording_ttl);
    let serverless = &config.serverless;
    let (queue, jobs): (Arc<dyn MergeQueue>, Jobs) = match &serverless.merge_queue_url {
        Some(queue_url) => {
            info!(%queue_url, "merge queue: SQS");
            let sdk = aws.expect("loaded for SQS");
            let sqs = SqsQueue::new(sdk, queue_url, serverless.sqs_endpoint.as_deref());
            (Arc::new(sqs), Jobs::External)
        }
        None => {
            info!("coordination and merge queue: Redis");
            let consumer = format!(
                "{}-{}",
                std::process::id(),
                hex::encode(random_bytes::<4>())
            );
            let queue =
                Arc::new(RedisQueue::connect(url, prefix, consumer, config.merge.lease).await?);
            (queue.clone(), Jobs::Stream(queue))
        }
    };
    let (notifier, gateway): (Arc<dyn Notifier>, _) = match &serverless.apigw_management_endpoint {
        Some(endpoint) => {
            info!(%endpoint, "notifications: API Gateway Management API");
            let sdk = aws.expect("loaded for API Gateway");
            let gateway =
                Arc::new(ApiGatewayNotifier::connect(sdk, url, prefix, ttl, endpoint).await?);
            (gateway.clone(), Some(gateway))
        }
        None => (
            Arc::new(RedisNotifier::connect(url, prefix, ttl).await?),
            None,
        ),
    };
    Ok(Coordination {
        coord: Arc::new(RedisCoordinator::connect(url, prefix, ttl).await?),
        notifier,
        gateway,
        queue,
        jobs,
    })
}

fn uses_aws(config: &Config) -> bool {
    matches!(config.storage, StorageConfig::S3(_))
        || config.serverless.merge_queue_url.is_some()
        || config.serverless.apigw_management_endpoint.is_some()
}

/// Everything `screenrec serve` runs: the router and this instance's merge workers.
pub struct App {
    pub state: AppState,
    pub router: Router,
    pub jobs: Jobs,
    pub merger: Arc<Merger>,
}

impl App {
    /// Start this instance's merge workers on the queued jobs.
    pub fn spawn_workers(self, workers: usize) -> (AppState, Router) {
        match self.jobs {
            Jobs::Local(rx) => {
                tokio::spawn(run_workers(self.merger, rx, workers));
            }
            Jobs::Stream(q) => {
                tokio::spawn(run_stream_workers(self.merger, q, workers));
            }
            Jobs::External => info!("merge jobs go to SQS; no merge workers here"),
        }
        (self.state, self.router)
    }
}

pub async fn build(config: &Config) -> Result<App> {
    let core = Core::connect(config).await?;
    let merger = core.merger()?;
    Ok(App {
        router: core.router(),
        state: core.state(),
        jobs: core.jobs,
        merger,
    })
}

/// Serve `router` on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    info!(%addr, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("server failed: {e}")))
}
