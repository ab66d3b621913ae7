//! The thread the audit trail's queries and verifications run on: one
//! thread, at the lowest CPU priority (nice 19), fed through a short queue.
//! However many auditors ask at once, reading the trail then takes at most
//! one CPU, and only what the proxy's workers leave of it; past the queue,
//! callers are told to come back (429) instead of piling up.

use std::sync::mpsc;

/// Reads waiting for the thread at most; more are refused.
const QUEUE: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the reader thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditReader {
    jobs: mpsc::SyncSender<Job>,
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
                    job();
                }
            })?;
        Ok(AuditReader { jobs })
    }

    /// Runs `work` on the reader thread and returns what it returned; none
    /// when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        self.submit(work)?.await.ok()
    }

    /// Queues `work`; what it returns arrives on the receiver. None when
    /// the queue is full.
    fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<tokio::sync::oneshot::Receiver<T>> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(Box::new(move || {
                let _ = done.send(work());
            }))
            .ok()?;
        Some(result)
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
            .run(|| (std::thread::current().name().map(str::to_owned), niceness()))
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
        let first = reader.submit(move || blocked.recv().is_ok()).unwrap();
        // The first read holds the thread (or still waits in the queue).
        let mut queued = Vec::new();
        while let Some(waiting) = reader.submit(|| ()) {
            queued.push(waiting);
            assert!(queued.len() <= QUEUE, "more than {QUEUE} reads queued");
        }
        assert!(queued.len() >= QUEUE - 1, "refused after {}", queued.len());
        assert!(reader.run(|| ()).await.is_none(), "a full queue refuses");
        release.send(()).unwrap();
        assert!(first.await.unwrap());
        for waiting in queued {
            waiting.await.unwrap();
        }
        assert_eq!(reader.run(|| 7).await, Some(7), "served again once drained");
    }
}
