//! Local fan-out of events to this process's subscribers: one broadcast channel per recording
//! that has listeners.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::Event;
use crate::domain::RecordingId;

/// Live events buffered per recording for a slow subscriber. One that falls further behind is
/// cut off (its stream ends) so it never slows the others; it reconnects with its last version.
const LIVE_BUFFER: usize = 256;
/// Channels are dropped when an event finds no listener; past this many, the ones nobody
/// listens to any more are dropped on the next subscription too.
const PRUNE_AT: usize = 1024;

#[derive(Default)]
pub struct Fanout {
    topics: Mutex<HashMap<RecordingId, broadcast::Sender<Event>>>,
}

impl Fanout {
    /// A live stream of the recording's events from now on.
    pub fn listen(&self, id: &RecordingId) -> BoxStream<'static, Event> {
        let mut topics = self.topics.lock().expect("fanout lock");
        if topics.len() >= PRUNE_AT {
            topics.retain(|_, tx| tx.receiver_count() > 0);
        }
        let rx = topics
            .entry(id.clone())
            .or_insert_with(|| broadcast::channel(LIVE_BUFFER).0)
            .subscribe();
        BroadcastStream::new(rx)
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .boxed()
    }

    /// Hand an event to the recording's local listeners, if any; drop channels nobody listens
    /// to any more.
    pub fn deliver(&self, event: &Event) {
        let Ok(id) = RecordingId::parse(&event.recording_id) else {
            return;
        };
        let mut topics = self.topics.lock().expect("fanout lock");
        if let Some(tx) = topics.get(&id) {
            if tx.receiver_count() == 0 {
                topics.remove(&id);
            } else {
                let _ = tx.send(event.clone());
            }
        }
    }
}
