//! Every redb table Airlock keeps, in one place, with its key and value
//! types. State values are JSON bytes, readable with any redb tool; audit
//! values are blocks of entries ([`super::blocks`]), each entry the JSON
//! the chain hashes.

use redb::TableDefinition;

use super::StateTable;

/// Memory each redb file may use to cache pages. redb's default, 1 GiB,
/// fills as the writer appends (every written page stays cached) and, at
/// proxy volumes, costs the writer a fresh page fault every few entries
/// while it grows; entries are mostly written, rarely read back, and a
/// query reads them in order.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How every redb file of the store is opened: with [`CACHE_BYTES`].
pub fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// The audit trail: a block's first sequence number to the block
/// ([`super::blocks`]).
pub const AUDIT: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("audit");

/// Approvals, pending and resolved: id to the approval's JSON.
pub const APPROVALS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("approvals");

/// Grants, active and ended: id to the grant's JSON.
pub const GRANTS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("grants");

/// Routing changes applied over the API: id to the applied change's JSON.
pub const ROUTING_OVERLAY: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("routing_overlay");

/// The redb table behind a [`StateTable`].
pub const fn state(table: StateTable) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        StateTable::Approvals => APPROVALS,
        StateTable::Grants => GRANTS,
        StateTable::RoutingOverlay => ROUTING_OVERLAY,
    }
}
