//! Wiring: build the adapters a [`Config`] asks for, and serve the router until shutdown.

use std::future::Future;
use std::sync::Arc;

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
use crate::notify::{Hub, Notifier, RedisNotifier};
use crate::queue::{ChannelQueue, MergeJob, MergeQueue, RedisQueue};
use crate::service::Recordings;
use crate::store::{FsStore, ObjectStore, S3Store, UrlSigner};

/// Where this instance's merge workers take jobs from.
pub enum Jobs {
    /// The in-process channel of the embedded mode.
    Local(UnboundedReceiver<MergeJob>),
    /// The Redis Stream shared by every instance.
    Stream(Arc<RedisQueue>),
}

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
            Jobs::Local(rx) => tokio::spawn(run_workers(self.merger, rx, workers)),
            Jobs::Stream(q) => tokio::spawn(run_stream_workers(self.merger, q, workers)),
        };
        (self.state, self.router)
    }
}

pub async fn build(config: &Config) -> Result<App> {
    let ffmpeg = Ffmpeg::locate(config.merge.ffmpeg_path.as_deref())?;
    info!(ffmpeg = %ffmpeg.path().display(), "merge: ffmpeg");
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
            (Arc::new(S3Store::connect(s3).await), None)
        }
    };
    type Adapters = (
        Arc<dyn Coordinator>,
        Arc<dyn MergeQueue>,
        Arc<dyn Notifier>,
        Jobs,
    );
    let (coord, queue, notifier, jobs): Adapters = match &config.redis_url {
        Some(url) => {
            info!("coordination and merge queue: Redis");
            let consumer = format!(
                "{}-{}",
                std::process::id(),
                hex::encode(random_bytes::<4>())
            );
            let prefix = &config.redis_prefix;
            let queue =
                Arc::new(RedisQueue::connect(url, prefix, consumer, config.merge.lease).await?);
            (
                Arc::new(RedisCoordinator::connect(url, prefix, config.recording_ttl).await?),
                queue.clone(),
                Arc::new(RedisNotifier::connect(url, prefix, config.recording_ttl).await?),
                Jobs::Stream(queue),
            )
        }
        None => {
            warn!("REDIS_URL is unset: in-process coordination, single instance only");
            let (queue, rx) = ChannelQueue::new();
            (
                Arc::new(MemoryCoordinator::new()),
                Arc::new(queue),
                Arc::new(Hub::new()),
                Jobs::Local(rx),
            )
        }
    };
    let merger = Arc::new(Merger::new(
        store.clone(),
        coord.clone(),
        notifier.clone(),
        MergeSettings {
            ffmpeg,
            work_dir: config.merge.work_dir.clone(),
            keep_chunks: config.merge.keep_chunks,
        },
        config.limits.presign_ttl,
    ));
    let recordings = Arc::new(Recordings::new(
        store,
        coord,
        queue,
        notifier,
        config.limits.clone(),
    ));
    let state = AppState {
        recordings,
        files,
        web_dir: config.web_dir.as_deref().map(Arc::from),
    };
    Ok(App {
        router: router(state.clone()),
        state,
        jobs,
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
