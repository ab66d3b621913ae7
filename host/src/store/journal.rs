//! The live file's journal, `<data_dir>/airlock.journal`: what makes a
//! commit to the live redb file durable without redb's own fsync.
//!
//! A redb commit that is durable by itself writes a few pages scattered
//! over the file (the changed leaves and branches, the table roots, the
//! allocator's state, the header) and waits for all of them: here about
//! 2 ms a commit, against 0.3 ms for one sequential write. So each commit
//! first writes one frame to this file and syncs it (one write, one
//! `fdatasync`), then commits to redb without syncing. Every so often
//! ([`Journal::checkpoint_due`]) redb makes everything durable in one
//! synced commit and the journal starts again, empty. After a crash, the
//! frames written since the last checkpoint are replayed into redb when the
//! store opens; a frame the crash cut short fails its checksum and ends the
//! replay, and it was never acknowledged.
//!
//! The file is reused, not truncated: a frame written inside the file's
//! length syncs only its data, while one that grows the file makes
//! `fdatasync` write the inode too (here 0.1 ms against 0.2 to 4 ms). It
//! grows in [`GROWTH`] steps of zeros and keeps its size across
//! checkpoints. Starting again is a new *epoch* in the header; every
//! frame names its epoch, so the older frames still in the file end the
//! replay where the new ones do.
//!
//! The header ([`HEADER_BLOCK`] bytes, the rest zeros): the magic
//! `airlockj`, the epoch (u64), and the CRC-32 of those 16 bytes (u32). A
//! frame: payload length (u32), epoch (u64), the CRC-32 of those 12 bytes
//! and the payload (u32), the payload. A CRC, not a cryptographic hash:
//! it tells a torn write from a whole one, and the audit entries inside
//! carry their own hash chain. The payload: the entries as a block of
//! the audit table encodes them ([`super::blocks`]: the entry count (u32),
//! then each entry's sequence number (u64) and bytes (u32 length, bytes));
//! the change count (u32), then each change's table name (u8 length, name),
//! key (u32 length, key) and the record it leaves (u8: 1 and u32 length
//! and bytes, or 0 for deleted). Integers are little-endian.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::blocks::{put_bytes, put_count, put_entries, Reader};
use super::{StateChange, StateTable, StoreError};

/// Most time between checkpoints. A checkpoint writes out every page redb
/// buffered since the last one, and commits wait for it: here one every
/// 2 s took 35-52 ms, one every 250 ms 9-12 ms, for the same req/s.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Most journal bytes between checkpoints (what a restart may replay).
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// The file's header block; frames follow it.
const HEADER_BLOCK: u64 = 4096;
const MAGIC: &[u8; 8] = b"airlockj";
/// A frame's length, epoch and checksum.
const FRAME_HEAD: usize = 4 + 8 + 4;
/// How much the file grows when a frame does not fit.
const GROWTH: u64 = 1024 * 1024;

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
    /// What every frame of this journal names; older frames name another.
    epoch: u64,
    /// Where the next frame goes.
    len: u64,
    /// The file's length: zeros or stale frames past `len`.
    reserved: u64,
    checkpointed: Instant,
    buffer: Vec<u8>,
    /// A new epoch's header failed to reach the disk, which may hold it
    /// anyway: it is written again before the next frame.
    header_unsure: bool,
    /// A failed commit's frame could not be erased: no frame may follow it.
    stuck: Option<String>,
}

impl Journal {
    /// Open (or create) the journal at `path`; returns it with the frames
    /// of its epoch, up to the first incomplete or damaged one.
    ///
    /// # Errors
    /// When the file cannot be read or written, or holds something other
    /// than a journal (its frames may be needed: nothing is overwritten).
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
        let mut journal = Journal {
            file,
            path: path.to_owned(),
            epoch: 0,
            len: HEADER_BLOCK,
            reserved: bytes.len() as u64,
            checkpointed: Instant::now(),
            buffer: Vec::new(),
            header_unsure: false,
            stuck: None,
        };
        // Nothing, or a first header a crash cut short: no frames yet.
        if bytes.iter().all(|byte| *byte == 0) {
            journal.start_epoch(1)?;
            return Ok((journal, Vec::new()));
        }
        journal.epoch = read_header(&bytes).ok_or_else(|| {
            fail(&"not an Airlock journal, or its header is damaged (move it away to start without it)")
        })?;
        let (frames, len) = parse(&bytes, journal.epoch);
        journal.len = len;
        Ok((journal, frames))
    }

    /// Write one frame of `entries` and `changes` and sync it. On failure
    /// nothing of it stays.
    ///
    /// # Errors
    /// When the write or sync fails, and from then on if a failed frame
    /// could not be erased (restart to replay and check the journal).
    pub(super) fn append(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        if let Some(cause) = &self.stuck {
            return Err(self.fail("append to", cause));
        }
        if self.header_unsure {
            // redb was made durable before the header failed: finish that
            // checkpoint first.
            self.checkpointed()?;
        }
        encode_frame(&mut self.buffer, self.epoch, entries, changes);
        let end = self.len + self.buffer.len() as u64;
        let written = self
            .reserve(end)
            .and_then(|()| self.file.write_all_at(&self.buffer, self.len))
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let error = self.fail("append to", &error);
            self.erase(self.len);
            return Err(error);
        }
        self.len = end;
        Ok(())
    }

    /// Grow the file with zeros, in [`GROWTH`] steps, to hold `end` bytes;
    /// the caller's sync makes them durable.
    fn reserve(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.reserved {
            return Ok(());
        }
        let grown = end.div_ceil(GROWTH) * GROWTH;
        let zeros = vec![0; usize::try_from(grown - self.reserved).unwrap_or(0)];
        self.file.write_all_at(&zeros, self.reserved)?;
        self.reserved = grown;
        Ok(())
    }

    /// Drop the frame just appended: its commit to redb failed.
    pub(super) fn undo_last(&mut self) {
        self.len = self.len.saturating_sub(self.buffer.len() as u64);
        self.erase(self.len);
    }

    /// Zero the frame head at `len` (what ends a replay there), synced. If
    /// that fails, a replay could apply the failed frame and anything after
    /// it: the journal takes no more frames.
    fn erase(&mut self, at: u64) {
        let erased = self
            .file
            .write_all_at(&[0; FRAME_HEAD], at)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = erased {
            let cause = format!(
                "a failed commit's frame could not be erased ({error}); restart Airlock once the disk is writable"
            );
            tracing::error!(journal = %self.path.display(), "{cause}");
            self.stuck = Some(cause);
        }
    }

    /// Whether redb should make its commits durable now.
    pub(super) fn checkpoint_due(&self) -> bool {
        let written = self.len - HEADER_BLOCK;
        written >= CHECKPOINT_BYTES
            || (written > 0 && self.checkpointed.elapsed() >= CHECKPOINT_EVERY)
    }

    /// redb made everything durable: start again, empty.
    pub(super) fn checkpointed(&mut self) -> Result<(), StoreError> {
        self.start_epoch(self.epoch.wrapping_add(1))?;
        self.checkpointed = Instant::now();
        Ok(())
    }

    /// Write the header of `epoch`, synced; the journal is then empty.
    fn start_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        let mut header = vec![0; usize::try_from(HEADER_BLOCK).unwrap_or(4096)];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&epoch.to_le_bytes());
        let crc = crc32fast::hash(&header[..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        // The header is one block: it is on disk whole or not at all.
        self.header_unsure = true;
        self.reserve(HEADER_BLOCK)
            .and_then(|()| self.file.write_all_at(&header, 0))
            .and_then(|()| self.file.sync_data())
            .map_err(|error| self.fail("start a new epoch in", &error))?;
        self.header_unsure = false;
        self.epoch = epoch;
        self.len = HEADER_BLOCK;
        Ok(())
    }

    fn fail(&self, operation: &str, error: &dyn std::fmt::Display) -> StoreError {
        StoreError::new(format!("{operation} {}", self.path.display()), error)
    }
}

/// The epoch a header names, if it is one.
fn read_header(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..20)?;
    (&header[..8] == MAGIC && header[16..20] == crc32fast::hash(&header[..16]).to_le_bytes())
        .then(|| u64::from_le_bytes(header[8..16].try_into().unwrap_or_default()))
}

/// A frame's checksum: over its length, epoch and payload.
fn checksum(head: &[u8], payload: &[u8]) -> [u8; 4] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[..12]);
    hasher.update(payload);
    hasher.finalize().to_le_bytes()
}

/// Encode one frame into `buffer` (cleared first).
fn encode_frame(
    buffer: &mut Vec<u8>,
    epoch: u64,
    entries: &[(u64, Vec<u8>)],
    changes: &[StateChange],
) {
    buffer.clear();
    buffer.resize(FRAME_HEAD, 0);
    put_entries(buffer, entries);
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
    let payload = buffer.len() - FRAME_HEAD;
    buffer[..4].copy_from_slice(&u32::try_from(payload).unwrap_or(u32::MAX).to_le_bytes());
    buffer[4..12].copy_from_slice(&epoch.to_le_bytes());
    let crc = checksum(&buffer[..12], &buffer[FRAME_HEAD..]);
    buffer[12..FRAME_HEAD].copy_from_slice(&crc);
}

/// Every whole, intact frame of `epoch` after the header of `bytes`, and
/// where the next frame goes.
fn parse(bytes: &[u8], epoch: u64) -> (Vec<Frame>, u64) {
    let mut frames = Vec::new();
    let mut at = usize::try_from(HEADER_BLOCK).unwrap_or(usize::MAX);
    while let Some(head) = bytes.get(at..at + FRAME_HEAD) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(payload) = bytes.get(at + FRAME_HEAD..at + FRAME_HEAD + len) else {
            break;
        };
        if head[4..12] != epoch.to_le_bytes() || checksum(head, payload) != head[12..] {
            break;
        }
        match decode_payload(payload) {
            Some(frame) => frames.push(frame),
            None => break,
        }
        at += FRAME_HEAD + len;
    }
    (frames, at as u64)
}

fn decode_payload(payload: &[u8]) -> Option<Frame> {
    let mut reader = Reader(payload);
    let mut frame = Frame {
        entries: reader.entries()?,
        changes: Vec::new(),
    };
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
        let mut starts = Vec::new();
        for seq in [1, 3, 5] {
            starts.push(usize::try_from(journal.len).unwrap());
            let f = frame(seq);
            journal.append(&f.entries, &f.changes).unwrap();
        }
        drop(journal);
        let whole = std::fs::read(&path).unwrap();
        // Cut inside the third frame.
        std::fs::write(&path, &whole[..starts[2] + FRAME_HEAD + 5]).unwrap();
        assert_eq!(Journal::open(&path).unwrap().1.len(), 2);
        // One byte flipped in the second frame's payload.
        let mut damaged = whole.clone();
        damaged[starts[1] + FRAME_HEAD + 10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let found = Journal::open(&path).unwrap().1;
        assert_eq!(found, vec![frame(1)]);
        // Something that is not a journal is refused, not overwritten.
        std::fs::write(&path, b"not a journal").unwrap();
        assert!(Journal::open(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a journal");
    }

    /// Undo drops the last frame only; a checkpoint empties the journal
    /// without shrinking the file, and the frames of earlier epochs still
    /// in it are not replayed.
    #[test]
    fn checkpoint_starts_an_epoch_whose_replay_skips_the_older_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).unwrap();
        let (a, b) = (frame(1), frame(3));
        journal.append(&a.entries, &a.changes).unwrap();
        journal.append(&b.entries, &b.changes).unwrap();
        journal.undo_last();
        assert_eq!(Journal::open(&path).unwrap().1, vec![frame(1)]);
        // A few bytes: due by time only, once the interval has passed.
        journal.checkpointed = Instant::now();
        assert!(!journal.checkpoint_due());
        journal.checkpointed = Instant::now() - CHECKPOINT_EVERY;
        assert!(journal.checkpoint_due());
        let size = std::fs::metadata(&path).unwrap().len();
        for epoch in 0..3 {
            journal.checkpointed().unwrap();
            assert!(!journal.checkpoint_due());
            assert!(Journal::open(&path).unwrap().1.is_empty());
            // The same frames again: where the older ones lie, byte for byte
            // but for their epoch.
            journal.append(&a.entries, &a.changes).unwrap();
            journal.append(&b.entries, &b.changes).unwrap();
            let small = [(10 + epoch, b"x".to_vec())];
            journal.checkpointed().unwrap();
            journal.append(&small, &[]).unwrap();
            let (_, found) = Journal::open(&path).unwrap();
            assert_eq!(
                found,
                vec![Frame {
                    entries: small.to_vec(),
                    changes: Vec::new()
                }]
            );
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    }

    /// A journal whose file stops taking writes (here: a read-only handle
    /// swapped in): a failed new-epoch header is written again before the
    /// next frame, and a failed commit's frame that cannot be erased stops
    /// every later append.
    #[test]
    fn a_header_or_erase_that_failed_is_never_written_past() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).unwrap();
        let writable = journal.file.try_clone().unwrap();
        let read_only = || File::open(&path).unwrap();
        let (a, b) = (frame(1), frame(3));
        journal.append(&a.entries, &a.changes).unwrap();

        journal.file = read_only();
        assert!(journal.checkpointed().is_err());
        journal.file = writable.try_clone().unwrap();
        journal.append(&b.entries, &b.changes).unwrap();
        // The frame went into the new epoch: the one before the checkpoint
        // (whose commit redb already holds) is not replayed.
        assert_eq!(Journal::open(&path).unwrap().1, vec![frame(3)]);

        journal.file = read_only();
        journal.undo_last();
        journal.file = writable;
        let error = journal.append(&a.entries, &a.changes).unwrap_err();
        assert!(error.to_string().contains("could not be erased"), "{error}");
        assert_eq!(Journal::open(&path).unwrap().1, vec![frame(3)]);
    }
}
