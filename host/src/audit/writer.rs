//! The one writer of the trail: a thread that takes entries from a channel,
//! chains them (sequence number, previous hash) and commits them in batches.
//!
//! Group commit: while one commit's fsync runs, new entries queue; the next
//! commit takes them all, so concurrent writers share fsyncs. A durable entry
//! is committed at once (with whatever is queued once the writer has
//! yielded its CPU one time, so that a worker sharing it queues its ready
//! requests' entries too) and its caller waits for the commit; a batched
//! entry waits at most [`BATCH_WINDOW`] for company and its caller does not
//! wait. On a crash, batched entries of the last window
//! may be lost; durable ones never are. While a batch gathers, the writer
//! sleeps through the window and only a durable entry wakes it early: on a
//! CPU shared with the proxy's workers, every wake-up of the writer is a
//! context switch a worker pays for.
//!
//! State changes that compare and swap ([`StateChange::Replace`]) are
//! checked before their batch commits: a caller whose record changed meanwhile
//! gets [`AuditError::Conflict`] alone, and the rest of the batch commits. A
//! store that shares its state with other nodes ([`Store::shared`]) gets the
//! changes from the caller's task first; only the entries queue here.
//!
//! Sealing: once the live part of the trail holds [`Sealing::max_entries`]
//! entries, or its oldest entry is from an earlier UTC day, the writer asks
//! its sealer thread to move it into a segment file; writers do not wait
//! for that.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{decode, now_ms, AuditEntry, GENESIS_HASH};

use crate::store::{SharedState, StateChange, StateTable, Store, StoreError};

/// How long a batched entry may wait to be committed: what a crash may
/// lose of them. Each commit wakes the writer on a CPU the workers share;
/// measured side by side (batched, pinned, `wrk -c50`), 10 ms served 4-20%
/// more requests per second than 5 ms, and 20 ms little more than 10.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// Most entries in one commit.
const MAX_BATCH: usize = 4096;
/// Entries queued before writers wait (back-pressure, not loss).
const QUEUE: usize = 16 * 1024;

/// When the live trail is sealed into a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealing {
    /// Most entries in the live trail (and so in one segment).
    pub max_entries: u64,
}

impl Default for Sealing {
    fn default() -> Self {
        Sealing {
            max_entries: 1_000_000,
        }
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The oldest live entry, if the writer knows it.
#[derive(Debug, Clone, Copy)]
struct LiveStart {
    seq: u64,
    time_ms: i64,
}

impl Sealing {
    fn due(self, live: LiveStart, last_seq: u64, now_ms: i64) -> bool {
        last_seq + 1 - live.seq >= self.max_entries
            || live.time_ms.div_euclid(DAY_MS) < now_ms.div_euclid(DAY_MS)
    }
}

/// How soon an entry must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Committed before [`AuditLog::record`] returns: for risky actions.
    Durable,
    /// Committed within [`BATCH_WINDOW`]; `record` returns at once.
    Batched,
}

/// Why an entry could not be recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit trail could not be written: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
    /// A compare-and-swap found its record changed: nothing was kept; read
    /// it again and retry.
    #[error("{0}")]
    Conflict(String),
}

impl From<StoreError> for AuditError {
    fn from(error: StoreError) -> Self {
        if error.conflict {
            AuditError::Conflict(error.to_string())
        } else {
            AuditError::Store(error.to_string())
        }
    }
}

struct Pending {
    /// Entries committed together, in order (at least one).
    entries: Vec<AuditEntry>,
    /// State written in the same transaction as the entries.
    changes: Vec<StateChange>,
    done: Option<oneshot::Sender<Result<u64, AuditError>>>,
    /// The node's last entry: the writer finishes sealing, commits it, and
    /// stops.
    last: bool,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
    /// The writer thread, woken early for a durable entry.
    writer: std::thread::Thread,
    node: Arc<str>,
    shared: Option<Arc<dyn SharedState>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Start the writer thread over `store`, continuing its chain, and the
    /// sealer thread that moves the live trail into segments by `sealing`.
    ///
    /// # Errors
    /// When the last stored entry cannot be read.
    pub fn start(
        store: Arc<dyn Store>,
        node: &str,
        sealing: Sealing,
    ) -> Result<AuditLog, StoreError> {
        let (mut seq, mut head) = match store.last_audit()? {
            Some((seq, bytes)) => {
                let last = decode(&bytes)
                    .map_err(|error| StoreError::new(format!("read audit entry {seq}"), error))?;
                (seq, last.hash)
            }
            None => (0, GENESIS_HASH.to_owned()),
        };
        let sealed_through = store.audit_segments().last().map_or(0, |range| range.last);
        let mut live = match store.audit_from(sealed_through + 1, 1)?.pop() {
            Some((seq, bytes)) => decode(&bytes).ok().map(|entry| LiveStart {
                seq,
                time_ms: entry.time_ms,
            }),
            None => None,
        };
        let mut sealer = Some(Sealer::start(store.clone())?);
        let shared = store.shared();
        let (queue, mut receiver) = mpsc::channel::<Pending>(QUEUE);
        let writer = std::thread::Builder::new()
            .name("airlock-audit".to_owned())
            .spawn(move || {
                while let Some(first) = receiver.blocking_recv() {
                    let mut batch = gather(first, &mut receiver);
                    if batch.iter().any(|pending| pending.last) {
                        // The last entry is the last of the trail: what was
                        // gathered with it commits before it (a stable sort).
                        batch.sort_by_key(|pending| pending.last);
                        // No segment is left half-written when the process exits.
                        if let Some(sealer) = sealer.take() {
                            sealer.finish();
                        }
                        commit(&*store, batch, &mut seq, &mut head);
                        return;
                    }
                    let Some(committed) = commit(&*store, batch, &mut seq, &mut head) else {
                        continue;
                    };
                    let start = *live.get_or_insert(committed);
                    // A busy sealer takes this range with its next request.
                    if sealing.due(start, seq, now_ms())
                        && sealer.as_ref().is_some_and(|sealer| sealer.ask(seq))
                    {
                        live = None;
                    }
                }
            })
            .map_err(|error| StoreError::new("start the audit writer", error))?
            .thread()
            .clone();
        Ok(AuditLog {
            queue,
            writer,
            node: Arc::from(node),
            shared,
        })
    }

    /// This node's id, as entries carry it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Record `entry`. Durable: returns its sequence number once it is on
    /// disk. Batched: returns `None` once it is queued.
    ///
    /// # Errors
    /// When a durable commit failed or the writer is gone: the caller must
    /// not carry the action out.
    pub async fn record(
        &self,
        mut entry: AuditEntry,
        durability: Durability,
    ) -> Result<Option<u64>, AuditError> {
        entry.node = self.node.to_string();
        entry.time_ms = now_ms();
        match durability {
            Durability::Batched => {
                self.queue
                    .send(Pending {
                        entries: vec![entry],
                        changes: Vec::new(),
                        done: None,
                        last: false,
                    })
                    .await
                    .map_err(|_| AuditError::Stopped)?;
                Ok(None)
            }
            Durability::Durable => self.record_with(entry, Vec::new()).await.map(Some),
        }
    }

    /// Record `entry` durably together with `changes` to state, in one
    /// transaction; returns the entry's sequence number.
    ///
    /// # Errors
    /// When the commit failed (then neither the entry nor the changes are
    /// kept; with a shared store, the changes may have been made before the
    /// local commit failed, which is logged) or the writer is gone.
    pub async fn record_with(
        &self,
        entry: AuditEntry,
        changes: Vec<StateChange>,
    ) -> Result<u64, AuditError> {
        self.record_all(vec![entry], changes).await
    }

    /// Record `entries`, in order, durably together with `changes`, all in
    /// one transaction; returns the first entry's sequence number.
    ///
    /// # Errors
    /// As [`record_with`](Self::record_with): all or nothing is kept (but
    /// for the shared-store case said there).
    pub async fn record_all(
        &self,
        entries: Vec<AuditEntry>,
        changes: Vec<StateChange>,
    ) -> Result<u64, AuditError> {
        self.commit_and_wait(entries, changes, false).await
    }

    /// Record the node's last entry durably and stop the writer once a
    /// segment being sealed is complete; later records fail with
    /// [`AuditError::Stopped`].
    ///
    /// # Errors
    /// As [`record`](Self::record) for a durable entry.
    pub async fn record_last(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.commit_and_wait(vec![entry], Vec::new(), true).await
    }

    async fn commit_and_wait(
        &self,
        mut entries: Vec<AuditEntry>,
        mut changes: Vec<StateChange>,
        last: bool,
    ) -> Result<u64, AuditError> {
        // Shared state first: a change other nodes refused is not recorded
        // as done. If the local commit then fails, the change stands without
        // its local entry (logged below).
        let shared_applied = match &self.shared {
            Some(shared) if !changes.is_empty() => {
                shared.apply(&changes).await?;
                changes.clear();
                true
            }
            _ => false,
        };
        let time_ms = now_ms();
        for entry in &mut entries {
            entry.node = self.node.to_string();
            entry.time_ms = time_ms;
        }
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Pending {
                entries,
                changes,
                done: Some(done),
                last,
            })
            .await
            .map_err(|_| AuditError::Stopped)?;
        // Ends the batch window if the writer is gathering one.
        self.writer.unpark();
        let committed = committed.await.map_err(|_| AuditError::Stopped)?;
        if let (Err(error), true) = (&committed, shared_applied) {
            tracing::error!(
                "a shared state change was made but its audit entry was not recorded here: {error}"
            );
        }
        committed
    }
}

/// Take `first` and whatever else arrives: everything queued now, and, if no
/// one is waiting for this commit, more for up to the batch window (a
/// durable entry's [`AuditLog::record_all`] unparks the writer to end it).
fn gather(first: Pending, receiver: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut batch = vec![first];
    let deadline = std::time::Instant::now() + BATCH_WINDOW;
    let mut yielded = false;
    loop {
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let someone_waits = batch.iter().any(|pending| pending.done.is_some());
        if someone_waits && !yielded {
            // On a CPU shared with a worker, the worker first queues the
            // entries of the requests it has ready: one commit serves them
            // all. With a CPU to itself, the writer goes on at once.
            std::thread::yield_now();
            yielded = true;
            continue;
        }
        let now = std::time::Instant::now();
        if someone_waits || batch.len() >= MAX_BATCH || now >= deadline {
            return batch;
        }
        std::thread::park_timeout(deadline - now);
    }
}

/// Check the compare-and-swaps of one caller's `changes` against the store
/// and what earlier callers of the same batch write (`written`); if they
/// hold, add its writes to `written`. The writer is the store's only writer,
/// so what it reads here is what the commit will find.
fn check_replaces(
    store: &dyn Store,
    changes: &[StateChange],
    written: &mut std::collections::HashMap<(StateTable, String), Option<Vec<u8>>>,
) -> Result<(), StoreError> {
    for change in changes {
        if let StateChange::Replace {
            table,
            key,
            expected,
            ..
        } = change
        {
            let current = match written.get(&(*table, key.clone())) {
                Some(value) => value.clone(),
                None => store.state_get(*table, key)?,
            };
            if current != *expected {
                return Err(StoreError::conflict(*table, key));
            }
        }
    }
    for change in changes {
        let (table, key) = change.target();
        written.insert((table, key.to_owned()), change.value().map(<[u8]>::to_vec));
    }
    Ok(())
}

/// The sealer thread: seals the live trail through each sequence number it
/// is asked to. Failures are logged; the entries stay live and the next
/// request seals them too.
struct Sealer {
    requests: std::sync::mpsc::SyncSender<u64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sealer {
    fn start(store: Arc<dyn Store>) -> Result<Sealer, StoreError> {
        let (requests, receiver) = std::sync::mpsc::sync_channel::<u64>(1);
        let thread = std::thread::Builder::new()
            .name("airlock-audit-sealer".to_owned())
            .spawn(move || {
                for through in receiver {
                    match store.seal_audit(through) {
                        Ok(Some(range)) => tracing::info!(
                            first = range.first,
                            last = range.last,
                            "sealed an audit segment"
                        ),
                        Ok(None) => {}
                        Err(error) => tracing::error!("sealing the audit trail failed: {error}"),
                    }
                }
            })
            .map_err(|error| StoreError::new("start the audit sealer", error))?;
        Ok(Sealer { requests, thread })
    }

    /// Ask for the trail to be sealed through `through`; false if the
    /// sealer is still busy with an earlier request.
    fn ask(&self, through: u64) -> bool {
        self.requests.try_send(through).is_ok()
    }

    /// Wait for the request being sealed, if any, and end the thread.
    fn finish(self) {
        drop(self.requests);
        if self.thread.join().is_err() {
            tracing::error!("the audit sealer panicked");
        }
    }
}

/// Chain and commit one batch; tell the waiting callers how it went. On
/// failure the chain does not advance: the next batch continues from the
/// last committed entry. Returns the batch's first entry once committed.
fn commit(
    store: &dyn Store,
    batch: Vec<Pending>,
    seq: &mut u64,
    head: &mut String,
) -> Option<LiveStart> {
    let first = batch.first().map(|pending| LiveStart {
        seq: *seq + 1,
        time_ms: pending.entries.first().map_or(0, |entry| entry.time_ms),
    });
    let (mut next_seq, mut next_head) = (*seq, head.clone());
    let mut encoded = Vec::with_capacity(batch.len());
    let mut changes = Vec::new();
    let mut waiting = Vec::new();
    let mut written = std::collections::HashMap::new();
    for mut pending in batch {
        if let Err(conflict) = check_replaces(store, &pending.changes, &mut written) {
            if let Some(done) = pending.done {
                let _ = done.send(Err(conflict.into()));
            }
            continue;
        }
        changes.append(&mut pending.changes);
        let first_seq = next_seq + 1;
        for entry in &mut pending.entries {
            next_seq += 1;
            let bytes = entry.seal(next_seq, &next_head);
            next_head.clone_from(&entry.hash);
            encoded.push((next_seq, bytes));
        }
        if let Some(done) = pending.done {
            waiting.push((first_seq, done));
        }
    }
    let started = std::time::Instant::now();
    let result = store.append_audit(&encoded, &changes);
    crate::metrics::global().audit_commit(started.elapsed());
    match &result {
        Ok(()) => {
            *seq = next_seq;
            *head = next_head;
        }
        Err(error) => tracing::error!(entries = encoded.len(), "audit commit failed: {error}"),
    }
    for (entry_seq, done) in waiting {
        let answer = match &result {
            Ok(()) => Ok(entry_seq),
            Err(error) => Err(AuditError::Store(error.to_string())),
        };
        // The caller may have gone (client hung up): nothing to tell.
        let _ = done.send(answer);
    }
    if result.is_err() && store.unwritable_until_reopened() {
        // Crash-only, as etcd and PostgreSQL do on a failed write: nothing
        // can be recorded, so nothing may be done, until the store is
        // opened again, which a restart (by the supervisor) does, replaying
        // the journal. Found by the chaos soak: after its disk filled, a
        // node refused every request until killed, though the disk had
        // room again. The callers just told get a moment to answer 503.
        tracing::error!(
            "the audit store refuses every write since an I/O error (a full disk?): \
             exiting with status {EXIT_STORE_UNWRITABLE} so a restart opens it again"
        );
        std::thread::sleep(ANSWER_GRACE);
        std::process::exit(EXIT_STORE_UNWRITABLE);
    }
    result.ok().and(first).filter(|_| !encoded.is_empty())
}

/// The exit status when the audit store can no longer be written
/// (`EX_TEMPFAIL`: try again, as a supervisor's restart does).
const EXIT_STORE_UNWRITABLE: i32 = 75;
/// How long the callers of a failed commit get to answer before that exit.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EntryKind;
    use crate::store::RedbStore;

    /// Eight callers at once replace the same record, all expecting it
    /// absent: exactly one wins; the others get a conflict and keep nothing
    /// (no entry of theirs in the trail), and the winner's value stands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_concurrent_swaps_of_one_record_exactly_one_commits_and_the_rest_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let log = AuditLog::start(store.clone(), "n1", Sealing::default()).unwrap();
        let attempts = (0..8).map(|i| {
            let log = log.clone();
            async move {
                let entry = AuditEntry::new(EntryKind::ApprovalVote, &format!("voter{i}"));
                let swap = StateChange::Replace {
                    table: StateTable::Approvals,
                    key: "apr_1".to_owned(),
                    expected: None,
                    value: Some(format!("voter{i}").into_bytes()),
                };
                (i, log.record_with(entry, vec![swap]).await)
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, result)| result.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert!(results
            .iter()
            .filter(|(_, result)| result.is_err())
            .all(|(_, result)| matches!(result, Err(AuditError::Conflict(_)))));
        let stored = store.state_get(StateTable::Approvals, "apr_1").unwrap();
        assert_eq!(stored, Some(format!("voter{}", winners[0]).into_bytes()));
        let trail = store.audit_from(1, 100).unwrap();
        assert_eq!(trail.len(), 1);
        let entry = crate::audit::decode(&trail[0].1).unwrap();
        assert_eq!(entry.actor, format!("voter{}", winners[0]));
        // A swap from what is stored now passes.
        let swap = StateChange::Replace {
            table: StateTable::Approvals,
            key: "apr_1".to_owned(),
            expected: stored,
            value: Some(b"next".to_vec()),
        };
        let entry = AuditEntry::new(EntryKind::ApprovalVote, "next");
        log.record_with(entry, vec![swap]).await.unwrap();
        assert_eq!(
            store.state_get(StateTable::Approvals, "apr_1").unwrap(),
            Some(b"next".to_vec())
        );
    }

    /// The store checks a swap inside its own transaction too: a stale one
    /// fails with a conflict and writes nothing of its commit.
    #[test]
    fn redb_refuses_a_stale_swap_and_keeps_nothing_of_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let put = |value: &[u8]| StateChange::Put {
            table: StateTable::Grants,
            key: "g".to_owned(),
            value: value.to_vec(),
        };
        store.append_audit(&[], &[put(b"one")]).unwrap();
        let stale = StateChange::Replace {
            table: StateTable::Grants,
            key: "g".to_owned(),
            expected: Some(b"zero".to_vec()),
            value: Some(b"two".to_vec()),
        };
        let other = StateChange::Put {
            table: StateTable::Approvals,
            key: "a".to_owned(),
            value: b"x".to_vec(),
        };
        let error = store
            .append_audit(&[(1, b"entry".to_vec())], &[other, stale])
            .unwrap_err();
        assert!(error.conflict, "{error}");
        assert_eq!(
            store.state_get(StateTable::Grants, "g").unwrap(),
            Some(b"one".to_vec())
        );
        assert_eq!(store.state_get(StateTable::Approvals, "a").unwrap(), None);
        assert!(store.last_audit().unwrap().is_none());
    }

    /// The node's last entry waits for a segment being sealed: when it has
    /// been recorded, the segment is whole (nothing half-written is left
    /// for the process's exit to cut), and the writer takes nothing more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_entry_waits_for_sealing_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let log = AuditLog::start(store.clone(), "n1", Sealing { max_entries: 2000 }).unwrap();
        let entries = (0..2000)
            .map(|i| AuditEntry::new(EntryKind::ApprovalVote, &format!("voter{i}")))
            .collect();
        log.record_all(entries, Vec::new()).await.unwrap();
        let last = AuditEntry::new(EntryKind::NodeStopped, "airlock");
        assert_eq!(log.record_last(last).await.unwrap(), 2001);

        let sealed = store.audit_segments();
        assert_eq!(sealed.len(), 1, "{sealed:?}");
        assert_eq!((sealed[0].first, sealed[0].last), (1, 2000));
        let files: Vec<_> = std::fs::read_dir(dir.path().join("audit"))
            .unwrap()
            .map(|item| item.unwrap().file_name())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let late = AuditEntry::new(EntryKind::ApprovalVote, "late");
        assert!(matches!(
            log.record(late, Durability::Durable).await,
            Err(AuditError::Stopped)
        ));
    }

    /// Entries that reach the writer while the last one waits for its
    /// commit are kept before it or refused, never after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_recorded_after_the_last_entry() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
            let log = AuditLog::start(store.clone(), "n1", Sealing::default()).unwrap();
            let last = {
                let log = log.clone();
                tokio::spawn(async move {
                    log.record_last(AuditEntry::new(EntryKind::NodeStopped, "airlock"))
                        .await
                })
            };
            let mut kept = 0;
            for i in 0..50 {
                let entry = AuditEntry::new(EntryKind::ApprovalVote, &format!("late{i}"));
                if log.record(entry, Durability::Batched).await.is_ok() {
                    kept += 1;
                }
            }
            let stopped_at = last.await.unwrap().unwrap();
            let (seq, bytes) = store.last_audit().unwrap().unwrap();
            assert_eq!(seq, stopped_at, "round {round}: {kept} sent after it kept");
            assert_eq!(
                crate::audit::decode(&bytes).unwrap().kind,
                EntryKind::NodeStopped
            );
        }
    }

    #[test]
    fn sealing_is_due_by_count_or_at_utc_midnight() {
        let sealing = Sealing { max_entries: 10 };
        let noon = 1_764_000_000_000 - 1_764_000_000_000 % DAY_MS + DAY_MS / 2;
        let start = LiveStart {
            seq: 5,
            time_ms: noon,
        };
        assert!(!sealing.due(start, 13, noon + 1000));
        assert!(sealing.due(start, 14, noon + 1000));
        assert!(!sealing.due(start, 6, noon + DAY_MS / 2 - 1));
        assert!(sealing.due(start, 6, noon + DAY_MS / 2));
    }
}
