//! `airlock policy ...`: the policy author's commands (new, build, test,
//! push to a cluster).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::audit::with_etcd;
use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum PolicyCommand {
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

pub(super) fn policy_tool(command: PolicyCommand) -> anyhow::Result<()> {
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
