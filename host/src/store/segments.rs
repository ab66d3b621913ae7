//! Sealed audit segments: the older part of the trail, moved out of the live
//! store into one redb file per range of sequence numbers,
//! `<data_dir>/audit/<first>-<last>.redb` (20-digit, zero-padded). A segment
//! is written once, to a temporary name, made durable, and renamed into
//! place; after that it is only read. Retention drops whole segment files,
//! so the live file stays small and no compaction is ever needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Durability, ReadOnlyDatabase, ReadableDatabase};

use super::blocks;
use super::tables::{self, AUDIT};
use super::StoreError;

/// The sequence numbers a sealed segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRange {
    pub first: u64,
    pub last: u64,
}

struct Sealed {
    last: u64,
    path: PathBuf,
    database: ReadOnlyDatabase,
}

/// The sealed segments of one data dir, keyed by first sequence number.
pub(crate) struct Segments {
    directory: PathBuf,
    sealed: RwLock<BTreeMap<u64, Sealed>>,
}

const SUFFIX: &str = ".redb";
const TEMPORARY: &str = ".partial";

fn fail(operation: impl Into<String>) -> impl FnOnce(&dyn std::fmt::Display) -> StoreError {
    let operation = operation.into();
    move |error| StoreError::new(operation, error)
}

impl Segments {
    /// Open every segment in `directory` (created if missing); a segment left
    /// half-written by a crash is removed (its entries are still live).
    pub(super) fn open(directory: &Path) -> Result<Segments, StoreError> {
        let listing = format!("read {}", directory.display());
        std::fs::create_dir_all(directory).map_err(|error| fail(listing.clone())(&error))?;
        let mut sealed = BTreeMap::new();
        for item in std::fs::read_dir(directory).map_err(|error| fail(listing.clone())(&error))? {
            let path = item.map_err(|error| fail(listing.clone())(&error))?.path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            if name.ends_with(TEMPORARY) {
                std::fs::remove_file(&path)
                    .map_err(|error| fail(format!("remove {}", path.display()))(&error))?;
                continue;
            }
            let Some(range) = parse_name(name) else {
                continue;
            };
            let database = tables::builder()
                .open_read_only(&path)
                .map_err(|error| fail(format!("open {}", path.display()))(&error))?;
            sealed.insert(
                range.first,
                Sealed {
                    last: range.last,
                    path,
                    database,
                },
            );
        }
        Ok(Segments {
            directory: directory.to_owned(),
            sealed: RwLock::new(sealed),
        })
    }

    /// Every sealed range, oldest first.
    pub(super) fn ranges(&self) -> Vec<SegmentRange> {
        self.read()
            .iter()
            .map(|(first, sealed)| SegmentRange {
                first: *first,
                last: sealed.last,
            })
            .collect()
    }

    /// The highest sealed sequence number (0 if none).
    pub(super) fn sealed_through(&self) -> u64 {
        self.read()
            .values()
            .next_back()
            .map_or(0, |sealed| sealed.last)
    }

    /// Write `entries` (in order, non-empty) as a new durable segment.
    pub(super) fn seal(&self, entries: &[(u64, Vec<u8>)]) -> Result<SegmentRange, StoreError> {
        let (Some((first, _)), Some((last, _))) = (entries.first(), entries.last()) else {
            return Err(StoreError::new("seal audit segment", "nothing to seal"));
        };
        let range = SegmentRange {
            first: *first,
            last: *last,
        };
        let name = segment_name(range);
        let path = self.directory.join(&name);
        let partial = self.directory.join(format!("{name}{TEMPORARY}"));
        let operation = format!("seal {}", path.display());
        {
            let database = tables::builder()
                .create(&partial)
                .map_err(|error| fail(&*operation)(&error))?;
            let mut transaction = database
                .begin_write()
                .map_err(|error| fail(&*operation)(&error))?;
            transaction
                .set_durability(Durability::Immediate)
                .map_err(|error| fail(&*operation)(&error))?;
            {
                let mut table = transaction
                    .open_table(AUDIT)
                    .map_err(|error| fail(&*operation)(&error))?;
                blocks::insert(&mut table, entries).map_err(|error| fail(&*operation)(&error))?;
            }
            transaction
                .commit()
                .map_err(|error| fail(&*operation)(&error))?;
        }
        std::fs::rename(&partial, &path).map_err(|error| fail(&*operation)(&error))?;
        sync_directory(&self.directory).map_err(|error| fail(&*operation)(&error))?;
        let database = tables::builder()
            .open_read_only(&path)
            .map_err(|error| fail(&*operation)(&error))?;
        self.write().insert(
            range.first,
            Sealed {
                last: range.last,
                path,
                database,
            },
        );
        Ok(range)
    }

    /// Delete the segment starting at `first`.
    pub(super) fn remove(&self, first: u64) -> Result<(), StoreError> {
        let Some(sealed) = self.write().remove(&first) else {
            return Err(StoreError::new(
                "remove audit segment",
                format!("no segment starts at {first}"),
            ));
        };
        let operation = format!("remove {}", sealed.path.display());
        drop(sealed.database);
        std::fs::remove_file(&sealed.path).map_err(|error| fail(&*operation)(&error))?;
        sync_directory(&self.directory).map_err(|error| fail(&*operation)(&error))
    }

    /// Up to `limit` sealed entries from `from` on, in order.
    pub(super) fn read_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let sealed = self.read();
        let mut entries = Vec::new();
        // The segment holding `from` (if any) and every later one.
        let start = sealed
            .range(..=from)
            .next_back()
            .map_or(from, |(first, _)| *first);
        for (first, segment) in sealed.range(start..) {
            if entries.len() >= limit {
                break;
            }
            if segment.last < from {
                continue;
            }
            let operation = format!("read {}", segment.path.display());
            let transaction = segment
                .database
                .begin_read()
                .map_err(|error| fail(&*operation)(&error))?;
            let table = transaction
                .open_table(AUDIT)
                .map_err(|error| fail(&*operation)(&error))?;
            let found = blocks::read_from(&table, from.max(*first), limit - entries.len())
                .map_err(|error| error.during(&operation))?;
            entries.extend(found);
        }
        Ok(entries)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Sealed>> {
        self.sealed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Sealed>> {
        self.sealed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn segment_name(range: SegmentRange) -> String {
    format!("{:020}-{:020}{SUFFIX}", range.first, range.last)
}

fn parse_name(name: &str) -> Option<SegmentRange> {
    let (first, last) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let range = SegmentRange {
        first: first.parse().ok()?,
        last: last.parse().ok()?,
    };
    (range.first <= range.last).then_some(range)
}

/// Make a rename or removal in `directory` durable.
fn sync_directory(directory: &Path) -> std::io::Result<()> {
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_nonsense_is_ignored() {
        let range = SegmentRange { first: 7, last: 42 };
        assert_eq!(parse_name(&segment_name(range)), Some(range));
        assert_eq!(parse_name("notes.txt"), None);
        assert_eq!(parse_name("9-3.redb"), None);
    }
}
