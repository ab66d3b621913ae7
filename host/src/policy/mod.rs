//! Policies: WebAssembly components, written against `wit/policy.wit`, that
//! judge every routing action before it happens.
//!
//! - [`bindings`]: the contract's types, generated in one place.
//! - [`engine`]: the sandbox (wasmtime, pooling allocator, deadline, memory
//!   cap, compile cache) and [`LoadedPolicy::evaluate`].
//! - [`decision`]: a policy's answer checked into a [`Verdict`].
//! - [`chain`]: a route's chain and how its answers combine.
//! - [`action`]: the action a request becomes, with credentials redacted.
//! - [`cases`]: `airlock policy test`, case tables run against a component.
//! - [`author`]: `airlock policy new` and `airlock policy build`.
//!
//! [`PolicySet`] loads a folder of components with their parameter files and
//! builds each route's chain from it.

pub mod action;
pub mod author;
pub mod bindings;
pub mod cases;
pub mod chain;
pub mod decision;
pub mod engine;
pub mod go;
pub mod guest_build;
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use chain::{ChainLink, Judgement, OnPolicyError, PolicyChain};
pub use decision::Verdict;
pub use engine::{
    CallContext, EngineSettings, FiguresSource, HeaderSource, LoadError, LoadedPolicy,
    PolicyComponent, PolicyEngine, PolicyFailure,
};

use crate::config::{Config, ConfigError, PoliciesConfig, RouteConfig};

/// The policies compiled into this binary, for `airlock demo` and
/// `airlock policy export` (built from `policies/` by `build.rs`).
pub mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled_policies.rs"));

    /// The bundled component named `name`.
    pub fn component(name: &str) -> Option<&'static [u8]> {
        BUNDLED
            .iter()
            .find(|(bundled, _)| *bundled == name)
            .map(|(_, bytes)| *bytes)
    }
}

/// Why the policy folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicySetError {
    #[error("policy folder {}: {cause}", .directory.display())]
    Folder {
        directory: PathBuf,
        cause: std::io::Error,
    },
    #[error("policy {}: {cause}", .file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("policy {}: {cause}", .file.display())]
    Load { file: PathBuf, cause: LoadError },
    #[error("policy parameters {}: {cause}", .file.display())]
    Parameters { file: PathBuf, cause: String },
    /// The policy refused its parameters file: where, and why.
    #[error("policy parameters {}{}", .file.display(), located(*.line, .key, .message))]
    Refused {
        file: PathBuf,
        /// 1-based line of the key (0 if not found).
        line: usize,
        key: String,
        message: String,
    },
    #[error(transparent)]
    Engine(LoadError),
}

/// Every loaded policy by name (the file stem of its `.wasm`), set up with
/// the parameters from the TOML file beside it. Cloning shares the engine
/// and the compiled policies.
#[derive(Debug, Clone)]
pub struct PolicySet {
    engine: PolicyEngine,
    policies: BTreeMap<
        String,
        (
            Arc<LoadedPolicy>,
            serde_json::Map<String, serde_json::Value>,
        ),
    >,
    /// Policies set up with a chain's overrides, by name, component hash
    /// and parameters (JSON): routes are rebuilt on every change, and each
    /// set of parameters is set up once.
    overridden: Arc<std::sync::Mutex<Overridden>>,
}

/// Most policies kept set up with overrides at once.
const MAX_OVERRIDDEN: usize = 64;

/// Policies set up with overrides, by (name, component hash, parameters).
type Overridden = BTreeMap<(String, String, String), Arc<LoadedPolicy>>;

/// Why a chain could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChainError {
    #[error("route names policy `{0}`, which is not loaded")]
    Missing(String),
    /// The policy refused the parameters the chain's overrides give it.
    #[error("policy `{policy}` refuses the parameters given here: {}{message}", if .key.is_empty() { String::new() } else { format!("{}: ", .key) })]
    Refused {
        policy: String,
        /// Path of the key at fault inside the parameters (may be empty).
        key: String,
        message: String,
    },
}

/// `:LINE:KEY: MESSAGE`, or `: MESSAGE` for the file as a whole.
fn located(line: usize, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!(": {message}")
    } else if line == 0 {
        format!(": {key}: {message}")
    } else {
        format!(":{line}:{key}: {message}")
    }
}

impl From<ChainError> for String {
    fn from(error: ChainError) -> String {
        error.to_string()
    }
}

impl PolicySet {
    /// Where a server caches compiled policies: `[policies] cache_directory`,
    /// else `<data_dir>/wasmtime-cache`.
    pub fn cache_directory(config: &PoliciesConfig, data_dir: &Path) -> PathBuf {
        let directory = config
            .cache_directory
            .clone()
            .unwrap_or_else(|| data_dir.join("wasmtime-cache"));
        // wasmtime's cache wants an absolute path; a config read from the
        // current directory (`-c airlock.toml`) gives relative ones.
        std::path::absolute(&directory).unwrap_or(directory)
    }

    /// An engine configured by `[policies]`, with no policy loaded, caching
    /// compiled code in `cache_directory` (none: compile every time).
    ///
    /// # Errors
    /// When the engine cannot be set up (e.g. the cache directory).
    pub fn empty(
        config: &PoliciesConfig,
        cache_directory: Option<PathBuf>,
    ) -> Result<PolicySet, PolicySetError> {
        let settings = EngineSettings {
            deadline: config.deadline,
            memory_limit: usize::try_from(config.memory_limit).unwrap_or(usize::MAX),
            max_instances: config.max_instances,
            cache_directory,
        };
        let engine = PolicyEngine::new(settings).map_err(PolicySetError::Engine)?;
        Ok(PolicySet {
            engine,
            policies: BTreeMap::new(),
            overridden: Arc::default(),
        })
    }

    /// Load every `NAME.wasm` in the configured folder (and `NAME.toml`
    /// beside it, if present). Any bad file refuses the whole set.
    ///
    /// # Errors
    /// The first file that could not be read, compiled or checked.
    pub fn load(
        config: &PoliciesConfig,
        cache_directory: Option<PathBuf>,
    ) -> Result<PolicySet, PolicySetError> {
        let mut set = Self::empty(config, cache_directory)?;
        let Some(directory) = &config.directory else {
            return Ok(set);
        };
        let folder = |cause| PolicySetError::Folder {
            directory: directory.clone(),
            cause,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
            .map_err(folder)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<Result<_, _>>()
            .map_err(folder)?;
        files.retain(|file| {
            file.extension()
                .is_some_and(|extension| extension == "wasm")
        });
        files.sort();
        for file in files {
            let Some(name) = file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            let reuse = config.reuse_instances.contains(&name);
            set.load_file(&name, &file, reuse)?;
        }
        Ok(set)
    }

    /// Load one component file as policy `name`.
    ///
    /// # Errors
    /// When the file, its parameters or the component are bad.
    pub fn load_file(
        &mut self,
        name: &str,
        file: &Path,
        reuse: bool,
    ) -> Result<(), PolicySetError> {
        let wasm = std::fs::read(file).map_err(|cause| PolicySetError::Read {
            file: file.to_owned(),
            cause,
        })?;
        let parameters_file = file.with_extension("toml");
        let parameters =
            read_parameters(&parameters_file).map_err(|cause| PolicySetError::Parameters {
                file: parameters_file.clone(),
                cause,
            })?;
        let json = serde_json::Value::Object(parameters.clone()).to_string();
        let policy = self
            .engine
            .load(&wasm, &json, reuse)
            .map_err(|cause| match cause {
                LoadError::Parameters { key, message } => {
                    let text = std::fs::read_to_string(&parameters_file).unwrap_or_default();
                    let line = crate::config::line_of_key(&text, &key, &message);
                    PolicySetError::Refused {
                        file: parameters_file,
                        line,
                        key,
                        message,
                    }
                }
                cause => PolicySetError::Load {
                    file: file.to_owned(),
                    cause,
                },
            })?;
        tracing::info!(
            policy = name,
            version = policy.metadata().version,
            hash = &policy.hash()[..12],
            reuse,
            "policy loaded"
        );
        self.forget_overrides(name);
        self.policies
            .insert(name.to_owned(), (Arc::new(policy), parameters));
        Ok(())
    }

    fn forget_overrides(&self, name: &str) {
        if let Ok(mut overridden) = self.overridden.lock() {
            overridden.retain(|(policy, _, _), _| policy != name);
        }
    }

    /// Names of the loaded policies.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// The parameters `name` was loaded with (its `NAME.toml`).
    pub fn parameters(&self, name: &str) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.policies.get(name).map(|(_, parameters)| parameters)
    }

    /// Unload `name`; whether it was loaded.
    pub fn remove(&mut self, name: &str) -> bool {
        self.forget_overrides(name);
        self.policies.remove(name).is_some()
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPolicy>> {
        self.policies.get(name).map(|(policy, _)| policy)
    }

    /// The chain a route runs: its policies in order, each set up with the
    /// route's parameter overrides applied over the policy's file.
    ///
    /// # Errors
    /// A policy the route names but the folder lacks, or one that refuses
    /// the overrides.
    pub fn chain(&self, route: &RouteConfig) -> Result<PolicyChain, ChainError> {
        let links = route
            .policies
            .iter()
            .map(|name| {
                let (policy, base) = self
                    .policies
                    .get(name)
                    .ok_or_else(|| ChainError::Missing(name.clone()))?;
                let policy = match route.parameters.get(name) {
                    Some(overrides) => self.overridden(name, policy, base, overrides)?,
                    None => policy.clone(),
                };
                Ok(ChainLink {
                    name: Arc::from(name.as_str()),
                    policy,
                })
            })
            .collect::<Result<_, ChainError>>()?;
        Ok(PolicyChain {
            links,
            on_error: route.on_policy_error,
        })
    }

    /// `policy` set up with `overrides` over `base`, once per distinct set.
    fn overridden(
        &self,
        name: &str,
        policy: &LoadedPolicy,
        base: &serde_json::Map<String, serde_json::Value>,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<LoadedPolicy>, ChainError> {
        let parameters = merged_parameters(base, Some(overrides));
        let key = (name.to_owned(), policy.hash().to_owned(), parameters);
        if let Some(prepared) = self
            .overridden
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(prepared);
        }
        let prepared =
            policy
                .with_parameters(&key.2)
                .map(Arc::new)
                .map_err(|error| match error {
                    LoadError::Parameters { key, message } => ChainError::Refused {
                        policy: name.to_owned(),
                        key,
                        message,
                    },
                    other => ChainError::Refused {
                        policy: name.to_owned(),
                        key: String::new(),
                        message: other.to_string(),
                    },
                })?;
        if let Ok(mut cache) = self.overridden.lock() {
            // Config reloads may bring new sets without end: a bound, and
            // the sets still in use are set up again on the next build.
            if cache.len() >= MAX_OVERRIDDEN {
                cache.clear();
            }
            cache.insert(key, prepared.clone());
        }
        Ok(prepared)
    }

    /// Set up every chain of `config` (routes and `[control]`): an override
    /// a policy refuses is a config error at its key in the config file.
    ///
    /// # Errors
    /// The first chain that cannot be built, located in `config`'s file.
    pub fn check_chains(&self, config: &Config) -> Result<(), ConfigError> {
        let chains = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| (format!("route[{i}]"), self.chain(route)))
            .chain(std::iter::once((
                "control".to_owned(),
                self.chain(&config.control.as_route()),
            )));
        for (at, chain) in chains {
            match chain {
                Ok(_) => {}
                Err(ChainError::Refused {
                    policy,
                    key,
                    message,
                }) => {
                    let key = [at, "parameters".to_owned(), policy, key]
                        .into_iter()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join(".")
                        .replace(".[", "[");
                    return Err(config.invalid(&key, message));
                }
                Err(missing) => return Err(config.invalid(&at, missing.to_string())),
            }
        }
        Ok(())
    }
}

/// The parameters file beside a component (`NAME.toml`): absent means `{}`.
///
/// # Errors
/// When the file exists but cannot be read or parsed.
pub fn read_parameters(file: &Path) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(serde_json::Map::new())
        }
        Err(error) => return Err(error.to_string()),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|error| error.to_string())?;
    toml_to_json(table)
}

pub use crate::config::toml_to_json;

/// `base` with the top-level keys of `overrides` replaced, as JSON text.
pub fn merged_parameters(
    base: &serde_json::Map<String, serde_json::Value>,
    overrides: Option<&serde_json::Map<String, serde_json::Value>>,
) -> String {
    let mut merged = base.clone();
    for (key, value) in overrides.into_iter().flatten() {
        merged.insert(key.clone(), value.clone());
    }
    serde_json::Value::Object(merged).to_string()
}
