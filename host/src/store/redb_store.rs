//! The single-node store: a data dir holding one live redb file,
//! `airlock.redb`, its journal `airlock.journal`, and the sealed audit
//! segments under `audit/`. Every commit is durable when
//! [`Store::append_audit`] returns: its frame is synced in the journal
//! first (one sequential write), then redb commits it unsynced; a
//! checkpoint now and then makes redb durable and empties the journal
//! ([`super::journal`]). Callers batch (the audit writer's group commit) so
//! that one sync serves many entries.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::broadcast;

use super::blocks;
use super::journal::{Frame, Journal};
use super::segments::{SegmentRange, Segments};
use super::tables::{self, AUDIT};
use super::{StateChange, StateTable, Store, StoreError, StoreEvent};

/// Blocks of entries deleted from the live file per transaction after
/// sealing, so the writer never waits long behind the cleanup.
const DELETE_CHUNK: usize = 256;

/// A data dir's live redb file and its sealed audit segments.
pub struct RedbStore {
    database: Database,
    /// Held for the whole of a commit: commits reach the journal and redb
    /// in the same order.
    journal: std::sync::Mutex<Journal>,
    segments: Segments,
    events: broadcast::Sender<StoreEvent>,
}

impl Drop for RedbStore {
    /// A clean close leaves redb durable and the journal empty.
    fn drop(&mut self) {
        let mut journal = self.lock_journal();
        if let Err(error) = self.checkpoint(&mut journal) {
            tracing::error!("closing the audit store: {error}");
        }
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn fail(operation: &str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
    move |error| StoreError::new(operation, error)
}

impl RedbStore {
    /// The live file inside a data dir.
    pub const FILE: &'static str = "airlock.redb";
    /// The live file's journal inside a data dir.
    pub const JOURNAL: &'static str = "airlock.journal";
    /// The directory of sealed segments inside a data dir.
    pub const SEGMENTS: &'static str = "audit";

    /// Open (or create) the store in `data_dir`.
    ///
    /// # Errors
    /// When a file cannot be opened, e.g. another Airlock holds it.
    pub fn open(data_dir: &Path) -> Result<RedbStore, StoreError> {
        let file = data_dir.join(Self::FILE);
        let operation = format!("open {}", file.display());
        let fail = fail(&operation);
        std::fs::create_dir_all(data_dir).map_err(|error| fail(&error))?;
        let database = tables::builder()
            .create(&file)
            .map_err(|error| fail(&error))?;
        let (journal, frames) = Journal::open(&data_dir.join(Self::JOURNAL))?;
        let segments = Segments::open(&data_dir.join(Self::SEGMENTS))?;
        let (events, _) = broadcast::channel(1024);
        let store = RedbStore {
            database,
            journal: std::sync::Mutex::new(journal),
            segments,
            events,
        };
        // Creates the tables; replays what a crash left in the journal and
        // makes it durable; and drops live entries a crash left behind after
        // their segment was sealed.
        store.replay(frames)?;
        store.delete_live_through(store.segments.sealed_through())?;
        Ok(store)
    }

    /// Commit the journal's `frames` to redb, durably, and empty the
    /// journal. Entries redb already has are skipped; the frames' records
    /// are written again in order, which leaves each as the last frame did.
    fn replay(&self, frames: Vec<Frame>) -> Result<(), StoreError> {
        let mut journal = self.lock_journal();
        let fail = fail("replay the journal");
        let transaction = self.begin(Durability::Immediate, "replay the journal")?;
        for state in StateTable::ALL {
            transaction
                .open_table(tables::state(state))
                .map_err(|error| fail(&error))?;
        }
        let audit = transaction
            .open_table(AUDIT)
            .map_err(|error| fail(&error))?;
        // Read only when there is something to replay: a trail damaged by
        // hand still opens, for `verify` to say where.
        let live_last = if frames.is_empty() {
            None
        } else {
            blocks::last(&audit)?.map(|(seq, _)| seq)
        };
        drop(audit);
        let known = live_last.unwrap_or(0).max(self.segments.sealed_through());
        for frame in &frames {
            // A frame's entries are in sequence order.
            let new = frame.entries.partition_point(|(seq, _)| *seq <= known);
            write(&transaction, &frame.entries[new..], &frame.changes)?;
        }
        transaction.commit().map_err(|error| fail(&error))?;
        if !frames.is_empty() {
            tracing::info!(frames = frames.len(), "replayed the audit journal");
        }
        journal.checkpointed()
    }

    /// Make every commit so far durable in redb and empty the journal.
    fn checkpoint(&self, journal: &mut Journal) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        self.begin(Durability::Immediate, "checkpoint")?
            .commit()
            .map_err(|error| StoreError::new("checkpoint", error))?;
        journal.checkpointed()?;
        crate::metrics::global().audit_checkpoint(started.elapsed());
        Ok(())
    }

    /// A write transaction committed with `durability`.
    fn begin(
        &self,
        durability: Durability,
        operation: &str,
    ) -> Result<redb::WriteTransaction, StoreError> {
        let fail = fail(operation);
        let mut transaction = self.database.begin_write().map_err(|error| fail(&error))?;
        transaction
            .set_durability(durability)
            .map_err(|error| fail(&error))?;
        Ok(transaction)
    }

    fn lock_journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Delete live entries up to `through`, in short transactions.
    fn delete_live_through(&self, through: u64) -> Result<(), StoreError> {
        let fail = fail("delete sealed entries");
        loop {
            // Not durable on its own: a crash leaves entries that the next
            // open deletes again; the next checkpoint makes it durable.
            let transaction = self.begin(Durability::None, "delete sealed entries")?;
            let deleted = {
                let mut table = transaction
                    .open_table(AUDIT)
                    .map_err(|error| fail(&error))?;
                blocks::delete_through(&mut table, through, DELETE_CHUNK)
                    .map_err(|error| fail(&error))?
            };
            transaction.commit().map_err(|error| fail(&error))?;
            if deleted < DELETE_CHUNK {
                return Ok(());
            }
        }
    }

    fn live_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let fail = fail("read audit");
        let transaction = self.database.begin_read().map_err(|error| fail(&error))?;
        let table = transaction
            .open_table(AUDIT)
            .map_err(|error| fail(&error))?;
        Ok(blocks::read_from(&table, from, limit)?)
    }
}

/// Write `entries` and `changes` into `transaction`, checking each
/// compare-and-swap against what the transaction sees.
fn write(
    transaction: &redb::WriteTransaction,
    entries: &[(u64, Vec<u8>)],
    changes: &[StateChange],
) -> Result<(), StoreError> {
    let fail = fail("commit");
    let mut table = transaction
        .open_table(AUDIT)
        .map_err(|error| fail(&error))?;
    blocks::insert(&mut table, entries).map_err(|error| fail(&error))?;
    for state in StateTable::ALL {
        // Only the tables this commit changes: each table opened for
        // writing is written back at the commit.
        if !changes.iter().any(|change| change.target().0 == state) {
            continue;
        }
        let mut table = transaction
            .open_table(tables::state(state))
            .map_err(|error| fail(&error))?;
        for change in changes.iter().filter(|change| change.target().0 == state) {
            if let StateChange::Replace { key, expected, .. } = change {
                let current = table.get(key.as_str()).map_err(|error| fail(&error))?;
                if current.as_ref().map(|value| value.value()) != expected.as_deref() {
                    return Err(StoreError::conflict(state, key));
                }
            }
            let (_, key) = change.target();
            match change.value() {
                Some(value) => table.insert(key, value).map(drop),
                None => table.remove(key).map(drop),
            }
            .map_err(|error| fail(&error))?;
        }
    }
    Ok(())
}

impl Store for RedbStore {
    fn unwritable_until_reopened(&self) -> bool {
        matches!(
            self.database.begin_write(),
            Err(redb::TransactionError::Storage(
                redb::StorageError::PreviousIo
            ))
        )
    }

    fn append_audit(
        &self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        let fail = fail("commit");
        let mut journal = self.lock_journal();
        // Unsynced: the journal makes it durable.
        let transaction = self.begin(Durability::None, "commit")?;
        // A stale compare-and-swap returns here: the transaction is
        // dropped unwritten and nothing reaches the journal.
        write(&transaction, entries, changes)?;
        journal.append(entries, changes)?;
        if let Err(error) = transaction.commit() {
            // Not replayed after a crash either: the caller hears it failed.
            journal.undo_last();
            return Err(fail(&error));
        }
        if journal.checkpoint_due() {
            // The commit is durable in the journal already; a failed
            // checkpoint is tried again after the next commit.
            if let Err(error) = self.checkpoint(&mut journal) {
                tracing::error!("audit store checkpoint failed: {error}");
            }
        }
        drop(journal);
        // No subscriber is fine.
        if let Some((seq, _)) = entries.last() {
            let _ = self.events.send(StoreEvent::AuditCommitted { seq: *seq });
        }
        for change in changes {
            let (table, key) = change.target();
            let _ = self.events.send(StoreEvent::StateChanged {
                table,
                key: key.to_owned(),
            });
        }
        Ok(())
    }

    fn state_get(&self, table: StateTable, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let fail = fail("read state");
        let transaction = self.database.begin_read().map_err(|error| fail(&error))?;
        let table = transaction
            .open_table(tables::state(table))
            .map_err(|error| fail(&error))?;
        let value = table.get(key).map_err(|error| fail(&error))?;
        Ok(value.map(|value| value.value().to_vec()))
    }

    fn state_list(&self, table: StateTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let fail = fail("read state");
        let transaction = self.database.begin_read().map_err(|error| fail(&error))?;
        let table = transaction
            .open_table(tables::state(table))
            .map_err(|error| fail(&error))?;
        table
            .iter()
            .map_err(|error| fail(&error))?
            .map(|item| {
                item.map(|(key, value)| (key.value().to_owned(), value.value().to_vec()))
                    .map_err(|error| fail(&error))
            })
            .collect()
    }

    fn last_audit(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let fail = fail("read audit");
        let transaction = self.database.begin_read().map_err(|error| fail(&error))?;
        let table = transaction
            .open_table(AUDIT)
            .map_err(|error| fail(&error))?;
        let sealed_through = self.segments.sealed_through();
        let live = blocks::last(&table)?.filter(|(seq, _)| *seq > sealed_through);
        match live {
            Some(last) => Ok(Some(last)),
            None => Ok(self.segments.read_from(sealed_through, 1)?.pop()),
        }
    }

    fn audit_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let sealed_through = self.segments.sealed_through();
        let mut entries = if from <= sealed_through {
            self.segments.read_from(from, limit)?
        } else {
            Vec::new()
        };
        if entries.len() < limit {
            let live = self.live_from(from.max(sealed_through + 1), limit - entries.len())?;
            entries.extend(live);
        }
        Ok(entries)
    }

    fn seal_audit(&self, through: u64) -> Result<Option<SegmentRange>, StoreError> {
        let first = self.segments.sealed_through() + 1;
        if through < first {
            return Ok(None);
        }
        let count = usize::try_from(through - first + 1).unwrap_or(usize::MAX);
        let mut entries = self.live_from(first, count)?;
        entries.retain(|(seq, _)| *seq <= through);
        if entries.is_empty() {
            return Ok(None);
        }
        let range = self.segments.seal(&entries)?;
        self.delete_live_through(range.last)?;
        Ok(Some(range))
    }

    fn audit_segments(&self) -> Vec<SegmentRange> {
        self.segments.ranges()
    }

    fn remove_audit_segment(&self, first: u64) -> Result<(), StoreError> {
        self.segments.remove(first)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for item in std::fs::read_dir(from).unwrap() {
            let path = item.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    }

    /// A copy of the data dir taken while the store is open, between
    /// checkpoints, is what a crash leaves: its commits are in the journal
    /// and come back, entries and records, when the copy opens.
    #[test]
    fn commits_since_the_last_checkpoint_come_back_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (live, crashed) = (dir.path().join("live"), dir.path().join("crashed"));
        let store = RedbStore::open(&live).unwrap();
        let put = StateChange::Put {
            table: StateTable::Approvals,
            key: "apr_1".to_owned(),
            value: b"pending".to_vec(),
        };
        store
            .append_audit(&[(1, b"one".to_vec()), (2, b"two".to_vec())], &[put])
            .unwrap();
        let swap = StateChange::Replace {
            table: StateTable::Approvals,
            key: "apr_1".to_owned(),
            expected: Some(b"pending".to_vec()),
            value: Some(b"approved".to_vec()),
        };
        store
            .append_audit(&[(3, b"three".to_vec())], &[swap])
            .unwrap();
        copy_dir(&live, &crashed);
        let frames = || Journal::open(&crashed.join(RedbStore::JOURNAL)).unwrap().1;
        assert_eq!(frames().len(), 2);

        let reopened = RedbStore::open(&crashed).unwrap();
        let trail = reopened.audit_from(1, 10).unwrap();
        assert_eq!(
            trail,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"three".to_vec())
            ]
        );
        assert_eq!(
            reopened.state_get(StateTable::Approvals, "apr_1").unwrap(),
            Some(b"approved".to_vec())
        );
        // Replayed and made durable: the journal is empty again, and a
        // second replay of the same frames would add nothing.
        assert!(frames().is_empty());
        drop(reopened);
        let again = RedbStore::open(&crashed).unwrap();
        assert_eq!(again.audit_from(1, 10).unwrap().len(), 3);
    }

    /// A stale compare-and-swap reaches neither redb nor the journal.
    #[test]
    fn a_refused_swap_leaves_the_journal_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let journal = dir.path().join(RedbStore::JOURNAL);
        store.append_audit(&[(1, b"one".to_vec())], &[]).unwrap();
        let before = std::fs::metadata(&journal).unwrap().len();
        let stale = StateChange::Replace {
            table: StateTable::Grants,
            key: "g".to_owned(),
            expected: Some(b"never".to_vec()),
            value: None,
        };
        let error = store
            .append_audit(&[(2, b"two".to_vec())], &[stale])
            .unwrap_err();
        assert!(error.conflict, "{error}");
        assert_eq!(std::fs::metadata(&journal).unwrap().len(), before);
        assert_eq!(store.last_audit().unwrap().map(|(seq, _)| seq), Some(1));
    }
}
