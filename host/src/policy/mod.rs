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
pub mod reload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use chain::{ChainLink, Judgement, OnPolicyError, PolicyChain};
pub use decision::Verdict;
pub use engine::{
    CallContext, EngineSettings, FiguresSource, LoadError, LoadedPolicy, PolicyEngine,
    PolicyFailure,
};

use crate::config::{PoliciesConfig, RouteConfig};

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
    #[error(transparent)]
    Engine(LoadError),
}

/// Every loaded policy by name (the file stem of its `.wasm`), with the
/// parameters from the TOML file beside it. Cloning shares the engine and
/// the compiled policies.
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
                file: parameters_file,
                cause,
            })?;
        let policy = self
            .engine
            .load(&wasm, reuse)
            .map_err(|cause| PolicySetError::Load {
                file: file.to_owned(),
                cause,
            })?;
        tracing::info!(
            policy = name,
            version = policy.metadata().version,
            hash = &policy.hash()[..12],
            reuse,
            "policy loaded"
        );
        self.policies
            .insert(name.to_owned(), (Arc::new(policy), parameters));
        Ok(())
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
        self.policies.remove(name).is_some()
    }

    /// The policy named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPolicy>> {
        self.policies.get(name).map(|(policy, _)| policy)
    }

    /// The chain a route runs: its policies in order, each with the route's
    /// parameter overrides applied over the policy's file.
    ///
    /// # Errors
    /// The name of a policy the route names but the folder lacks.
    pub fn chain(&self, route: &RouteConfig) -> Result<PolicyChain, String> {
        let links = route
            .policies
            .iter()
            .map(|name| {
                let (policy, base) = self
                    .policies
                    .get(name)
                    .ok_or_else(|| format!("route names policy `{name}`, which is not loaded"))?;
                let overrides = route.parameters.get(name);
                Ok(ChainLink {
                    name: Arc::from(name.as_str()),
                    policy: policy.clone(),
                    parameters: Arc::from(merged_parameters(base, overrides).as_str()),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(PolicyChain {
            links,
            on_error: route.on_policy_error,
        })
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
