//! The `airlock` command line: one module per family of commands
//! ([`admin`]: approvals and reload through the admin API; [`audit`];
//! [`policy`]: the author's tools; [`demo`]); running and checking a
//! config are here.

mod admin;
mod audit;
mod demo;
mod policy;

use admin::{admin_call, approvals_tool, AdminArgs, ApprovalsCommand};
use audit::{audit_tool, AuditCommand};
use demo::demo;
use policy::{policy_tool, PolicyCommand};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use airlock::audit::export::ExportFormat;
use airlock::config::{Config, LogFormat};
use airlock::server::{self, Server};

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

/// Runs the command line, and says what went wrong on one line.
pub(crate) fn main() -> ExitCode {
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
