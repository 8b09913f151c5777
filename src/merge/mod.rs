//! The merge: a stopped recording's chunks become one verified, seekable video, remuxed by the
//! bundled ffmpeg without re-encoding.
//!
//! [`plan`] decides (pure), [`ffmpeg`] runs, [`source`] reads chunks, and [`Merger`] is the use
//! case: take the job, merge, upload, record the outcome. [`run_workers`] is the embedded
//! worker pool.

pub mod ffmpeg;
pub mod frames;
pub mod plan;
pub mod poster;
pub mod salvage;
pub mod source;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{Instrument, debug, error, info, info_span, warn};

pub use self::ffmpeg::{Ffmpeg, Merged, OutputInfo, merge};
pub use self::source::{ChunkSource, LocalChunks, StoredChunks};
use self::upload::GrowingUpload;
use crate::coord::{Coordinator, Failure, RecordingMeta, StateUpdate};
use crate::domain::{Container, ObjectKey, OutputFormat, RecordingId, RecordingState};
use crate::error::{Error, Result};
use crate::notify::{EventKind, Notifier};
use crate::queue::{Delivery, LocalJob, MergeJob, RedisQueue};
use crate::records::Records;
use crate::shutdown::Shutdown;
use crate::store::ObjectStore;
use crate::webhook::WebhookType;

#[derive(Clone, Debug)]
pub struct MergeSettings {
    pub ffmpeg: Ffmpeg,
    /// Where merges write their temporary files (chunks for the concat demuxer, the output).
    pub work_dir: PathBuf,
    /// Keep the chunk objects after a successful merge.
    pub keep_chunks: bool,
    /// Deliveries of a job before a transient failure becomes the recording's failure.
    pub max_deliveries: u32,
    /// How long a merge's lease on its recording lasts unless renewed (`MERGE_LEASE_SECS`).
    pub lease: Duration,
}

/// What became of a merge job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// The recording cannot be merged; it is now `failed` with this code.
    Failed(&'static str),
    /// Nothing to do: the recording was already ready or failed.
    AlreadyDone,
    /// Another worker is merging the recording (it holds the lease); the job is retried.
    Busy,
    /// Its owner deleted the recording while it merged; the merge stopped.
    Deleted,
}

/// `mergeProgress` goes out in steps of this many percent.
const PROGRESS_STEP: u8 = 5;

/// How long the deliveries of an asynchronously invoked job are counted (Lambda retries within
/// hours at most).
const DELIVERY_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub struct Merger {
    /// Who this worker is, in the merge leases it holds.
    holder: String,
    records: Arc<Records>,
    store: Arc<dyn ObjectStore>,
    coord: Arc<dyn Coordinator>,
    notifier: Arc<dyn Notifier>,
    settings: MergeSettings,
}

impl Merger {
    pub fn new(
        records: Arc<Records>,
        notifier: Arc<dyn Notifier>,
        settings: MergeSettings,
    ) -> Self {
        Self {
            holder: hex::encode(crate::domain::random_bytes::<8>()),
            store: records.store().clone(),
            coord: records.coordinator().clone(),
            records,
            notifier,
            settings,
        }
    }

    /// Tell subscribers; the recording's state is already recorded, so a failure is logged.
    async fn notify(&self, id: &RecordingId, kind: EventKind) {
        if let Err(e) = self.notifier.publish(id, kind).await {
            warn!(recording_id = %id, error = %e, "event not published");
        }
    }

    /// Merge one recording, holding its merge lease throughout, so that a retried stop or a
    /// job delivered again never runs two merges of one recording at once: while another
    /// worker holds it, this one does nothing (`Busy`). The lease is renewed every third of its
    /// length; one lost (a stall longer than the lease) stops this merge.
    pub async fn run(&self, id: &RecordingId) -> Result<Outcome> {
        let lease = format!("merge:{id}");
        let ttl = self.settings.lease;
        if !self.coord.lease(&lease, &self.holder, ttl).await? {
            info!(recording_id = %id, "another worker is merging it");
            return Ok(Outcome::Busy);
        }
        let renewing = async {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match self.coord.lease(&lease, &self.holder, ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => warn!(recording_id = %id, error = %e, "merge lease not renewed"),
                }
            }
        };
        // A deletion takes this lease to say: stop now.
        let cancel = crate::records::cancel_lease(id);
        let deleted = async {
            loop {
                if let Ok(true) = self.coord.held(&cancel).await {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            outcome = self.merge_leased(id) => outcome,
            () = renewing => {
                warn!(recording_id = %id, "merge lease lost to another worker; stopped");
                Ok(Outcome::Busy)
            }
            () = deleted => {
                info!(recording_id = %id, "deleted by its owner; merge stopped");
                Ok(Outcome::Deleted)
            }
        };
        if let Err(e) = self.coord.release(&lease, &self.holder).await {
            warn!(recording_id = %id, error = %e, "merge lease not released; it expires");
        }
        let (name, merged) = match &outcome {
            Ok(Outcome::Ready) => ("ready", true),
            Ok(Outcome::Failed(_)) => ("failed", true),
            Ok(Outcome::AlreadyDone) => ("already_done", false),
            Ok(Outcome::Busy) => ("busy", false),
            Ok(Outcome::Deleted) => ("deleted", false),
            Err(_) => ("retried", false),
        };
        let took = merged.then(|| started.elapsed());
        self.records.metrics().merge(name, took);
        outcome
    }

    /// Merge one recording, its lease held. Idempotent: a job for a finished recording does
    /// nothing, and a job taken over from a dead worker (`merging`) starts again and writes the
    /// same key. A transient error (storage, Redis) is returned so the queue retries; any
    /// other failure marks the recording `failed` with its code.
    async fn merge_leased(&self, id: &RecordingId) -> Result<Outcome> {
        let meta = self
            .records
            .meta(id)
            .await?
            .ok_or(Error::RecordingNotFound)?;
        match meta.state {
            RecordingState::Ready => {
                // The worker that merged it may have died before it cleaned up.
                self.finish(id).await;
                return Ok(Outcome::AlreadyDone);
            }
            RecordingState::Failed => return Ok(Outcome::AlreadyDone),
            RecordingState::Recording => {
                return Err(Error::NotReady {
                    state: meta.state.as_str(),
                });
            }
            RecordingState::Stopping => {
                if !self
                    .coord
                    .transition(
                        id,
                        RecordingState::Stopping,
                        RecordingState::Merging,
                        StateUpdate::default(),
                    )
                    .await?
                {
                    return Box::pin(self.merge_leased(id)).await;
                }
            }
            RecordingState::Merging => info!(recording_id = %id, "taking over a merge"),
        }
        let count = meta
            .chunk_count
            .ok_or_else(|| Error::Internal("stopped recording has no chunk count".into()))?;
        match self
            .merge_and_upload(id, count, meta.salvage, meta.format)
            .await
        {
            Ok(output) => {
                let update = StateUpdate {
                    output: Some(output.to_string()),
                    ..StateUpdate::default()
                };
                let ready = self
                    .coord
                    .transition(id, RecordingState::Merging, RecordingState::Ready, update)
                    .await;
                match ready {
                    // The coordinator lost the recording while it merged: it is rebuilt from the
                    // store (still `stopping` there, with its job queued again) and merged again.
                    Err(Error::RecordingNotFound) | Ok(false) => {
                        if let Err(e) = self.records.meta(id).await {
                            warn!(recording_id = %id, error = %e, "not rebuilt; the sweeper will");
                        }
                        return Err(Error::Coordination(
                            "the recording's state changed during its merge; it is merged again"
                                .into(),
                        ));
                    }
                    ready => {
                        ready?;
                    }
                }
                // The durable record first, then the news: whoever hears of it can read it.
                let ready = match self.record(id).await {
                    Some(ready) => Some(ready),
                    // Not recorded in the store (the sweeper will): ready all the same.
                    None => self.coord.meta(id).await.ok().flatten(),
                };
                if let Some(ready) = ready {
                    let view = self.records.view(&ready).await;
                    let webhooks = self.records.webhooks();
                    webhooks
                        .announce_view(WebhookType::Ready, &ready.owner.tenant, &view)
                        .await;
                    match (view.download_url, view.expires_at) {
                        (Some(download_url), Some(expires_at)) => {
                            let kind = EventKind::RecordingReady {
                                download_url,
                                poster_url: view.poster_url,
                                expires_at,
                                duration_s: output["durationS"].as_f64().unwrap_or_default(),
                                size_bytes: output["sizeBytes"].as_u64().unwrap_or_default(),
                                container: output["container"].as_str().unwrap_or_default().into(),
                                salvaged: view.salvaged,
                                lost: view.lost,
                                abandoned: meta.abandoned,
                            };
                            self.notify(id, kind).await;
                        }
                        _ => warn!(recording_id = %id, "no download URL to announce"),
                    }
                }
                self.remove_chunks(id).await;
                info!(recording_id = %id, output = %output, "recording ready");
                Ok(Outcome::Ready)
            }
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                warn!(recording_id = %id, code = e.code(), error = %e, "merge failed");
                self.fail(id, &e).await?;
                Ok(Outcome::Failed(e.code()))
            }
        }
    }

    /// Deliver a job that came with no count of its deliveries (a Lambda asynchronous invoke,
    /// which Lambda retries on its own): the count is kept in the coordinator, so those retries
    /// count against `MERGE_MAX_DELIVERIES` like any other.
    pub async fn deliver_counted(&self, job: &MergeJob) -> bool {
        let name = format!("deliveries:{}", job.recording_id);
        let delivery = match self.coord.count(&name, DELIVERY_WINDOW).await {
            Ok(n) => n,
            Err(e) => {
                warn!(?job, error = %e, "delivery not counted; taken as the first");
                1
            }
        };
        self.deliver(job, delivery).await
    }

    /// Run delivery number `delivery` (from 1) of a merge job: the retry policy every queue
    /// shares. `true`: the job is finished (merged, failed for good, or nothing to do) and may be
    /// acknowledged; `false`: a transient error leaves it for a later delivery.
    pub async fn deliver(&self, job: &MergeJob, delivery: u64) -> bool {
        let Ok(id) = RecordingId::parse(&job.recording_id) else {
            error!(?job, "merge job with an invalid recording id dropped");
            return true;
        };
        let last = delivery >= u64::from(self.settings.max_deliveries);
        async {
            match contain_panic(self.run(&id)).await {
                // Another worker holds the merge: this job waits its turn, in case that merge
                // fails; the last delivery gives up on it (the holder is alive and renewing).
                Ok(Outcome::Busy) => {
                    info!("another worker is merging it; this job is retried later");
                    last
                }
                Ok(outcome) => {
                    info!(?outcome, "merge job done");
                    true
                }
                Err(e) if e.is_transient() && !last => {
                    warn!(error = %e, "merge attempt failed; it will be retried");
                    false
                }
                Err(e) => {
                    error!(error = %e, "merge failed");
                    if let Err(e2) = self.fail(&id, &e).await {
                        error!(error = %e2, "could not record the failure");
                    }
                    true
                }
            }
        }
        .instrument(info_span!("merge", recording_id = %id, delivery))
        .await
    }

    /// Give up a merge stopped by a shutdown: its lease goes, so another worker may take it at
    /// once.
    pub async fn hand_back(&self, job: &MergeJob) {
        let lease = format!("merge:{}", job.recording_id);
        if let Err(e) = self.coord.release(&lease, &self.holder).await {
            warn!(recording_id = %job.recording_id, error = %e, "merge lease not released; it expires");
        }
    }

    /// Mark the recording failed with `e` (used too when retries of a transient error run out).
    pub async fn fail(&self, id: &RecordingId, e: &Error) -> Result<()> {
        let update = StateUpdate {
            failure: Some(Failure {
                code: e.code().to_owned(),
                message: e.to_string(),
            }),
            ..StateUpdate::default()
        };
        for from in [RecordingState::Merging, RecordingState::Stopping] {
            if self
                .coord
                .transition(id, from, RecordingState::Failed, update.clone())
                .await?
            {
                let kind = EventKind::RecordingError {
                    code: e.code().to_owned(),
                    message: e.to_string(),
                };
                self.notify(id, kind).await;
                if let Some(failed) = self.record(id).await {
                    let webhooks = self.records.webhooks();
                    webhooks.announce(WebhookType::Failed, &failed).await;
                }
                return Ok(());
            }
        }
        self.record(id).await;
        Ok(())
    }

    async fn merge_and_upload(
        &self,
        id: &RecordingId,
        count: u32,
        salvage: bool,
        format: OutputFormat,
    ) -> Result<serde_json::Value> {
        let source = StoredChunks {
            store: self.store.clone(),
            id: id.clone(),
            chunks: self.coord.chunks(id).await?,
            count,
        };
        tokio::fs::create_dir_all(&self.settings.work_dir)
            .await
            .map_err(|e| Error::Internal(format!("creating merge work dir: {e}")))?;
        let work = tempfile::Builder::new()
            .prefix(&format!("merge-{id}-"))
            .tempdir_in(&self.settings.work_dir)
            .map_err(|e| Error::Internal(format!("creating merge work dir: {e}")))?;
        let prepared = ffmpeg::prepare(&source, salvage, format).await?;
        let (output, layout) = (prepared.output, prepared.layout);
        let container = output.container;
        let key = ObjectKey::output(id, container);
        let out = ffmpeg::output_path(work.path(), container);
        let content_type = ffmpeg::content_type(container);
        let mut upload =
            GrowingUpload::new(self.store.begin_upload(&key, content_type).await?, &out);
        // The upload follows the remux, except for MP4, whose faststart pass rewrites the
        // whole file at the end.
        let (done_tx, done_rx) = watch::channel(false);
        // Progress goes through a channel to one publisher, so events keep their order.
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<u8>();
        let progress = move |pct: u8| {
            if pct.is_multiple_of(PROGRESS_STEP) {
                let _ = progress_tx.send(pct);
            }
        };
        let publishing = async {
            while let Some(percent) = progress_rx.recv().await {
                self.notify(id, EventKind::MergeProgress { percent }).await;
            }
        };
        let started = std::time::Instant::now();
        let ffmpeg = &self.settings.ffmpeg;
        let (remuxed, followed, ()) = tokio::join!(
            async {
                // Owned here, so the progress channel closes when the remux ends.
                let progress = progress;
                let r =
                    ffmpeg::remux(ffmpeg, &source, prepared, work.path(), &out, &progress).await;
                let _ = done_tx.send(true);
                r
            },
            async {
                if container == Container::Mp4 {
                    Ok(())
                } else {
                    upload.follow(done_rx).await
                }
            },
            publishing
        );
        let remuxed = match (remuxed, followed) {
            (Ok(remuxed), Ok(())) => remuxed,
            (Err(e), _) | (_, Err(e)) => {
                upload.abort().await;
                return Err(e);
            }
        };
        let remuxed_s = started.elapsed().as_secs_f64();
        // Check while the last parts go up (and cut the poster from the file while it is
        // here); complete only if the output is whole.
        let described = async {
            let info = ffmpeg::describe(ffmpeg, &out, output, layout, &remuxed).await?;
            let poster = match info.video_frames {
                0 => None,
                _ => {
                    self.cut_poster(id, &out, info.duration_s, work.path())
                        .await
                }
            };
            Ok((info, poster))
        };
        let (info, upload) = tokio::join!(described, upload.finish());
        let (info, poster) = match (info, upload) {
            (Ok(info), Ok(upload)) => {
                // Every part is sent and checked: the files go now, so that the merge does not
                // hold the output's disk space and page cache while the store assembles it.
                match tokio::task::spawn_blocking(move || work.close()).await {
                    Ok(Ok(())) => {}
                    outcome => warn!(recording_id = %id, ?outcome, "merge work dir not removed"),
                }
                let completing = std::time::Instant::now();
                upload.complete().await?;
                debug!(
                    complete_s = completing.elapsed().as_secs_f64(),
                    "multipart upload completed"
                );
                info
            }
            (Err(e), Ok(upload)) => {
                upload.abort().await;
                return Err(e);
            }
            (_, Err(e)) => return Err(e),
        };
        self.notify(id, EventKind::MergeProgress { percent: 100 })
            .await;
        info!(
            remux_s = remuxed_s,
            total_s = started.elapsed().as_secs_f64(),
            size_bytes = info.size_bytes,
            "merged and uploaded"
        );
        let mut output = serde_json::to_value(&info).expect("serializable");
        output["key"] = json!(key.as_str());
        if let Some((poster, jpeg)) = poster {
            let poster_key = ObjectKey::poster(id);
            match self.store.put(&poster_key, jpeg, "image/jpeg").await {
                Ok(()) => {
                    output["poster"] = json!({
                        "key": poster_key.as_str(),
                        "width": poster.width,
                        "height": poster.height,
                    });
                }
                Err(e) => warn!(recording_id = %id, error = %e, "poster not stored"),
            }
        }
        Ok(output)
    }

    /// The poster of the merged video `out`, read into memory: `None` (and a warning) if none
    /// could be cut, which leaves the recording without one but does not fail it.
    async fn cut_poster(
        &self,
        id: &RecordingId,
        out: &std::path::Path,
        duration_s: f64,
        dir: &std::path::Path,
    ) -> Option<(poster::Poster, bytes::Bytes)> {
        let cut = async {
            let poster = poster::extract(&self.settings.ffmpeg, out, duration_s, dir).await?;
            let jpeg = tokio::fs::read(&poster.path)
                .await
                .map_err(|e| Error::Storage(format!("{}: {e}", poster.path.display())))?;
            Ok::<_, Error>((poster, bytes::Bytes::from(jpeg)))
        };
        cut.await
            .inspect_err(|e| warn!(recording_id = %id, error = %e, "no poster"))
            .ok()
    }

    /// After success: the durable manifest, and the chunks removed unless kept. Idempotent, so
    /// a job delivered again after its worker died here finishes the work.
    async fn finish(&self, id: &RecordingId) {
        self.record(id).await;
        self.remove_chunks(id).await;
    }

    /// Write the durable manifest from the current state, and, once the recording is finished,
    /// remove its `active/` marker (the sweeper would, otherwise). A failure is logged.
    async fn record(&self, id: &RecordingId) -> Option<RecordingMeta> {
        let meta = match self.records.record(id).await {
            Ok(meta) => meta,
            Err(e) => {
                warn!(recording_id = %id, error = %e, "manifest not updated");
                return None;
            }
        };
        if let Err(e) = self.records.finished(&meta).await {
            warn!(recording_id = %id, error = %e, "active markers not removed");
        }
        Some(meta)
    }

    /// Delete a merged recording's chunks, unless they are kept.
    async fn remove_chunks(&self, id: &RecordingId) {
        if self.settings.keep_chunks {
            return;
        }
        // Every chunk object the recording has, past its count too (an abandoned recording's).
        let removed = async {
            let listed = self.store.list(&ObjectKey::chunks_prefix(id)).await?;
            let keys = listed.iter().filter_map(|l| ObjectKey::parse(&l.key).ok());
            self.records.delete_all(keys.collect()).await
        };
        if let Err(e) = removed.await {
            warn!(recording_id = %id, error = %e, "chunks not deleted");
        }
    }
}

/// `merge`, with a panic turned into an `internal` error: a bug met by one recording fails
/// that recording (after the usual retries) and leaves the worker serving the others.
async fn contain_panic<T>(merge: impl Future<Output = Result<T>>) -> Result<T> {
    std::panic::AssertUnwindSafe(merge)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(format!("the merge panicked: {reason}")))
        })
}

/// How the worker pools stop: at `shutdown` they take no new job, and the merges in flight
/// get `grace` to finish; what is still running then is handed back.
#[derive(Clone, Debug)]
pub struct Stopping {
    pub shutdown: Shutdown,
    pub grace: Duration,
}

impl Stopping {
    /// Resolves `grace` after the shutdown fires.
    async fn deadline(&self) {
        self.shutdown.fired().await;
        tokio::time::sleep(self.grace).await;
    }
}

/// The embedded worker pool: up to `workers` merges at once from the in-process queue. At
/// shutdown the merges in flight get the grace, then stop; the recordings stay `merging`, and
/// the sweeper's first pass after the restart queues them again from their record.
pub async fn run_workers(
    merger: Arc<Merger>,
    mut jobs: mpsc::UnboundedReceiver<LocalJob>,
    workers: usize,
    stopping: Stopping,
) {
    let slots = Arc::new(Semaphore::new(workers.max(1)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let job = tokio::select! {
            job = jobs.recv() => job,
            () = stopping.shutdown.fired() => None,
        };
        let Some(job) = job else { break };
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let merger = merger.clone();
        running.spawn(async move {
            let _permit = permit;
            // Counted in the queue's depth until it is dropped here.
            let local = job;
            for delivery in 1.. {
                if merger.deliver(&local.job, delivery).await {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1 << delivery.min(5))).await;
            }
        });
    }
    let finishing = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(stopping.grace, finishing)
        .await
        .is_err()
    {
        warn!(
            merges = running.len(),
            "merges still running at the end of the grace; stopped"
        );
        running.shutdown().await;
    }
}

/// The HA worker pool: `workers` loops on the Redis Stream, each holding its job by heartbeat.
/// Returns once every worker has stopped after the shutdown.
pub async fn run_stream_workers(
    merger: Arc<Merger>,
    queue: Arc<RedisQueue>,
    workers: usize,
    stopping: Stopping,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        tasks.spawn(stream_worker(
            merger.clone(),
            queue.clone(),
            stopping.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn stream_worker(merger: Arc<Merger>, queue: Arc<RedisQueue>, stopping: Stopping) {
    const BLOCK: Duration = Duration::from_secs(2);
    let mut reader = loop {
        if stopping.shutdown.is_fired() {
            return;
        }
        match queue.reader(BLOCK).await {
            Ok(r) => break r,
            Err(e) => {
                warn!(error = %e, "merge worker cannot reach Redis; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        let next = tokio::select! {
            next = queue.next(&mut reader, BLOCK) => next,
            () = stopping.shutdown.fired() => return,
        };
        match next {
            Ok(Some(delivery)) => handle(&merger, &queue, delivery, &stopping).await,
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "reading merge jobs failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One delivery from the stream, held by heartbeat while it runs; left pending (for another
/// worker after the lease) when it is to be retried; handed back at once (its entry made
/// claimable, its recording's merge lease released) when the shutdown's grace runs out.
async fn handle(merger: &Merger, queue: &RedisQueue, delivery: Delivery, stopping: &Stopping) {
    let Delivery {
        entry_id,
        job,
        deliveries,
    } = delivery;
    let heartbeat = async {
        let mut tick = tokio::time::interval(queue.lease() / 3);
        loop {
            tick.tick().await;
            if let Err(e) = queue.heartbeat(&entry_id).await {
                warn!(recording_id = %job.recording_id, error = %e, "merge heartbeat failed");
            }
        }
    };
    let done = tokio::select! {
        done = merger.deliver(&job, deliveries) => Some(done),
        () = heartbeat => unreachable!("the heartbeat never ends"),
        () = stopping.deadline() => None,
    };
    match done {
        Some(true) => {
            if let Err(e) = queue.ack(&entry_id).await {
                warn!(recording_id = %job.recording_id, error = %e, "merge job not acknowledged; it will run again, harmlessly");
            }
        }
        Some(false) => {}
        None => {
            warn!(recording_id = %job.recording_id, "shutting down: merge handed back");
            if let Err(e) = queue.hand_back(&entry_id).await {
                warn!(recording_id = %job.recording_id, error = %e, "merge job not handed back; it is taken over after the lease");
            }
            merger.hand_back(&job).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChunkIndex;
    use crate::queue::ChannelQueue;
    use crate::service::testing::with_recording;

    #[tokio::test]
    async fn a_job_delivered_again_after_ready_removes_the_chunks_its_worker_left() {
        let (queue, _jobs) = ChannelQueue::new();
        let f = with_recording(Arc::new(queue), 3).await;
        let (store, coord, id) = (f.store.clone(), f.coord.clone(), f.id.clone());
        f.recordings.stop(&f.meta, 3).await.unwrap();
        // A worker merged it and died before it cleaned up.
        for (from, to) in [
            (RecordingState::Stopping, RecordingState::Merging),
            (RecordingState::Merging, RecordingState::Ready),
        ] {
            assert!(
                coord
                    .transition(&id, from, to, StateUpdate::default())
                    .await
                    .unwrap()
            );
        }
        let settings = MergeSettings {
            ffmpeg: Ffmpeg::locate(Some(std::path::Path::new("/bin/true"))).unwrap(),
            work_dir: f.dir.path().join("work"),
            keep_chunks: false,
            max_deliveries: 3,
            lease: Duration::from_secs(60),
        };
        let merger = Merger::new(f.recordings.records().clone(), f.notifier.clone(), settings);
        assert_eq!(merger.run(&id).await.unwrap(), Outcome::AlreadyDone);
        for i in 0..3 {
            let key = ObjectKey::chunk(&id, ChunkIndex::new(i));
            assert_eq!(store.head(&key).await.unwrap(), None, "chunk {i}");
        }
        assert!(
            store
                .head(&ObjectKey::manifest(&id))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_panicking_merge_becomes_an_internal_error() {
        let e = contain_panic(async {
            if true {
                panic!("a bug");
            }
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), "internal");
        assert!(e.to_string().contains("a bug"), "{e}");
        assert_eq!(contain_panic(async { Ok(7) }).await.unwrap(), 7);
    }
}
