//! Signed chain heads. A hash chain shows an entry was altered, removed or
//! reordered, but not that the newest entries were cut off, or that the whole
//! trail was rewritten from some point on. So the node periodically signs its
//! chain head (sequence number and hash) with an ed25519 key and appends the
//! signed head to a file outside the data dir (and to the log): `verify`,
//! given those heads, checks that every signed entry is still there with the
//! same hash.
//!
//! A heads file holds one JSON object per line:
//! `{"node","seq","hash","time_ms","public_key","signature"}`, the signature
//! (hex) over the bytes of `airlock-head:v1:{node}:{seq}:{hash}:{time_ms}`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::decode;
use crate::store::{Store, StoreError};

/// One signed chain head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedHead {
    pub node: String,
    pub seq: u64,
    pub hash: String,
    pub time_ms: i64,
    /// Hex of the ed25519 public key that signed.
    pub public_key: String,
    /// Hex of the signature.
    pub signature: String,
}

impl SignedHead {
    fn message(node: &str, seq: u64, hash: &str, time_ms: i64) -> String {
        format!("airlock-head:v1:{node}:{seq}:{hash}:{time_ms}")
    }

    /// Check the signature, against `trusted` if given (else the key the
    /// head names, which proves only that the heads file is consistent).
    ///
    /// # Errors
    /// Why the signature does not hold.
    pub fn check_signature(&self, trusted: Option<&VerifyingKey>) -> Result<(), String> {
        let named = parse_public_key(&self.public_key)?;
        let key = match trusted {
            Some(trusted) if trusted != &named => {
                return Err(format!(
                    "head {} was signed by another key ({})",
                    self.seq, self.public_key
                ))
            }
            Some(trusted) => trusted,
            None => &named,
        };
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| format!("head {}: the signature is not 64 hex bytes", self.seq))?;
        key.verify(
            Self::message(&self.node, self.seq, &self.hash, self.time_ms).as_bytes(),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| format!("head {}: the signature does not match", self.seq))
    }
}

/// Signs heads with the node's key and appends them to the heads file
/// (if it has one: a cluster node also anchors them in etcd).
#[derive(Debug)]
pub struct HeadSigner {
    key: SigningKey,
    file: Option<PathBuf>,
    node: String,
}

/// Why signing could not be set up or done.
#[derive(Debug, thiserror::Error)]
#[error("audit heads {}: {cause}", .file.display())]
pub struct HeadsError {
    pub file: PathBuf,
    pub cause: String,
}

impl HeadSigner {
    /// Read the signing key (64 hex characters: the 32-byte seed).
    ///
    /// # Errors
    /// When the key file cannot be read or is malformed.
    pub fn load(key_file: &Path, heads_file: &Path, node: &str) -> Result<HeadSigner, HeadsError> {
        let fail = |cause: String| HeadsError {
            file: key_file.to_owned(),
            cause,
        };
        let text = std::fs::read_to_string(key_file).map_err(|error| fail(error.to_string()))?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                fail(
                    "expected 64 hex characters (make one with `airlock audit keygen FILE`)"
                        .to_owned(),
                )
            })?;
        Ok(HeadSigner {
            key: SigningKey::from_bytes(&seed),
            file: Some(heads_file.to_owned()),
            node: node.to_owned(),
        })
    }

    /// The signer of a node's heads: the key in `key_file`, made first (and
    /// its folder) if it does not exist yet, its public key then printed.
    ///
    /// # Errors
    /// When the key cannot be made or read.
    pub fn load_or_make(
        key_file: &Path,
        heads_file: &Path,
        node: &str,
    ) -> Result<HeadSigner, HeadsError> {
        if !key_file.exists() {
            if let Some(parent) = key_file.parent() {
                std::fs::create_dir_all(parent).map_err(|error| HeadsError {
                    file: parent.to_owned(),
                    cause: error.to_string(),
                })?;
            }
            let public_key = generate_key(key_file)?;
            println!(
                "airlock: made the audit signing key {} (public key {public_key}); heads go to {}",
                key_file.display(),
                heads_file.display()
            );
        }
        HeadSigner::load(key_file, heads_file, node)
    }

    /// The file signed heads are appended to, if any.
    pub fn heads_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// A signer without a heads file, for anchors only: with `key_file`,
    /// made by [`generate_key`] first if it does not exist yet.
    ///
    /// # Errors
    /// When the key cannot be made or read.
    pub fn for_anchors(key_file: &Path, node: &str) -> Result<HeadSigner, HeadsError> {
        if !key_file.exists() {
            generate_key(key_file)?;
        }
        let mut signer = HeadSigner::load(key_file, key_file, node)?;
        signer.file = None;
        Ok(signer)
    }

    /// The public key heads are signed with.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Sign the head `(seq, hash)` now and append it to the heads file, on
    /// disk when this returns.
    ///
    /// # Errors
    /// When the heads file cannot be written.
    pub fn sign(&self, seq: u64, hash: &str, time_ms: i64) -> Result<SignedHead, HeadsError> {
        let message = SignedHead::message(&self.node, seq, hash, time_ms);
        let head = SignedHead {
            node: self.node.clone(),
            seq,
            hash: hash.to_owned(),
            time_ms,
            public_key: hex::encode(self.key.verifying_key().as_bytes()),
            signature: hex::encode(self.key.sign(message.as_bytes()).to_bytes()),
        };
        let line = serde_json::to_string(&head).unwrap_or_default();
        let Some(heads_file) = &self.file else {
            return Ok(head);
        };
        let fail = |error: std::io::Error| HeadsError {
            file: heads_file.clone(),
            cause: error.to_string(),
        };
        if let Some(parent) = heads_file.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(heads_file)
            .map_err(fail)?;
        writeln!(file, "{line}").map_err(fail)?;
        file.sync_data().map_err(fail)?;
        tracing::info!(target: "airlock::audit::head", seq, hash, "signed audit head: {line}");
        Ok(head)
    }
}

/// Create a new signing key in `file` (mode 0600); returns the public key, hex.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn generate_key(file: &Path) -> Result<String, HeadsError> {
    let fail = |cause: String| HeadsError {
        file: file.to_owned(),
        cause,
    };
    let seed: [u8; 32] =
        crate::secrets::random_bytes().map_err(|error| fail(format!("no randomness: {error}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .map_err(|error| fail(error.to_string()))?;
    writeln!(out, "{}", hex::encode(seed)).map_err(|error| fail(error.to_string()))?;
    Ok(hex::encode(
        SigningKey::from_bytes(&seed).verifying_key().as_bytes(),
    ))
}

/// Read a heads file.
///
/// # Errors
/// When it cannot be read or a line is not a head.
pub fn read_heads(file: &Path) -> Result<Vec<SignedHead>, HeadsError> {
    let fail = |cause: String| HeadsError {
        file: file.to_owned(),
        cause,
    };
    let text = std::fs::read_to_string(file).map_err(|error| fail(error.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| fail(format!("line {}: {error}", index + 1)))
        })
        .collect()
}

/// The last head in a heads file (read from its end, however long the file
/// has grown), or none if the file does not exist or is empty.
///
/// # Errors
/// When it cannot be read or its last line is not a head.
pub fn last_head(file: &Path) -> Result<Option<SignedHead>, HeadsError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    /// A head line is about 400 bytes; this holds the last one whole.
    const TAIL: u64 = 8 * 1024;
    let fail = |cause: String| HeadsError {
        file: file.to_owned(),
        cause,
    };
    let mut opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(fail(error.to_string())),
    };
    let length = opened
        .metadata()
        .map_err(|error| fail(error.to_string()))?
        .len();
    opened
        .seek(SeekFrom::Start(length.saturating_sub(TAIL)))
        .map_err(|error| fail(error.to_string()))?;
    let mut tail = String::new();
    opened
        .read_to_string(&mut tail)
        .map_err(|error| fail(error.to_string()))?;
    let Some(line) = tail.lines().rev().find(|line| !line.trim().is_empty()) else {
        return Ok(None);
    };
    serde_json::from_str(line)
        .map(Some)
        .map_err(|error| fail(format!("last line: {error}")))
}

/// Check the trail against the last head in `heads_file`, which `trusted`
/// must have signed: the entry it names must still hold the signed hash (an
/// entry changed before it, with every later hash recomputed, changes that
/// one too). Returns the problem, if any; nothing to check is no problem.
///
/// # Errors
/// When the heads file or the store cannot be read.
pub fn check_last_head(
    store: &dyn Store,
    heads_file: &Path,
    trusted: &VerifyingKey,
) -> Result<Option<(u64, String)>, CheckError> {
    let Some(head) = last_head(heads_file)? else {
        return Ok(None);
    };
    let Some(first) = store.audit_from(0, 1)?.first().map(|(seq, _)| *seq) else {
        // Heads were signed, so a trail existed: an empty one was removed.
        return Ok(Some((
            head.seq,
            format!(
                "entry {} was signed as the head but the trail is empty: it was removed",
                head.seq
            ),
        )));
    };
    Ok(check_heads(store, &[head], Some(trusted), first)?)
}

/// Why the heads could not be checked (not: what the check found).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Heads(#[from] HeadsError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parse a hex public key.
///
/// # Errors
/// When it is not a valid ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("public key {text:?} is not 64 hex characters"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|error| format!("public key {text:?}: {error}"))
}

/// Check every signed head against the trail: the entry it names must still
/// exist with the same hash, unless it is before `first`, the first entry
/// kept after pruning (which [`verify`](super::verify) has checked a
/// checkpoint vouches for). Returns the first problem found, if any.
///
/// # Errors
/// When the store cannot be read.
pub fn check_heads(
    store: &dyn Store,
    heads: &[SignedHead],
    trusted: Option<&VerifyingKey>,
    first: u64,
) -> Result<Option<(u64, String)>, StoreError> {
    for head in heads {
        if let Err(problem) = head.check_signature(trusted) {
            return Ok(Some((head.seq, problem)));
        }
        if head.seq < first {
            continue;
        }
        let stored = store
            .audit_from(head.seq, 1)?
            .into_iter()
            .next()
            .filter(|(seq, _)| *seq == head.seq);
        let problem = match stored {
            None => Some(format!(
                "entry {} was signed as the head but is gone: the trail was cut after it",
                head.seq
            )),
            Some((_, bytes)) => match decode(&bytes) {
                Ok(entry) if entry.hash == head.hash => None,
                _ => Some(format!(
                    "entry {} differs from the signed head: the trail was rewritten",
                    head.seq
                )),
            },
        };
        if let Some(problem) = problem {
            return Ok(Some((head.seq, problem)));
        }
    }
    Ok(None)
}
