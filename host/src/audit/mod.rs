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

pub mod export;
pub mod heads;
pub mod query;
mod writer;

pub use writer::{AuditError, AuditLog, Durability, BATCH_WINDOW};

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
    /// A policy was loaded.
    PolicyLoaded,
    /// The node started serving.
    NodeStarted,
    /// The node stopped.
    NodeStopped,
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
            trace: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The hash this entry must carry: over its encoding without `hash`.
    pub fn compute_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.hash.clear();
        hex(&Sha256::digest(encode(&unsealed)))
    }

    /// Fill in `seq`, `prev_hash` and `hash`, chaining after `prev_hash`.
    pub fn seal(&mut self, seq: u64, prev_hash: &str) {
        self.seq = seq;
        prev_hash.clone_into(&mut self.prev_hash);
        self.hash.clear();
        self.hash = self.compute_hash();
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last good entry.
    pub head: String,
    /// The first sequence number where the chain breaks, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Walk the whole trail and check every link: sequence numbers without gaps,
/// each entry's hash over its own encoding, each `prev_hash` equal to the
/// hash before.
///
/// # Errors
/// When the store cannot be read (a broken chain is not an error, it is the
/// answer).
pub fn verify(store: &dyn Store) -> Result<Verification, StoreError> {
    const PAGE: usize = 1024;
    let mut expected_seq = 1;
    let mut head = GENESIS_HASH.to_owned();
    let mut entries = 0;
    let broken = |seq, problem: String, entries, head: &str| Verification {
        ok: false,
        entries,
        head: head.to_owned(),
        broken_at: Some(seq),
        problem: Some(problem),
    };
    loop {
        let page = store.audit_from(expected_seq, PAGE)?;
        let full = page.len() == PAGE;
        for (seq, bytes) in page {
            if seq != expected_seq {
                return Ok(broken(
                    expected_seq,
                    format!("entry {expected_seq} is missing (next is {seq})"),
                    entries,
                    &head,
                ));
            }
            let entry = match decode(&bytes) {
                Ok(entry) => entry,
                Err(error) => {
                    return Ok(broken(
                        seq,
                        format!("entry {seq} does not parse: {error}"),
                        entries,
                        &head,
                    ))
                }
            };
            if entry.seq != seq {
                return Ok(broken(
                    seq,
                    format!("entry stored as {seq} says it is {}", entry.seq),
                    entries,
                    &head,
                ));
            }
            if entry.prev_hash != head {
                return Ok(broken(
                    seq,
                    format!("entry {seq} does not follow the entry before it (prev_hash differs)"),
                    entries,
                    &head,
                ));
            }
            if entry.compute_hash() != entry.hash {
                return Ok(broken(
                    seq,
                    format!("entry {seq} was altered (its hash does not match its content)"),
                    entries,
                    &head,
                ));
            }
            head = entry.hash;
            entries += 1;
            expected_seq += 1;
        }
        if !full {
            return Ok(Verification {
                ok: true,
                entries,
                head,
                broken_at: None,
                problem: None,
            });
        }
    }
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

    /// A trail of `count` entries written through the writer into a fresh
    /// store file; returns the file (the store is closed again).
    async fn trail(dir: &std::path::Path, count: usize) -> std::path::PathBuf {
        let file = dir.join("airlock.redb");
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(crate::store::RedbStore::open(&file).unwrap());
        let log = AuditLog::start(store.clone(), "n1").unwrap();
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
        drop(log);
        // The writer thread holds the store until it sees the channel close.
        while std::sync::Arc::strong_count(&store) > 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        file
    }

    /// The test-only tamper tool: rewrite the raw table of a closed store.
    fn tamper(file: &std::path::Path, change: impl FnOnce(&mut redb::Table<u64, &[u8]>)) {
        let database = redb::Database::open(file).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let mut table = transaction.open_table(crate::store::tables::AUDIT).unwrap();
            change(&mut table);
        }
        transaction.commit().unwrap();
    }

    fn verify_file(file: &std::path::Path) -> Verification {
        verify(&crate::store::RedbStore::open(file).unwrap()).unwrap()
    }

    fn raw(table: &redb::Table<u64, &[u8]>, seq: u64) -> Vec<u8> {
        use redb::ReadableTable as _;
        table.get(seq).unwrap().unwrap().value().to_vec()
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

        tamper(&file, |table| {
            let edited = String::from_utf8(raw(table, 4))
                .unwrap()
                .replace("user3", "user9");
            table.insert(4, edited.as_bytes()).unwrap();
        });
        let found = verify_file(&file);
        assert_eq!((found.ok, found.broken_at), (false, Some(4)), "{found:?}");
        assert!(found.problem.unwrap().contains("altered"));

        restore();
        tamper(&file, |table| {
            table.remove(6).unwrap();
        });
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(6), "{found:?}");
        assert!(found.problem.unwrap().contains("missing"));

        restore();
        tamper(&file, |table| {
            let (two, three) = (raw(table, 2), raw(table, 3));
            table.insert(2, three.as_slice()).unwrap();
            table.insert(3, two.as_slice()).unwrap();
        });
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(2), "{found:?}");

        restore();
        // Rewriting an entry and resealing it is caught at the next link.
        tamper(&file, |table| {
            let mut entry = decode(&raw(table, 5)).unwrap();
            entry.actor = "mallory".into();
            let prev = entry.prev_hash.clone();
            entry.seal(5, &prev);
            table.insert(5, encode(&entry).as_slice()).unwrap();
        });
        let found = verify_file(&file);
        assert_eq!(found.broken_at, Some(6), "{found:?}");
        assert!(found.problem.unwrap().contains("does not follow"));
    }

    #[tokio::test]
    async fn queries_filter_and_page_with_stable_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let file = trail(dir.path(), 30).await;
        let store = crate::store::RedbStore::open(&file).unwrap();
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
