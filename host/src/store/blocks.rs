//! How the audit table holds the trail: one value per *block* of
//! consecutive entries, keyed by the block's first sequence number. A
//! commit of hundreds of entries is then a few B-tree inserts, not hundreds
//! (one insert per entry cost the writer about 12 us each, a third of a CPU
//! at proxy volumes). A commit's entries are cut into blocks of at most
//! [`BLOCK_BYTES`], so that each fills most of the power-of-two run of pages
//! redb gives a value larger than a page.
//!
//! A block: the entry count (u32), then each entry's sequence number (u64)
//! and bytes (u32 length, bytes), little-endian; the journal's frames
//! ([`super::journal`]) begin with the same encoding. Each entry keeps its
//! own sequence number, so a block edited to lose one still tells which is
//! gone. [`rewrite`] edits a closed store file's trail in place, for the
//! tamper tests.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, StorageError, Table};

use super::tables::AUDIT;
use super::StoreError;

/// Most encoded bytes in a block (unless a single entry is larger): just
/// under eight 4 KiB pages, with room for redb's leaf header.
const BLOCK_BYTES: usize = 32 * 1024 - 64;

/// An entry as stored: its sequence number and encoded bytes.
pub type Entry = (u64, Vec<u8>);

/// Append `bytes`, prefixed with its length (u32).
pub(super) fn put_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    // Entries and records are far below 4 GiB (the writer batches them).
    put_count(buffer, bytes.len());
    buffer.extend_from_slice(bytes);
}

/// Append `count` (u32).
pub(super) fn put_count(buffer: &mut Vec<u8>, count: usize) {
    buffer.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
}

/// Append `entries` in the block encoding.
pub(super) fn put_entries(buffer: &mut Vec<u8>, entries: &[Entry]) {
    put_count(buffer, entries.len());
    for (seq, bytes) in entries {
        buffer.extend_from_slice(&seq.to_le_bytes());
        put_bytes(buffer, bytes);
    }
}

/// The encoded length of one entry in a block.
fn entry_bytes((_, bytes): &Entry) -> usize {
    8 + 4 + bytes.len()
}

/// Reads the fields of a block or a journal payload in order.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(super) fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.take(len)
    }
    /// Entries in the block encoding.
    pub(super) fn entries(&mut self) -> Option<Vec<Entry>> {
        let count = self.u32()?;
        let mut entries = Vec::with_capacity(count.min(self.0.len() / 12));
        for _ in 0..count {
            let seq = self.u64()?;
            entries.push((seq, self.bytes()?.to_vec()));
        }
        Some(entries)
    }
}

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the audit block at {0} is damaged")]
    Damaged(u64),
    /// What an Airlock before blocks stored: one entry's JSON per key.
    #[error(
        "the audit table holds entry {0} alone, as JSON: the file was written by an older Airlock (one entry per key), which this version cannot read"
    )]
    OlderLayout(u64),
}

impl From<BlockError> for StoreError {
    fn from(error: BlockError) -> Self {
        StoreError::new("read audit", error)
    }
}

/// The entries of the block stored under `key`.
fn decode(key: u64, block: &[u8]) -> Result<Vec<Entry>, BlockError> {
    let mut reader = Reader(block);
    match reader.entries() {
        Some(entries) if reader.0.is_empty() => Ok(entries),
        _ if block.starts_with(b"{") => Err(BlockError::OlderLayout(key)),
        _ => Err(BlockError::Damaged(key)),
    }
}

/// Store `entries` (in sequence order) as blocks.
pub(super) fn insert(table: &mut Table<u64, &[u8]>, entries: &[Entry]) -> Result<(), StorageError> {
    let mut buffer = Vec::new();
    let mut rest = entries;
    while let Some((first, _)) = rest.first() {
        let mut size = 4;
        let count = rest
            .iter()
            .take_while(|entry| {
                size += entry_bytes(entry);
                size <= BLOCK_BYTES
            })
            .count()
            .max(1);
        let (block, tail) = rest.split_at(count);
        buffer.clear();
        put_entries(&mut buffer, block);
        table.insert(first, buffer.as_slice())?;
        rest = tail;
    }
    Ok(())
}

/// Up to `limit` stored entries with sequence numbers from `from` on, in order.
pub(super) fn read_from(
    table: &impl ReadableTable<u64, &'static [u8]>,
    from: u64,
    limit: usize,
) -> Result<Vec<Entry>, BlockError> {
    // The block holding `from` starts at or before it.
    let start = table
        .range(..=from)?
        .next_back()
        .transpose()?
        .map_or(from, |(key, _)| key.value());
    let mut entries = Vec::new();
    for item in table.range(start..)? {
        if entries.len() >= limit {
            break;
        }
        let (key, block) = item?;
        let block = decode(key.value(), block.value())?;
        let wanted = limit - entries.len();
        entries.extend(
            block
                .into_iter()
                .filter(|(seq, _)| *seq >= from)
                .take(wanted),
        );
    }
    Ok(entries)
}

/// The stored entry with the highest sequence number.
pub(super) fn last(
    table: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<Entry>, BlockError> {
    match table.last()? {
        Some((key, block)) => Ok(decode(key.value(), block.value())?.pop()),
        None => Ok(None),
    }
}

/// Delete up to `max_blocks` blocks of entries through `through`; a block
/// that also holds later entries is stored again with only those. Returns
/// how many blocks were deleted.
pub(super) fn delete_through(
    table: &mut Table<u64, &[u8]>,
    through: u64,
    max_blocks: usize,
) -> Result<usize, BlockError> {
    let doomed: Vec<u64> = table
        .range(..=through)?
        .take(max_blocks)
        .map(|item| item.map(|(key, _)| key.value()))
        .collect::<Result<_, _>>()?;
    for key in &doomed {
        let Some(block) = table.remove(key)? else {
            continue;
        };
        let entries = decode(*key, block.value())?;
        drop(block);
        let (_, later) = entries.split_at(entries.partition_point(|(seq, _)| *seq <= through));
        insert(table, later)?;
    }
    Ok(doomed.len())
}

/// Edit the trail of the closed store file `file` (the live file or a
/// sealed segment) as `edit` does to the list of its entries: for the
/// tamper tests, and nothing else (the trail is append-only).
///
/// # Errors
/// When the file cannot be opened, read or written.
pub fn rewrite(file: &Path, edit: impl FnOnce(&mut Vec<Entry>)) -> Result<(), StoreError> {
    let fail = |error: &dyn std::fmt::Display| {
        StoreError::new(format!("rewrite {}", file.display()), error)
    };
    let database = redb::Database::open(file).map_err(|error| fail(&error))?;
    let transaction = database.begin_write().map_err(|error| fail(&error))?;
    {
        let mut table = transaction
            .open_table(AUDIT)
            .map_err(|error| fail(&error))?;
        let mut entries = read_from(&table, 0, usize::MAX).map_err(|error| fail(&error))?;
        edit(&mut entries);
        table.retain(|_, _| false).map_err(|error| fail(&error))?;
        insert(&mut table, &entries).map_err(|error| fail(&error))?;
    }
    transaction.commit().map_err(|error| fail(&error))
}

/// Every entry of the trail in the closed store file `file`, for the
/// tamper tests.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn read_file(file: &Path) -> Result<Vec<Entry>, StoreError> {
    let fail =
        |error: &dyn std::fmt::Display| StoreError::new(format!("read {}", file.display()), error);
    let database = redb::Database::open(file).map_err(|error| fail(&error))?;
    let transaction = database.begin_read().map_err(|error| fail(&error))?;
    let table = transaction
        .open_table(AUDIT)
        .map_err(|error| fail(&error))?;
    read_from(&table, 0, usize::MAX).map_err(|error| fail(&error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: std::ops::RangeInclusive<u64>, size: usize) -> Vec<Entry> {
        seqs.map(|seq| (seq, vec![b'x'; size])).collect()
    }

    fn with_table<T>(run: impl FnOnce(&mut Table<u64, &[u8]>) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let database = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let transaction = database.begin_write().unwrap();
        let mut table = transaction.open_table(AUDIT).unwrap();
        run(&mut table)
    }

    /// A big commit is cut into blocks no larger than [`BLOCK_BYTES`];
    /// reads from inside a block and across blocks return exactly the
    /// entries asked for.
    #[test]
    fn commits_are_cut_into_blocks_and_read_from_any_entry() {
        with_table(|table| {
            let written = entries(1..=500, 500);
            insert(table, &written).unwrap();
            let mut sizes = Vec::new();
            for item in table.iter().unwrap() {
                let (_, block) = item.unwrap();
                sizes.push(block.value().len());
            }
            assert!(sizes.len() > 1 && sizes.len() < 20, "{sizes:?}");
            assert!(sizes.iter().all(|size| *size <= BLOCK_BYTES), "{sizes:?}");
            assert_eq!(read_from(table, 0, usize::MAX).unwrap(), written);
            assert_eq!(read_from(table, 77, 200).unwrap(), written[76..276]);
            assert_eq!(last(table).unwrap(), written.last().cloned());
            // One entry larger than a block is a block of its own.
            let big = (501, vec![b'y'; 2 * BLOCK_BYTES]);
            insert(table, std::slice::from_ref(&big)).unwrap();
            assert_eq!(read_from(table, 501, 1).unwrap(), vec![big]);
        });
    }

    /// Deleting through an entry inside a block keeps that block's later
    /// entries.
    #[test]
    fn deleting_through_the_middle_of_a_block_keeps_its_tail() {
        with_table(|table| {
            insert(table, &entries(1..=10, 10)).unwrap();
            insert(table, &entries(11..=20, 10)).unwrap();
            assert_eq!(delete_through(table, 14, 100).unwrap(), 2);
            let left = read_from(table, 0, usize::MAX).unwrap();
            assert_eq!(left, entries(15..=20, 10));
            assert_eq!(read_from(table, 15, 1).unwrap(), entries(15..=15, 10));
        });
    }

    /// A damaged block, or an entry stored alone as an older Airlock did,
    /// is an error naming it, not a shorter trail.
    #[test]
    fn a_damaged_block_is_named() {
        with_table(|table| {
            insert(table, &entries(1..=3, 10)).unwrap();
            table.insert(4, b"\x05\x00\x00\x00junk".as_slice()).unwrap();
            let error = read_from(table, 0, 10).unwrap_err();
            assert_eq!(error.to_string(), "the audit block at 4 is damaged");
            table.insert(4, br#"{"seq":4}"#.as_slice()).unwrap();
            let error = read_from(table, 0, 10).unwrap_err();
            assert!(error.to_string().contains("older Airlock"), "{error}");
        });
    }
}
