//! The single-node store: one redb file in the data dir. Every commit is
//! `Durability::Immediate`; callers batch (the audit writer's group commit)
//! so that one fsync serves many entries.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::broadcast;

use super::tables::AUDIT;
use super::{Store, StoreError, StoreEvent};

/// A redb database holding Airlock's tables.
pub struct RedbStore {
    database: Database,
    events: broadcast::Sender<StoreEvent>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open (or create) the store file and its tables.
    ///
    /// # Errors
    /// When the file cannot be opened, e.g. another Airlock holds it.
    pub fn open(file: &Path) -> Result<RedbStore, StoreError> {
        let operation = || format!("open {}", file.display());
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::new(operation(), error))?;
        }
        let database =
            Database::create(file).map_err(|error| StoreError::new(operation(), error))?;
        let transaction = database
            .begin_write()
            .map_err(|error| StoreError::new(operation(), error))?;
        transaction
            .open_table(AUDIT)
            .map_err(|error| StoreError::new(operation(), error))?;
        transaction
            .commit()
            .map_err(|error| StoreError::new(operation(), error))?;
        let (events, _) = broadcast::channel(1024);
        Ok(RedbStore { database, events })
    }
}

impl Store for RedbStore {
    fn append_audit(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let fail = |error: &dyn std::fmt::Display| StoreError::new("commit", error);
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
        }
        transaction.commit().map_err(|error| fail(&error))?;
        if let Some((seq, _)) = entries.last() {
            // No subscriber is fine.
            let _ = self.events.send(StoreEvent::AuditCommitted { seq: *seq });
        }
        Ok(())
    }

    fn last_audit(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let fail = |error: &dyn std::fmt::Display| StoreError::new("read audit", error);
        let transaction = self.database.begin_read().map_err(|error| fail(&error))?;
        let table = transaction
            .open_table(AUDIT)
            .map_err(|error| fail(&error))?;
        let last = table.last().map_err(|error| fail(&error))?;
        Ok(last.map(|(seq, bytes)| (seq.value(), bytes.value().to_vec())))
    }

    fn audit_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let fail = |error: &dyn std::fmt::Display| StoreError::new("read audit", error);
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

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}
