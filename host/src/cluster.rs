//! A node's part in a cluster that shares its state through etcd
//! ([`crate::store::etcd`]): membership, anchors and pushed policies.
//!
//! **Membership.** Each node holds an etcd lease and, under it, the key
//! `members/NODE`. When a node's key goes (it stopped, died, or was cut off
//! for longer than its lease), the others cancel the approvals of requests
//! that waited on its connections; the compare-and-swap lets exactly one of
//! them record it. A node counts its own lease from its last confirmed
//! renewal: [`LEASE_MARGIN`] before it could run out, the node answers its
//! held requests 503 (so none is released on a view it can no longer
//! check), and it joins again once etcd answers.
//!
//! **Anchors.** Every second, each node puts its signed chain head at
//! `anchors/NODE`; `audit verify` checks the node's trail against it, so a
//! cut tail or a rewrite shows. A node whose trail no longer holds its
//! anchor refuses to start rather than write over the evidence.
//!
//! **Policies.** `airlock policy push` stores a component in 1 MiB chunks
//! under `policy-blobs/SHA256/N` (etcd refuses requests over 1.5 MiB by
//! default) and then `policies/NAME`; every node writes it into its policy
//! folder, whose hot reload loads it (or refuses it, and the old one keeps
//! serving).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::approvals::{ApprovalState, Approvals};
use crate::audit::heads::{check_heads, HeadSigner, SignedHead};
use crate::store::etcd::{Etcd, Seen};
use crate::store::{Store, StoreError};

/// How long before its lease could run out a node stops releasing held
/// requests.
pub const LEASE_MARGIN: Duration = Duration::from_millis(750);
/// How often the chain head is anchored (when it moved).
const ANCHOR_INTERVAL: Duration = Duration::from_secs(1);
/// Size of one stored chunk of a pushed policy.
pub const CHUNK: usize = 1 << 20;

/// A live node, as `members/NODE` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    /// Its admin listener.
    pub admin: String,
    pub started_ms: i64,
    /// The etcd lease its key is under.
    #[serde(default)]
    pub lease: Option<i64>,
}

/// A pushed policy, as `policies/NAME` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedPolicy {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub chunks: u32,
    /// The `NAME.toml` parameters, if any.
    #[serde(default)]
    pub parameters: Option<String>,
    pub pushed_ms: i64,
}

/// This node in the cluster.
#[derive(Debug)]
pub struct Cluster {
    etcd: Etcd,
    me: Member,
    members: Mutex<BTreeMap<String, Member>>,
    lease_ttl: Duration,
    /// The key this node signs its anchors with.
    anchor_key: Option<ed25519_dalek::VerifyingKey>,
}

impl Cluster {
    /// The live members, by node id.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.members).values().cloned().collect()
    }

    /// The key this node's anchors must be signed with.
    pub fn anchor_key(&self) -> Option<&ed25519_dalek::VerifyingKey> {
        self.anchor_key.as_ref()
    }

    /// The etcd client.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.me.node
    }

    /// Join: take a lease, put `members/NODE` under it, learn the other
    /// members, cancel what waited on nodes that are gone, and keep all of
    /// that up from then on (tasks).
    ///
    /// # Errors
    /// When etcd cannot be reached in time.
    pub async fn join(
        etcd: Etcd,
        me: Member,
        lease_ttl: Duration,
        approvals: Arc<Approvals>,
        anchor_key: Option<ed25519_dalek::VerifyingKey>,
    ) -> Result<Arc<Cluster>, StoreError> {
        let cluster = Arc::new(Cluster {
            etcd,
            me,
            members: Mutex::new(BTreeMap::new()),
            // Leases are granted in whole seconds.
            lease_ttl: Duration::from_secs(lease_ttl.as_secs()),
            anchor_key,
        });
        let lease = cluster.register(&approvals).await?;
        let revision = cluster.read_members().await?;
        // Approvals of requests that waited on nodes no longer here.
        let live = cluster.members();
        let gone: std::collections::BTreeSet<String> = approvals
            .list(Some(ApprovalState::Pending))?
            .into_iter()
            .filter(|approval| !approval.respond_async)
            .filter_map(|approval| approval.node)
            .filter(|node| !live.iter().any(|member| member.node == *node))
            .collect();
        for node in gone {
            let cancelled = approvals.cancel_held_by(&node, None).await;
            tracing::info!(node = %node, cancelled, "cancelled the held requests of a node that is gone");
        }
        tokio::spawn(cluster.clone().follow_members(revision, approvals.clone()));
        tokio::spawn(cluster.clone().keep_lease(lease, approvals));
        Ok(cluster)
    }

    /// Take a lease and put this node's member key under it.
    async fn register(&self, approvals: &Approvals) -> Result<i64, StoreError> {
        let lease = self.etcd.grant_lease(self.lease_ttl).await?;
        approvals.set_lease(lease);
        let me = Member {
            lease: Some(lease),
            ..self.me.clone()
        };
        let value = serde_json::to_vec(&me).unwrap_or_default();
        let key = format!("members/{}", self.me.node);
        self.etcd.put(&key, &value, Some(lease)).await?;
        Ok(lease)
    }

    /// Read every member; returns the revision read at.
    async fn read_members(&self) -> Result<i64, StoreError> {
        let (revision, records) = self.etcd.list("members").await?;
        let members = records
            .into_iter()
            .filter_map(|(_, _, value)| serde_json::from_slice::<Member>(&value).ok())
            .map(|member| (member.node.clone(), member))
            .collect();
        *lock(&self.members) = members;
        Ok(revision)
    }

    /// Follow `members/`: a node whose key goes is gone, and the approvals
    /// its requests waited on are cancelled.
    async fn follow_members(self: Arc<Self>, revision: i64, approvals: Arc<Approvals>) {
        let etcd = self.etcd.clone();
        etcd.follow("members", revision, |seen| {
            self.clone().seen_member(seen, approvals.clone())
        })
        .await;
    }

    async fn seen_member(self: Arc<Self>, seen: Seen, approvals: Arc<Approvals>) -> Option<i64> {
        match seen {
            Seen::Put { key, value, .. } => {
                if let Ok(member) = serde_json::from_slice::<Member>(&value) {
                    lock(&self.members).insert(key, member);
                }
            }
            Seen::Deleted { key, .. } => {
                // The lease its key was under: the node may already have
                // joined again under a new one (then its key's put follows).
                let last = lock(&self.members).remove(&key);
                if key != self.me.node {
                    self.gone(&key, last.and_then(|member| member.lease), &approvals)
                        .await;
                }
            }
            Seen::Compacted => {
                // Read all again; a node gone meanwhile shows by comparing.
                let before = self.members();
                let now = self.read_members().await.ok();
                let after = self.members();
                for member in before {
                    if !after.iter().any(|other| other.node == member.node) {
                        self.gone(&member.node, member.lease, &approvals).await;
                    }
                }
                return now;
            }
        }
        None
    }

    async fn gone(&self, node: &str, lease: Option<i64>, approvals: &Approvals) {
        let cancelled = approvals.cancel_held_by(node, lease).await;
        tracing::warn!(
            node,
            cancelled,
            "a node left the cluster: cancelled the approvals its held requests waited on"
        );
    }

    /// Renew the lease every third of its TTL, opening the keep-alive
    /// stream again whenever it breaks (a member died); if etcd says the
    /// lease is gone, join anew. Meanwhile [`watch_lease`] stops releasing
    /// held requests if renewals stop for nearly the TTL.
    async fn keep_lease(self: Arc<Self>, mut lease: i64, approvals: Arc<Approvals>) {
        let renewed = Arc::new(Mutex::new(Instant::now()));
        tokio::spawn(watch_lease(
            renewed.clone(),
            self.lease_ttl,
            approvals.clone(),
        ));
        loop {
            let Err(lost) = self.renew(lease, &renewed, &approvals).await;
            match lost {
                LeaseLost::Gone => {
                    // The others have taken over this node's held requests.
                    tracing::warn!("this node's etcd lease ran out: joining again");
                    approvals.set_available(false);
                    match self.register(&approvals).await {
                        Ok(fresh) => {
                            lease = fresh;
                            tracing::info!("joined the cluster again");
                            back_in(Instant::now(), &renewed, &approvals).await;
                        }
                        Err(error) => tracing::error!("joining the cluster again failed: {error}"),
                    }
                }
                LeaseLost::Broken(error) => {
                    tracing::debug!("lease keep-alive broke: {error}; opening it again");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keep `lease` alive over one keep-alive stream until it breaks or
    /// the lease is gone.
    async fn renew(
        &self,
        lease: i64,
        renewed: &Mutex<Instant>,
        approvals: &Approvals,
    ) -> Result<std::convert::Infallible, LeaseLost> {
        let gone_or_broken = |error: etcd_client::Error| match &error {
            // How etcd-client says etcd answered a renewal with TTL 0.
            etcd_client::Error::LeaseKeepAliveError(message) if message.contains("not found") => {
                LeaseLost::Gone
            }
            _ => LeaseLost::Broken(error.to_string()),
        };
        // A renewal counts from when it was sent: etcd may have taken it
        // any time after that.
        let mut sent = Instant::now();
        let opened =
            tokio::time::timeout(RENEWAL_TIMEOUT, self.etcd.client().lease_keep_alive(lease))
                .await
                .map_err(|_| LeaseLost::Broken("no answer".to_owned()))?;
        // Opening the stream renews the lease once.
        let (mut keeper, mut stream) = opened.map_err(gone_or_broken)?;
        loop {
            back_in(sent, renewed, approvals).await;
            tokio::time::sleep(self.lease_ttl / 3).await;
            sent = Instant::now();
            let renewal = async {
                keeper.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(RENEWAL_TIMEOUT, renewal).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return Err(LeaseLost::Gone),
                Ok(Ok(None)) => return Err(LeaseLost::Broken("the stream ended".to_owned())),
                Ok(Err(error)) => return Err(gone_or_broken(error)),
                Err(_) => return Err(LeaseLost::Broken("no answer".to_owned())),
            }
        }
    }

    /// Put the signed chain head at `anchors/NODE` about once a second,
    /// when it moved (a task).
    pub async fn anchor_periodically(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        signer: Arc<HeadSigner>,
    ) {
        let mut anchored = 0;
        let mut ticks = tokio::time::interval(ANCHOR_INTERVAL);
        loop {
            ticks.tick().await;
            match self.anchor(&*store, &signer, anchored).await {
                Ok(seq) => anchored = seq,
                Err(error) => tracing::warn!("audit anchor not put: {error}"),
            }
        }
    }

    /// Anchor the head if it moved past `anchored`; returns the seq anchored.
    ///
    /// # Errors
    /// When the trail cannot be read or etcd written.
    pub async fn anchor(
        &self,
        store: &dyn Store,
        signer: &HeadSigner,
        anchored: u64,
    ) -> Result<u64, StoreError> {
        let Some((seq, bytes)) = store.last_audit()? else {
            return Ok(anchored);
        };
        if seq == anchored {
            return Ok(seq);
        }
        let entry = crate::audit::decode(&bytes)
            .map_err(|error| StoreError::new(format!("read audit entry {seq}"), error))?;
        let head = signer
            .sign(seq, &entry.hash, entry.time_ms)
            .map_err(|error| StoreError::new("sign the head", error))?;
        put_anchor(&self.etcd, &head).await?;
        Ok(seq)
    }
}

/// How a lease's keep-alive ended.
enum LeaseLost {
    /// etcd no longer has the lease: it ran out.
    Gone,
    /// The stream broke (a member died, no answer in time).
    Broken(String),
}

/// How long a renewal may take before the stream is taken for broken.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lease was renewed by a request sent at `sent`: count from then, and
/// if this node had stopped releasing held requests, go on, after
/// cancelling the approvals of those it answered meanwhile.
async fn back_in(sent: Instant, renewed: &Mutex<Instant>, approvals: &Approvals) {
    *lock(renewed) = sent;
    if !*approvals.available().borrow() {
        approvals.set_available(true);
        tracing::info!("lease renewed: releasing held requests again");
        approvals.cancel_orphans().await;
    }
}

/// Stop releasing held requests once the last renewal is so old that the
/// lease could run out within [`LEASE_MARGIN`] (a task; every 100 ms).
async fn watch_lease(renewed: Arc<Mutex<Instant>>, ttl: Duration, approvals: Arc<Approvals>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticks.tick().await;
        let since = lock(&renewed).elapsed();
        if since + LEASE_MARGIN >= ttl && *approvals.available().borrow() {
            tracing::error!(
                "no lease renewal for {since:?}: answering held requests 503 until etcd answers"
            );
            approvals.set_available(false);
        }
    }
}

/// Put `head` as its node's anchor.
///
/// # Errors
/// When etcd cannot be written in time.
pub async fn put_anchor(etcd: &Etcd, head: &SignedHead) -> Result<(), StoreError> {
    let value = serde_json::to_vec(head).unwrap_or_default();
    etcd.put(&format!("anchors/{}", head.node), &value, None)
        .await
}

/// The anchor of `node`, if it has one.
///
/// # Errors
/// When etcd cannot be read, or the anchor is not a signed head.
pub async fn anchor_of(etcd: &Etcd, node: &str) -> Result<Option<SignedHead>, StoreError> {
    let Some(value) = etcd.get(&format!("anchors/{node}")).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&value)
        .map(Some)
        .map_err(|error| StoreError::new(format!("read the anchor of node `{node}`"), error))
}

/// Check `store`'s trail against `anchor`: signed by `trusted` (the node's
/// own key; if known), and the entry it signed still there, unchanged.
/// Returns the problem, if any.
///
/// # Errors
/// When the trail cannot be read.
pub fn check_anchor(
    store: &dyn Store,
    anchor: &SignedHead,
    trusted: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Option<String>, StoreError> {
    let first = store.audit_from(0, 1)?.first().map_or(1, |(seq, _)| *seq);
    Ok(
        check_heads(store, std::slice::from_ref(anchor), trusted, first)?
            .map(|(seq, problem)| format!("against its anchor in etcd (entry {seq}): {problem}")),
    )
}

/// Whether `name` may name a policy file in a folder: letters, digits,
/// `-` and `_`, so a pushed name never reaches outside the policy folder.
pub fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// Store the component at `file` as policy `name` (with `parameters`) for
/// every node: chunks first, then the record that names them.
///
/// # Errors
/// When etcd cannot be written in time.
pub async fn push_policy(
    etcd: &Etcd,
    name: &str,
    component: &[u8],
    parameters: Option<String>,
) -> Result<PushedPolicy, StoreError> {
    if !valid_policy_name(name) {
        return Err(StoreError::new(
            "push the policy",
            format!("`{name}` is not a policy name: letters, digits, `-` and `_`, up to 64"),
        ));
    }
    let sha256 = crate::secrets::sha256_hex(component);
    let chunks: Vec<&[u8]> = component.chunks(CHUNK).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        etcd.put(&format!("policy-blobs/{sha256}/{index}"), chunk, None)
            .await?;
    }
    let pushed = PushedPolicy {
        name: name.to_owned(),
        sha256,
        size: component.len() as u64,
        chunks: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
        parameters,
        pushed_ms: crate::audit::now_ms(),
    };
    let value = serde_json::to_vec(&pushed).unwrap_or_default();
    etcd.put(&format!("policies/{name}"), &value, None).await?;
    Ok(pushed)
}

/// Write every pushed policy into `folder` now and whenever one is pushed
/// (a task): fetch its chunks, check their SHA-256, and rename the file
/// into place, so the folder's watcher sees a whole component.
pub async fn install_pushed_policies(etcd: Etcd, folder: PathBuf) {
    let revision = match etcd.list("policies").await {
        Ok((revision, records)) => {
            for (_, _, value) in records {
                install_one(&etcd, &folder, &value).await;
            }
            revision
        }
        Err(error) => {
            tracing::error!("pushed policies not read: {error}");
            0
        }
    };
    let follower = etcd.clone();
    follower
        .follow("policies", revision, |seen| {
            let (etcd, folder) = (etcd.clone(), folder.clone());
            async move {
                match seen {
                    Seen::Put { value, .. } => install_one(&etcd, &folder, &value).await,
                    Seen::Deleted { .. } => {}
                    Seen::Compacted => {
                        let (now, records) = etcd.list("policies").await.ok()?;
                        for (_, _, value) in records {
                            install_one(&etcd, &folder, &value).await;
                        }
                        return Some(now);
                    }
                }
                None
            }
        })
        .await;
}

/// Install one pushed policy record; failures are logged (the old file
/// keeps serving).
async fn install_one(etcd: &Etcd, folder: &Path, record: &[u8]) {
    let pushed: PushedPolicy = match serde_json::from_slice::<PushedPolicy>(record) {
        Ok(pushed) if valid_policy_name(&pushed.name) => pushed,
        Ok(pushed) => {
            tracing::error!(name = %pushed.name, "a pushed policy's name is not a file name: ignored");
            return;
        }
        Err(error) => {
            tracing::error!("a pushed policy record is unreadable: {error}");
            return;
        }
    };
    let component = std::fs::read(folder.join(format!("{}.wasm", pushed.name))).ok();
    let parameters = std::fs::read_to_string(folder.join(format!("{}.toml", pushed.name))).ok();
    let same_component =
        component.is_some_and(|bytes| crate::secrets::sha256_hex(&bytes) == pushed.sha256);
    let same_parameters = pushed
        .parameters
        .as_deref()
        .is_none_or(|pushed| Some(pushed) == parameters.as_deref());
    if same_component && same_parameters {
        return;
    }
    match fetch_component(etcd, &pushed).await {
        Ok(component) => {
            if let Err(error) = write_policy(folder, &pushed, &component) {
                tracing::error!(policy = %pushed.name, "pushed policy not written: {error}");
            } else {
                tracing::info!(policy = %pushed.name, sha256 = %pushed.sha256, "pushed policy written into the policy folder");
            }
        }
        Err(error) => tracing::error!(policy = %pushed.name, "pushed policy not fetched: {error}"),
    }
}

async fn fetch_component(etcd: &Etcd, pushed: &PushedPolicy) -> Result<Vec<u8>, StoreError> {
    let mut component = Vec::with_capacity(usize::try_from(pushed.size).unwrap_or(0));
    for index in 0..pushed.chunks {
        let chunk = etcd
            .get(&format!("policy-blobs/{}/{index}", pushed.sha256))
            .await?;
        let Some(chunk) = chunk else {
            return Err(StoreError::new(
                "read a policy chunk",
                format!("chunk {index} is missing"),
            ));
        };
        component.extend_from_slice(&chunk);
    }
    let sha256 = crate::secrets::sha256_hex(&component);
    if sha256 != pushed.sha256 {
        return Err(StoreError::new(
            "check the pushed policy",
            format!("its chunks hash to {sha256}, not {}", pushed.sha256),
        ));
    }
    Ok(component)
}

/// Parameters first (the reload reads them with the component), each by a
/// rename from a hidden temporary file the folder's watcher ignores.
fn write_policy(folder: &Path, pushed: &PushedPolicy, component: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    let place = |file: &str, bytes: &[u8]| -> std::io::Result<()> {
        let temporary = folder.join(format!(".{file}.pushing"));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, folder.join(file))
    };
    if let Some(parameters) = &pushed.parameters {
        place(&format!("{}.toml", pushed.name), parameters.as_bytes())?;
    }
    place(&format!("{}.wasm", pushed.name), component)
}
