//! The audit trail: an append-only, hash-chained record of every decision
//! Airlock makes, written through [`AuditLog`] (one writer thread, group
//! commit) into the [`Store`](crate::store::Store).
//!
//! ## The encoding (what an outside tool recomputes)
//!
//! Each entry is stored as compact JSON with its fields in the order of
//! [`AuditEntry`] (absent optional fields omitted), `hash` last. The entry's
//! hash is the lower-case hex SHA-256 of that JSON *without* the `hash`
//! field, which includes `prev_hash`, the hash of the entry before (64 zeros
//! for the first). In Python:
//!
//! ```text
//! body = dict(entry); h = body.pop("hash")
//! assert h == sha256(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
//! ```
//!
//! Changing, removing or reordering a stored entry breaks the chain at that
//! sequence number; [`verify`] names it.
//!
//! ## Retention
//!
//! The trail is sealed into segment files as it grows ([`Sealing`]);
//! [`prune`] drops whole old segments and first appends a `checkpoint`
//! entry naming the first entry kept and the hash it continues from. A
//! trail that starts after entry 1 verifies only if a checkpoint vouches
//! for exactly that start.

pub mod export;
pub mod heads;
pub mod query;
mod writer;

pub use writer::{AuditError, AuditLog, Durability, Sealing, BATCH_WINDOW};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// The hash before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The decision on a request, written before it is carried out.
    RequestDecision,
    /// What came of a forwarded request, written after.
    RequestOutcome,
    /// A policy was loaded (at start, or a new version from the folder).
    PolicyLoaded,
    /// A policy file was refused; the previous version keeps serving.
    PolicyRejected,
    /// A policy no route names was removed from the folder and unloaded.
    PolicyRemoved,
    /// The node started serving.
    NodeStarted,
    /// The node stopped.
    NodeStopped,
    /// Older entries were pruned; this one says where the trail resumes.
    Checkpoint,
    /// An approver voted on an approval (the deciding vote also names the
    /// outcome), in the same commit as the approval's new state.
    ApprovalVote,
    /// An approval expired or was cancelled.
    ApprovalResolved,
    /// An approval that carried a grant passed: the grant starts, in the
    /// same commit as the deciding vote.
    GrantCreated,
    /// An admin ended a grant early.
    GrantRevoked,
    /// A grant reached the end of its lifetime.
    GrantExpired,
    /// The decision on an operator's routing change (allow, deny, hold).
    ChangeDecision,
    /// A routing change took effect (with who asked and who approved).
    ChangeApplied,
    /// An applied change was undone: its pools went bad in the watch
    /// window, or an admin reset the overlay.
    ChangeRolledBack,
    /// The config file was reloaded; the reason summarizes what changed.
    ConfigReloaded,
    /// Something the balancer itself did or asked to do (a failover, and
    /// the fail-back after it), with the policies' decision.
    BalancerEvent,
}

/// What a `checkpoint` entry vouches for: the entries before `first_kept`
/// were pruned on purpose, and `first_kept` continues from `continues_from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub first_kept: u64,
    pub continues_from: String,
    /// The `--before` cutoff, in milliseconds since the Unix epoch.
    pub pruned_before_ms: i64,
}

/// The request an entry is about. No credentials, no body content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    pub method: String,
    pub host: String,
    /// Normalized path.
    pub path: String,
    pub route: String,
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body_size: Option<u64>,
}

/// A policy that judged, by name and component hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    pub hash: String,
}

/// What came of a forwarded request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: u16,
    /// Response body size, when the response declared it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
    /// From forwarding to the response head, in microseconds (integers
    /// only in the encoding: no float formatting to disagree on).
    pub duration_us: u64,
}

/// One entry of the trail. Field order is the canonical encoding's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub node: String,
    pub kind: EntryKind,
    /// The principal's subject (`anonymous`, a certificate name, `airlock`).
    pub actor: String,
    /// Links a request's decision and outcome entries.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<RequestSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub policies: Vec<PolicyRef>,
    /// `allow`, `deny`, `hold` or a policy failure code.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checkpoint: Option<Checkpoint>,
    /// The approval a hold, vote or outcome belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub approval: Option<String>,
    /// The grant an entry is about, or that let a request pass.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grant: Option<String>,
    /// The routing change an entry is about, as the API took it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<String>,
    pub prev_hash: String,
    /// SHA-256 of this entry's encoding without this field.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
}

impl AuditEntry {
    /// An entry of `kind` by `actor`, with nothing else filled in yet.
    pub fn new(kind: EntryKind, actor: &str) -> Self {
        AuditEntry {
            seq: 0,
            time_ms: 0,
            node: String::new(),
            kind,
            actor: actor.to_owned(),
            request_id: None,
            request: None,
            policies: Vec::new(),
            decision: None,
            reason: None,
            outcome: None,
            checkpoint: None,
            approval: None,
            grant: None,
            change: None,
            trace: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this entry must carry: over its encoding without `hash`.
    pub fn compute_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.hash.clear();
        hex::encode(Sha256::digest(encode(&unsealed)))
    }

    /// Fill in `seq`, `prev_hash` and `hash`, chaining after `prev_hash`;
    /// returns the entry's stored encoding.
    pub fn seal(&mut self, seq: u64, prev_hash: &str) -> Vec<u8> {
        self.seq = seq;
        prev_hash.clone_into(&mut self.prev_hash);
        self.hash.clear();
        // One encoding serves both: `hash` is the last field and left out
        // while empty, so the stored form is the hashed form with
        // `,"hash":"..."` before its closing brace.
        let mut encoded = encode(self);
        self.hash = hex::encode(Sha256::digest(&encoded));
        if encoded.pop() == Some(b'}') {
            encoded.extend_from_slice(b",\"hash\":\"");
            encoded.extend_from_slice(self.hash.as_bytes());
            encoded.extend_from_slice(b"\"}");
        } else {
            encoded = encode(self);
        }
        encoded
    }
}

/// The canonical encoding: compact JSON, fields in declaration order.
pub fn encode(entry: &AuditEntry) -> Vec<u8> {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(entry).unwrap_or_default()
}

/// Parse a stored entry.
///
/// # Errors
/// When the bytes are not an entry.
pub fn decode(bytes: &[u8]) -> Result<AuditEntry, String> {
    serde_json::from_slice(bytes).map_err(|error| error.to_string())
}

/// Milliseconds since the Unix epoch, as entries record time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first entry kept (1 unless older ones were pruned).
    pub first: u64,
    /// Hash of the last good entry.
    pub head: String,
    /// The first entry this walk checked: `first`, or for a walk that went
    /// on from an earlier one ([`verify_since`]), the entry after it.
    pub checked_from: u64,
    /// The first sequence number where the chain breaks, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl Verification {
    fn broken(mut self, seq: u64, problem: String) -> Verification {
        self.ok = false;
        self.broken_at = Some(seq);
        self.problem = Some(problem);
        self
    }
}

/// Walk the whole trail and check every link: sequence numbers without gaps,
/// each entry's hash over its own encoding, each `prev_hash` equal to the
/// hash before, and, if the trail starts after entry 1, a checkpoint that
/// vouches for that start.
///
/// # Errors
/// When the store cannot be read (a broken chain is not an error, it is the
/// answer).
pub fn verify(store: &dyn Store) -> Result<Verification, StoreError> {
    let mut found = Verification {
        ok: true,
        entries: 0,
        first: 1,
        head: GENESIS_HASH.to_owned(),
        checked_from: 1,
        broken_at: None,
        problem: None,
    };
    // Damage found while reading (entries repeated, reordered or
    // overlapping in the stored blocks) is a broken chain, not an error.
    let mut first = match store.audit_from(0, 1) {
        Err(StoreError {
            damaged_at: Some(at),
            cause,
            ..
        }) => return Ok(found.broken(at, cause)),
        read => read?,
    };
    let Some((start, bytes)) = first.pop() else {
        return Ok(found);
    };
    found.first = start;
    found.checked_from = start;
    if start > 1 {
        // Taken on trust until a checkpoint vouches for it.
        found.head = decode(&bytes)
            .map(|entry| entry.prev_hash)
            .unwrap_or_default();
    }
    let walk = Walk {
        start,
        start_head: found.head.clone(),
        vouched: start == 1,
        next: start,
    };
    walk.check(store, found)
}

/// Check only what was added since `earlier`, a verification of the same
/// store that passed: the entry it ended on must still hold the hash it
/// ended with, and the trail must still start where it did; then each later
/// link is checked as [`verify`] checks it. Otherwise (the trail changed at
/// or before that entry, or was pruned since) the whole trail is walked.
/// What the answer's `checked_from` says.
///
/// # Errors
/// When the store cannot be read.
pub fn verify_since(store: &dyn Store, earlier: &Verification) -> Result<Verification, StoreError> {
    let Some(last) = (earlier.first + earlier.entries).checked_sub(1) else {
        return verify(store);
    };
    // Whether entry `seq` is stored (with `hash`, if given). A read that
    // fails, damage included, is a no: the full walk says what is wrong.
    let holds = |seq: u64, hash: &str| match store.audit_from(seq, 1) {
        Ok(page) => page.first().is_some_and(|(found, bytes)| {
            *found == seq && decode(bytes).is_ok_and(|entry| entry.hash == hash)
        }),
        Err(_) => false,
    };
    let starts_as_before = match store.audit_from(0, 1) {
        Ok(page) => page.first().is_some_and(|(seq, _)| *seq == earlier.first),
        Err(_) => false,
    };
    if !earlier.ok || !starts_as_before || !holds(last, &earlier.head) {
        return verify(store);
    }
    // The same start, already vouched for; the same entries up to `last`.
    let mut found = earlier.clone();
    found.checked_from = last + 1;
    let walk = Walk {
        start: earlier.first,
        start_head: String::new(),
        vouched: true,
        next: last + 1,
    };
    walk.check(store, found)
}

/// Where a walk along the chain stands: the trail's first entry and the
/// hash it continues from, whether a checkpoint has vouched for that start,
/// and the next entry to check.
struct Walk {
    start: u64,
    start_head: String,
    vouched: bool,
    next: u64,
}

impl Walk {
    /// Check every link from `next` on, adding to `found`.
    fn check(self, store: &dyn Store, mut found: Verification) -> Result<Verification, StoreError> {
        const PAGE: usize = 1024;
        let Walk {
            start,
            start_head,
            mut vouched,
            next: mut expected_seq,
        } = self;
        // The newest checkpoint before this start: where the unexplained gap begins.
        let mut gap_from = 1;
        loop {
            let page = match store.audit_from(expected_seq, PAGE) {
                Err(StoreError {
                    damaged_at: Some(at),
                    cause,
                    ..
                }) => return Ok(found.broken(at, cause)),
                read => read?,
            };
            let full = page.len() == PAGE;
            for (seq, bytes) in page {
                if seq != expected_seq {
                    return Ok(found.broken(
                        expected_seq,
                        format!("entry {expected_seq} is missing (next is {seq})"),
                    ));
                }
                let entry = match decode(&bytes) {
                    Ok(entry) => entry,
                    Err(error) => {
                        return Ok(found.broken(seq, format!("entry {seq} does not parse: {error}")))
                    }
                };
                let problem = if entry.seq != seq {
                    Some(format!("entry stored as {seq} says it is {}", entry.seq))
                } else if entry.prev_hash != found.head {
                    Some(format!(
                        "entry {seq} does not follow the entry before it (prev_hash differs)"
                    ))
                } else if entry.compute_hash() != entry.hash {
                    Some(format!(
                        "entry {seq} was altered (its hash does not match its content)"
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Ok(found.broken(seq, problem));
                }
                if let Some(checkpoint) = &entry.checkpoint {
                    if checkpoint.first_kept == start && checkpoint.continues_from == start_head {
                        vouched = true;
                    } else if checkpoint.first_kept < start {
                        gap_from = gap_from.max(checkpoint.first_kept);
                    }
                }
                found.head = entry.hash;
                found.entries += 1;
                expected_seq += 1;
            }
            if !full {
                break;
            }
        }
        if !vouched {
            return Ok(found.broken(
                gap_from,
                format!(
                    "entries {gap_from} to {} are gone and no checkpoint records pruning them",
                    start - 1
                ),
            ));
        }
        Ok(found)
    }
}

/// What [`prune`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    pub segments: usize,
    pub entries: u64,
    /// The first entry kept, when anything was pruned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_kept: Option<u64>,
}

/// Why [`prune`] could not.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("audit entry {seq} does not parse: {cause}")]
    Corrupt { seq: u64, cause: String },
}

/// Drop every sealed segment whose entries are all older than `before_ms`
/// (oldest first, stopping at the first newer one), after durably
/// recording a checkpoint entry through `log`. Live entries are never
/// pruned. A crash between the two leaves the segments and a checkpoint
/// that does not match the trail's start, which `verify` ignores; prune
/// again.
///
/// # Errors
/// When the store cannot be read, a segment's last entry is unreadable, or
/// the checkpoint cannot be recorded (then nothing is dropped).
pub async fn prune(
    store: &dyn Store,
    log: &AuditLog,
    before_ms: i64,
) -> Result<Pruned, PruneError> {
    let mut doomed = Vec::new();
    let mut continues_from = None;
    for range in store.audit_segments() {
        let Some((seq, bytes)) = store.audit_from(range.last, 1)?.pop() else {
            break;
        };
        let last = decode(&bytes).map_err(|cause| PruneError::Corrupt { seq, cause })?;
        if last.time_ms >= before_ms {
            break;
        }
        continues_from = Some(last.hash);
        doomed.push(range);
    }
    let (Some(continues_from), Some(newest)) = (continues_from, doomed.last()) else {
        return Ok(Pruned {
            segments: 0,
            entries: 0,
            first_kept: None,
        });
    };
    let first_kept = newest.last + 1;
    let mut entry = AuditEntry::new(EntryKind::Checkpoint, "airlock");
    entry.reason = Some(format!(
        "pruned {} segment(s) of entries older than {before_ms} ms",
        doomed.len()
    ));
    entry.checkpoint = Some(Checkpoint {
        first_kept,
        continues_from,
        pruned_before_ms: before_ms,
    });
    log.record(entry, Durability::Durable).await?;
    let mut entries = 0;
    for range in &doomed {
        store.remove_audit_segment(range.first)?;
        entries += range.last - range.first + 1;
    }
    Ok(Pruned {
        segments: doomed.len(),
        entries,
        first_kept: Some(first_kept),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(seq: u64, prev: &str) -> AuditEntry {
        let mut entry = AuditEntry::new(EntryKind::RequestDecision, "alice");
        entry.time_ms = 1_764_000_000_000 + i64::try_from(seq).unwrap();
        entry.node = "n1".into();
        entry.decision = Some("allow".into());
        entry.seal(seq, prev);
        entry
    }

    #[test]
    fn sealing_returns_exactly_the_encoding_of_the_sealed_entry() {
        let mut entry = AuditEntry::new(EntryKind::RequestOutcome, "bob \"the\" approver");
        entry.reason = Some("ünïcode, \\ and \"quotes\"".into());
        entry.grant = Some("grt_1".into());
        let stored = entry.seal(9, GENESIS_HASH);
        assert_eq!(stored, encode(&entry));
        assert_eq!(entry.hash, entry.compute_hash());
        assert_eq!(decode(&stored).unwrap(), entry);
    }

    #[test]
    fn the_encoding_is_stable_and_the_hash_covers_every_field() {
        let entry = sealed(1, GENESIS_HASH);
        let text = String::from_utf8(encode(&entry)).unwrap();
        assert!(text.starts_with(r#"{"seq":1,"time_ms":1764000000001,"node":"n1","kind":"request_decision","actor":"alice","decision":"allow","prev_hash":"000"#), "{text}");
        assert!(text.ends_with(&format!(r#","hash":"{}"}}"#, entry.hash)));
        let mut changed = entry.clone();
        changed.actor = "mallory".into();
        assert_ne!(changed.compute_hash(), entry.hash);
        assert_eq!(decode(&encode(&entry)).unwrap(), entry);
    }

    /// A trail of `count` entries written through the writer into the store
    /// in `dir` (created or continued); the store is closed again.
    async fn trail(dir: &std::path::Path, count: usize) -> std::path::PathBuf {
        trail_sealed(dir, count, Sealing::default()).await
    }

    async fn trail_sealed(
        dir: &std::path::Path,
        count: usize,
        sealing: Sealing,
    ) -> std::path::PathBuf {
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(crate::store::RedbStore::open(dir).unwrap());
        let log = AuditLog::start(store.clone(), "n1", sealing).unwrap();
        for i in 0..count {
            let mut entry = AuditEntry::new(EntryKind::RequestDecision, &format!("user{i}"));
            entry.decision = Some("allow".into());
            let durability = if i % 2 == 0 {
                Durability::Durable
            } else {
                Durability::Batched
            };
            log.record(entry, durability).await.unwrap();
        }
        // A last durable entry: everything batched before it is committed too.
        log.record(
            AuditEntry::new(EntryKind::NodeStopped, "airlock"),
            Durability::Durable,
        )
        .await
        .unwrap();
        close(log, store).await;
        dir.join(crate::store::RedbStore::FILE)
    }

    /// Stop the writer and wait until its threads let go of the store.
    async fn close(log: AuditLog, store: std::sync::Arc<dyn Store>) {
        drop(log);
        while std::sync::Arc::strong_count(&store) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The test-only tamper tool: rewrite the stored entries of a closed
    /// store file (the live file or a sealed segment).
    fn tamper(file: &std::path::Path, change: impl FnOnce(&mut Vec<crate::store::blocks::Entry>)) {
        crate::store::blocks::rewrite(file, change).unwrap();
    }

    fn verify_file(file: &std::path::Path) -> Verification {
        verify(&crate::store::RedbStore::open(file.parent().unwrap()).unwrap()).unwrap()
    }

    /// The stored bytes of entry `seq`.
    fn raw(entries: &mut [crate::store::blocks::Entry], seq: u64) -> &mut Vec<u8> {
        let found = entries.iter_mut().find(|(stored, _)| *stored == seq);
        &mut found.unwrap().1
    }

    fn verify_file_since(file: &std::path::Path, earlier: &Verification) -> Verification {
        let store = crate::store::RedbStore::open(file.parent().unwrap()).unwrap();
        verify_since(&store, earlier).unwrap()
    }

    #[tokio::test]
    async fn a_walk_since_an_earlier_one_checks_only_what_came_after() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 10).await;
        let earlier = verify_file(&file);
        assert!(earlier.ok && earlier.checked_from == 1, "{earlier:?}");
        let last = earlier.first + earlier.entries - 1;
        trail(dir.path(), 5).await;

        let since = verify_file_since(&file, &earlier);
        let whole = verify_file(&file);
        assert!(since.ok, "{since:?}");
        assert_eq!(since.checked_from, last + 1);
        assert_eq!((since.entries, &since.head), (whole.entries, &whole.head));

        // A new entry altered: found by the short walk.
        tamper(&file, |entries| {
            let bytes = raw(entries, last + 2);
            *bytes = String::from_utf8(bytes.clone())
                .unwrap()
                .replace("\"user1\"", "\"mallory\"")
                .into_bytes();
        });
        let since = verify_file_since(&file, &earlier);
        assert_eq!(since.broken_at, Some(last + 2), "{since:?}");

        // The entry the earlier walk ended on no longer holds its hash (the
        // past was rewritten): the whole trail is walked again.
        tamper(&file, |entries| {
            let mut prev_hash = String::new();
            for (seq, bytes) in entries.iter_mut() {
                let mut entry = decode(bytes).unwrap();
                if *seq == 3 {
                    entry.actor = "mallory".to_owned();
                }
                if *seq >= 3 {
                    *bytes = entry.seal(*seq, &prev_hash);
                }
                prev_hash = entry.hash;
            }
        });
        let since = verify_file_since(&file, &earlier);
        assert_eq!(since.checked_from, 1, "{since:?}");
    }

    #[tokio::test]
    async fn a_written_trail_verifies_and_continues_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 20).await;
        let first = verify_file(&file);
        assert!(first.ok, "{first:?}");
        assert_eq!(first.entries, 21);
        // A restart continues the same chain.
        let file = trail(dir.path(), 5).await;
        let second = verify_file(&file);
        assert!(second.ok, "{second:?}");
        assert_eq!(second.entries, 27);
    }

    #[tokio::test]
    async fn verify_names_the_entry_that_was_altered_removed_or_reordered() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 10).await;
        let pristine = std::fs::read(&file).unwrap();
        let restore = || std::fs::write(&file, &pristine).unwrap();

        tamper(&file, |entries| {
            let bytes = raw(entries, 4);
            *bytes = String::from_utf8_lossy(bytes)
                .replace("user3", "user9")
                .into_bytes();
        });
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(4)), "{found:?}");
        assert!(found.problem.unwrap().contains("altered"));

        restore();
        tamper(&file, |entries| entries.retain(|(seq, _)| *seq != 6));
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(6), "{found:?}");
        assert!(found.problem.unwrap().contains("missing"));

        restore();
        tamper(&file, |entries| {
            let two = std::mem::take(raw(entries, 2));
            let three = std::mem::replace(raw(entries, 3), two);
            *raw(entries, 2) = three;
        });
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(2), "{found:?}");

        restore();
        // A forged entry beside the real one, under the same number.
        tamper(&file, |entries| {
            let forged = raw(entries, 7).clone();
            entries.insert(7, (7, forged));
        });
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(7)), "{found:?}");
        assert!(found.problem.unwrap().contains("damaged"));

        restore();
        // Rewriting an entry and resealing it is caught at the next link.
        tamper(&file, |entries| {
            let bytes = raw(entries, 5);
            let mut entry = decode(bytes).unwrap();
            entry.actor = "mallory".into();
            let prev = entry.prev_hash.clone();
            entry.seal(5, &prev);
            *bytes = encode(&entry);
        });
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(6), "{found:?}");
        assert!(found.problem.unwrap().contains("does not follow"));
    }

    #[test]
    fn a_query_that_matches_little_reads_a_bounded_stretch_and_says_where_to_go_on() {
        use crate::store::Store as _;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::RedbStore::open(dir.path()).unwrap();
        let total = query::MAX_SCANNED as u64 + 10;
        let mut prev_hash = "0".repeat(64);
        let mut batch = Vec::new();
        for seq in 1..=total {
            let actor = if seq == total { "needle" } else { "hay" };
            let mut entry = AuditEntry::new(EntryKind::RequestDecision, actor);
            batch.push((seq, entry.seal(seq, &prev_hash)));
            prev_hash = entry.hash;
            if batch.len() == 5_000 || seq == total {
                store.append_audit(&batch, &[]).unwrap();
                batch.clear();
            }
        }
        let filter = query::AuditFilter {
            actor: Some("needle".to_owned()),
            ..Default::default()
        };
        let first = query::query(&store, &filter).unwrap();
        assert!(first.entries.is_empty());
        assert_eq!(first.next_cursor, Some(query::MAX_SCANNED as u64 + 1));
        let second = query::query(
            &store,
            &query::AuditFilter {
                cursor: first.next_cursor,
                ..filter
            },
        )
        .unwrap();
        assert_eq!(second.entries.len(), 1);
        assert_eq!(second.entries[0].actor, "needle");
        assert_eq!(second.next_cursor, None);
    }

    #[tokio::test]
    async fn queries_filter_and_page_with_stable_cursors() {
        let dir = tempfile::tempdir().unwrap();
        trail(dir.path(), 30).await;
        let store = crate::store::RedbStore::open(dir.path()).unwrap();
        let filter = query::AuditFilter {
            kind: Some(EntryKind::RequestDecision),
            limit: Some(12),
            ..Default::default()
        };
        let first = query::query(&store, &filter).unwrap();
        assert_eq!(first.entries.len(), 12);
        let second = query::query(
            &store,
            &query::AuditFilter {
                cursor: first.next_cursor,
                ..filter.clone()
            },
        )
        .unwrap();
        let third = query::query(
            &store,
            &query::AuditFilter {
                cursor: second.next_cursor,
                ..filter.clone()
            },
        )
        .unwrap();
        assert_eq!(third.entries.len(), 6);
        assert_eq!(third.next_cursor, None);
        assert_eq!(first.entries[0].actor, "user0");
        assert_eq!(second.entries[0].actor, "user12");
        let one = query::AuditFilter {
            actor: Some("user7".into()),
            ..Default::default()
        };
        assert_eq!(query::query(&store, &one).unwrap().entries.len(), 1);
        let bad = query::AuditFilter {
            since: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(matches!(
            query::query(&store, &bad),
            Err(query::QueryError::BadFilter { field: "since", .. })
        ));
    }

    #[tokio::test]
    async fn the_writer_seals_the_live_trail_and_reads_span_segments() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = Sealing { max_entries: 10 };
        trail_sealed(dir.path(), 40, sealing).await;
        let store = crate::store::RedbStore::open(dir.path()).unwrap();
        let segments = store.audit_segments();
        assert!(!segments.is_empty(), "nothing was sealed");
        assert_eq!(segments[0].first, 1);
        for pair in segments.windows(2) {
            assert_eq!(pair[1].first, pair[0].last + 1);
        }
        // Reads cross from segments into the live file without a seam.
        let all = store.audit_from(1, 100).unwrap();
        let seqs: Vec<u64> = all.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
        assert_eq!(store.last_audit().unwrap().unwrap().0, 41);
        drop(store);
        // A restart continues the chain after the sealed part.
        let file = trail_sealed(dir.path(), 3, sealing).await;
        let found = verify_file(&file);
        assert!(found.ok, "{found:?}");
        assert_eq!(found.entries, 45);
    }

    /// Seal the closed store in `dir` at `throughs` (deterministic segments).
    fn seal_at(dir: &std::path::Path, throughs: &[u64]) -> Vec<crate::store::SegmentRange> {
        let store = crate::store::RedbStore::open(dir).unwrap();
        for through in throughs {
            store.seal_audit(*through).unwrap();
        }
        store.audit_segments()
    }

    fn segment_file(
        dir: &std::path::Path,
        range: crate::store::SegmentRange,
    ) -> std::path::PathBuf {
        dir.join(crate::store::RedbStore::SEGMENTS)
            .join(format!("{:020}-{:020}.redb", range.first, range.last))
    }

    #[tokio::test]
    async fn tampering_inside_a_sealed_segment_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 20).await;
        let segments = seal_at(dir.path(), &[8, 15]);
        assert_eq!(segments.len(), 2);
        assert!(verify_file(&file).ok);
        tamper(&segment_file(dir.path(), segments[1]), |entries| {
            let bytes = raw(entries, 12);
            *bytes = String::from_utf8_lossy(bytes)
                .replace("user11", "user99")
                .into_bytes();
        });
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(12)), "{found:?}");
    }

    #[tokio::test]
    async fn prune_drops_old_segments_behind_a_checkpoint_that_verify_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 30).await;
        let segments = seal_at(dir.path(), &[10, 20]);
        let pristine = dir.path().to_owned();
        let backup = tempfile::tempdir().unwrap();
        copy_dir(&pristine, backup.path());

        // Deleting a segment by hand is caught: nothing vouches for the gap.
        std::fs::remove_file(segment_file(dir.path(), segments[0])).unwrap();
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(1)), "{found:?}");
        assert!(found.problem.unwrap().contains("no checkpoint"));

        // Pruning the same segment records why, and verify passes.
        copy_dir(backup.path(), dir.path());
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(crate::store::RedbStore::open(dir.path()).unwrap());
        let log = AuditLog::start(store.clone(), "n1", Sealing::default()).unwrap();
        // Nothing is older than the trail's start: nothing goes.
        let none = prune(&*store, &log, 0).await.unwrap();
        assert_eq!(none.segments, 0);
        let pruned = prune(&*store, &log, now_ms() + 1).await.unwrap();
        assert_eq!((pruned.segments, pruned.entries), (2, 20));
        assert_eq!(pruned.first_kept, Some(21));
        let found = verify(&*store).unwrap();
        assert!(found.ok, "{found:?}");
        assert_eq!((found.first, found.entries), (21, 12));
        close(log, store).await;

        // A later prune by hand past the checkpoint is caught again, and
        // named from the first entry the checkpoint kept.
        seal_at(dir.path(), &[25]);
        let kept = crate::store::SegmentRange {
            first: 21,
            last: 25,
        };
        std::fs::remove_file(segment_file(dir.path(), kept)).unwrap();
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(21)), "{found:?}");
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to.join(crate::store::RedbStore::SEGMENTS)).unwrap();
        std::fs::copy(
            from.join(crate::store::RedbStore::FILE),
            to.join(crate::store::RedbStore::FILE),
        )
        .unwrap();
        for item in std::fs::read_dir(from.join(crate::store::RedbStore::SEGMENTS)).unwrap() {
            let path = item.unwrap().path();
            std::fs::copy(
                &path,
                to.join(crate::store::RedbStore::SEGMENTS)
                    .join(path.file_name().unwrap()),
            )
            .unwrap();
        }
    }

    #[test]
    fn an_outside_tool_recomputes_the_hash_as_documented() {
        let entry = sealed(1, GENESIS_HASH);
        let script = "import hashlib,json,sys\ne=json.loads(sys.stdin.read());h=e.pop('hash')\nprint(h==hashlib.sha256(json.dumps(e,separators=(',',':'),ensure_ascii=False).encode()).hexdigest())";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &encode(&entry)).unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "True");
    }
}
