//! Wiring: build the adapters a [`Config`] asks for, and serve the router until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

use crate::auth::Auth;
use crate::config::{Config, StorageConfig};
use crate::coord::{Coordinator, MemoryCoordinator, RedisCoordinator};
use crate::domain::random_bytes;
use crate::error::{Error, Result};
use crate::http::{AppState, router};
use crate::merge::{Ffmpeg, MergeSettings, Merger, Stopping, run_stream_workers, run_workers};
use crate::metrics::Metrics;
use crate::notify::{ApiGatewayNotifier, Hub, Notifier, RedisNotifier};
use crate::queue::{ChannelQueue, LocalJob, MergeQueue, RedisQueue, SqsQueue};
use crate::records::Records;
use crate::service::Recordings;
use crate::shutdown::{self, Shutdown, Trigger};
use crate::store::{FsStore, ObjectStore, S3Store, UrlSigner};
use crate::sweep::Sweeper;
use crate::webhook::{MemoryOutbox, Outbox, RedisOutbox, SqsOutbox, Webhooks};

/// Where this instance's merge workers take jobs from.
pub enum Jobs {
    /// The in-process channel of the embedded mode.
    Local(UnboundedReceiver<LocalJob>),
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
        let aws = aws(config).await;
        let (store, files) = storage(config, aws.as_ref()).await?;
        let Coordination {
            coord,
            notifier,
            gateway,
            queue,
            jobs,
            outbox,
        } = coordination(config, aws.as_ref()).await?;
        let metrics = Arc::new(Metrics::new());
        let webhooks = Arc::new(Webhooks::new(
            config.webhooks.clone(),
            outbox,
            metrics.clone(),
        ));
        let records = Arc::new(Records::new(
            store.clone(),
            coord.clone(),
            queue,
            webhooks,
            metrics,
            config.limits.clone(),
        ));
        let recordings = Arc::new(Recordings::new(
            records,
            notifier.clone(),
            Auth::new(&config.auth),
            config.rates,
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
        self.state_until(Shutdown::never())
    }

    /// The transports' state, their sessions ending at `shutdown`.
    pub fn state_until(&self, shutdown: Shutdown) -> AppState {
        AppState {
            recordings: self.recordings.clone(),
            files: self.files.clone(),
            web_dir: self.config.web_dir.as_deref().map(Arc::from),
            shutdown,
            origins: self.config.cors_allowed_origins.clone(),
            trusted_proxies: Arc::new(self.config.trusted_proxies.clone()),
            request_timeout: self.config.request_timeout,
        }
    }

    pub fn router(&self) -> Router {
        router(self.state())
    }

    /// Where each change in a recording's life is announced to the app's server.
    pub fn webhooks(&self) -> Arc<Webhooks> {
        self.recordings.records().webhooks().clone()
    }

    /// The sweeper, over the same record and notifier.
    pub fn sweeper(&self) -> Arc<Sweeper> {
        Arc::new(Sweeper::new(
            self.recordings.records().clone(),
            self.notifier.clone(),
            self.config.sweep.clone(),
        ))
    }

    /// The merge engine, with the ffmpeg it runs (an error names what is missing).
    pub fn merger(&self) -> Result<Arc<Merger>> {
        let ffmpeg = Ffmpeg::locate(self.config.merge.ffmpeg_path.as_deref())?;
        info!(ffmpeg = %ffmpeg.path().display(), "merge: ffmpeg");
        let merge = &self.config.merge;
        Ok(Arc::new(Merger::new(
            self.recordings.records().clone(),
            self.notifier.clone(),
            MergeSettings {
                ffmpeg,
                work_dir: merge.work_dir.clone(),
                keep_chunks: merge.keep_chunks,
                max_deliveries: merge.max_deliveries,
                lease: merge.lease,
            },
        )))
    }
}

/// The object store `config` names; the filesystem one is also returned as such, since the
/// app serves its signed URLs. `aws` is loaded when the storage is S3.
pub async fn storage(
    config: &Config,
    aws: Option<&SdkConfig>,
) -> Result<(Arc<dyn ObjectStore>, Option<Arc<FsStore>>)> {
    Ok(match &config.storage {
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
            let sdk = aws.expect("loaded for S3");
            (Arc::new(S3Store::new(sdk, s3)), None)
        }
    })
}

/// The AWS SDK's configuration, when anything in `config` uses AWS.
pub async fn aws(config: &Config) -> Option<SdkConfig> {
    match uses_aws(config) {
        true => Some(crate::aws::sdk_config(config.aws_region.as_deref()).await),
        false => None,
    }
}

struct Coordination {
    coord: Arc<dyn Coordinator>,
    notifier: Arc<dyn Notifier>,
    gateway: Option<Arc<ApiGatewayNotifier>>,
    queue: Arc<dyn MergeQueue>,
    jobs: Jobs,
    outbox: Arc<dyn Outbox>,
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
            outbox: Arc::new(MemoryOutbox::default()),
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
    let coord = RedisCoordinator::connect(url, prefix, ttl).await?;
    let outbox: Arc<dyn Outbox> = match &serverless.webhook_queue_url {
        Some(queue_url) => {
            info!(%queue_url, "webhook outbox: SQS");
            let sdk = aws.expect("loaded for SQS");
            let endpoint = serverless.sqs_endpoint.as_deref();
            Arc::new(SqsOutbox::new(sdk, queue_url, endpoint))
        }
        None => Arc::new(RedisOutbox::new(coord.connection(), prefix)),
    };
    Ok(Coordination {
        outbox,
        coord: Arc::new(coord),
        notifier,
        gateway,
        queue,
        jobs,
    })
}

fn uses_aws(config: &Config) -> bool {
    matches!(config.storage, StorageConfig::S3(_))
        || config.serverless.merge_queue_url.is_some()
        || config.serverless.webhook_queue_url.is_some()
        || config.serverless.apigw_management_endpoint.is_some()
}

/// Everything `screenrec serve` runs: the router, this instance's merge workers and its sweeper,
/// all stopping at one shutdown.
pub struct App {
    pub state: AppState,
    pub router: Router,
    pub jobs: Jobs,
    pub merger: Arc<Merger>,
    pub sweeper: Arc<Sweeper>,
    pub webhooks: Arc<Webhooks>,
    trigger: Trigger,
    shutdown: Shutdown,
}

impl App {
    /// Start this instance's merge workers and sweeper, for as long as the process runs.
    pub fn spawn_workers(self, workers: usize) -> (AppState, Router) {
        let stopping = Stopping {
            shutdown: Shutdown::never(),
            grace: Duration::ZERO,
        };
        tokio::spawn(self.sweeper.clone().run(Shutdown::never().fired_owned()));
        tokio::spawn(self.webhooks.clone().run(Shutdown::never()));
        tokio::spawn(workers_of(self.jobs, self.merger, workers, stopping));
        (self.state, self.router)
    }

    /// `screenrec serve`: serve on `listener` until `signal`. Then take no new work, finish the
    /// requests in flight, give the merges in flight `grace` to finish, and hand back the rest
    /// to the other instances: a rolling restart loses nothing.
    pub async fn run(
        self,
        listener: TcpListener,
        workers: usize,
        grace: Duration,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let stopping = Stopping {
            shutdown: self.shutdown.clone(),
            grace,
        };
        let sweeping = tokio::spawn(
            self.sweeper
                .clone()
                .run(self.shutdown.clone().fired_owned()),
        );
        let merging = tokio::spawn(workers_of(self.jobs, self.merger, workers, stopping));
        let delivering = tokio::spawn(self.webhooks.clone().run(self.shutdown.clone()));
        let trigger = self.trigger;
        serve(listener, self.router, async move {
            signal.await;
            info!(
                grace_s = grace.as_secs(),
                "stopping: no new work; finishing what is in flight"
            );
            trigger.fire();
        })
        .await?;
        let _ = merging.await;
        let _ = sweeping.await;
        let _ = delivering.await;
        info!("stopped");
        Ok(())
    }
}

/// This instance's merge worker pool for `jobs`, until `stopping`.
async fn workers_of(jobs: Jobs, merger: Arc<Merger>, workers: usize, stopping: Stopping) {
    match jobs {
        Jobs::Local(rx) => run_workers(merger, rx, workers, stopping).await,
        Jobs::Stream(q) => run_stream_workers(merger, q, workers, stopping).await,
        Jobs::External => info!("merge jobs go to SQS; no merge workers here"),
    }
}

pub async fn build(config: &Config) -> Result<App> {
    let core = Core::connect(config).await?;
    let merger = core.merger()?;
    let (trigger, shutdown) = shutdown::channel();
    Ok(App {
        router: router(core.state_until(shutdown.clone())),
        state: core.state_until(shutdown.clone()),
        sweeper: core.sweeper(),
        webhooks: core.webhooks(),
        jobs: core.jobs,
        merger,
        trigger,
        shutdown,
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
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| Error::Internal(format!("server failed: {e}")))
}
