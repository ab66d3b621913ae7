//! Every redb table Airlock keeps, in one place, with its key and value
//! types. Values are JSON bytes: readable with any redb tool, and the same
//! encoding the audit chain hashes.

use redb::TableDefinition;

/// The audit trail: sequence number to the entry's JSON.
pub const AUDIT: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("audit");
