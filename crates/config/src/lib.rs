//! The configuration file: one TOML document, deserialized with serde and then
//! validated as a whole. Every error names the file, the line and the key
//! (`airlock.toml:14:pool[0].backends[1].weight: ...`) and says what was expected,
//! whether serde found it (a wrong type, an unknown field) or validation did (a
//! route naming a pool that does not exist). `examples/reference.toml` documents
//! every field; a test (the server's preflight) keeps it loadable.
//!
//! This crate is a leaf of Airlock's dependency graph: it depends on no
//! other Airlock crate and reads no file but the config itself. What only
//! loading another file can check (certificates, keys, CA bundles: see
//! [`Config::named_files`]) is checked by the server's preflight, and its
//! errors are located here ([`Config::locate`]).

// Tests state their expectations with unwrap; the library itself may not.
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(any(test, fuzzing))]
pub mod oracles;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole configuration, as read from one file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener: health, readiness, metrics and the admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Limits applied to every proxied request.
    #[serde(default)]
    pub limits: Limits,
    /// Where clients connect.
    #[serde(rename = "listener", default)]
    pub listeners: Vec<ListenerConfig>,
    /// Groups of upstream backends.
    #[serde(rename = "pool", default)]
    pub pools: Vec<PoolConfig>,
    /// Which pool serves which host and path.
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
    /// The policy folder and the sandbox policies run in.
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Who may approve, and how held actions wait.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// People and clients Airlock knows: API tokens, proxy client tokens,
    /// client certificates, each mapped to a subject, groups and roles.
    #[serde(rename = "principal", default)]
    pub principals: Vec<PrincipalConfig>,
    /// Where new and resolved approvals are announced.
    #[serde(rename = "webhook", default)]
    pub webhooks: Vec<WebhookConfig>,
    /// How operators' routing changes are judged and watched.
    #[serde(default)]
    pub control: ControlConfig,
    /// Where traces go (OpenTelemetry over OTLP).
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Where state lives: this node's redb (default), or etcd shared by
    /// several nodes.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The file this was read from (for reloads).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[tracing]`: spans exported over OTLP. Each key left out falls back to
/// the standard `OTEL_*` variable; with no endpoint in either, tracing is off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:4317` (gRPC) or
    /// `http://127.0.0.1:4318` (HTTP, `/v1/traces` is appended). Else
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`; else `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`.
    pub protocol: Option<OtlpProtocol>,
    /// Else `OTEL_SERVICE_NAME`, else `airlock`.
    pub service_name: Option<String>,
    /// Share of traces started here that are kept, 0.0 to 1.0 (a caller's
    /// sampled flag is followed). Else `OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace. Held and denied actions
    /// are always kept.
    pub sample_ratio: Option<f64>,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `[control]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Policies that judge routing changes and balancer events, in order.
    /// None: every change an admin asks for is applied.
    pub policies: Vec<String>,
    /// Per-policy parameter overrides, as `[route.parameters.NAME]`.
    #[serde(deserialize_with = "policy_parameters")]
    pub parameters: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// How long an applied change is watched. Default: 60s.
    #[serde(with = "duration")]
    pub watch_window: Duration,
    /// Roll a change back when an affected pool's error rate passes this
    /// within the window (0.0 to 1.0). Default: 0.5.
    pub rollback_error_rate: f64,
    /// Roll it back when an affected pool's p99 latency passes this.
    #[serde(deserialize_with = "optional_duration::deserialize")]
    pub rollback_p99: Option<Duration>,
    /// A route with a `backup_pool` asks to fail over when its pool has no
    /// backend left, or when the pool's error rate passes this (over at
    /// least 10 recent requests). Default: 0.5.
    pub failover_error_rate: f64,
    /// A route with an `overflow_pool` asks to spill when its pool has this
    /// many requests in flight; it stops under half of it. Default: 0 (off).
    pub spill_in_flight: u32,
    /// The share of requests a spill sends to the overflow pool. Default: 50.
    pub spill_percent: u8,
    /// What a route does while its failover waits for approval: `stay` on
    /// the pool that is down (default: nothing moves unapproved) or
    /// `fail_over` now and fail back if the approval is denied.
    pub while_held: WhileHeld,
}

/// `[control] while_held`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhileHeld {
    #[default]
    Stay,
    FailOver,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            parameters: std::collections::BTreeMap::new(),
            watch_window: Duration::from_secs(60),
            rollback_error_rate: 0.5,
            rollback_p99: None,
            failover_error_rate: 0.5,
            spill_in_flight: 0,
            spill_percent: 50,
            while_held: WhileHeld::Stay,
        }
    }
}

/// `[[webhook]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST, `http://` or `https://`.
    pub url: String,
    /// `generic` (signed JSON) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// A file holding the HMAC-SHA256 key that signs `generic` bodies
    /// (required for them; its whitespace-trimmed content is the key).
    pub secret_file: Option<PathBuf>,
    /// Deliveries tried per batch before it is dropped (logged). Default: 6.
    #[serde(default = "default_webhook_attempts")]
    pub attempts: u32,
}

fn default_webhook_attempts() -> u32 {
    6
}

/// How a webhook's body looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Generic,
    Slack,
}

/// `[[principal]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The stable name votes and the trail record, e.g. `alice`.
    pub subject: String,
    /// Hex SHA-256 of the bearer token (`printf %s TOKEN | sha256sum`); the
    /// token itself never appears in config.
    pub token_sha256: Option<String>,
    /// A verified client certificate's DNS name that identifies this
    /// principal on the proxy.
    pub certificate: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `viewer` (read approvals, grants, pools, policies), `approver` (also
    /// vote), `admin` (everything, routing changes included), `auditor`
    /// (read and verify the audit trail; nothing else unless also listed).
    /// None: a proxy client only.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// What a principal may do on the admin API. `admin` includes every other
/// role and `approver` includes `viewer`; `auditor` stands alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Approver,
    Admin,
    Auditor,
}

impl Role {
    /// The role's name, as the config spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Whether holding `self` grants `other`.
    pub fn includes(self, other: Role) -> bool {
        matches!(
            (self, other),
            (Role::Admin, _)
                | (Role::Approver, Role::Approver | Role::Viewer)
                | (Role::Viewer, Role::Viewer)
                | (Role::Auditor, Role::Auditor)
        )
    }
}

/// `[approvals]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// Largest body a held request may carry (it waits in memory); above it: 413.
    #[serde(deserialize_with = "byte_size")]
    pub max_body_bytes: u64,
    /// All held bodies together; above it: 429.
    #[serde(deserialize_with = "byte_size")]
    pub max_held_bytes: u64,
    /// Pending approvals one principal may have; above it: 429.
    pub max_pending_per_principal: usize,
    /// Approvals one principal may create per minute; above it: 429.
    pub max_created_per_minute: u32,
    /// What an expired hold answers. Default: 403.
    pub expired_status: u16,
    /// Body bytes shown to approvers (viewer role and up) in the API.
    #[serde(deserialize_with = "byte_size")]
    pub preview_bytes: u64,
    /// The longest a grant lasts, whatever the policy asked. Default: 8h.
    #[serde(with = "duration")]
    pub max_grant_lifetime: Duration,
    /// How long after approval an async ticket may be redeemed. Default: 15m.
    #[serde(with = "duration")]
    pub redeem_within: Duration,
    /// Where approvers reach the admin API, for links in notifications,
    /// e.g. `https://airlock-admin.example.com`. Default: the admin address.
    pub link_base: Option<String>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_held_bytes: 64 << 20,
            max_pending_per_principal: 20,
            max_created_per_minute: 30,
            expired_status: 403,
            preview_bytes: 4 << 10,
            max_grant_lifetime: Duration::from_secs(8 * 3600),
            redeem_within: Duration::from_secs(15 * 60),
            link_base: None,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record decisions in `<data_dir>/airlock.redb`. Default: true.
    pub enabled: bool,
    /// This node's id in every entry. Default: the host name.
    pub node: Option<String>,
    /// Sign the chain head with an ed25519 key, so that a cut or rewritten
    /// trail is caught (at startup, by `/v1/audit/verify`, by `airlock
    /// audit verify --heads`). Default: true.
    pub sign_heads: bool,
    /// The ed25519 key (`airlock audit keygen FILE`) heads are signed with.
    /// Default: `<data_dir>.keys/audit.key`, made at first start.
    pub signing_key: Option<PathBuf>,
    /// Where signed heads are appended, one JSON line each; outside
    /// `data_dir`, so whoever can rewrite the trail cannot rewrite these too.
    /// Default: `<data_dir>.keys/heads.jsonl`.
    pub heads_file: Option<PathBuf>,
    /// How often the head is signed (when it moved), and once at stop.
    #[serde(with = "duration")]
    pub sign_interval: Duration,
    /// Most entries in one sealed segment file (segments also roll at UTC
    /// midnight). Retention drops whole segments.
    pub segment_entries: u64,
    /// Drop sealed segments older than this (checked hourly, after a
    /// checkpoint entry). Default: keep everything.
    #[serde(deserialize_with = "optional_duration::deserialize")]
    pub retain: Option<Duration>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            node: None,
            sign_heads: true,
            signing_key: None,
            heads_file: None,
            sign_interval: Duration::from_secs(10),
            segment_entries: 1_000_000,
            retain: None,
        }
    }
}

impl AuditConfig {
    /// The signing key and heads file a node signs its chain head with: as
    /// configured, else in `<data_dir>.keys/` (beside the data dir, not in
    /// it; in production, somewhere whoever can write the data dir cannot).
    /// None with `sign_heads = false`.
    pub fn signing_files(&self, data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
        if !self.sign_heads {
            return None;
        }
        let mut keys = data_dir.as_os_str().to_owned();
        keys.push(".keys");
        let keys = PathBuf::from(keys);
        Some((
            self.signing_key
                .clone()
                .unwrap_or_else(|| keys.join("audit.key")),
            self.heads_file
                .clone()
                .unwrap_or_else(|| keys.join("heads.jsonl")),
        ))
    }
}

/// `[storage]`: where approvals, votes, grants and the routing overlay live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `redb` (default): this node's data dir alone. `etcd`: shared with the
    /// other nodes of a cluster, each keeping its own audit trail in its data
    /// dir, anchored in etcd.
    pub backend: StorageBackend,
    /// etcd client URLs (`http://host:2379`, or `https://` with `ca_file`).
    pub endpoints: Vec<String>,
    /// Prefix of every key Airlock writes. Default: `/airlock`.
    pub prefix: String,
    /// How long a call retries across endpoints before the action that needs
    /// it fails closed with 503. Default: "10s".
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// This node's membership lease. Keep it well above etcd's election
    /// time: a node that cannot renew it for this long answers its held
    /// requests 503 and the others cancel their approvals. Default: "10s".
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
    /// CA certificate (PEM) to check etcd's certificate with.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client certificate auth, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
    /// etcd user name (with `password_file`).
    pub user: Option<String>,
    /// A file holding the etcd user's password.
    pub password_file: Option<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Redb,
            endpoints: Vec::new(),
            prefix: "/airlock".to_owned(),
            timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(10),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
        }
    }
}

/// Which store holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageBackend {
    /// The node's own redb file.
    Redb,
    /// An etcd cluster shared by several nodes.
    Etcd,
}

/// `[policies]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoliciesConfig {
    /// Folder of policy components: every `NAME.wasm` is policy `NAME`, with
    /// parameters from `NAME.toml` beside it. Routes name policies from here.
    pub directory: Option<PathBuf>,
    /// Where compiled policies are cached across restarts; keep it outside
    /// `directory`. default: `<data_dir>/wasmtime-cache`.
    pub cache_directory: Option<PathBuf>,
    /// Wall-clock budget of one policy evaluation; past it the policy is
    /// interrupted and the route's `on_policy_error` applies.
    #[serde(with = "duration")]
    pub deadline: Duration,
    /// Linear memory cap of one policy instance.
    #[serde(deserialize_with = "byte_size")]
    pub memory_limit: u64,
    /// Policy instances alive at once, across all policies.
    pub max_instances: u32,
    /// Policies that keep their instance between evaluations: faster (no
    /// instantiation), but state left in memory by one evaluation is seen by
    /// the next, which may be another principal's. Off by default.
    pub reuse_instances: Vec<String>,
    /// Request headers redacted before a policy sees them, in addition to
    /// `authorization`, `cookie` and `proxy-authorization`.
    pub redact_headers: Vec<String>,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        Self {
            directory: None,
            cache_directory: None,
            deadline: Duration::from_millis(10),
            memory_limit: 16 << 20,
            max_instances: 64,
            reuse_instances: Vec::new(),
            redact_headers: Vec::new(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Tokio worker threads; default: one per CPU.
    pub worker_threads: Option<usize>,
    /// How long in-flight requests may run after shutdown begins before they are
    /// answered 503.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// Where Airlock keeps its state (store, caches).
    pub data_dir: PathBuf,
    /// `text` (default) or `json` log lines on stderr.
    pub log_format: LogFormat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            worker_threads: None,
            drain_timeout: Duration::from_secs(10),
            data_dir: PathBuf::from("airlock-data"),
            log_format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (`/healthz`, `/readyz`).
    pub address: SocketAddr,
    /// Host names the admin API answers to (the `Host` header, its port
    /// aside), besides IP literals, which it always answers to. Another
    /// name is refused with 421, so a page that rebinds its own DNS name to
    /// this address cannot read the API from an operator's browser.
    pub hosts: Vec<String>,
    /// Who may read `/metrics` (it names pools and backend addresses):
    /// `viewer` (a bearer token with the viewer role) or `open`.
    pub metrics: MetricsAccess,
    /// Connections served at once; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are closed at
    /// once.
    pub max_connections_per_client: usize,
    /// Terminate TLS on the admin listener (tokens then never cross the
    /// network in clear); with `client_ca`, client certificates too.
    pub tls: Option<ListenerTls>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 9090)),
            hosts: vec!["localhost".to_owned()],
            metrics: MetricsAccess::Viewer,
            max_connections: 256,
            max_connections_per_client: 64,
            tls: None,
        }
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// A bearer token with the viewer role.
    #[default]
    Viewer,
    /// Anyone who reaches the admin port (a scraper without a token).
    Open,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request head (request line and headers) accepted; above it: 431.
    #[serde(deserialize_with = "byte_size")]
    pub max_header_bytes: u64,
    /// Largest request body accepted; above it: 413.
    #[serde(deserialize_with = "byte_size")]
    pub max_body_bytes: u64,
    /// Time to read a request head from a client, and for a new connection
    /// (HTTP/2 included) to ask its first request.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time to open a connection to a backend.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time from forwarding a request to the backend's response head; above it: 504.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// How long an idle pooled upstream connection is kept.
    #[serde(with = "duration")]
    pub upstream_idle_timeout: Duration,
    /// A client connection with no request in flight for this long is
    /// closed (gracefully: a response still streaming finishes). HTTP/1.1
    /// connections waiting for their next request head are closed sooner,
    /// after `header_read_timeout`.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 client connection is pinged; one that does not
    /// answer within the same time is closed.
    #[serde(with = "duration")]
    pub http2_keepalive_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            upstream_idle_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(20),
        }
    }
}

/// `[[listener]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Socket address; port 0 picks a free port (printed at startup).
    pub address: SocketAddr,
    /// Connections served at once; further clients wait in the kernel backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold at once; more are closed at
    /// once. Default: 256, or `max_connections` with `trust_forwarded` (behind
    /// a balancer every connection comes from its address).
    pub max_connections_per_client: Option<usize>,
    /// Keep `X-Forwarded-*`, `Forwarded` and `X-Real-IP` from clients (only for
    /// listeners behind a trusted balancer); otherwise they are removed.
    #[serde(default)]
    pub trust_forwarded: bool,
    /// Keep request header names with an underscore. By default they are
    /// dropped, as nginx does: CGI and WSGI backends read `X_Foo` and
    /// `X-Foo` as one variable, so an underscored name could pass for a
    /// header Airlock refuses or a policy set.
    #[serde(default)]
    pub underscores_in_headers: bool,
    /// Terminate TLS on this listener.
    pub tls: Option<ListenerTls>,
}

fn default_max_connections() -> usize {
    10_000
}

impl ListenerConfig {
    /// `max_connections_per_client`, or its default.
    pub fn connections_per_client(&self) -> usize {
        const DEFAULT: usize = 256;
        match self.max_connections_per_client {
            Some(bound) => bound,
            None if self.trust_forwarded => self.max_connections,
            None => DEFAULT.min(self.max_connections),
        }
    }
}

/// A listener's connection bounds and TLS material (`at`: `listener[0]`,
/// `admin`): bounds of at least one, certificates that load.
fn validate_connections(
    at: &str,
    max_connections: usize,
    max_per_client: usize,
    tls: Option<&ListenerTls>,
) -> Result<(), Violation> {
    for (field, bound) in [
        ("max_connections", max_connections),
        ("max_connections_per_client", max_per_client),
    ] {
        if bound == 0 {
            return Err(Violation::new(
                &format!("{at}.{field}"),
                "expected at least 1",
            ));
        }
    }
    if tls.is_some_and(|tls| tls.certificates.is_empty()) {
        return Err(Violation::new(
            &format!("{at}.tls.certificates"),
            "expected at least one certificate",
        ));
    }
    Ok(())
}

/// A file a config names that only loading it can check (the preflight
/// does, before the config is used), with the key that names it.
#[derive(Debug, Clone, Copy)]
pub enum NamedFile<'a> {
    /// A listener's certificate chains and keys (`listener[0].tls.certificates`).
    Certificates(&'a [CertificateFiles]),
    /// A CA bundle (`listener[0].tls.client_ca`, `pool[0].tls.ca`).
    Roots(&'a Path),
}

/// `[listener.tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates; the first is the default, others are chosen by SNI.
    pub certificates: Vec<CertificateFiles>,
    /// CA bundle for client certificates; without it, none are asked for.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `required` refuses clients without a valid certificate,
    /// `optional` accepts them as anonymous.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// One PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Whether a listener with `client_ca` requires a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A certificate is checked if sent.
    #[default]
    Optional,
    /// The handshake fails without a valid certificate.
    Required,
}

/// `[[pool]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Name routes refer to.
    pub name: String,
    /// How a backend is picked.
    #[serde(default)]
    pub balance: BalanceAlgorithm,
    /// For `consistent_hash`: what to hash.
    pub hash_key: Option<HashKey>,
    /// The backends.
    pub backends: Vec<BackendConfig>,
    /// Speak HTTP/2 (prior knowledge, or ALPN with `tls`) to the backends.
    #[serde(default)]
    pub http2: bool,
    /// Connect to the backends over TLS.
    pub tls: Option<UpstreamTls>,
    /// Active health checks; without them only passive ejection applies.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection on connect errors and 5xx answers.
    #[serde(default)]
    pub passive_health: PassiveHealth,
}

/// Load-balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceAlgorithm {
    /// Each healthy backend in turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to `weight`, interleaved (smooth).
    WeightedRoundRobin,
    /// The healthy backend with the fewest requests in flight.
    LeastInFlight,
    /// A ring of backends keyed by `hash_key`; a key keeps its backend while it is
    /// healthy, and only keys of a removed backend move.
    ConsistentHash,
}

/// What consistent hashing reads from a request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

/// One backend of a pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port`.
    pub address: String,
    /// Relative share for weighted algorithms (1 to 1000).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Drained: gets no new requests (those in flight finish); set by a
    /// `drain_backend` change.
    #[serde(default)]
    pub drained: bool,
}

fn default_weight() -> u32 {
    1
}

/// `[pool.tls]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA bundle to verify backends; default: the Web PKI roots.
    pub ca: Option<PathBuf>,
    /// Name sent as SNI and verified in the certificate; default: the host part
    /// of each backend's address.
    pub server_name: Option<String>,
}

/// `[pool.health_check]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path probed with GET; a 2xx or 3xx answer is healthy.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between probes of one backend.
    #[serde(with = "duration", default = "default_health_interval")]
    pub interval: Duration,
    /// Time a probe may take.
    #[serde(with = "duration", default = "default_health_timeout")]
    pub timeout: Duration,
    /// Consecutive good probes that readmit an unhealthy backend.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failed probes that take a backend out.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_health_path() -> String {
    "/".into()
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_healthy_threshold() -> u32 {
    2
}
fn default_unhealthy_threshold() -> u32 {
    3
}

/// `[pool.passive_health]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealth {
    /// Consecutive connect errors or 5xx answers that eject a backend; 0 disables.
    pub consecutive_failures: u32,
    /// How long an ejected backend stays out before it is tried again.
    #[serde(with = "duration")]
    pub ejection_time: Duration,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            ejection_time: Duration::from_secs(10),
        }
    }
}

/// `[[route]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs. default: `host` + `path`.
    pub name: Option<String>,
    /// `api.example.com`, `*.example.com` or `*`.
    #[serde(default = "default_route_host")]
    pub host: String,
    /// Path prefix, matched on whole segments (`/api` matches `/api/x`, not `/apix`).
    #[serde(default = "default_route_path")]
    pub path: String,
    /// The pool that serves matching requests.
    pub pool: String,
    /// Policies that judge this route's requests, in order (names from
    /// `[policies] directory`). None: requests pass unjudged.
    #[serde(default)]
    pub policies: Vec<String>,
    /// What a failing policy (trap, timeout, memory, invalid answer) means:
    /// `deny` (default, fail closed) or `allow` (skip it, fail open).
    #[serde(default)]
    pub on_policy_error: OnPolicyError,
    /// How this route's requests are recorded in the audit trail: `batched`
    /// (default: risky requests durably before they are carried out, safe
    /// allowed ones within a few milliseconds) or `durable` (every request).
    #[serde(default)]
    pub audit: RouteAudit,
    /// Per-policy parameter overrides for this route: `[route.parameters.NAME]`;
    /// each top-level key replaces the one in `NAME.toml`.
    #[serde(default, deserialize_with = "policy_parameters")]
    pub parameters: std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// A share of this route's requests sent to another pool instead
    /// (`shift_traffic` changes set it).
    pub shift: Option<ShiftConfig>,
    /// Where the balancer fails the route over to when its pool has no
    /// backend left (a `failover` event, judged by `[control] policies`).
    pub backup_pool: Option<String>,
    /// Where the balancer spills a share of the route's requests during a
    /// surge (a `spill-surge` event; `[control] spill_in_flight`).
    pub overflow_pool: Option<String>,
    /// Let a `_method` query parameter or form field through to the backend
    /// on a route with policies. By default such a request is refused with
    /// 400: Rails, Laravel and Symfony read it as the method, which no
    /// policy judged.
    #[serde(default)]
    pub allow_method_parameter: bool,
}

/// `[route.shift]`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftConfig {
    /// The pool that gets the share.
    pub pool: String,
    /// 0 to 100.
    pub percent: u8,
}

impl ControlConfig {
    /// The chain that judges changes, as a route that matches nothing.
    pub fn as_route(&self) -> RouteConfig {
        RouteConfig {
            name: Some("control".to_owned()),
            host: "*".to_owned(),
            path: "/".to_owned(),
            pool: String::new(),
            policies: self.policies.clone(),
            on_policy_error: OnPolicyError::Deny,
            audit: RouteAudit::Durable,
            parameters: self.parameters.clone(),
            shift: None,
            backup_pool: None,
            overflow_pool: None,
            allow_method_parameter: false,
        }
    }
}

impl RouteConfig {
    /// The route's name: `name`, else host and path (`*/`, `api.example.com/v1`).
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.host, self.path))
    }
}

/// `[route.parameters.NAME]` tables, as the JSON policies read.
fn policy_parameters<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>, D::Error>
{
    let tables = std::collections::BTreeMap::<String, toml::Table>::deserialize(d)?;
    tables
        .into_iter()
        .map(|(name, table)| {
            toml_to_json(table)
                .map(|json| (name, json))
                .map_err(serde::de::Error::custom)
        })
        .collect()
}

fn default_route_host() -> String {
    "*".into()
}
fn default_route_path() -> String {
    "/".into()
}

/// What the subject of a certificate no `[[principal]]` maps starts with:
/// such a holder is never taken for a configured principal of that name
/// (their grants, limits and votes stay apart). Config refuses subjects
/// that start with it.
pub const UNMAPPED_CERTIFICATE_PREFIX: &str = "cert:";

/// What a route does when one of its policies fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPolicyError {
    /// Refuse the action (fail closed).
    #[default]
    Deny,
    /// Skip a policy that trapped, timed out or ran out of memory, and go on
    /// as if it had allowed (fail open).
    Allow,
}

/// How a route records its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAudit {
    /// Risky requests durably, safe allowed ones within a few ms.
    #[default]
    Batched,
    /// Every request durably before it is forwarded.
    Durable,
}

/// TOML parameters as the JSON object policies read.
///
/// # Errors
/// When a value has no JSON form (TOML dates are passed as strings).
pub fn toml_to_json(
    table: toml::Table,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::to_value(toml::Value::Table(table)).map_err(|error| error.to_string())? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err("parameters must be a table".to_owned()),
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {cause}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why (in the message; not chained, so it is not printed twice).
        cause: std::io::Error,
    },
    /// The file was read but is wrong; `key` is a path like `pool[0].backends[1]`.
    #[error("{file}:{line}:{key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending key or value (0 if unknown).
        line: usize,
        /// Where in the document.
        key: String,
        /// What was expected.
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|cause| ConfigError::Read {
            file: file.to_owned(),
            cause,
        })?;
        let mut config = Self::parse(&text, file)?;
        config.source = Some(std::path::absolute(file).unwrap_or_else(|_| file.to_owned()));
        Ok(config)
    }

    /// Parses and validates configuration text; `file` names it in errors and is
    /// the base for relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let source = SourceMap::new(text, file);
        let mut config: Config = toml::from_str(text).map_err(|e| source.serde_error(&e))?;
        config.resolve_paths(file.parent().unwrap_or(Path::new(".")));
        config
            .validate()
            .map_err(|v| source.invalid(&v.key, v.message))?;
        Ok(config)
    }

    /// The files this config names that only loading them can check, each
    /// with its key, in the order of the document: listeners' certificates
    /// and client CAs, the admin listener's, pools' CAs.
    pub fn named_files(&self) -> Vec<(String, NamedFile<'_>)> {
        let listeners = self
            .listeners
            .iter()
            .enumerate()
            .map(|(i, listener)| (format!("listener[{i}]"), listener.tls.as_ref()))
            .chain([("admin".to_owned(), self.admin.tls.as_ref())]);
        let mut files = Vec::new();
        for (at, tls) in listeners {
            let Some(tls) = tls else { continue };
            files.push((
                format!("{at}.tls.certificates"),
                NamedFile::Certificates(&tls.certificates),
            ));
            if let Some(ca) = &tls.client_ca {
                files.push((format!("{at}.tls.client_ca"), NamedFile::Roots(ca)));
            }
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if let Some(ca) = pool.tls.as_ref().and_then(|tls| tls.ca.as_deref()) {
                files.push((format!("pool[{i}].tls.ca"), NamedFile::Roots(ca)));
            }
        }
        files
    }

    /// An error at `key` (a path like `route[0].parameters.NAME.KEY`) found
    /// after parsing `text` (read from `file`), located in it.
    pub fn locate(text: &str, file: &Path, key: &str, message: String) -> ConfigError {
        SourceMap::new(text, file).invalid(key, message)
    }

    /// An error at `key` (a path like `route[0].parameters.NAME.KEY`) found
    /// after loading, located in the file this config was read from.
    pub fn invalid(&self, key: &str, message: String) -> ConfigError {
        let file = self
            .source
            .clone()
            .unwrap_or_else(|| PathBuf::from("(config)"));
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let source = SourceMap::new(&text, &file);
        source.invalid(key, message)
    }

    /// Relative file paths in the config are relative to the config file.
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.data_dir);
        if let Some(directory) = &mut self.policies.directory {
            resolve(directory);
        }
        if let Some(directory) = &mut self.policies.cache_directory {
            resolve(directory);
        }
        for file in [
            &mut self.audit.signing_key,
            &mut self.audit.heads_file,
            &mut self.storage.ca_file,
            &mut self.storage.cert_file,
            &mut self.storage.key_file,
            &mut self.storage.password_file,
        ]
        .into_iter()
        .chain(self.webhooks.iter_mut().map(|hook| &mut hook.secret_file))
        .flatten()
        {
            resolve(file);
        }
        let listener_tls = self
            .listeners
            .iter_mut()
            .filter_map(|listener| listener.tls.as_mut())
            .chain(self.admin.tls.as_mut());
        for tls in listener_tls {
            for pair in &mut tls.certificates {
                resolve(&mut pair.cert);
                resolve(&mut pair.key);
            }
            if let Some(ca) = &mut tls.client_ca {
                resolve(ca);
            }
        }
        for pool in &mut self.pools {
            if let Some(ca) = pool.tls.as_mut().and_then(|t| t.ca.as_mut()) {
                resolve(ca);
            }
        }
    }

    /// Checks what serde cannot: references between sections, ranges, unique
    /// names, and that TLS material loads.
    fn validate(&self) -> Result<(), Violation> {
        let ensure = |ok: bool, key: String, message: String| {
            if ok {
                Ok(())
            } else {
                Err(Violation { key, message })
            }
        };
        if let Some(ratio) = self.tracing.sample_ratio {
            ensure(
                (0.0..=1.0).contains(&ratio),
                "tracing.sample_ratio".into(),
                "expected a share from 0.0 to 1.0".into(),
            )?;
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            ensure(
                endpoint.parse::<http::Uri>().is_ok_and(|uri| {
                    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
                }),
                "tracing.otlp_endpoint".into(),
                format!("expected an http:// or https:// URL, got `{endpoint}`"),
            )?;
        }
        if self.server.worker_threads == Some(0) {
            return Err(Violation::new(
                "server.worker_threads",
                "expected at least 1",
            ));
        }
        ensure(
            self.limits.max_header_bytes >= 8192,
            "limits.max_header_bytes".into(),
            "expected at least 8KiB (the smallest request head buffer)".into(),
        )?;
        let mut names = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            ensure(
                names.insert(&l.name),
                format!("listener[{i}].name"),
                format!("listener `{}` is defined twice", l.name),
            )?;
            validate_connections(
                &format!("listener[{i}]"),
                l.max_connections,
                l.connections_per_client(),
                l.tls.as_ref(),
            )?;
        }
        validate_connections(
            "admin",
            self.admin.max_connections,
            self.admin.max_connections_per_client,
            self.admin.tls.as_ref(),
        )?;
        for (i, host) in self.admin.hosts.iter().enumerate() {
            ensure(
                !host.is_empty() && !host.contains([':', '/', ' ']),
                format!("admin.hosts[{i}]"),
                format!("expected a host name without port or scheme, got `{host}`"),
            )?;
        }
        for (key, duration) in [
            ("limits.idle_timeout", self.limits.idle_timeout),
            (
                "limits.http2_keepalive_interval",
                self.limits.http2_keepalive_interval,
            ),
        ] {
            ensure(
                !duration.is_zero(),
                key.into(),
                "expected a duration above zero".into(),
            )?;
        }
        let mut pools = HashSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            ensure(
                pools.insert(p.name.as_str()),
                format!("pool[{i}].name"),
                format!("pool `{}` is defined twice", p.name),
            )?;
            ensure(
                !p.backends.is_empty(),
                format!("pool[{i}].backends"),
                "expected at least one backend".into(),
            )?;
            for (j, b) in p.backends.iter().enumerate() {
                let key = format!("pool[{i}].backends[{j}]");
                ensure(
                    valid_authority(&b.address),
                    format!("{key}.address"),
                    format!("expected `host:port`, found `{}`", b.address),
                )?;
                ensure(
                    (1..=1000).contains(&b.weight),
                    format!("{key}.weight"),
                    "expected a weight from 1 to 1000".into(),
                )?;
            }
            if p.balance == BalanceAlgorithm::ConsistentHash {
                ensure(p.hash_key.is_some(), format!("pool[{i}].balance"), "consistent_hash needs `hash_key = { header = \"...\" }` or `{ cookie = \"...\" }`".into())?;
            }
            if let Some(HashKey::Header(h)) = &p.hash_key {
                ensure(
                    http::HeaderName::try_from(h.as_str()).is_ok(),
                    format!("pool[{i}].hash_key.header"),
                    format!("`{h}` is not a valid header name"),
                )?;
            }
            if let Some(hc) = &p.health_check {
                ensure(
                    hc.path.starts_with('/'),
                    format!("pool[{i}].health_check.path"),
                    "expected a path starting with `/`".into(),
                )?;
                ensure(
                    hc.healthy_threshold > 0 && hc.unhealthy_threshold > 0,
                    format!("pool[{i}].health_check"),
                    "thresholds must be at least 1".into(),
                )?;
                ensure(
                    !hc.interval.is_zero(),
                    format!("pool[{i}].health_check.interval"),
                    "expected a duration above 0".into(),
                )?;
            }
            if let Some(tls) = &p.tls {
                if let Some(name) = &tls.server_name {
                    ensure(
                        rustls::pki_types::ServerName::try_from(name.as_str()).is_ok(),
                        format!("pool[{i}].tls.server_name"),
                        format!("`{name}` is not a DNS name or IP address"),
                    )?;
                }
            }
        }
        let mut routes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            ensure(
                pools.contains(r.pool.as_str()),
                format!("route[{i}].pool"),
                format!(
                    "no pool named `{}` (pools: {})",
                    r.pool,
                    join_names(self.pools.iter().map(|p| p.name.as_str()))
                ),
            )?;
            for (key, other) in [
                ("backup_pool", &r.backup_pool),
                ("overflow_pool", &r.overflow_pool),
            ] {
                if let Some(other) = other {
                    ensure(
                        pools.contains(other.as_str()) && *other != r.pool,
                        format!("route[{i}].{key}"),
                        format!("expected a pool other than the route's own, found `{other}`"),
                    )?;
                }
            }
            if let Some(shift) = &r.shift {
                ensure(
                    pools.contains(shift.pool.as_str()),
                    format!("route[{i}].shift.pool"),
                    format!("no pool named `{}`", shift.pool),
                )?;
                ensure(
                    shift.percent <= 100,
                    format!("route[{i}].shift.percent"),
                    "expected 0 to 100".into(),
                )?;
            }
            ensure(
                r.path.starts_with('/'),
                format!("route[{i}].path"),
                format!("expected a path starting with `/`, found `{}`", r.path),
            )?;
            ensure(
                valid_host_pattern(&r.host),
                format!("route[{i}].host"),
                format!(
                    "expected a host name, `*.domain` or `*`, found `{}`",
                    r.host
                ),
            )?;
            ensure(
                routes.insert((
                    r.host.to_ascii_lowercase(),
                    r.path.trim_end_matches('/').to_owned(),
                )),
                format!("route[{i}]"),
                format!(
                    "another route already matches host `{}` and path `{}`",
                    r.host, r.path
                ),
            )?;
            self.validate_chain_policies(&format!("route[{i}]"), &r.policies, &r.parameters)?;
        }
        ensure(
            self.policies.deadline >= Duration::from_millis(1),
            "policies.deadline".into(),
            "expected at least 1ms".into(),
        )?;
        ensure(
            self.policies.memory_limit >= 1 << 20,
            "policies.memory_limit".into(),
            "expected at least 1MiB".into(),
        )?;
        self.validate_principals()?;
        self.validate_chain_policies("control", &self.control.policies, &self.control.parameters)?;
        ensure(
            (1..=100).contains(&self.control.spill_percent),
            "control.spill_percent".into(),
            "expected 1 to 100".into(),
        )?;
        ensure(
            (0.0..=1.0).contains(&self.control.rollback_error_rate)
                && (0.0..=1.0).contains(&self.control.failover_error_rate),
            "control.rollback_error_rate".into(),
            "error rates are 0.0 to 1.0".into(),
        )?;
        ensure(
            (400..=599).contains(&self.approvals.expired_status),
            "approvals.expired_status".into(),
            "expected a 4xx or 5xx status".into(),
        )?;
        for (i, hook) in self.webhooks.iter().enumerate() {
            ensure(
                hook.url.starts_with("http://") || hook.url.starts_with("https://"),
                format!("webhook[{i}].url"),
                "expected an http:// or https:// URL".into(),
            )?;
            ensure(
                hook.format != WebhookFormat::Generic || hook.secret_file.is_some(),
                format!("webhook[{i}].secret_file"),
                "a generic webhook is signed: name the file holding its key".into(),
            )?;
            ensure(
                hook.attempts >= 1,
                format!("webhook[{i}].attempts"),
                "expected at least 1".into(),
            )?;
        }
        ensure(
            self.audit.segment_entries >= 1,
            "audit.segment_entries".into(),
            "expected at least 1".into(),
        )?;
        ensure(
            self.audit
                .retain
                .is_none_or(|retain| retain >= Duration::from_secs(3600)),
            "audit.retain".into(),
            "expected at least 1h".into(),
        )?;
        for (key, file) in [
            ("audit.heads_file", &self.audit.heads_file),
            ("audit.signing_key", &self.audit.signing_key),
        ] {
            if file
                .as_ref()
                .is_some_and(|file| file.starts_with(&self.server.data_dir))
            {
                return Err(Violation::new(
                    key,
                    "must be outside server.data_dir: whoever can rewrite the trail must not reach the heads or their key",
                ));
            }
        }
        for (j, name) in self.policies.redact_headers.iter().enumerate() {
            ensure(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                format!("policies.redact_headers[{j}]"),
                format!("`{name}` is not a header name"),
            )?;
        }
        ensure(
            (1..=10_000).contains(&self.policies.max_instances),
            "policies.max_instances".into(),
            "expected 1 to 10000".into(),
        )?;
        self.validate_storage()
    }

    /// An etcd backend needs endpoints, a node id of its own and the trail.
    fn validate_storage(&self) -> Result<(), Violation> {
        let storage = &self.storage;
        if storage.backend != StorageBackend::Etcd {
            return Ok(());
        }
        let fail = |key: &str, message: &str| Err(Violation::new(key, message));
        if storage.endpoints.is_empty() {
            return fail(
                "storage.endpoints",
                "the etcd backend needs at least one endpoint",
            );
        }
        for (i, endpoint) in storage.endpoints.iter().enumerate() {
            let ok = endpoint.parse::<http::Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.port().is_some()
            });
            if !ok {
                return fail(
                    &format!("storage.endpoints[{i}]"),
                    &format!(
                        "expected `http://host:port` or `https://host:port`, got `{endpoint}`"
                    ),
                );
            }
        }
        if !storage.prefix.starts_with('/') || storage.prefix.ends_with('/') {
            return fail(
                "storage.prefix",
                "expected a key prefix like `/airlock` (a leading `/`, no trailing one)",
            );
        }
        if self.audit.node.is_none() {
            return fail(
                "audit.node",
                "the etcd backend needs a node id, unique in the cluster",
            );
        }
        if !self.audit.enabled {
            return fail(
                "audit.enabled",
                "the etcd backend records votes and outcomes in the trail: it cannot be off",
            );
        }
        if storage.lease_ttl < Duration::from_secs(3) {
            return fail(
                "storage.lease_ttl",
                "expected at least 3s (etcd raises shorter leases to its election time)",
            );
        }
        if storage.timeout < Duration::from_secs(1) {
            return fail("storage.timeout", "expected at least 1s");
        }
        if storage.cert_file.is_some() != storage.key_file.is_some() {
            return fail(
                "storage.cert_file",
                "a client certificate needs both cert_file and key_file",
            );
        }
        if storage.user.is_some() != storage.password_file.is_some() {
            return fail(
                "storage.user",
                "etcd auth needs both user and password_file",
            );
        }
        Ok(())
    }

    /// Subjects and tokens are unique; a token hash is 64 hex digits.
    fn validate_principals(&self) -> Result<(), Violation> {
        let mut subjects = HashSet::new();
        let mut tokens = HashSet::new();
        let mut certificates = HashSet::new();
        for (i, principal) in self.principals.iter().enumerate() {
            let key = |field: &str| format!("principal[{i}].{field}");
            let subject = principal.subject.as_str();
            if subject.is_empty()
                || matches!(subject, "anonymous" | "airlock")
                || subject.starts_with(UNMAPPED_CERTIFICATE_PREFIX)
                || subject.starts_with("anonymous@")
            {
                return Err(Violation::new(
                    &key("subject"),
                    "expected a name other than `anonymous` and `airlock`, not starting with `cert:` (unmapped client certificates) or `anonymous@` (anonymous clients' limits)",
                ));
            }
            if !subjects.insert(subject) {
                return Err(Violation::new(
                    &key("subject"),
                    "a principal with this subject already exists",
                ));
            }
            if let Some(hash) = &principal.token_sha256 {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Violation::new(
                        &key("token_sha256"),
                        "expected the token's SHA-256 as 64 hex digits (printf %s TOKEN | sha256sum)",
                    ));
                }
                if !tokens.insert(hash.to_ascii_lowercase()) {
                    return Err(Violation::new(
                        &key("token_sha256"),
                        "another principal has the same token",
                    ));
                }
            }
            if let Some(name) = &principal.certificate {
                if !certificates.insert(name.to_ascii_lowercase()) {
                    return Err(Violation::new(
                        &key("certificate"),
                        "another principal has the same certificate name",
                    ));
                }
            }
            if principal.token_sha256.is_none() && principal.certificate.is_none() {
                return Err(Violation::new(
                    &key("token_sha256"),
                    "a principal needs a token_sha256 or a certificate to be recognized by",
                ));
            }
        }
        Ok(())
    }

    /// A route's policies must exist as `NAME.wasm` in the policy folder.
    /// The policies a chain names (`at`: `route[0]`, `control`) must exist
    /// as `NAME.wasm` in the policy folder, and its parameters name them.
    fn validate_chain_policies(
        &self,
        at: &str,
        policies: &[String],
        parameters: &std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(), Violation> {
        for (j, name) in policies.iter().enumerate() {
            let Some(directory) = &self.policies.directory else {
                return Err(Violation::new(
                    &format!("{at}.policies[{j}]"),
                    "policies are named, but `[policies] directory` is not set",
                ));
            };
            if !directory.join(format!("{name}.wasm")).is_file() {
                return Err(Violation::new(
                    &format!("{at}.policies[{j}]"),
                    &format!(
                        "no policy `{name}`: {} does not exist",
                        directory.join(format!("{name}.wasm")).display()
                    ),
                ));
            }
        }
        if let Some(name) = parameters.keys().find(|name| !policies.contains(name)) {
            return Err(Violation::new(
                &format!("{at}.parameters.{name}"),
                &format!("parameters for `{name}`, which is not among these policies"),
            ));
        }
        Ok(())
    }
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none defined".into()
    } else {
        v.join(", ")
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn valid_authority(address: &str) -> bool {
    matches!(address.parse::<http::uri::Authority>(), Ok(a) if a.port_u16().is_some() && !a.host().is_empty())
}

/// `*`, `*.domain`, or a plain host name.
fn valid_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    host == "*"
        || (!name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
}

/// A validation failure at a key path, before it is located in the file.
#[derive(Debug)]
struct Violation {
    key: String,
    message: String,
}

impl Violation {
    fn new(key: &str, message: &str) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The 1-based line of `key` (a path like `rules[0].methods`) in the TOML
/// `text`, or of the nearest enclosing key found (0 if none). A `message`
/// naming an unknown field (serde's ``unknown field `x` ``) under `key`
/// points at that field's own line.
pub fn line_of_key(text: &str, key: &str, message: &str) -> usize {
    let source = SourceMap::new(text, Path::new(""));
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    let probe = match unknown {
        Some(field) if key.is_empty() => field.to_owned(),
        Some(field) if !key.ends_with(field) => format!("{key}.{field}"),
        _ => key.to_owned(),
    };
    match source.invalid(&probe, String::new()) {
        ConfigError::Invalid { line, .. } => line,
        ConfigError::Read { .. } => 0,
    }
}

/// Maps byte offsets of the document to key paths and lines, and back.
struct SourceMap<'a> {
    text: &'a str,
    file: &'a Path,
    /// Every key and value in the document: its path and the span of the value.
    entries: Vec<(String, Range<usize>)>,
}

impl<'a> SourceMap<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        let mut entries = Vec::new();
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            collect_spans(doc.get_ref(), "", &mut entries);
        }
        Self {
            text,
            file,
            entries,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// A serde or syntax error: its key is the innermost entry around its span.
    fn serde_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let key = self
            .entries
            .iter()
            .filter(|(_, s)| s.start <= span.start && span.end <= s.end.max(s.start + 1))
            .min_by_key(|(_, s)| s.len())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| "(document)".into());
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            key,
            message: error.message().trim().to_owned(),
        }
    }

    /// A validation error: located at its key, or the nearest enclosing key found.
    fn invalid(&self, key: &str, message: String) -> ConfigError {
        let mut probe = key.to_owned();
        let line = loop {
            if let Some((_, span)) = self.entries.iter().find(|(k, _)| *k == probe) {
                break self.line_of(span.start);
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe.truncate(cut),
                None => break 0,
            }
        };
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message,
        }
    }
}

fn collect_spans(
    table: &toml::de::DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, Range<usize>)>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        collect_value(value, path, key.span(), out);
    }
}

fn collect_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: String,
    key_span: Range<usize>,
    out: &mut Vec<(String, Range<usize>)>,
) {
    // The key's own line is the most useful place to point at; the value span
    // (which may start on a later line for tables) decides containment.
    let span = key_span.start.min(value.span().start)..value.span().end.max(key_span.end);
    match value.get_ref() {
        toml::de::DeValue::Table(t) => collect_spans(t, &path, out),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_value(item, format!("{path}[{i}]"), item.span(), out);
            }
        }
        _ => {}
    }
    out.push((path, span));
}

/// Durations written the human way: `500ms`, `10s`, `2m`.
mod duration {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration like `500ms` or `10s`, found `{text}` ({e})"
            ))
        })
    }
}

/// A duration that may be left out.
mod optional_duration {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// A byte size: a whole number, or a string with a unit (`16KiB`, `10MiB`, `1GiB`).
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom("expected a byte size like `16384` or `16KiB`")
    })? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => parse_byte_size(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a byte size like `16384` or `16KiB`, found `{t}`"
            ))
        }),
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] = &[
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let text = text.trim();
    let (number, unit) = UNITS
        .iter()
        .find_map(|(suffix, mult)| text.strip_suffix(suffix).map(|n| (n.trim(), *mult)))
        .unwrap_or((text, 1));
    number.parse::<u64>().ok()?.checked_mul(unit)
}

impl fmt::Display for BalanceAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::LeastInFlight => "least_in_flight",
            Self::ConsistentHash => "consistent_hash",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"

[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:3000" }, { address = "127.0.0.1:3001", weight = 3 }]

[[route]]
pool = "web"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.routes[0].host, "*");
        assert_eq!(c.routes[0].path, "/");
        assert_eq!(c.pools[0].backends[1].weight, 3);
        assert_eq!(c.limits.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.server.drain_timeout, Duration::from_secs(10));
    }

    #[test]
    fn an_etcd_backend_needs_endpoints_a_node_id_and_the_trail() {
        let etcd = |storage: &str, audit: &str| {
            parse(&format!(
                "{MINIMAL}\n[storage]\nbackend = \"etcd\"\n{storage}\n[audit]\n{audit}\n"
            ))
        };
        let cluster = etcd("endpoints = [\"http://127.0.0.1:2379\"]", "node = \"a\"").unwrap();
        assert_eq!(cluster.storage.backend, StorageBackend::Etcd);
        assert_eq!(cluster.storage.prefix, "/airlock");
        assert_eq!(cluster.storage.lease_ttl, Duration::from_secs(10));
        for (storage, audit, names) in [
            (
                "",
                "node = \"a\"",
                "storage.endpoints: the etcd backend needs at least one endpoint",
            ),
            (
                "endpoints = [\"127.0.0.1:2379\"]",
                "node = \"a\"",
                "storage.endpoints[0]: expected `http://host:port`",
            ),
            (
                "endpoints = [\"http://e:2379\"]",
                "",
                "audit.node: the etcd backend needs a node id",
            ),
            (
                "endpoints = [\"http://e:2379\"]",
                "node = \"a\"\nenabled = false",
                "audit.enabled:",
            ),
            (
                "endpoints = [\"http://e:2379\"]\nlease_ttl = \"1s\"",
                "node = \"a\"",
                "storage.lease_ttl: expected at least 3s",
            ),
            (
                "endpoints = [\"http://e:2379\"]\nprefix = \"airlock/\"",
                "node = \"a\"",
                "storage.prefix:",
            ),
            (
                "endpoints = [\"http://e:2379\"]\nuser = \"airlock\"",
                "node = \"a\"",
                "storage.user: etcd auth needs both",
            ),
        ] {
            let error = etcd(storage, audit).unwrap_err();
            assert!(error.contains(names), "{storage} / {audit}: {error}");
        }
        // The redb default ignores the etcd keys' absence.
        assert_eq!(
            parse(MINIMAL).unwrap().storage.backend,
            StorageBackend::Redb
        );
    }

    #[test]
    fn type_error_names_line_and_key() {
        let text = MINIMAL.replace("weight = 3", "weight = \"heavy\"");
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("test.toml:8:pool[0].backends[1].weight: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_names_line_and_key() {
        let text = MINIMAL.replace("name = \"public\"", "name = \"public\"\nadress = \"x\"");
        let err = parse(&text).unwrap_err();
        assert!(err.starts_with("test.toml:4:listener[0]"), "{err}");
        assert!(err.contains("adress"), "{err}");
    }

    #[test]
    fn route_to_unknown_pool_names_line_and_key() {
        let text = MINIMAL.replace("pool = \"web\"", "pool = \"wbe\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err,
            "test.toml:11:route[0].pool: no pool named `wbe` (pools: web)"
        );
    }

    #[test]
    fn bad_duration_and_sizes_are_explained() {
        let err = parse(&format!("[server]\ndrain_timeout = \"soon\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.starts_with("test.toml:2:server.drain_timeout: expected a duration"),
            "{err}"
        );
        let c = parse(&format!("[limits]\nmax_body_bytes = \"2MiB\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.limits.max_body_bytes, 2 << 20);
        let err = parse(&format!("[limits]\nmax_body_bytes = \"lots\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.starts_with("test.toml:2:limits.max_body_bytes: expected a byte size"),
            "{err}"
        );
    }

    #[test]
    fn consistent_hash_requires_a_key() {
        let text = MINIMAL.replace(
            "name = \"web\"",
            "name = \"web\"\nbalance = \"consistent_hash\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("test.toml:8:pool[0].balance: consistent_hash needs"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("[server\nx=1").unwrap_err();
        assert!(err.starts_with("test.toml:1:"), "{err}");
    }

    #[test]
    fn duplicate_route_is_refused() {
        let err = parse(&format!(
            "{MINIMAL}\n[[route]]\npool = \"web\"\npath = \"/\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("route[1]: another route already matches"),
            "{err}"
        );
    }

    #[test]
    fn a_client_may_hold_256_connections_unless_behind_a_balancer() {
        let config = parse(
            "[[listener]]\nname = \"edge\"\naddress = \"127.0.0.1:0\"\n\n\
             [[listener]]\nname = \"behind-lb\"\naddress = \"127.0.0.1:0\"\ntrust_forwarded = true\nmax_connections = 5000\n\n\
             [[listener]]\nname = \"small\"\naddress = \"127.0.0.1:0\"\nmax_connections = 10\n\n\
             [[listener]]\nname = \"set\"\naddress = \"127.0.0.1:0\"\ntrust_forwarded = true\nmax_connections_per_client = 3\n",
        )
        .unwrap();
        let bounds: Vec<usize> = config
            .listeners
            .iter()
            .map(ListenerConfig::connections_per_client)
            .collect();
        assert_eq!(bounds, [256, 5000, 10, 3]);
        let zero = parse(
            "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\nmax_connections_per_client = 0\n",
        )
        .unwrap_err();
        assert!(
            zero.contains("listener[0].max_connections_per_client"),
            "{zero}"
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("16KiB"), Some(16384));
        assert_eq!(parse_byte_size("7"), Some(7));
        assert_eq!(parse_byte_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("x"), None);
    }
}
