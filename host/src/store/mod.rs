//! What Airlock persists, behind one trait: the audit trail, and state
//! (approvals with their votes, grants, the routing overlay). [`RedbStore`]
//! is the single-node implementation: an embedded redb file in the data dir,
//! with the older audit trail sealed into segment files beside it
//! ([`segments`]). [`EtcdStore`] shares the state with other nodes through
//! etcd and keeps each node's own trail in its local redb ([`etcd`]).
//! Changes are also delivered as a stream of [`StoreEvent`]s, so that a
//! store fed by watches (etcd) looks the same to its readers as one written
//! in-process. State written by several nodes at once is written with
//! [`StateChange::Replace`], a compare-and-swap: a stale writer gets a
//! conflict, reads again and retries.

pub mod blocks;
pub mod etcd;
mod journal;
mod redb_store;
pub mod segments;
pub mod tables;

pub use etcd::EtcdStore;
pub use redb_store::RedbStore;
pub use segments::SegmentRange;

/// A store operation failed. Callers that need durability fail closed on it.
#[derive(Debug, thiserror::Error)]
#[error("store {operation}: {cause}")]
pub struct StoreError {
    /// What was attempted, e.g. `commit` or `open /var/lib/airlock/airlock.redb`.
    pub operation: String,
    /// Why it failed.
    pub cause: String,
    /// A [`StateChange::Replace`] found the record changed: nothing was
    /// written, and reading it again gives the current value.
    pub conflict: bool,
    /// The stored trail holds what no writer makes, from this entry on:
    /// it was edited outside Airlock, or is corrupt ([`blocks`]).
    pub damaged_at: Option<u64>,
}

impl StoreError {
    pub(crate) fn new(operation: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        StoreError {
            operation: operation.into(),
            cause: cause.to_string(),
            conflict: false,
            damaged_at: None,
        }
    }

    /// The record `key` of `table` is no longer what a replace expected.
    pub(crate) fn conflict(table: StateTable, key: &str) -> Self {
        StoreError {
            operation: "commit".to_owned(),
            cause: format!("{} `{key}` was changed meanwhile", table.name()),
            conflict: true,
            damaged_at: None,
        }
    }
}

/// A change to the store, as its readers learn of it.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// Audit entries up to and including `seq` are committed.
    AuditCommitted { seq: u64 },
    /// A state record was written or deleted.
    StateChanged { table: StateTable, key: String },
}

/// Airlock's state besides the trail: keyed JSON records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateTable {
    Approvals,
    Grants,
    /// Routing changes applied over the API, on top of the file config.
    RoutingOverlay,
}

impl StateTable {
    /// Its name in keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            StateTable::Approvals => "approvals",
            StateTable::Grants => "grants",
            StateTable::RoutingOverlay => "routing_overlay",
        }
    }

    /// The table called `name`.
    pub fn named(name: &str) -> Option<StateTable> {
        StateTable::ALL
            .into_iter()
            .find(|table| table.name() == name)
    }

    /// Every state table (each is created when the store opens).
    pub const ALL: [StateTable; 3] = [
        StateTable::Approvals,
        StateTable::Grants,
        StateTable::RoutingOverlay,
    ];
}

/// A change to state, committed in the same transaction as the audit
/// entries that record it (a vote and its entry land together or not at all).
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    Put {
        table: StateTable,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: StateTable,
        key: String,
    },
    /// Write `value` (`None`: delete the record) only if the record is
    /// still `expected` (`None`: there is none); otherwise the commit fails
    /// with a conflict and keeps nothing.
    Replace {
        table: StateTable,
        key: String,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    },
}

impl StateChange {
    /// The table and key it writes.
    pub fn target(&self) -> (StateTable, &str) {
        match self {
            StateChange::Put { table, key, .. }
            | StateChange::Delete { table, key }
            | StateChange::Replace { table, key, .. } => (*table, key),
        }
    }

    /// The record it leaves (`None`: deleted).
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            StateChange::Put { value, .. } => Some(value),
            StateChange::Replace { value, .. } => value.as_deref(),
            StateChange::Delete { .. } => None,
        }
    }
}

/// State shared with other nodes over the network (etcd). Changes to it are
/// applied from the caller's task before its audit entries are queued, so
/// the audit writer never waits on the network.
pub trait SharedState: Send + Sync + std::fmt::Debug + 'static {
    /// Apply `changes` in one transaction, all or nothing.
    ///
    /// # Errors
    /// A conflict of a [`StateChange::Replace`], or the store could not be
    /// reached in time.
    fn apply<'a>(
        &'a self,
        changes: &'a [StateChange],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>;

    /// Claim `key` for `value` for `ttl`, unless another node claimed it
    /// first: then its value. (Many nodes see the same failing pool; one
    /// raises the approval, the others follow it.) With `replacing`, take
    /// over a claim that still holds that value (its approval is over).
    ///
    /// # Errors
    /// When the store cannot be reached in time.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: std::time::Duration,
        replacing: Option<&'a str>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, StoreError>> + Send + 'a>,
    >;
}

/// What Airlock persists. Implementations are blocking: the audit writer
/// calls them from its own thread.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Append audit `entries` (sequence number, encoded entry) and apply
    /// `changes` in one transaction, durable when this returns.
    ///
    /// # Errors
    /// When the commit fails; nothing of the batch is kept then.
    fn append_audit(
        &self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError>;

    /// Whether the store refuses every write until it is opened again, as
    /// redb does after an I/O error (a full disk): then only a restart,
    /// which replays the journal, brings the node back.
    fn unwritable_until_reopened(&self) -> bool {
        false
    }

    /// The state record `key` of `table`.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn state_get(&self, table: StateTable, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every record of `table`, by key.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn state_list(&self, table: StateTable) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The audit entry with the highest sequence number.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn last_audit(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// Up to `limit` audit entries with sequence numbers from `from` on, in order.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn audit_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Move the live audit entries up to `through` into a new sealed
    /// segment; `None` when there were none.
    ///
    /// # Errors
    /// When the segment cannot be written; the entries stay live then.
    fn seal_audit(&self, through: u64) -> Result<Option<SegmentRange>, StoreError>;

    /// The sealed segments, oldest first.
    fn audit_segments(&self) -> Vec<SegmentRange>;

    /// Drop the sealed segment starting at `first` (retention).
    ///
    /// # Errors
    /// When there is no such segment or it cannot be removed.
    fn remove_audit_segment(&self, first: u64) -> Result<(), StoreError>;

    /// Changes from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent>;

    /// The state this store shares with other nodes, if it does: the audit
    /// writer applies state changes there, not in [`Store::append_audit`].
    fn shared(&self) -> Option<std::sync::Arc<dyn SharedState>> {
        None
    }
}
