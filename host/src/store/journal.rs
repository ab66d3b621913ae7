//! The live file's journal, `<data_dir>/airlock.journal`: what makes a
//! commit to the live redb file durable without redb's own fsync.
//!
//! A redb commit that is durable by itself writes a few pages scattered
//! over the file (the changed leaves and branches, the table roots, the
//! allocator's state, the header) and waits for all of them: here about
//! 2 ms a commit, against 0.3 ms for one sequential write. So each commit
//! first appends one frame to this file and syncs it (one write, one
//! `fdatasync`), then commits to redb without syncing. Every so often
//! ([`Journal::checkpoint_due`]) redb makes everything durable in one
//! synced commit and the journal starts again, empty. After a crash, the
//! frames written since the last checkpoint are replayed into redb when the
//! store opens; a frame the crash cut short fails its checksum and ends the
//! replay, and it was never acknowledged.
//!
//! A frame: payload length (u32), SHA-256 of the payload (32 bytes), the
//! payload. The payload: the entry count (u32), then each entry's sequence
//! number (u64) and bytes (u32 length, bytes); the change count (u32), then
//! each change's table name (u8 length, name), key (u32 length, key) and
//! the record it leaves (u8: 1 and u32 length and bytes, or 0 for deleted).
//! Integers are little-endian.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{StateChange, StateTable, StoreError};

/// Most time between checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// Most journal bytes between checkpoints (what a restart may replay).
const CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;
const HEADER: usize = 4 + 32;

/// What one journal frame carried: entries and the records they left.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Frame {
    pub entries: Vec<(u64, Vec<u8>)>,
    pub changes: Vec<StateChange>,
}

/// The open journal; the live file's only writer holds it.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    checkpointed: Instant,
    buffer: Vec<u8>,
}

impl Journal {
    /// Open (or create) the journal at `path`; returns it with the frames
    /// it holds, up to the first incomplete or damaged one.
    pub(super) fn open(path: &Path) -> Result<(Journal, Vec<Frame>), StoreError> {
        let fail = |error: &dyn std::fmt::Display| {
            StoreError::new(format!("open {}", path.display()), error)
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|error| fail(&error))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|error| fail(&error))?;
        let frames = parse(&bytes);
        let journal = Journal {
            file,
            path: path.to_owned(),
            len: 0,
            checkpointed: Instant::now(),
            buffer: Vec::new(),
        };
        Ok((journal, frames))
    }

    /// Append one frame of `entries` and `changes` and sync it. On failure
    /// nothing of it stays.
    pub(super) fn append(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        encode_frame(&mut self.buffer, entries, changes);
        let written = self
            .file
            .write_all_at(&self.buffer, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let error = self.fail("append to", &error);
            // Best effort: a frame half on disk fails its checksum anyway.
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.len += self.buffer.len() as u64;
        Ok(())
    }

    /// Drop the frame just appended: its commit to redb failed.
    pub(super) fn undo_last(&mut self) -> Result<(), StoreError> {
        self.truncate(self.len.saturating_sub(self.buffer.len() as u64))
    }

    /// Whether redb should make its commits durable now.
    pub(super) fn checkpoint_due(&self) -> bool {
        self.len >= CHECKPOINT_BYTES
            || (self.len > 0 && self.checkpointed.elapsed() >= CHECKPOINT_EVERY)
    }

    /// redb made everything durable: start again, empty.
    pub(super) fn checkpointed(&mut self) -> Result<(), StoreError> {
        self.truncate(0)?;
        self.checkpointed = Instant::now();
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_data())
            .map_err(|error| self.fail("truncate", &error))?;
        self.len = len;
        Ok(())
    }

    fn fail(&self, operation: &str, error: &dyn std::fmt::Display) -> StoreError {
        StoreError::new(format!("{operation} {}", self.path.display()), error)
    }
}

fn put_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    // Entries and records are far below 4 GiB (the writer batches them).
    buffer.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buffer.extend_from_slice(bytes);
}

fn put_count(buffer: &mut Vec<u8>, count: usize) {
    buffer.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
}

/// Encode one frame into `buffer` (cleared first).
fn encode_frame(buffer: &mut Vec<u8>, entries: &[(u64, Vec<u8>)], changes: &[StateChange]) {
    buffer.clear();
    buffer.resize(HEADER, 0);
    put_count(buffer, entries.len());
    for (seq, bytes) in entries {
        buffer.extend_from_slice(&seq.to_le_bytes());
        put_bytes(buffer, bytes);
    }
    put_count(buffer, changes.len());
    for change in changes {
        let (table, key) = change.target();
        let name = table.name().as_bytes();
        buffer.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        buffer.extend_from_slice(name);
        put_bytes(buffer, key.as_bytes());
        match change.value() {
            Some(value) => {
                buffer.push(1);
                put_bytes(buffer, value);
            }
            None => buffer.push(0),
        }
    }
    let payload = buffer.len() - HEADER;
    let digest = Sha256::digest(&buffer[HEADER..]);
    buffer[..4].copy_from_slice(&u32::try_from(payload).unwrap_or(u32::MAX).to_le_bytes());
    buffer[4..HEADER].copy_from_slice(&digest);
}

/// Every whole, intact frame at the start of `bytes`.
fn parse(bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(payload) = rest.get(HEADER..HEADER + len) else {
            break;
        };
        if Sha256::digest(payload).as_slice() != &rest[4..HEADER] {
            break;
        }
        match decode_payload(payload) {
            Some(frame) => frames.push(frame),
            None => break,
        }
        rest = &rest[HEADER + len..];
    }
    frames
}

/// Reads the fields of a payload in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()?;
        self.take(len)
    }
}

fn decode_payload(payload: &[u8]) -> Option<Frame> {
    let mut reader = Reader(payload);
    let mut frame = Frame::default();
    for _ in 0..reader.u32()? {
        let seq = reader.u64()?;
        frame.entries.push((seq, reader.bytes()?.to_vec()));
    }
    for _ in 0..reader.u32()? {
        let name_len = usize::from(reader.u8()?);
        let table = StateTable::named(std::str::from_utf8(reader.take(name_len)?).ok()?)?;
        let key = std::str::from_utf8(reader.bytes()?).ok()?.to_owned();
        frame.changes.push(match reader.u8()? {
            1 => StateChange::Put {
                table,
                key,
                value: reader.bytes()?.to_vec(),
            },
            0 => StateChange::Delete { table, key },
            _ => return None,
        });
    }
    reader.0.is_empty().then_some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            entries: vec![
                (seq, format!("entry {seq}").into_bytes()),
                (seq + 1, b"{}".to_vec()),
            ],
            changes: vec![
                StateChange::Put {
                    table: StateTable::Approvals,
                    key: format!("apr_{seq}"),
                    value: b"pending".to_vec(),
                },
                StateChange::Delete {
                    table: StateTable::Grants,
                    key: "g".to_owned(),
                },
            ],
        }
    }

    /// Frames come back as written, and a compare-and-swap comes back as
    /// the record it leaves.
    #[test]
    fn frames_round_trip_and_a_swap_replays_as_the_record_it_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, found) = Journal::open(&path).unwrap();
        assert!(found.is_empty());
        let first = frame(1);
        journal.append(&first.entries, &first.changes).unwrap();
        let swap = StateChange::Replace {
            table: StateTable::RoutingOverlay,
            key: "k".to_owned(),
            expected: Some(b"old".to_vec()),
            value: None,
        };
        journal.append(&[(3, b"x".to_vec())], &[swap]).unwrap();
        drop(journal);
        let (_, found) = Journal::open(&path).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], first);
        assert_eq!(
            found[1].changes,
            vec![StateChange::Delete {
                table: StateTable::RoutingOverlay,
                key: "k".to_owned()
            }]
        );
    }

    /// A crash in the middle of a write leaves a short or damaged last
    /// frame: the frames before it are kept, it and anything after are not.
    #[test]
    fn a_cut_or_damaged_frame_ends_what_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).unwrap();
        for seq in [1, 3, 5] {
            let f = frame(seq);
            journal.append(&f.entries, &f.changes).unwrap();
        }
        drop(journal);
        let whole = std::fs::read(&path).unwrap();
        let frame_len = whole.len() / 3;
        // Cut inside the third frame.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        assert_eq!(Journal::open(&path).unwrap().1.len(), 2);
        // One byte flipped in the second frame's payload.
        let mut damaged = whole.clone();
        damaged[frame_len + HEADER + 10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let found = Journal::open(&path).unwrap().1;
        assert_eq!(found, vec![frame(1)]);
    }

    /// A checkpoint empties the journal; undo drops the last frame only.
    #[test]
    fn checkpoint_empties_and_undo_drops_the_last_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).unwrap();
        let (a, b) = (frame(1), frame(3));
        journal.append(&a.entries, &a.changes).unwrap();
        journal.append(&b.entries, &b.changes).unwrap();
        journal.undo_last().unwrap();
        assert_eq!(Journal::open(&path).unwrap().1, vec![frame(1)]);
        // A few bytes, just opened: neither limit reached yet.
        assert!(!journal.checkpoint_due());
        journal.checkpointed().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(!journal.checkpoint_due());
    }
}
