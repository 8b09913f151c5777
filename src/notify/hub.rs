//! In-process notifier for the embedded mode: a version counter and the kept events per
//! recording, and the local fan-out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::fanout::Fanout;
use super::{Event, EventKind, HISTORY, Notifier, Subscription, splice};
use crate::domain::RecordingId;
use crate::error::Result;

/// Recordings whose events the hub keeps; past this, the one that published longest ago is
/// forgotten (its subscribers then start from version 0 again).
const RECORDINGS_KEPT: usize = 4096;

#[derive(Default)]
pub struct Hub {
    log: Mutex<Log>,
    fanout: Fanout,
}

#[derive(Default)]
struct Log {
    /// Last version, kept events, and when (by `clock`) the recording last published.
    recordings: HashMap<RecordingId, (u64, VecDeque<Event>, u64)>,
    clock: u64,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Notifier for Hub {
    async fn publish(&self, id: &RecordingId, kind: EventKind) -> Result<Event> {
        let event = {
            let mut log = self.log.lock().expect("hub lock");
            log.clock += 1;
            let now = log.clock;
            if log.recordings.len() >= RECORDINGS_KEPT && !log.recordings.contains_key(id) {
                let oldest = log
                    .recordings
                    .iter()
                    .min_by_key(|(_, (_, _, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    log.recordings.remove(&oldest);
                }
            }
            let (version, history, at) = log.recordings.entry(id.clone()).or_default();
            *version += 1;
            *at = now;
            let event = Event {
                recording_id: id.to_string(),
                version: *version,
                kind,
            };
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
            // Delivered under the lock, so subscribers see versions in order.
            self.fanout.deliver(&event);
            event
        };
        Ok(event)
    }

    async fn subscribe(&self, id: &RecordingId, after: Option<u64>) -> Result<Subscription> {
        let after = after.unwrap_or(0);
        let log = self.log.lock().expect("hub lock");
        let live = self.fanout.listen(id);
        let backlog = log
            .recordings
            .get(id)
            .map(|(_, h, _)| h.iter().filter(|e| e.version > after).cloned().collect())
            .unwrap_or_default();
        drop(log);
        Ok(splice(backlog, live, after))
    }

    async fn version(&self, id: &RecordingId) -> Result<u64> {
        Ok(self
            .log
            .lock()
            .expect("hub lock")
            .recordings
            .get(id)
            .map_or(0, |(v, _, _)| *v))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn progress(percent: u8) -> EventKind {
        EventKind::MergeProgress { percent }
    }

    #[tokio::test]
    async fn subscribers_get_what_they_missed_then_live_events_in_order() {
        let hub = Hub::new();
        let id = RecordingId::generate();
        for p in 1..=3 {
            hub.publish(&id, progress(p)).await.unwrap();
        }
        let mut sub = hub.subscribe(&id, Some(1)).await.unwrap();
        let versions: Vec<u64> = sub.backlog.iter().map(|e| e.version).collect();
        assert_eq!(versions, [2, 3]);
        hub.publish(&id, progress(4)).await.unwrap();
        assert_eq!(sub.live.next().await.unwrap().version, 4);
        assert_eq!(hub.version(&id).await.unwrap(), 4);
        let other = RecordingId::generate();
        assert!(
            hub.subscribe(&other, None)
                .await
                .unwrap()
                .backlog
                .is_empty()
        );
        assert_eq!(hub.version(&other).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn history_is_capped() {
        let hub = Hub::new();
        let id = RecordingId::generate();
        for n in 0..(HISTORY + 10) {
            hub.publish(&id, progress((n % 100) as u8)).await.unwrap();
        }
        let sub = hub.subscribe(&id, None).await.unwrap();
        assert_eq!(sub.backlog.len(), HISTORY);
        assert_eq!(sub.backlog[0].version, 11);
    }
}
