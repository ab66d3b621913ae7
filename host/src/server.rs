//! Starting and stopping Airlock from a [`Config`]: build pools and routes, bind
//! every listener (so addresses are known, and printed, before serving), then
//! serve until told to stop, and stop in order: drain, then answer what still
//! waits with 503, then close the admin listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::accept::{self, Acceptor, ConnectionBounds};
use crate::admin::{self, AdminState};
use crate::approvals::api::ApprovalApi;
use crate::approvals::{notify, ApprovalError, Approvals};
use crate::audit::heads::{HeadSigner, HeadsError};
use crate::audit::{AuditEntry, AuditError, AuditLog, Durability, EntryKind, PolicyRef, Sealing};
use crate::balance::Pool;
use crate::cluster::{Cluster, Member};
use crate::config::Config;
use crate::config::StorageBackend;
use crate::control::api::ControlApi;
use crate::control::policy_folder::{self, PolicyReloader};
use crate::control::ControlPlane;
use crate::identity::Identities;
use crate::policy::action::Redaction;
use crate::policy::{PolicySet, PolicySetError};
use crate::proxy::listener::Listener;
use crate::proxy::route::RouteTable;
use crate::proxy::{Proxy, Routing};
use crate::shutdown::{self, Phase, Shutdown, ShutdownTrigger};
use crate::store::{EtcdStore, RedbStore, Store, StoreError};
use crate::tls::{self, ReloadingCertificates, TlsError};

/// How often listener certificate files are checked for changes.
const CERTIFICATE_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// After the drain deadline, how long the 503 answers get to reach clients.
/// How often segments past `[audit] retain` are looked for.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Airlock could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A socket could not be bound.
    #[error("{what}: cannot listen on {address}: {cause}")]
    Bind {
        /// Which listener.
        what: String,
        /// Where.
        address: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy folder could not be loaded.
    #[error(transparent)]
    Policies(#[from] PolicySetError),
    /// A route's policy chain could not be built.
    #[error("route policies: {0}")]
    Chain(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit trail could not record the start.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The head signing key could not be read.
    #[error(transparent)]
    Heads(#[from] HeadsError),
    /// Approvals left by the last run could not be closed.
    #[error("approvals: {0}")]
    Approvals(#[from] ApprovalError),
    /// A webhook could not be set up.
    #[error(transparent)]
    Notify(#[from] crate::approvals::notify::NotifyError),
    /// The audit reader's thread could not start.
    #[error("audit reader thread: {0}")]
    Reader(std::io::Error),
    /// Spans could not be exported where `[tracing]` or `OTEL_*` say.
    #[error("tracing: {0:#}")]
    Tracing(anyhow::Error),
}

/// A bound, not yet serving, Airlock.
#[derive(Debug)]
pub struct Server {
    config: Config,
    proxy: Arc<Proxy>,
    audit: Option<Arc<Audit>>,
    approvals: Option<ApprovalApi>,
    listeners: Vec<Listener>,
    admin: Acceptor,
    /// Who is who, for the admin API.
    identities: Arc<Identities>,
    /// Where the admin API reads the trail.
    audit_reader: admin::reader::AuditReader,
    certificates: Vec<Arc<ReloadingCertificates>>,
    /// Webhook delivery tasks, running from bind on.
    notifiers: Vec<JoinHandle<()>>,
    /// Keeps policies in step with the policy folder, if there is one.
    reloader: Option<Arc<PolicyReloader>>,
    /// The routing's owner, and its API.
    control: ControlApi,
    /// This node's part in a cluster (`[storage] backend = "etcd"`).
    cluster: Option<Arc<Cluster>>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
}

/// How often ended grants are recorded as expired and dropped.
const GRANT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// One address Airlock listens on, for the startup announcement.
#[derive(Debug, Clone)]
pub struct BoundAddress {
    /// `admin` or the listener's name.
    pub name: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The bound address.
    pub address: SocketAddr,
}

async fn bind(what: &str, address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|cause| StartError::Bind {
            what: what.to_owned(),
            address,
            cause,
        })
}

impl Server {
    /// Builds every part and binds every socket.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        if let Some(destination) =
            crate::telemetry::install(&config.tracing).map_err(StartError::Tracing)?
        {
            tracing::info!(
                endpoint = destination.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
                protocol = ?destination.protocol,
                service = %destination.service_name,
                "exporting traces over OTLP"
            );
        }
        let (trigger, shutdown) = shutdown::channel();
        let pools = config
            .pools
            .iter()
            .map(|p| Pool::build(p, &config.limits).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let cache = PolicySet::cache_directory(&config.policies, &config.server.data_dir);
        let folder = config
            .policies
            .directory
            .as_deref()
            .map(policy_folder::snapshot);
        let policies = PolicySet::load(&config.policies, Some(cache))?;
        policies
            .check_chains(&config)
            .map_err(|error| StartError::Chain(error.to_string()))?;
        let routes = RouteTable::build(
            &config.routes,
            |name| pools.iter().find(|p| p.name == name).cloned(),
            |route| Ok(policies.chain(route)?),
        )
        .map_err(StartError::Chain)?;
        let redaction =
            Redaction::new(&config.policies.redact_headers).map_err(StartError::Chain)?;
        let audit = match config.audit.enabled {
            true => Some(Arc::new(Audit::start(&config, &policies).await?)),
            false => None,
        };
        let identities = Arc::new(Identities::new(&config.principals));
        // Approvals need the trail: every vote is recorded with its effect.
        let approvals = match &audit {
            Some(audit) => Some(ApprovalApi {
                approvals: Approvals::start(
                    audit.store.clone(),
                    audit.log.clone(),
                    config.approvals.clone(),
                )
                .await?,
            }),
            None => None,
        };
        let proxy = Arc::new(Proxy::new(
            Routing {
                routes,
                pools,
                redaction,
            },
            config.limits.clone(),
            shutdown.clone(),
            audit.as_ref().map(|audit| audit.log.clone()),
            identities.clone(),
            approvals.as_ref().map(|api| api.approvals.clone()),
        ));

        let loaded: Vec<String> = policies.names().map(str::to_owned).collect();
        let control = ControlPlane::start(
            &config,
            policies,
            proxy.clone(),
            audit.as_ref().map(|audit| audit.log.clone()),
            audit.as_ref().map(|audit| audit.store.clone()),
            approvals.as_ref().map(|api| api.approvals.clone()),
        )
        .map_err(StartError::Chain)?;
        let control = ControlApi { plane: control };
        let reloader = config
            .policies
            .directory
            .clone()
            .zip(folder)
            .map(|(directory, folder)| {
                Arc::new(PolicyReloader::new(
                    directory,
                    config.policies.clone(),
                    control.plane.clone(),
                    audit.as_ref().map(|audit| audit.log.clone()),
                    (&loaded, folder),
                ))
            });

        let mut listeners = Vec::new();
        let mut certificates = Vec::new();
        let mut tls_acceptor = |settings: Option<&crate::config::ListenerTls>| {
            let Some(settings) = settings else {
                return Ok::<_, TlsError>(None);
            };
            let (server_config, resolver) = tls::server_config(settings)?;
            certificates.push(resolver);
            Ok(Some(tokio_rustls::TlsAcceptor::from(server_config)))
        };
        for l in &config.listeners {
            let acceptor = tls_acceptor(l.tls.as_ref())?;
            let socket = bind(&format!("listener `{}`", l.name), l.address).await?;
            listeners.push(Listener::new(l, &config.limits, socket, acceptor));
        }
        let admin = Acceptor::new(
            "admin",
            bind("admin", config.admin.address).await?,
            tls_acceptor(config.admin.tls.as_ref())?,
            ConnectionBounds {
                max_connections: config.admin.max_connections,
                max_per_client: config.admin.max_connections_per_client,
                idle_timeout: config.limits.idle_timeout,
                first_request_timeout: config.limits.header_read_timeout,
            },
        );
        let cluster = match (&audit, &approvals) {
            (Some(audit), Some(api)) => {
                let admin_address = admin.local_addr().unwrap_or(config.admin.address);
                audit
                    .join_cluster(&config, admin_address, &api.approvals)
                    .await?
            }
            _ => None,
        };
        let notifiers = match &approvals {
            Some(api) => {
                let link_base = match &config.approvals.link_base {
                    Some(base) => base.clone(),
                    None => format!(
                        "http://{}",
                        admin.local_addr().unwrap_or(config.admin.address)
                    ),
                };
                notify::start(&config.webhooks, &api.approvals, &link_base)?
            }
            None => Vec::new(),
        };
        Ok(Server {
            config,
            proxy,
            audit,
            approvals,
            listeners,
            admin,
            identities,
            audit_reader: admin::reader::AuditReader::start().map_err(StartError::Reader)?,
            certificates,
            notifiers,
            reloader,
            control,
            cluster,
            trigger,
            shutdown,
        })
    }

    /// Where this server listens.
    pub fn addresses(&self) -> Vec<BoundAddress> {
        let mut out: Vec<BoundAddress> = self
            .listeners
            .iter()
            .zip(&self.config.listeners)
            .filter_map(|(l, c)| {
                Some(BoundAddress {
                    name: c.name.clone(),
                    scheme: if c.tls.is_some() { "https" } else { "http" },
                    address: l.local_addr().ok()?,
                })
            })
            .collect();
        if let Ok(address) = self.admin.local_addr() {
            out.push(BoundAddress {
                name: "admin".into(),
                scheme: if self.admin.is_tls() { "https" } else { "http" },
                address,
            });
        }
        out
    }

    /// Serves until `stop` resolves, then shuts down gracefully.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Server {
            config,
            proxy,
            audit,
            approvals,
            listeners,
            admin,
            identities,
            audit_reader,
            certificates,
            notifiers,
            reloader,
            control,
            cluster,
            trigger,
            shutdown,
        } = self;
        let mut background: Vec<JoinHandle<()>> = notifiers;
        let held = approvals.as_ref().map(|api| api.approvals.clone());
        if let Some(approvals) = &held {
            background.push(tokio::spawn(sweep_expired(approvals.clone())));
        }
        if let Some(reloader) = &reloader {
            tracing::info!(folder = %reloader.directory().display(), "watching the policy folder: drop a .wasm (and its .toml) in to load it");
            background.push(tokio::spawn(reloader.clone().watch()));
        }
        control.plane.start_health().await;
        control.plane.resume_held();
        background.push(tokio::spawn(reload_on_sighup(control.clone())));
        background.push(tokio::spawn(crate::control::balancer::run(
            control.plane.clone(),
        )));
        for resolver in certificates {
            background.push(tokio::spawn(resolver.watch(CERTIFICATE_POLL_INTERVAL)));
        }
        if let (Some(cluster), Some(audit)) = (&cluster, &audit) {
            background.push(tokio::spawn(
                control.plane.clone().follow_overlay(audit.store.clone()),
            ));
            if let Some(signer) = &audit.anchor_signer {
                background.push(tokio::spawn(
                    cluster
                        .clone()
                        .anchor_periodically(audit.store.clone(), signer.clone()),
                ));
            }
            if let Some(folder) = &config.policies.directory {
                background.push(tokio::spawn(crate::cluster::install_pushed_policies(
                    cluster.etcd().clone(),
                    folder.clone(),
                )));
            }
        }
        if let Some(audit) = &audit {
            background.push(tokio::spawn(audit.clone().prune_periodically()));
            if audit.signer.is_some() {
                background.push(tokio::spawn(audit.clone().sign_periodically()));
            }
        }

        let (token, mut all_closed) = mpsc::channel::<()>(1);
        let http = Arc::new(accept::http_builder(&config.limits));
        for l in listeners {
            tokio::spawn(l.serve(proxy.clone(), http.clone(), shutdown.clone(), token.clone()));
        }
        drop(token);

        // The admin listener outlives the proxy's drain, so approvers can
        // still vote on what waits: it has its own phase.
        let (admin_trigger, admin_phase) = shutdown::channel();
        let admin_app = admin::router(
            AdminState {
                proxy: proxy.clone(),
                shutdown: shutdown.clone(),
                store: audit.as_ref().map(|audit| audit.store.clone()),
                approvals,
                policies: reloader,
                control: Some(control.clone()),
                cluster: cluster.clone(),
                heads: audit.as_ref().and_then(|audit| audit.signer.clone()),
                audit_reader,
                verified: Arc::default(),
            },
            admin::access::Gate::new(&config.admin, identities),
        );
        let admin_task = tokio::spawn(admin.serve(http, admin_phase, None, move |_| {
            let app = admin_app.clone();
            move |request: http::Request<hyper::body::Incoming>, guard: accept::RequestGuard| {
                let app = app.clone();
                async move {
                    use tower::ServiceExt as _;
                    let response = app.oneshot(request.map(axum::body::Body::new)).await?;
                    Ok::<_, std::convert::Infallible>(guard.track(response))
                }
            }
        }));

        stop.await;
        let drain = config.server.drain_timeout;
        tracing::info!(drain_timeout = ?drain, "shutting down: draining connections");
        trigger.enter(Phase::Draining);
        if tokio::time::timeout(drain, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!("drain timeout passed: answering requests still waiting with 503");
            trigger.enter(Phase::DeadlinePassed);
            let _ = tokio::time::timeout(FINAL_FLUSH, all_closed.recv()).await;
        }
        if let Some(approvals) = &held {
            // Their requests were answered 503 above; record that before the stop.
            approvals.cancel_waiting().await;
        }
        for task in background {
            task.abort();
        }
        control.plane.stop_health();
        admin_trigger.enter(Phase::Draining);
        let _ = admin_task.await;
        if let Some(audit) = &audit {
            let stopped = AuditEntry::new(EntryKind::NodeStopped, "airlock");
            if let Err(error) = audit.log.record_last(stopped).await {
                tracing::error!("audit: node stop not recorded: {error}");
            }
            // The last head: the stop itself is covered.
            audit.sign_head(0).await;
        }
        let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
        tracing::info!("stopped");
    }
}

/// Reload pools and routes from the config file on each SIGHUP.
async fn reload_on_sighup(control: ControlApi) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::error!("cannot listen for SIGHUP: reload with `airlock reload` instead");
        return;
    };
    while hangups.recv().await.is_some() {
        match control.plane.reload_unjudged("airlock (SIGHUP)").await {
            Ok(summary) => tracing::info!("SIGHUP: reloaded: {summary}"),
            Err(error) => tracing::error!("SIGHUP: reload refused, nothing changed: {error}"),
        }
    }
}

/// Record ended grants, and overdue approvals, as expired, every
/// [`GRANT_SWEEP_INTERVAL`].
async fn sweep_expired(approvals: Arc<Approvals>) {
    let mut ticks = tokio::time::interval(GRANT_SWEEP_INTERVAL);
    loop {
        ticks.tick().await;
        if let Err(error) = approvals.expire_grants().await {
            tracing::error!("grants: expiry not recorded: {error}");
        }
        let expired = approvals.expire_overdue().await;
        if expired > 0 {
            tracing::info!(expired, "expired approvals nothing had expired");
        }
    }
}

/// The store, the audit writer over it, and the head signer.
#[derive(Debug)]
struct Audit {
    store: Arc<dyn Store>,
    /// The same store, when it is etcd's.
    etcd: Option<Arc<EtcdStore>>,
    log: AuditLog,
    signer: Option<Arc<HeadSigner>>,
    /// Signs the heads anchored in etcd.
    anchor_signer: Option<Arc<HeadSigner>>,
    sign_interval: Duration,
    retain: Option<Duration>,
}

impl Audit {
    /// Open the store in the data dir, start the writer, and record the
    /// start and the policies loaded, durably: a node that cannot record
    /// does not serve.
    async fn start(config: &Config, policies: &PolicySet) -> Result<Audit, StartError> {
        let node = config.audit.node.clone().unwrap_or_else(host_name);
        let data_dir = &config.server.data_dir;
        let etcd = match config.storage.backend {
            StorageBackend::Etcd => {
                Some(Arc::new(EtcdStore::open(data_dir, &config.storage).await?))
            }
            StorageBackend::Redb => None,
        };
        let store: Arc<dyn Store> = match &etcd {
            Some(etcd) => etcd.clone(),
            None => Arc::new(RedbStore::open(data_dir)?),
        };
        let signer = match config.audit.signing_files(data_dir) {
            Some((key, heads)) => Some(Arc::new(HeadSigner::load_or_make(&key, &heads, &node)?)),
            None => None,
        };
        let anchor_signer = match (&etcd, &config.audit.signing_key) {
            (Some(_), Some(key)) => Some(Arc::new(HeadSigner::for_anchors(key, &node)?)),
            (Some(_), None) => Some(Arc::new(HeadSigner::for_anchors(
                &data_dir.join(ANCHOR_KEY),
                &node,
            )?)),
            (None, _) => None,
        };
        if let (Some(etcd), Some(signer)) = (&etcd, &anchor_signer) {
            refuse_a_cut_trail(etcd, &node, signer).await?;
        }
        if let Some(signer) = &signer {
            refuse_a_rewritten_trail(&*store, signer)?;
        }
        let sealing = Sealing {
            max_entries: config.audit.segment_entries,
        };
        let log = AuditLog::start(store.clone(), &node, sealing)?;
        log.record(
            AuditEntry::new(EntryKind::NodeStarted, "airlock"),
            Durability::Durable,
        )
        .await?;
        for name in policies.names() {
            let mut loaded = AuditEntry::new(EntryKind::PolicyLoaded, "airlock");
            if let Some(policy) = policies.get(name) {
                loaded.policies = vec![PolicyRef {
                    name: name.to_owned(),
                    hash: policy.hash().to_owned(),
                }];
            }
            log.record(loaded, Durability::Durable).await?;
        }
        Ok(Audit {
            store,
            etcd,
            log,
            signer,
            anchor_signer,
            sign_interval: config.audit.sign_interval,
            retain: config.audit.retain,
        })
    }

    /// With the etcd store, join its cluster as this node, reachable at
    /// `admin_address`.
    async fn join_cluster(
        &self,
        config: &Config,
        admin_address: SocketAddr,
        approvals: &Arc<Approvals>,
    ) -> Result<Option<Arc<Cluster>>, StartError> {
        let Some(store) = &self.etcd else {
            return Ok(None);
        };
        let me = Member {
            node: self.log.node().to_owned(),
            admin: admin_address.to_string(),
            started_ms: crate::audit::now_ms(),
            lease: None,
        };
        let anchor_key = self
            .anchor_signer
            .as_ref()
            .map(|signer| signer.public_key());
        let cluster = Cluster::join(
            store.etcd().clone(),
            me,
            config.storage.lease_ttl,
            approvals.clone(),
            anchor_key,
        )
        .await?;
        Ok(Some(cluster))
    }

    /// Drop segments older than `[audit] retain`, hourly.
    async fn prune_periodically(self: Arc<Self>) {
        let Some(retain) = self.retain else {
            return;
        };
        let mut ticks = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            ticks.tick().await;
            let retain_ms = i64::try_from(retain.as_millis()).unwrap_or(i64::MAX);
            let before_ms = crate::audit::now_ms().saturating_sub(retain_ms);
            let store = self.store.clone();
            let log = self.log.clone();
            // Reading segment heads and deleting files blocks: not on a worker.
            let pruned = tokio::task::spawn_blocking(move || {
                tokio::runtime::Handle::current()
                    .block_on(crate::audit::prune(&*store, &log, before_ms))
            })
            .await;
            match pruned {
                Ok(Ok(pruned)) if pruned.segments > 0 => tracing::info!(
                    segments = pruned.segments,
                    entries = pruned.entries,
                    "audit: pruned segments past retention"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!("audit: pruning failed: {error}"),
                Err(error) => tracing::error!("audit: pruning failed: {error}"),
            }
        }
    }

    /// Sign the chain head if it moved since `last_signed`; returns the
    /// sequence number signed (or still signed).
    async fn sign_head(&self, last_signed: u64) -> u64 {
        let Some(signer) = self.signer.clone() else {
            return last_signed;
        };
        let store = self.store.clone();
        let signed = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            let Some((seq, bytes)) = store.last_audit().map_err(|error| error.to_string())? else {
                return Ok(last_signed);
            };
            if seq == last_signed {
                return Ok(seq);
            }
            let entry = crate::audit::decode(&bytes)?;
            signer
                .sign(seq, &entry.hash, entry.time_ms)
                .map_err(|error| error.to_string())?;
            Ok(seq)
        })
        .await;
        match signed {
            Ok(Ok(seq)) => seq,
            Ok(Err(error)) => {
                tracing::error!("audit: chain head not signed: {error}");
                last_signed
            }
            Err(error) => {
                tracing::error!("audit: chain head not signed: {error}");
                last_signed
            }
        }
    }

    /// Sign the head every `sign_interval` while serving.
    async fn sign_periodically(self: Arc<Self>) {
        let mut last_signed = 0;
        let mut ticks = tokio::time::interval(self.sign_interval);
        loop {
            ticks.tick().await;
            last_signed = self.sign_head(last_signed).await;
        }
    }
}

/// The key a cluster node signs its anchors with when `[audit]
/// signing_key` names none: made in the data dir on first use.
const ANCHOR_KEY: &str = "anchor.key";

/// A cluster node whose trail no longer holds its anchor in etcd was cut or
/// rewritten: it refuses to start, so as not to write over the evidence.
async fn refuse_a_cut_trail(
    store: &EtcdStore,
    node: &str,
    signer: &HeadSigner,
) -> Result<(), StartError> {
    let anchor = crate::cluster::anchor_of(store.etcd(), node).await?;
    let Some(anchor) = anchor else {
        return Ok(());
    };
    match crate::cluster::check_anchor(store, &anchor, Some(&signer.public_key()))? {
        None => Ok(()),
        Some(problem) => Err(StartError::Store(StoreError::new(
            format!("check the trail of node `{node}`"),
            format!("{problem}; refusing to start over it (verify with `airlock audit verify --config`)"),
        ))),
    }
}

/// A trail whose newest signed head no longer matches it was cut or
/// rewritten (an entry changed in place, every later hash recomputed): the
/// node refuses to start over it, as a cluster node does over its anchor.
fn refuse_a_rewritten_trail(store: &dyn Store, signer: &HeadSigner) -> Result<(), StartError> {
    let Some(heads) = signer.heads_file() else {
        return Ok(());
    };
    let problem = crate::audit::heads::check_last_head(store, heads, &signer.public_key())
        .map_err(|error| {
            StartError::Store(StoreError::new(
                "check the trail against its signed heads",
                error,
            ))
        })?;
    match problem {
        None => Ok(()),
        Some((seq, problem)) => Err(StartError::Store(StoreError::new(
            format!("check the trail against its last signed head ({})", heads.display()),
            format!(
                "entry {seq}: {problem}; refusing to start over it (see `airlock audit verify --heads {} --public-key {}`; to start a new trail on purpose, move {} aside first)",
                heads.display(),
                hex::encode(signer.public_key().as_bytes()),
                heads.display()
            ),
        ))),
    }
}

/// The machine's host name, the default node id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "airlock".to_owned())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
