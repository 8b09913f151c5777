//! The sweeper: what no request will come to do. One instance at a time runs it (a lease in the
//! coordinator); each pass is idempotent and logs what it did.
//!
//! - A recording stuck in `stopping` or `merging` with no merge holding it (its job was lost,
//!   or never queued) is queued again.
//! - A recording left unfinished (no chunk and no stop for `ABANDON_AFTER_SECS`: a tab closed)
//!   is stopped with the chunks it has from 0 on and merged, marked `abandoned`, because the
//!   person who closed the tab wants the video; or, with `ABANDONED=delete`, deleted.
//! - Recordings older than `RETENTION_DAYS` are deleted, every object and all their state.
//! - Multipart uploads begun over a day ago and never completed are aborted, and chunk objects
//!   that no recording owns (no manifest, untouched for a day) are deleted.
//!
//! The unfinished recordings are found through their `active/{id}` markers, a listing of their
//! own, so a pass does not read every recording there is.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::{debug, info, warn};

use crate::coord::{RecordingMeta, StateUpdate, now_ms};
use crate::domain::{ObjectKey, RecordingId, RecordingState};
use crate::error::Result;
use crate::notify::{EventKind, Notifier};
use crate::queue::MergeJob;
use crate::records::Records;
use crate::webhook::WebhookType;

/// What becomes of an abandoned recording (`ABANDONED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandoned {
    Merge,
    Delete,
}

#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// `SWEEP_INTERVAL_SECS`: between passes.
    pub interval: Duration,
    /// `ABANDON_AFTER_SECS`: a recording with no chunk and no stop for this long is abandoned.
    pub abandon_after: Duration,
    pub abandoned: Abandoned,
    /// `RETENTION_DAYS`: recordings older than this are deleted; `None` keeps them for ever.
    pub retention: Option<Duration>,
    /// A stopped recording no merge has held for this long is queued again.
    pub stuck_after: Duration,
}

/// Leftovers older than this are swept: multipart uploads, chunks without a recording.
const LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);
/// The sweeper's lease, renewed every third of it while a pass runs.
const LEASE: Duration = Duration::from_secs(60);

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub unfinished: u32,
    pub requeued: u32,
    pub abandoned_merged: u32,
    pub abandoned_deleted: u32,
    pub expired_deleted: u32,
    pub uploads_aborted: u32,
    pub orphan_chunks_deleted: u32,
}

pub struct Sweeper {
    records: Arc<Records>,
    notifier: Arc<dyn Notifier>,
    settings: SweepSettings,
    holder: String,
}

impl Sweeper {
    pub fn new(
        records: Arc<Records>,
        notifier: Arc<dyn Notifier>,
        settings: SweepSettings,
    ) -> Self {
        Self {
            records,
            notifier,
            settings,
            holder: hex::encode(crate::domain::random_bytes::<8>()),
        }
    }

    /// Sweep every `SWEEP_INTERVAL_SECS` (the first pass at once, which also picks up what a
    /// restart left) until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut shutdown => return,
            }
            match self.sweep_once().await {
                Ok(Some(report)) => info!(?report, "sweep done"),
                Ok(None) => debug!("another instance sweeps"),
                Err(e) => warn!(error = %e, "sweep failed; the next one starts over"),
            }
        }
    }

    /// One pass, if this instance gets the lease (`None` when another holds it).
    pub async fn sweep_once(&self) -> Result<Option<SweepReport>> {
        let coord = self.records.coordinator();
        if !coord.lease("sweeper", &self.holder, LEASE).await? {
            return Ok(None);
        }
        let renewing = async {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                match coord.lease("sweeper", &self.holder, LEASE).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => warn!(error = %e, "sweeper lease not renewed"),
                }
            }
        };
        let swept = tokio::select! {
            swept = self.sweep() => swept,
            () = renewing => {
                warn!("sweeper lease lost to another instance; pass stopped");
                return Ok(None);
            }
        };
        coord.release("sweeper", &self.holder).await?;
        swept.map(Some)
    }

    async fn sweep(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        self.unfinished(&mut report).await?;
        if let Some(retention) = self.settings.retention {
            self.expire(retention, &mut report).await?;
        }
        match self.records.store().abort_stale_uploads(LEFTOVER_AGE).await {
            Ok(n) => report.uploads_aborted = n,
            Err(e) => warn!(error = %e, "stale uploads not aborted"),
        }
        self.orphans(&mut report).await?;
        Ok(report)
    }

    /// Stuck merges queued again, abandoned recordings stopped or deleted, stale markers gone.
    async fn unfinished(&self, report: &mut SweepReport) -> Result<()> {
        let store = self.records.store();
        let now = now_ms();
        for listed in store.list(ObjectKey::ACTIVE_PREFIX).await? {
            let Some(id) = ObjectKey::recording_of(&listed.key) else {
                continue;
            };
            let Some(meta) = self.records.meta(&id).await? else {
                store.delete(&ObjectKey::active(&id)).await?;
                continue;
            };
            report.unfinished += 1;
            let idle = Duration::from_millis(now.saturating_sub(meta.updated_at_ms));
            match meta.state {
                RecordingState::Ready | RecordingState::Failed => {
                    self.records.finished(&meta).await?;
                    report.unfinished -= 1;
                }
                RecordingState::Recording if idle >= self.settings.abandon_after => {
                    self.abandon(&meta, report).await?;
                }
                RecordingState::Stopping | RecordingState::Merging
                    if idle >= self.settings.stuck_after
                        && !self
                            .records
                            .coordinator()
                            .held(&format!("merge:{id}"))
                            .await? =>
                {
                    info!(recording_id = %id, state = %meta.state, "stuck; merge queued again");
                    self.enqueue(&id).await?;
                    report.requeued += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A recording left unfinished: its chunks from 0 on are merged (`abandoned`), or it is
    /// deleted (`ABANDONED=delete`, or when it has no chunk 0).
    async fn abandon(&self, meta: &RecordingMeta, report: &mut SweepReport) -> Result<()> {
        let id = &meta.id;
        let chunks = self.records.coordinator().chunks(id).await?;
        let count = (0..)
            .take_while(|i| chunks.get(i).is_some_and(|c| c.stored))
            .count() as u32;
        if self.settings.abandoned == Abandoned::Delete || count == 0 {
            info!(recording_id = %id, "abandoned; deleted");
            self.announce(meta, "delete", None).await;
            self.records.delete(id).await?;
            report.abandoned_deleted += 1;
            return Ok(());
        }
        // Merged as a salvage: a closed tab's last chunk can end inside a frame.
        let update = StateUpdate {
            chunk_count: Some(count),
            abandoned: true,
            salvage: true,
            ..StateUpdate::default()
        };
        let coord = self.records.coordinator();
        let stopped = coord
            .transition(
                id,
                RecordingState::Recording,
                RecordingState::Stopping,
                update,
            )
            .await?;
        if stopped {
            info!(recording_id = %id, chunk_count = count, "abandoned; its chunks are merged");
            let stopped = self.records.record(id).await?;
            self.announce(&stopped, "merge", Some(count)).await;
            self.enqueue(id).await?;
            report.abandoned_merged += 1;
        }
        Ok(())
    }

    /// Tell subscribers and the app's server.
    async fn announce(&self, meta: &RecordingMeta, action: &str, chunk_count: Option<u32>) {
        let id = &meta.id;
        let webhooks = self.records.webhooks();
        webhooks.announce(WebhookType::Abandoned, meta).await;
        let kind = EventKind::RecordingAbandoned {
            action: action.to_owned(),
            chunk_count,
        };
        if let Err(e) = self.notifier.publish(id, kind).await {
            warn!(recording_id = %id, error = %e, "recordingAbandoned not published");
        }
    }

    async fn enqueue(&self, id: &RecordingId) -> Result<()> {
        let job = MergeJob {
            recording_id: id.to_string(),
        };
        self.records.queue().enqueue(job).await
    }

    /// Recordings made more than `retention` ago: every object and all their state deleted.
    async fn expire(&self, retention: Duration, report: &mut SweepReport) -> Result<()> {
        let before = now_ms().saturating_sub(retention.as_millis() as u64);
        let listed = self
            .records
            .store()
            .list(ObjectKey::RECORDINGS_PREFIX)
            .await?;
        let old: BTreeSet<RecordingId> = listed
            .iter()
            .filter_map(|l| ObjectKey::recording_of(&l.key))
            .filter(|id| id.created_ms() < before)
            .collect();
        for id in old {
            info!(recording_id = %id, "past retention; deleted");
            self.records.delete(&id).await?;
            report.expired_deleted += 1;
        }
        Ok(())
    }

    /// Chunks of no recording (no manifest) left untouched for a day: deleted.
    async fn orphans(&self, report: &mut SweepReport) -> Result<()> {
        let store = self.records.store();
        let before = SystemTime::now() - LEFTOVER_AGE;
        let listed = store.list(ObjectKey::CHUNKS_PREFIX).await?;
        let mut owners: Vec<(RecordingId, bool)> = Vec::new();
        for l in &listed {
            let Some(id) = ObjectKey::recording_of(&l.key) else {
                continue;
            };
            let old = l.modified < before;
            match owners.last_mut() {
                Some((last, all_old)) if *last == id => *all_old &= old,
                _ => owners.push((id, old)),
            }
        }
        for (id, all_old) in owners {
            if !all_old || self.records.read(&id).await?.is_some() {
                continue;
            }
            let keys: Vec<ObjectKey> = listed
                .iter()
                .filter(|l| ObjectKey::recording_of(&l.key).as_ref() == Some(&id))
                .filter_map(|l| ObjectKey::parse(&l.key).ok())
                .collect();
            info!(recording_id = %id, chunks = keys.len(), "chunks of no recording; deleted");
            report.orphan_chunks_deleted += keys.len() as u32;
            self.records.delete_all(keys).await?;
        }
        Ok(())
    }
}
