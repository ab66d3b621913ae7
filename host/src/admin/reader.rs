//! The thread the audit trail's queries and verifications run on: one
//! thread, at the lowest CPU priority (nice 19), fed through a short queue.
//! However many auditors ask at once, reading the trail then takes at most
//! one CPU, and only what the proxy's workers leave of it; past the queue,
//! callers are told to come back (429) instead of piling up. One caller may
//! have [`PER_CALLER`] reads queued or running, so a caller looping on the
//! trail cannot fill the queue and lock the other auditors out.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};

/// Reads waiting for the thread at most; more are refused.
const QUEUE: usize = 16;

/// Reads one caller may have queued or running at once.
pub const PER_CALLER: usize = 2;

type Job = Box<dyn FnOnce() + Send>;

/// Why a read was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The queue is full.
    Queue,
    /// This caller already has [`PER_CALLER`] reads queued or running.
    Caller,
}

/// A handle to the reader thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditReader {
    jobs: mpsc::SyncSender<Job>,
    /// Reads queued or running, by caller.
    callers: Arc<Mutex<HashMap<String, usize>>>,
}

/// One of a caller's reads, counted until it is dropped (when the read
/// ends, or was never queued).
struct CallerSlot {
    callers: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = callers.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                callers.remove(&self.caller);
            }
        }
    }
}

impl AuditReader {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start() -> std::io::Result<AuditReader> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("audit-reader".to_owned())
            .spawn(move || {
                use thread_priority::{set_current_thread_priority, ThreadPriority};
                if let Err(error) = set_current_thread_priority(ThreadPriority::Min) {
                    tracing::warn!(?error, "audit reader: could not lower its CPU priority");
                }
                for job in queue {
                    // A query that panics fails alone (its caller sees the
                    // reply dropped), not every later read.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("audit reader: a read panicked");
                    }
                }
            })?;
        Ok(AuditReader {
            jobs,
            callers: Arc::default(),
        })
    }

    /// Runs `work` for `caller` on the reader thread and returns what it
    /// returned.
    ///
    /// # Errors
    /// [`Busy`]: the queue is full, or `caller` has [`PER_CALLER`] reads
    /// queued or running.
    pub async fn run<T: Send + 'static>(
        &self,
        caller: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        self.submit(caller, work)?.await.map_err(|_| Busy::Queue)
    }

    /// Queues `work` for `caller`; what it returns arrives on the receiver.
    fn submit<T: Send + 'static>(
        &self,
        caller: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        let slot = {
            let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
            let count = callers.entry(caller.to_owned()).or_default();
            if *count >= PER_CALLER {
                return Err(Busy::Caller);
            }
            *count += 1;
            CallerSlot {
                callers: self.callers.clone(),
                caller: caller.to_owned(),
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let value = work();
                drop(slot);
                let _ = done.send(value);
            }))
            .map_err(|_| Busy::Queue)?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's nice value, from `/proc/thread-self/stat` (field 19).
    fn niceness() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn reads_run_on_one_thread_at_the_lowest_priority() {
        let reader = AuditReader::start().unwrap();
        let (name, nice) = reader
            .run("ann", || {
                (std::thread::current().name().map(str::to_owned), niceness())
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("audit-reader"));
        assert_eq!(nice, 19);
        assert_ne!(niceness(), 19, "the caller's priority is untouched");
    }

    #[tokio::test]
    async fn past_a_full_queue_a_read_is_refused_not_queued() {
        let reader = AuditReader::start().unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let first = reader
            .submit("first", move || blocked.recv().is_ok())
            .unwrap();
        // The first read holds the thread (or still waits in the queue).
        let mut queued = Vec::new();
        while let Ok(waiting) = reader.submit(&format!("caller {}", queued.len()), || ()) {
            queued.push(waiting);
            assert!(queued.len() <= QUEUE, "more than {QUEUE} reads queued");
        }
        assert!(queued.len() >= QUEUE - 1, "refused after {}", queued.len());
        assert_eq!(
            reader.run("late", || ()).await,
            Err(Busy::Queue),
            "a full queue refuses"
        );
        release.send(()).unwrap();
        assert!(first.await.unwrap());
        for waiting in queued {
            waiting.await.unwrap();
        }
        assert_eq!(
            reader.run("late", || 7).await,
            Ok(7),
            "served again once drained"
        );
    }

    #[tokio::test]
    async fn one_caller_cannot_take_the_whole_queue() {
        let reader = AuditReader::start().unwrap();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let hog = reader
            .submit("hog", move || blocked.recv().is_ok())
            .unwrap();
        let second = reader.submit("hog", || ()).unwrap();
        assert_eq!(reader.submit("hog", || ()).err(), Some(Busy::Caller));
        // Another auditor still gets in while the hog waits.
        let other = reader.submit("ann", || 7).unwrap();
        release.send(()).unwrap();
        assert!(hog.await.unwrap());
        second.await.unwrap();
        assert_eq!(other.await.unwrap(), 7);
        // The hog's reads ended, and so did its count.
        assert_eq!(reader.run("hog", || 8).await, Ok(8));
        assert!(reader.callers.lock().unwrap().is_empty());
    }
}
