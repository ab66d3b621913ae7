//! The single-node store: a data dir holding one live redb file,
//! `airlock.redb`, and the sealed audit segments under `audit/`. Every
//! commit to the live file is `Durability::Immediate`; callers batch (the
//! audit writer's group commit) so that one fsync serves many entries.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::broadcast;

use super::segments::{SegmentRange, Segments};
use super::tables::{self, AUDIT};
use super::{StateChange, StateTable, Store, StoreError, StoreEvent};

/// Entries deleted from the live file per transaction after sealing, so
/// the writer never waits long behind the cleanup.
const DELETE_CHUNK: usize = 10_000;

/// A data dir's live redb file and its sealed audit segments.
pub struct RedbStore {
    database: Database,
    segments: Segments,
    events: broadcast::Sender<StoreEvent>,
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
        let database = Database::create(&file).map_err(|error| fail(&error))?;
        let segments = Segments::open(&data_dir.join(Self::SEGMENTS))?;
        let (events, _) = broadcast::channel(1024);
        let store = RedbStore {
            database,
            segments,
            events,
        };
        // Creates the tables; and drops live entries a crash left behind
        // after their segment was sealed.
        store.append_audit(&[], &[])?;
        store.delete_live_through(store.segments.sealed_through())?;
        Ok(store)
    }

    /// Delete live entries up to `through`, in short transactions.
    fn delete_live_through(&self, through: u64) -> Result<(), StoreError> {
        let fail = fail("delete sealed entries");
        loop {
            let mut transaction = self.database.begin_write().map_err(|error| fail(&error))?;
            // Not durable on its own: a crash leaves entries that the next
            // open deletes again; the next audit commit makes it durable.
            transaction
                .set_durability(Durability::None)
                .map_err(|error| fail(&error))?;
            let deleted = {
                let mut table = transaction
                    .open_table(AUDIT)
                    .map_err(|error| fail(&error))?;
                let doomed: Vec<u64> = table
                    .range(..=through)
                    .map_err(|error| fail(&error))?
                    .take(DELETE_CHUNK)
                    .map(|item| item.map(|(seq, _)| seq.value()))
                    .collect::<Result<_, _>>()
                    .map_err(|error| fail(&error))?;
                for seq in &doomed {
                    table.remove(seq).map_err(|error| fail(&error))?;
                }
                doomed.len()
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
        let mut entries = Vec::new();
        for item in table
            .range(from..)
            .map_err(|error| fail(&error))?
            .take(limit)
        {
            let (seq, bytes) = item.map_err(|error| fail(&error))?;
            entries.push((seq.value(), bytes.value().to_vec()));
        }
        Ok(entries)
    }
}

impl Store for RedbStore {
    fn append_audit(
        &self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        let fail = fail("commit");
        let mut transaction = self.database.begin_write().map_err(|error| fail(&error))?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(|error| fail(&error))?;
        {
            let mut table = transaction
                .open_table(AUDIT)
                .map_err(|error| fail(&error))?;
            for (seq, bytes) in entries {
                table
                    .insert(seq, bytes.as_slice())
                    .map_err(|error| fail(&error))?;
            }
            for state in StateTable::ALL {
                let mut table = transaction
                    .open_table(tables::state(state))
                    .map_err(|error| fail(&error))?;
                for change in changes.iter().filter(|change| change.target().0 == state) {
                    if let StateChange::Replace { key, expected, .. } = change {
                        let current = table.get(key.as_str()).map_err(|error| fail(&error))?;
                        if current.as_ref().map(|value| value.value()) != expected.as_deref() {
                            // Dropping the transaction unwritten keeps nothing.
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
        }
        transaction.commit().map_err(|error| fail(&error))?;
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
        let live = table
            .last()
            .map_err(|error| fail(&error))?
            .map(|(seq, bytes)| (seq.value(), bytes.value().to_vec()))
            .filter(|(seq, _)| *seq > sealed_through);
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
