//! Graceful shutdown in phases. `Running`; then `Draining` on Ctrl-C or
//! SIGTERM: `/readyz` turns unready, listeners stop accepting, idle connections
//! close and busy ones close after their current request; then, once
//! `drain_timeout` has passed, `DeadlinePassed`: whatever still waits is
//! answered 503. Every part holds a cheap [`Shutdown`] handle to watch the phase.

use tokio::sync::watch;

/// Where the process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving.
    Running,
    /// No new connections; in-flight requests finish.
    Draining,
    /// The drain timeout passed: waiting requests are answered 503.
    DeadlinePassed,
}

/// Moves the process through its phases; held by whoever runs the server.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<Phase>);

/// Watches the phase.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<Phase>);

/// A new pair, in the `Running` phase.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(Phase::Running);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Enters `phase` (phases only move forward).
    pub fn enter(&self, phase: Phase) {
        self.0.send_if_modified(|current| {
            let advance = phase > *current;
            if advance {
                *current = phase;
            }
            advance
        });
    }
}

impl Shutdown {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// Resolves once draining has begun.
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Resolves once the drain timeout has passed.
    pub async fn deadline_passed(&self) {
        self.reached(Phase::DeadlinePassed).await;
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.0.clone();
        // An error means the trigger is gone, which only happens when the
        // process is exiting: treat it as reached.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn phases_only_move_forward_and_wake_waiters() {
        let (trigger, shutdown) = channel();
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.draining().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        trigger.enter(Phase::DeadlinePassed);
        waiter.await.unwrap();
        trigger.enter(Phase::Draining);
        assert_eq!(shutdown.phase(), Phase::DeadlinePassed);
    }
}
