//! In-process notifier for the embedded mode: a version counter and the kept events per
//! recording, and the local fan-out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::fanout::Fanout;
use super::{Event, EventKind, HISTORY, Notifier, Subscription, splice};
use crate::domain::RecordingId;
use crate::error::Result;

#[derive(Default)]
pub struct Hub {
    log: Mutex<HashMap<RecordingId, (u64, VecDeque<Event>)>>,
    fanout: Fanout,
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
            let (version, history) = log.entry(id.clone()).or_default();
            *version += 1;
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
            .get(id)
            .map(|(_, h)| h.iter().filter(|e| e.version > after).cloned().collect())
            .unwrap_or_default();
        drop(log);
        Ok(splice(backlog, live, after))
    }

    async fn version(&self, id: &RecordingId) -> Result<u64> {
        Ok(self
            .log
            .lock()
            .expect("hub lock")
            .get(id)
            .map_or(0, |(v, _)| *v))
    }
}
