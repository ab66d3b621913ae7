//! The `airlock` command: run a config, check one, or start the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use airlock::audit::export::ExportFormat;
use airlock::config::{Config, LogFormat};
use airlock::server::{self, Server};

/// Audit entries are allocated on the workers and freed on the audit
/// writer's thread; mimalloc frees across threads without the arena
/// contention glibc's malloc has there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Airlock: a reverse proxy and load balancer that puts every routing action
/// through sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file until Ctrl-C or SIGTERM, then drain.
    Run {
        /// The configuration file (see examples/reference.toml).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration file without serving; errors name file:line:key.
    Check {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Start two demo backends and the proxy in front of them, in one process.
    Demo {
        /// Where the proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        proxy_listen: SocketAddr,
        /// Where the admin API listens (/healthz, /readyz, /v1/pools).
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Where the demo keeps its state and writes its config.
        #[arg(long, default_value = "airlock-demo")]
        data_dir: PathBuf,
    },
    /// Write, build and test policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read and verify the audit trail of a stopped Airlock (a running one
    /// holds the store: use GET /v1/audit and /v1/audit/verify instead).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List, show and vote on approvals, and list and revoke grants, through
    /// a running Airlock's admin API.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reload pools and routes of a running Airlock from its config file:
    /// a change like any other, judged by `[control] policies` and maybe
    /// held for approval (SIGHUP on the host reloads unjudged); a broken
    /// file changes nothing.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is, and the caller's token.
#[derive(Debug, clap::Args)]
struct AdminArgs {
    /// The admin API's base URL
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_SERVER",
        default_value = "http://127.0.0.1:9090"
    )]
    server: String,
    /// Your API token; better passed as AIRLOCK_TOKEN, which stays out of
    /// the process list and shell history
    #[arg(long, global = true, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// Approvals you may see, newest first, one per line.
    List {
        /// pending, approved, denied, expired or cancelled.
        #[arg(long)]
        state: Option<String>,
    },
    /// One approval, as JSON (with its body preview).
    Show { id: String },
    /// Approve an approval.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny an approval.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Grants in force, as JSON.
    Grants,
    /// End a grant now (admin role).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print matching entries as JSON lines, oldest first.
    Query {
        /// The data dir holding airlock.redb.
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Write matching entries for a SIEM shipper: JSON lines (as stored,
    /// verifiable) or CSV (with a header row).
    Export {
        /// The data dir holding airlock.redb.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Check the whole hash chain; exits non-zero, naming the first broken
    /// entry, if anything was altered, removed or reordered.
    Verify {
        /// The data dir holding airlock.redb.
        #[arg(long)]
        data_dir: PathBuf,
        /// Signed heads ([audit] heads_file): also catch a cut or rewritten tail.
        #[arg(long)]
        heads: Option<PathBuf>,
        /// The public key the heads must be signed with (hex, from keygen).
        #[arg(long)]
        public_key: Option<String>,
        /// A cluster node's config (`[storage] backend = "etcd"`): also
        /// check the trail against the node's anchor in etcd.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Drop sealed segments whose entries are all older than --before,
    /// after recording a checkpoint entry; verify still passes afterwards.
    Prune {
        /// The data dir holding airlock.redb.
        #[arg(long)]
        data_dir: PathBuf,
        /// A date (UTC midnight), an RFC 3339 time or Unix milliseconds.
        #[arg(long)]
        before: String,
    },
    /// Create an ed25519 key for [audit] signing_key; prints its public key.
    Keygen {
        /// Where to write the key (must not exist).
        file: PathBuf,
    },
}

/// The same filters as GET /v1/audit.
#[derive(Debug, clap::Args)]
struct AuditFilterArgs {
    /// Entries at or after this time (RFC 3339 or Unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Entries before this time.
    #[arg(long)]
    until: Option<String>,
    /// request_decision, request_outcome, policy_loaded, node_started, node_stopped, checkpoint.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    route: Option<String>,
    /// allow, deny, hold, or a failure code.
    #[arg(long)]
    decision: Option<String>,
    /// A request id (links a decision and its outcome).
    #[arg(long)]
    request: Option<String>,
    /// An approval id (its hold, votes and outcome).
    #[arg(long)]
    approval: Option<String>,
    /// A grant id (its creation, the requests it passed, its end).
    #[arg(long)]
    grant: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Scaffold a policy in DIR (named after it), a Rust crate, a Go
    /// module, a Python project or a JavaScript package, that builds and
    /// passes its own tests.
    New {
        /// The new policy's directory; its last component is its name.
        dir: PathBuf,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t)]
        lang: airlock::policy::author::Language,
    },
    /// Build a policy (a Rust crate; a Go module: a `go.mod`; a Python
    /// project: a `pyproject.toml`; a JavaScript package: a `package.json`)
    /// into a component, checked against the contract.
    Build {
        /// The policy's directory.
        dir: PathBuf,
        /// Where to write the component; default: ./NAME.wasm.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run a case table against a component; exits non-zero on any mismatch.
    Test {
        /// The component (.wasm); NAME.toml beside it gives base parameters.
        policy: PathBuf,
        /// The case table (.toml).
        cases: PathBuf,
        /// Deadline per evaluation.
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        deadline: std::time::Duration,
    },
    /// Store a component in the cluster's etcd (`[storage] backend =
    /// "etcd"`): every node writes it into its policy folder, whose hot
    /// reload loads it (or refuses it, and the old one keeps serving).
    Push {
        /// The component (.wasm); NAME.toml beside it, if there is one, is
        /// pushed as its parameters.
        policy: PathBuf,
        /// A node's config file: the etcd endpoints and prefix.
        #[arg(short, long)]
        config: PathBuf,
        /// The policy's name; default: the file's stem.
        #[arg(long)]
        name: Option<String>,
        /// Parameters (.toml) to push with it instead of NAME.toml.
        #[arg(long)]
        parameters: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("airlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let loaded = airlock::preflight::load(&config)?;
            // Compile and check every policy too (without touching the cache).
            let policies = airlock::policy::PolicySet::load(&loaded.policies, None)?;
            // ...and set up with each route's parameter overrides.
            policies.check_chains(&loaded)?;
            println!(
                "{}: ok ({}, {}, {}, {})",
                config.display(),
                count(loaded.listeners.len(), "listener"),
                count(loaded.pools.len(), "pool"),
                count(loaded.routes.len(), "route"),
                match policies.names().count() {
                    1 => "1 policy".to_owned(),
                    n => format!("{n} policies"),
                }
            );
            Ok(())
        }
        Command::Run { config } => {
            let loaded = airlock::preflight::load(&config)?;
            if let Some(demo) = loaded.principals.iter().find(|principal| {
                principal
                    .token_sha256
                    .as_deref()
                    .is_some_and(airlock::identity::is_demo_token)
            }) {
                anyhow::bail!(
                    "{}: principal `{}` uses a demo token, which anyone can read in the README; make a token of your own",
                    config.display(),
                    demo.subject
                );
            }
            init_logging(loaded.server.log_format);
            runtime(loaded.server.worker_threads)?.block_on(serve(loaded))
        }
        Command::Demo {
            proxy_listen,
            admin_listen,
            data_dir,
        } => {
            init_logging(LogFormat::Text);
            runtime(None)?.block_on(demo(proxy_listen, admin_listen, &data_dir))
        }
        Command::Policy(command) => policy_tool(command),
        Command::Audit(command) => audit_tool(command),
        Command::Approvals { command, admin } => {
            runtime(Some(1))?.block_on(approvals_tool(command, admin))
        }
        Command::Reload { admin } => runtime(Some(1))?.block_on(async {
            let answer =
                admin_call(&admin, http::Method::POST, "/v1/reload", String::new()).await?;
            match answer["reloaded"].as_str() {
                Some(summary) => println!("reloaded: {summary}"),
                None => println!(
                    "held for approval {}: the reload happens when it passes (`airlock approvals show {}`)",
                    answer["approval"]["id"].as_str().unwrap_or("?"),
                    answer["approval"]["id"].as_str().unwrap_or("?")
                ),
            }
            Ok(())
        }),
    }
}

/// One call to the admin API as `admin` says; its JSON answer, or its
/// error as `STATUS CODE: DETAIL`.
async fn admin_call(
    admin: &AdminArgs,
    method: http::Method,
    path: &str,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::Full;
    let token = admin
        .token
        .as_deref()
        .context("no token: set AIRLOCK_TOKEN (or pass --token)")?;
    let url = format!("{}{path}", admin.server.trim_end_matches('/'));
    let request = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .with_context(|| format!("{url}: not a URL"))?;
    let client = airlock::http_client::HttpClient::new(std::time::Duration::from_secs(30))?;
    let response = client.call(request).await.with_context(|| url.clone())?;
    let answer: serde_json::Value = serde_json::from_slice(response.body())
        .with_context(|| format!("{url}: the answer is not JSON"))?;
    if !response.status().is_success() {
        anyhow::bail!(
            "{} {}: {}",
            response.status().as_u16(),
            answer["error"].as_str().unwrap_or("error"),
            answer["detail"]
                .as_str()
                .or(answer["message"].as_str())
                .unwrap_or_default()
        );
    }
    Ok(answer)
}

/// `airlock approvals ...`: one call to the admin API; its answer printed,
/// or its error (exit 1).
async fn approvals_tool(command: ApprovalsCommand, admin: AdminArgs) -> anyhow::Result<()> {
    let vote_body = |comment: Option<String>| serde_json::json!({ "comment": comment }).to_string();
    let (method, path, body) = match &command {
        ApprovalsCommand::List { state } => (
            http::Method::GET,
            match state {
                Some(state) => format!("/v1/approvals?state={state}"),
                None => "/v1/approvals".to_owned(),
            },
            String::new(),
        ),
        ApprovalsCommand::Show { id } => (
            http::Method::GET,
            format!("/v1/approvals/{id}"),
            String::new(),
        ),
        ApprovalsCommand::Approve { id, comment } => (
            http::Method::POST,
            format!("/v1/approvals/{id}/approve"),
            vote_body(comment.clone()),
        ),
        ApprovalsCommand::Deny { id, comment } => (
            http::Method::POST,
            format!("/v1/approvals/{id}/deny"),
            vote_body(comment.clone()),
        ),
        ApprovalsCommand::Grants => (http::Method::GET, "/v1/grants".to_owned(), String::new()),
        ApprovalsCommand::Revoke { id } => (
            http::Method::DELETE,
            format!("/v1/grants/{id}"),
            String::new(),
        ),
    };
    let answer = admin_call(&admin, method, &path, body).await?;
    match command {
        ApprovalsCommand::List { .. } => {
            let approvals: Vec<airlock::approvals::Approval> =
                serde_json::from_value(answer["approvals"].clone())
                    .context("the answer is not a list of approvals")?;
            for approval in approvals {
                println!(
                    "{}  {:<9}  {}  by {}: {}",
                    approval.id,
                    approval.state.name(),
                    approval.action.describe(),
                    approval.principal,
                    approval.reason,
                );
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&answer)?),
    }
    Ok(())
}

/// Every entry matching `filter`, one line each, oldest first.
fn print_entries(
    store: &airlock::store::RedbStore,
    filter: AuditFilterArgs,
    format: ExportFormat,
) -> anyhow::Result<()> {
    use airlock::audit::{export, query};
    let kind = filter
        .kind
        .map(|kind| serde_json::from_value(serde_json::Value::String(kind)))
        .transpose()
        .context("--kind: use an entry kind such as request_decision, request_outcome, approval_vote or grant_created")?;
    let mut filter = query::AuditFilter {
        since: filter.since,
        until: filter.until,
        kind,
        actor: filter.actor,
        route: filter.route,
        decision: filter.decision,
        request: filter.request,
        trace: None,
        approval: filter.approval,
        grant: filter.grant,
        limit: Some(query::MAX_LIMIT),
        cursor: None,
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut export = export::Export::new(format, out)?;
    loop {
        let page = query::query(store, &filter)?;
        for entry in &page.entries {
            export.write(entry)?;
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return Ok(export.flush()?),
        }
    }
}

fn audit_tool(command: AuditCommand) -> anyhow::Result<()> {
    use airlock::audit;
    use airlock::store::RedbStore;
    let open = |data_dir: &Path| -> anyhow::Result<RedbStore> {
        let file = data_dir.join(RedbStore::FILE);
        anyhow::ensure!(file.is_file(), "{}: no audit trail here", file.display());
        Ok(RedbStore::open(data_dir)?)
    };
    match command {
        AuditCommand::Query { data_dir, filter } => {
            print_entries(&open(&data_dir)?, filter, ExportFormat::Jsonl)
        }
        AuditCommand::Export {
            data_dir,
            format,
            filter,
        } => print_entries(&open(&data_dir)?, filter, format),
        AuditCommand::Verify {
            data_dir,
            heads,
            public_key,
            config,
        } => {
            let store = open(&data_dir)?;
            let mut verification = audit::verify(&store)?;
            let mut answer = serde_json::Map::new();
            if let (true, Some(config)) = (verification.ok, &config) {
                let (node, anchor, key_file) = with_etcd(config, |etcd, config| async move {
                    let node = config.audit.node.clone().unwrap_or_default();
                    let anchor = airlock::cluster::anchor_of(&etcd, &node).await?;
                    // The key the node signs its anchors with, as `run` picks it.
                    let key_file = config.audit.signing_key.clone();
                    Ok((node, anchor, key_file))
                })?;
                let key_file = key_file.unwrap_or_else(|| data_dir.join("anchor.key"));
                let trusted = match key_file.exists() {
                    true => {
                        Some(audit::heads::HeadSigner::for_anchors(&key_file, &node)?.public_key())
                    }
                    false => None,
                };
                let anchor = anchor.ok_or_else(|| {
                    anyhow::anyhow!("node `{node}` has no anchor in etcd to verify against")
                })?;
                answer.insert("anchor_seq".into(), anchor.seq.into());
                if let Some(problem) =
                    airlock::cluster::check_anchor(&store, &anchor, trusted.as_ref())?
                {
                    verification.ok = false;
                    verification.broken_at = Some(anchor.seq);
                    verification.problem = Some(problem);
                }
            }
            if let (true, Some(heads)) = (verification.ok, heads) {
                let trusted = public_key
                    .as_deref()
                    .map(audit::heads::parse_public_key)
                    .transpose()
                    .map_err(anyhow::Error::msg)?;
                let signed = audit::heads::read_heads(&heads)?;
                if let Some((seq, problem)) = audit::heads::check_heads(
                    &store,
                    &signed,
                    trusted.as_ref(),
                    verification.first,
                )? {
                    verification.ok = false;
                    verification.broken_at = Some(seq);
                    verification.problem = Some(problem);
                }
            }
            let mut printed = serde_json::to_value(&verification)?;
            if let Some(fields) = printed.as_object_mut() {
                fields.insert("anchor_checked".into(), config.is_some().into());
                fields.extend(answer);
            }
            println!("{printed}");
            anyhow::ensure!(
                verification.ok,
                "the audit trail is broken at entry {}: {}",
                verification.broken_at.unwrap_or_default(),
                verification.problem.unwrap_or_default()
            );
            Ok(())
        }
        AuditCommand::Prune { data_dir, before } => {
            let before = audit::query::parse_time("--before", &before)?;
            let store: std::sync::Arc<dyn airlock::store::Store> =
                std::sync::Arc::new(open(&data_dir)?);
            // The checkpoint is written as the node that owns this data dir.
            let node = match store.last_audit()? {
                Some((_, bytes)) => audit::decode(&bytes).map_err(anyhow::Error::msg)?.node,
                None => "airlock".to_owned(),
            };
            let log = audit::AuditLog::start(store.clone(), &node, audit::Sealing::default())?;
            let pruned = runtime(Some(1))?.block_on(audit::prune(&*store, &log, before))?;
            println!("{}", serde_json::to_string(&pruned)?);
            Ok(())
        }
        AuditCommand::Keygen { file } => {
            let public_key = audit::heads::generate_key(&file)?;
            println!("{public_key}");
            Ok(())
        }
    }
}

/// Run `call` with a client of the etcd cluster that the config file
/// `config` names (`[storage] backend = "etcd"`).
fn with_etcd<T, F, Fut>(config: &std::path::Path, call: F) -> anyhow::Result<T>
where
    F: FnOnce(airlock::store::etcd::Etcd, Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let loaded = airlock::preflight::load(config)?;
    anyhow::ensure!(
        loaded.storage.backend == airlock::config::StorageBackend::Etcd,
        "{}: [storage] backend is not \"etcd\"",
        config.display()
    );
    runtime(Some(1))?.block_on(async move {
        let etcd = airlock::store::etcd::Etcd::connect(&loaded.storage).await?;
        call(etcd, loaded).await
    })
}

fn policy_tool(command: PolicyCommand) -> anyhow::Result<()> {
    use airlock::policy::{author, cases};
    match command {
        PolicyCommand::New { dir, lang } => {
            let name = author::new_policy(&dir, lang)?;
            let (what, native_tests) = match lang {
                author::Language::Rust => ("crate", "cargo test"),
                author::Language::Go => ("Go module", "go test ./..."),
                author::Language::Python => ("Python project", "python3 -m pytest"),
                author::Language::Js => ("JavaScript package", "npm install && npm test"),
            };
            println!("created policy {what} `{name}` in {}", dir.display());
            println!("next: cd {} && {native_tests} && airlock policy build . -o {name}.wasm && airlock policy test {name}.wasm cases.toml", dir.display());
            println!("then: put {name}.wasm in the policies folder and add \"{name}\" to a route's `policies` (a reload)");
            Ok(())
        }
        PolicyCommand::Build { dir, output } => {
            let built = author::build_policy(&dir, output.as_deref())?;
            println!(
                "built {} {}: {} ({} bytes, sha256 {})",
                built.name,
                built.version,
                built.output.display(),
                built.bytes,
                built.hash
            );
            Ok(())
        }
        PolicyCommand::Push {
            policy,
            config,
            name,
            parameters,
        } => {
            let component =
                std::fs::read(&policy).with_context(|| format!("read {}", policy.display()))?;
            anyhow::ensure!(
                component.starts_with(b"\0asm"),
                "{} is not a WebAssembly component",
                policy.display()
            );
            let name = match name {
                Some(name) => name,
                None => policy
                    .file_stem()
                    .and_then(|stem| stem.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("{}: no name; pass --name", policy.display()))?,
            };
            let parameters_file = parameters.unwrap_or_else(|| policy.with_extension("toml"));
            let parameters = match std::fs::read_to_string(&parameters_file) {
                Ok(text) => Some(text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("read {}", parameters_file.display()))
                }
            };
            let pushed = with_etcd(&config, |etcd, _| async move {
                Ok(airlock::cluster::push_policy(&etcd, &name, &component, parameters).await?)
            })?;
            println!(
                "pushed policy {} ({} bytes in {} chunks, sha256 {}): every node loads it from its policy folder",
                pushed.name, pushed.size, pushed.chunks, pushed.sha256
            );
            Ok(())
        }
        PolicyCommand::Test {
            policy,
            cases: table,
            deadline,
        } => {
            init_logging(LogFormat::Text);
            let report = cases::run(&policy, &table, &cases::TestSettings { deadline })?;
            print!("{}", report.text);
            anyhow::ensure!(
                report.failed == 0,
                "{} of {} cases failed",
                report.failed,
                report.failed + report.passed
            );
            Ok(())
        }
    }
}

fn runtime(worker_threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Binds, announces the addresses on stdout (one line each, then `ready`), serves.
async fn serve(config: Config) -> anyhow::Result<()> {
    serve_bound(Server::bind(config).await?).await
}

async fn serve_bound(server: Server) -> anyhow::Result<()> {
    for bound in server.addresses() {
        println!(
            "airlock: {} listening on {}://{}",
            bound.name, bound.scheme, bound.address
        );
    }
    println!("airlock: ready");
    server.run(server::stop_signal()).await;
    Ok(())
}

async fn demo(proxy: SocketAddr, admin: SocketAddr, data_dir: &Path) -> anyhow::Result<()> {
    // The demo's tokens are printed in the README: never off this machine.
    anyhow::ensure!(
        proxy.ip().is_loopback() && admin.ip().is_loopback(),
        "the demo listens on loopback addresses only (its tokens are public)"
    );
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let backends = [
        airlock::demo::start_backend("demo-1").await?,
        airlock::demo::start_backend("demo-2").await?,
    ];
    let canary = airlock::demo::start_backend("canary-1").await?;
    airlock::demo::write_policies(&data_dir.join("policies"))
        .with_context(|| format!("cannot write the demo policies to {}", data_dir.display()))?;
    let config_path = data_dir.join("airlock.toml");
    let text = airlock::demo::config_text(proxy, admin, &data_dir, &backends, canary);
    std::fs::write(&config_path, &text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut config = airlock::preflight::parse(&text, &config_path)?;
    config.source = Some(config_path.clone());
    // Bind before advertising the curl lines, so they are only shown when true.
    let server = Server::bind(config).await?;
    println!(
        "airlock demo: backends demo-1 on {} and demo-2 on {}",
        backends[0], backends[1]
    );
    println!("airlock demo: canary-1 (pool canary, its /checkout is broken) on {canary}");
    println!("airlock demo: config written to {}", config_path.display());
    println!(
        "airlock demo: policies in {} (watched: drop a .wasm or .toml in to reload)",
        data_dir.join("policies").display()
    );
    println!(
        "airlock demo: try  curl -s http://{proxy}/hello   (twice: both backends answer in turn)"
    );
    println!("airlock demo:      curl -s -X DELETE -H 'Proxy-Authorization: Bearer demo-client-token' http://{proxy}/hello   (waits for approval by oncall)");
    println!("airlock demo:      curl -s -H 'Authorization: Bearer demo-alice-token' 'http://{admin}/v1/approvals?state=pending'");
    println!("airlock demo:      curl -s -X POST -H 'Authorization: Bearer demo-alice-token' http://{admin}/v1/approvals/ID/approve");
    println!("airlock demo:      curl -s -X POST -H 'Authorization: Bearer demo-ops-token' -d '{{\"op\":\"shift_traffic\",\"route\":\"everything\",\"to_pool\":\"canary\",\"percent\":50}}' http://{admin}/v1/changes   (held: change freeze)");
    println!("airlock demo:      curl -s -H 'Authorization: Bearer demo-alice-token' http://{admin}/v1/pools");
    serve_bound(server).await
}
