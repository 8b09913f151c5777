//! Shutdown passed as a value: the HTTP server, the WebSocket sessions, the merge workers and
//! the sweeper each hold a [`Shutdown`] and stop taking work when it fires.

use tokio::sync::watch;

/// Fires the [`Shutdown`]s made with it.
pub struct Trigger(watch::Sender<bool>);

/// Whether, and when, the instance is stopping.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A shutdown that never fires (its trigger is kept for ever): for what runs until dropped.
    pub fn never() -> Self {
        let (trigger, shutdown) = channel();
        std::mem::forget(trigger);
        shutdown
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// [`Shutdown::fired`], owning its shutdown (for a task that outlives its maker).
    pub async fn fired_owned(self) {
        self.fired().await
    }

    /// Resolves once it fires (never, if its trigger is dropped unfired).
    pub async fn fired(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_for_every_holder() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!shutdown.is_fired());
        let waiting = tokio::spawn(async move { other.fired().await });
        trigger.fire();
        waiting.await.unwrap();
        assert!(shutdown.is_fired());
        shutdown.fired().await;
        let never = Shutdown::never();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), never.fired());
        assert!(waited.await.is_err());
    }
}
