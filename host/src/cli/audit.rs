//! `airlock audit ...`: query, export, verify and prune a data dir's
//! audit trail, and the etcd-backed checks of a cluster's anchors.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
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
pub(super) struct AuditFilterArgs {
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

/// Every entry matching `filter`, one line each, oldest first.
pub(super) fn print_entries(
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

pub(super) fn audit_tool(command: AuditCommand) -> anyhow::Result<()> {
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
pub(super) fn with_etcd<T, F, Fut>(config: &std::path::Path, call: F) -> anyhow::Result<T>
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
