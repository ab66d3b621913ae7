//! The cluster store: state (approvals with their votes, grants, the
//! routing overlay) shared by every node through etcd, and this node's own
//! audit trail in its local [`RedbStore`] (a global chain in etcd would put a
//! raft round on one hot key into every request; each node anchors its chain
//! head in etcd instead, see [`crate::cluster`]).
//!
//! Reads never wait on the network: each node keeps a [`Mirror`] of the
//! state in memory, read once at start and then followed by a watch, which
//! also announces every change (from this node or another) as a
//! [`StoreEvent`]. A broken watch is opened again where it left off; a
//! history compacted past that point means a full read.
//!
//! Writes are etcd transactions. A [`StateChange::Replace`] becomes a
//! comparison of the record's bytes, so two nodes voting at once cannot
//! both win: the loser's transaction reads the current record back into the
//! mirror and fails with a conflict, and the caller retries on fresh state.
//! Every call goes through [`Etcd::call`], which retries transient failures
//! (a member down, a leader election) across the endpoints with backoff for
//! up to `[storage] timeout`; past it the action fails closed.
//!
//! Keys, under `[storage] prefix`: `state/TABLE/KEY` (JSON records, as in
//! redb); `members/NODE`, `anchors/NODE`, `policies/NAME` and
//! `policy-blobs/SHA256/N` belong to [`crate::cluster`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::broadcast;

use super::segments::SegmentRange;
use super::{RedbStore, SharedState, StateChange, StateTable, Store, StoreError, StoreEvent};
use crate::config::StorageConfig;

/// How long one call to one member may take before it is tried again.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The first pause between retries; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A client of the etcd cluster: its key prefix and its retry rules.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Whether `error` may pass if the call is made again (on another member,
/// after an election).
fn transient(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Unknown
                | Code::Internal
                | Code::Aborted
                | Code::Cancelled
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

impl Etcd {
    /// Connect to the endpoints of `config`, retrying for up to its timeout.
    ///
    /// # Errors
    /// When no member answers in time, or TLS or auth material is unreadable.
    pub async fn connect(config: &StorageConfig) -> Result<Etcd, StoreError> {
        let mut options = ConnectOptions::new()
            .with_timeout(CALL_TIMEOUT)
            .with_connect_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        let read = |what: &str, file: &Path| {
            std::fs::read(file)
                .map_err(|error| StoreError::new(format!("read {what} {}", file.display()), error))
        };
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(
                    "storage.ca_file",
                    ca,
                )?));
            }
            if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read("storage.cert_file", cert)?,
                    read("storage.key_file", key)?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(file)) = (&config.user, &config.password_file) {
            let password = String::from_utf8_lossy(&read("storage.password_file", file)?)
                .trim()
                .to_owned();
            options = options
                .with_user(user.clone(), password)
                .with_auto_token_refresh(true);
        }
        let deadline = Instant::now() + config.timeout;
        let mut backoff = FIRST_BACKOFF;
        let client = loop {
            let attempt = Client::connect(&config.endpoints, Some(options.clone())).await;
            match attempt {
                Ok(mut client) => match client.status().await {
                    Ok(_) => break client,
                    Err(error) if transient(&error) && Instant::now() < deadline => {}
                    Err(error) => return Err(connect_error(config, &error)),
                },
                Err(error) if transient(&error) && Instant::now() < deadline => {}
                Err(error) => return Err(connect_error(config, &error)),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        Ok(Etcd {
            client,
            prefix: config.prefix.clone(),
            timeout: config.timeout,
        })
    }

    /// The full key of `rest` (`members/a` becomes `/airlock/members/a`).
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// `key` without the prefix and `section/`, if it is in that section.
    pub fn strip<'k>(&self, key: &'k [u8], section: &str) -> Option<&'k str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?
            .strip_prefix(section)?
            .strip_prefix('/')
    }

    /// A client to open streams with (watches, lease keep-alives), which
    /// retry by being opened again.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Run `call`, again on transient failures, with backoff, until
    /// `[storage] timeout`. `what` names it in the error.
    ///
    /// # Errors
    /// The last failure once the time is up, or at once one that retrying
    /// cannot help.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match call(self.client.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(error) if transient(&error) && Instant::now() + backoff < deadline => {
                    tracing::debug!("etcd {what}: {error}; trying again");
                }
                Err(error) => {
                    return Err(StoreError::new(
                        format!("etcd {what}"),
                        format!("{error} (gave up after {:?})", self.timeout),
                    ))
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The value at `rest` (under the prefix), if there is one.
    ///
    /// # Errors
    /// When etcd cannot be read in time.
    pub async fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(rest);
        let mut response = self
            .call(&format!("read {key}"), |mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        Ok(response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1))
    }

    /// Put `value` at `rest` (under the prefix), under `lease` if given.
    ///
    /// # Errors
    /// When etcd cannot be written in time.
    pub async fn put(
        &self,
        rest: &str,
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<(), StoreError> {
        let key = self.key(rest);
        self.call(&format!("write {key}"), |mut client| {
            let (key, value) = (key.clone(), value.to_vec());
            let options = lease.map(|lease| etcd_client::PutOptions::new().with_lease(lease));
            async move { client.put(key, value, options).await }
        })
        .await?;
        Ok(())
    }

    /// A new lease of `ttl` (whole seconds, at least one); its id.
    ///
    /// # Errors
    /// When etcd cannot be reached in time.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        Ok(self
            .call("grant a lease", |mut client| async move {
                client.lease_grant(seconds, None).await
            })
            .await?
            .id())
    }

    /// Every key and value under `section/`, and the revision read at: in
    /// pages of [`LIST_PAGE`] keys, all at the first page's revision, so a
    /// section of any size is read as one snapshot (one range of all of it
    /// passed gRPC's 4 MiB message limit at about 4,000 approvals, and a
    /// node then could not start: found by the chaos soak).
    ///
    /// # Errors
    /// When etcd cannot be read in time, or compacted the revision away
    /// between two pages.
    pub async fn list(
        &self,
        section: &str,
    ) -> Result<(i64, Vec<(String, i64, Vec<u8>)>), StoreError> {
        let prefix = self.key(&format!("{section}/")).into_bytes();
        let end = prefix_end(&prefix);
        let mut from = prefix.clone();
        let mut revision = 0;
        let mut records = Vec::new();
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut response = self
                .call(
                    &format!("read {}", String::from_utf8_lossy(&prefix)),
                    |client| {
                        let (from, options) = (from.clone(), options.clone());
                        let mut kv = client
                            .kv_client()
                            .max_decoding_message_size(LIST_ANSWER_MAX);
                        async move { kv.get(from, Some(options)).await }
                    },
                )
                .await?;
            if revision == 0 {
                revision = response.take_header().map_or(0, |header| header.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            if let Some(last) = kvs.last() {
                // The next page starts just after the last key read.
                from = [last.key(), &[0]].concat();
            }
            records.extend(kvs.into_iter().filter_map(|kv| {
                let key = self.strip(kv.key(), section)?.to_owned();
                Some((key, kv.mod_revision(), kv.value().to_vec()))
            }));
            if !more {
                return Ok((revision, records));
            }
        }
    }
}

/// Keys read per request when a section is listed, and the largest answer
/// taken (gRPC's default is 4 MiB): 64 records of up to 1 MiB each.
const LIST_PAGE: i64 = 64;
const LIST_ANSWER_MAX: usize = 64 << 20;

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: no key after them; `\0` means "to the end" to etcd.
    vec![0]
}

/// A change a watch of one section saw (the key without the section).
#[derive(Debug)]
pub enum Seen {
    Put {
        key: String,
        revision: i64,
        value: Vec<u8>,
    },
    Deleted {
        key: String,
        revision: i64,
    },
    /// etcd compacted its history past the watch: what changed meanwhile
    /// is lost, so read the section again.
    Compacted,
}

impl Etcd {
    /// Follow `section/` from after `revision`, for as long as the node
    /// runs, telling `seen` each change. A broken stream (a member died, a
    /// leader was lost) is opened again where it left off; after
    /// [`Seen::Compacted`], `seen` reads the section again and answers the
    /// revision it read at.
    pub async fn follow<F, Fut>(&self, section: &str, mut revision: i64, mut seen: F)
    where
        F: FnMut(Seen) -> Fut,
        Fut: Future<Output = Option<i64>>,
    {
        let prefix = self.key(&format!("{section}/"));
        loop {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(revision + 1);
            // A watch answer may carry many events at once (after a broken
            // stream, all since it broke): as large as a listed page may be.
            let mut watcher = self
                .client()
                .watch_client()
                .max_decoding_message_size(LIST_ANSWER_MAX);
            let broke = match watcher.watch(prefix.clone(), Some(options)).await {
                Err(error) => error.to_string(),
                Ok(mut stream) => loop {
                    let response = match stream.message().await {
                        Ok(Some(response)) => response,
                        Ok(None) => break "the stream ended".to_owned(),
                        Err(error) => break error.to_string(),
                    };
                    if response.canceled() {
                        if response.compact_revision() > 0 {
                            revision = seen(Seen::Compacted).await.unwrap_or(revision);
                        }
                        break format!("cancelled: {}", response.cancel_reason());
                    }
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        revision = revision.max(kv.mod_revision());
                        let Some(key) = self.strip(kv.key(), section) else {
                            continue;
                        };
                        let key = key.to_owned();
                        let change = match event.event_type() {
                            EventType::Put => Seen::Put {
                                key,
                                revision: kv.mod_revision(),
                                value: kv.value().to_vec(),
                            },
                            EventType::Delete => Seen::Deleted {
                                key,
                                revision: kv.mod_revision(),
                            },
                        };
                        seen(change).await;
                    }
                },
            };
            tracing::debug!(
                "etcd watch of {prefix} broke at revision {revision}: {broke}; opening it again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn connect_error(config: &StorageConfig, error: &etcd_client::Error) -> StoreError {
    StoreError::new(
        format!("connect to etcd at {}", config.endpoints.join(", ")),
        error,
    )
}

/// A state record as the mirror holds it: its bytes (`None`: deleted, kept
/// as a tombstone) and the etcd revision that wrote them, so that an older
/// write seen later (a transaction's late answer after the watch told of a
/// newer delete) does not undo a newer one. Tombstones go at the next full
/// read.
#[derive(Debug, Clone)]
struct Record {
    revision: i64,
    value: Option<Vec<u8>>,
}

/// This node's copy of the shared state, kept current by the watch.
#[derive(Debug)]
struct Mirror {
    tables: RwLock<HashMap<StateTable, BTreeMap<String, Record>>>,
    events: broadcast::Sender<StoreEvent>,
}

impl Mirror {
    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<StateTable, BTreeMap<String, Record>>> {
        self.tables
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take `value` (`None`: deleted) written at `revision`, unless the
    /// mirror already holds a newer write; announce it if it changed.
    fn apply(&self, table: StateTable, key: &str, revision: i64, value: Option<Vec<u8>>) {
        let changed = {
            let mut tables = self
                .tables
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let records = tables.entry(table).or_default();
            match records.get(key) {
                Some(current) if current.revision >= revision => false,
                current => {
                    let changed =
                        current.and_then(|record| record.value.as_ref()) != value.as_ref();
                    records.insert(key.to_owned(), Record { revision, value });
                    changed
                }
            }
        };
        if changed {
            let _ = self.events.send(StoreEvent::StateChanged {
                table,
                key: key.to_owned(),
            });
        }
    }

    /// Replace everything with a full read of `records` (at start, and
    /// when the watch's history was compacted away).
    fn reset(&self, records: Vec<(StateTable, String, i64, Vec<u8>)>) {
        let mut fresh: HashMap<StateTable, BTreeMap<String, Record>> = HashMap::new();
        for (table, key, revision, value) in records {
            fresh.entry(table).or_default().insert(
                key,
                Record {
                    revision,
                    value: Some(value),
                },
            );
        }
        let old = std::mem::replace(
            &mut *self
                .tables
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            fresh.clone(),
        );
        for table in StateTable::ALL {
            let (before, after) = (old.get(&table), fresh.get(&table));
            let keys: std::collections::BTreeSet<&String> = before
                .into_iter()
                .chain(after)
                .flat_map(BTreeMap::keys)
                .collect();
            for key in keys {
                let was = before
                    .and_then(|records| records.get(key))
                    .and_then(|r| r.value.as_ref());
                let is = after
                    .and_then(|records| records.get(key))
                    .and_then(|r| r.value.as_ref());
                if was != is {
                    let _ = self.events.send(StoreEvent::StateChanged {
                        table,
                        key: key.clone(),
                    });
                }
            }
        }
    }
}

/// The shared half of [`EtcdStore`]: transactions and the mirror.
#[derive(Debug)]
pub struct EtcdState {
    etcd: Etcd,
    mirror: Arc<Mirror>,
}

impl EtcdState {
    fn state_key(&self, table: StateTable, key: &str) -> String {
        self.etcd.key(&format!("state/{}/{key}", table.name()))
    }

    /// Read every state table, and return the revision read at.
    async fn load(&self) -> Result<i64, StoreError> {
        let (revision, records) = self.etcd.list("state").await?;
        let records = records
            .into_iter()
            .filter_map(|(key, revision, value)| {
                let (table, key) = key.split_once('/')?;
                Some((StateTable::named(table)?, key.to_owned(), revision, value))
            })
            .collect();
        self.mirror.reset(records);
        Ok(revision)
    }

    /// Follow every change after `revision`, for as long as the node runs.
    async fn follow(self: Arc<Self>, revision: i64) {
        let etcd = self.etcd.clone();
        etcd.follow("state", revision, |seen| self.clone().seen(seen))
            .await;
    }

    /// Take one change the watch saw into the mirror.
    async fn seen(self: Arc<Self>, seen: Seen) -> Option<i64> {
        let (key, revision, value) = match seen {
            Seen::Put {
                key,
                revision,
                value,
            } => (key, revision, Some(value)),
            Seen::Deleted { key, revision } => (key, revision, None),
            Seen::Compacted => {
                tracing::warn!(
                    "etcd history compacted past this node's watch: reading all state again"
                );
                return self.load().await.ok();
            }
        };
        let table = key
            .split_once('/')
            .and_then(|(table, key)| Some((StateTable::named(table)?, key)));
        if let Some((table, key)) = table {
            self.mirror.apply(table, key, revision, value);
        }
        None
    }

    /// Apply `changes` in one etcd transaction.
    async fn transact(&self, changes: &[StateChange]) -> Result<(), StoreError> {
        let keys: Vec<String> = changes
            .iter()
            .map(|change| {
                let (table, key) = change.target();
                self.state_key(table, key)
            })
            .collect();
        let txn = || {
            let mut compares = Vec::new();
            let mut writes = Vec::new();
            let mut reads = Vec::new();
            for (change, key) in changes.iter().zip(&keys) {
                match change {
                    StateChange::Put { value, .. } => {
                        writes.push(TxnOp::put(key.clone(), value.clone(), None));
                    }
                    StateChange::Delete { .. } => writes.push(TxnOp::delete(key.clone(), None)),
                    StateChange::Replace {
                        expected, value, ..
                    } => {
                        compares.push(match expected {
                            Some(expected) => {
                                Compare::value(key.clone(), CompareOp::Equal, expected.clone())
                            }
                            None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                        });
                        writes.push(match value {
                            Some(value) => TxnOp::put(key.clone(), value.clone(), None),
                            None => TxnOp::delete(key.clone(), None),
                        });
                        reads.push(TxnOp::get(key.clone(), None));
                    }
                }
            }
            etcd_client::Txn::new()
                .when(compares)
                .and_then(writes)
                .or_else(reads)
        };
        let mut response = self
            .etcd
            .call("commit", |mut client| {
                let txn = txn();
                async move { client.txn(txn).await }
            })
            .await?;
        let revision = response.take_header().map_or(0, |header| header.revision());
        if response.succeeded() {
            for change in changes {
                let (table, key) = change.target();
                self.mirror
                    .apply(table, key, revision, change.value().map(<[u8]>::to_vec));
            }
            return Ok(());
        }
        // Someone wrote first: take what they wrote, and say which. Or the
        // first try of this very transaction was applied but its answer
        // lost (a leader change, a timeout), and `call` sent it again: then
        // every record already holds what this one writes, and it is done.
        let replaced = changes
            .iter()
            .filter(|change| matches!(change, StateChange::Replace { .. }));
        let mut conflict = None;
        let mut ours = true;
        for (change, read) in replaced.zip(response.op_responses()) {
            let (table, key) = change.target();
            let TxnOpResponse::Get(read) = read else {
                continue;
            };
            let current = read.kvs().first();
            match current {
                Some(kv) => {
                    self.mirror
                        .apply(table, key, kv.mod_revision(), Some(kv.value().to_vec()))
                }
                None => self.mirror.apply(table, key, revision, None),
            }
            let current = current.map(|kv| kv.value());
            ours &= current == change.value();
            let StateChange::Replace { expected, .. } = change else {
                continue;
            };
            if conflict.is_none() && current != expected.as_deref() {
                conflict = Some(StoreError::conflict(table, key));
            }
        }
        if ours {
            tracing::debug!("a retried etcd transaction had been applied the first time");
            return Ok(());
        }
        Err(conflict
            .unwrap_or_else(|| StoreError::new("commit", "the transaction's comparison failed")))
    }
}

impl SharedState for EtcdState {
    fn apply<'a>(
        &'a self,
        changes: &'a [StateChange],
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(self.transact(changes))
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
        replacing: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<String>, StoreError>> + Send + 'a>> {
        Box::pin(self.claim_key(key, value, ttl, replacing))
    }
}

impl EtcdState {
    /// `events/KEY` = `value` under a lease of `ttl`, if no one holds it
    /// (or it still holds `replacing`).
    async fn claim_key(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        replacing: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let lease = self.etcd.grant_lease(ttl).await?;
        let key = self.etcd.key(&format!("events/{key}"));
        let response = self
            .etcd
            .call("claim an event", |mut client| {
                let free = match replacing {
                    Some(old) => Compare::value(key.clone(), CompareOp::Equal, old),
                    None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                };
                let txn = etcd_client::Txn::new()
                    .when([free])
                    .and_then([TxnOp::put(
                        key.clone(),
                        value,
                        Some(etcd_client::PutOptions::new().with_lease(lease)),
                    )])
                    .or_else([TxnOp::get(key.clone(), None)]);
                async move { client.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(None);
        }
        // Not ours: the lease goes now rather than in hours.
        let _ = self
            .etcd
            .call("revoke an event lease", |mut client| async move {
                client.lease_revoke(lease).await
            })
            .await;
        let holder = response
            .op_responses()
            .into_iter()
            .find_map(|read| match read {
                TxnOpResponse::Get(read) => read
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            });
        // Our own claim, sent again after its answer was lost.
        Ok(holder.filter(|holder| holder != value))
    }
}

/// State in etcd, this node's audit trail in its redb file.
pub struct EtcdStore {
    local: RedbStore,
    state: Arc<EtcdState>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("etcd", &self.state.etcd)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connect to etcd, read the state, follow it from then on, and open the
    /// local trail in `data_dir`. Must run inside the Tokio runtime.
    ///
    /// # Errors
    /// When etcd cannot be reached in time or the local store not opened.
    pub async fn open(data_dir: &Path, config: &StorageConfig) -> Result<EtcdStore, StoreError> {
        let local = RedbStore::open(data_dir)?;
        let etcd = Etcd::connect(config).await?;
        let state = Arc::new(EtcdState {
            etcd,
            mirror: Arc::new(Mirror {
                tables: RwLock::new(HashMap::new()),
                events: broadcast::channel(4096).0,
            }),
        });
        let revision = state.load().await?;
        tokio::spawn(state.clone().follow(revision));
        Ok(EtcdStore { local, state })
    }

    /// The etcd client, for membership, anchors and policies.
    pub fn etcd(&self) -> &Etcd {
        &self.state.etcd
    }
}

impl Store for EtcdStore {
    fn unwritable_until_reopened(&self) -> bool {
        self.local.unwritable_until_reopened()
    }

    fn append_audit(
        &self,
        entries: &[(u64, Vec<u8>)],
        changes: &[StateChange],
    ) -> Result<(), StoreError> {
        // The audit writer applies state changes through `shared` first.
        if !changes.is_empty() {
            return Err(StoreError::new(
                "commit",
                "state changes to etcd go through the audit writer's shared state",
            ));
        }
        self.local.append_audit(entries, &[])?;
        if let Some((seq, _)) = entries.last() {
            let _ = self
                .state
                .mirror
                .events
                .send(StoreEvent::AuditCommitted { seq: *seq });
        }
        Ok(())
    }

    fn state_get(&self, table: StateTable, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .state
            .mirror
            .read()
            .get(&table)
            .and_then(|records| records.get(key))
            .and_then(|record| record.value.clone()))
    }

    fn state_list(&self, table: StateTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .state
            .mirror
            .read()
            .get(&table)
            .map(|records| {
                records
                    .iter()
                    .filter_map(|(key, record)| Some((key.clone(), record.value.clone()?)))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn last_audit(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.local.last_audit()
    }

    fn audit_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.local.audit_from(from, limit)
    }

    fn seal_audit(&self, through: u64) -> Result<Option<SegmentRange>, StoreError> {
        self.local.seal_audit(through)
    }

    fn audit_segments(&self) -> Vec<SegmentRange> {
        self.local.audit_segments()
    }

    fn remove_audit_segment(&self, first: u64) -> Result<(), StoreError> {
        self.local.remove_audit_segment(first)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.state.mirror.events.subscribe()
    }

    fn shared(&self) -> Option<Arc<dyn SharedState>> {
        Some(self.state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror() -> Mirror {
        Mirror {
            tables: RwLock::new(HashMap::new()),
            events: broadcast::channel(16).0,
        }
    }

    fn value(mirror: &Mirror, key: &str) -> Option<Vec<u8>> {
        mirror
            .read()
            .get(&StateTable::Approvals)
            .and_then(|records| records.get(key))
            .and_then(|record| record.value.clone())
    }

    /// A transaction's answer and the watch deliver the same writes in
    /// either order: an older write seen later never undoes a newer one,
    /// and only real changes are announced.
    #[test]
    fn the_mirror_keeps_the_newest_write_whatever_order_it_learns_them_in() {
        let mirror = mirror();
        let mut events = mirror.events.subscribe();
        mirror.apply(StateTable::Approvals, "a", 7, Some(b"seven".to_vec()));
        mirror.apply(StateTable::Approvals, "a", 5, Some(b"five".to_vec()));
        assert_eq!(value(&mirror, "a"), Some(b"seven".to_vec()));
        // The watch repeats the write the transaction already applied.
        mirror.apply(StateTable::Approvals, "a", 7, Some(b"seven".to_vec()));
        mirror.apply(StateTable::Approvals, "a", 6, None);
        assert_eq!(value(&mirror, "a"), Some(b"seven".to_vec()));
        mirror.apply(StateTable::Approvals, "a", 9, None);
        assert_eq!(value(&mirror, "a"), None);
        let mut announced = 0;
        while events.try_recv().is_ok() {
            announced += 1;
        }
        assert_eq!(announced, 2, "the put at 7 and the delete at 9");
    }

    /// A full read (after compaction) announces exactly the records that
    /// differ from what the mirror held, deleted ones included.
    #[test]
    fn a_full_read_announces_what_changed_while_the_watch_was_away() {
        let mirror = mirror();
        mirror.apply(StateTable::Approvals, "kept", 1, Some(b"same".to_vec()));
        mirror.apply(StateTable::Approvals, "gone", 2, Some(b"x".to_vec()));
        mirror.apply(StateTable::Grants, "changed", 3, Some(b"old".to_vec()));
        let mut events = mirror.events.subscribe();
        mirror.reset(vec![
            (
                StateTable::Approvals,
                "kept".to_owned(),
                1,
                b"same".to_vec(),
            ),
            (StateTable::Grants, "changed".to_owned(), 8, b"new".to_vec()),
            (StateTable::Grants, "new".to_owned(), 9, b"n".to_vec()),
        ]);
        let mut announced = Vec::new();
        while let Ok(StoreEvent::StateChanged { table, key }) = events.try_recv() {
            announced.push((table.name(), key));
        }
        announced.sort();
        assert_eq!(
            announced,
            [
                ("approvals", "gone".to_owned()),
                ("grants", "changed".to_owned()),
                ("grants", "new".to_owned())
            ]
        );
        assert_eq!(value(&mirror, "gone"), None);
    }
}
