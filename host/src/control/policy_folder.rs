//! Hot reload of the policy folder. A task looks at the folder every
//! [`POLL_INTERVAL`]; once its `.wasm` and `.toml` files have stayed the same
//! (size and modification time) for one more look, the policies whose files
//! changed are loaded off the request path (compiled and checked with
//! `describe`) into a copy of the policy set, the routes are rebuilt on it,
//! and the routing snapshot is swapped whole. Requests in flight finish on
//! the snapshot they started with.
//!
//! A file that does not load is refused: the previous version keeps
//! serving, and the reason is logged, audited (`policy_rejected`) and shown
//! by `GET /v1/policies`. A file still being copied is seen changing and
//! waited for; if one is caught half-written anyway, it is refused, and
//! loaded as soon as its content changes again (the next write finishes it).
//!
//! Removing a policy that no route names unloads it (`policy_removed`).
//! Removing one that a route still names is refused, fail closed: the loaded
//! version keeps judging that route's requests, so nothing passes unjudged.
//! Take it out of the routes first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::audit::{now_ms, AuditEntry, AuditLog, Durability, EntryKind, PolicyRef};
use crate::config::{PoliciesConfig, RouteConfig};
use crate::control::{ControlPlane, Desired};

/// How often the folder is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What `GET /v1/policies` shows of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    /// From the component's `describe` (absent if it never loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the component serving now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// SHA-256 of its parameters as loaded (compact JSON), so that a
    /// changed `NAME.toml` shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_ms: Option<i64>,
    /// Routes whose chain names it.
    pub routes: Vec<String>,
    /// Why the latest file was refused, until a good one loads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Who names `policy`: routes by name, and `control` for the change chain.
fn users(desired: &Desired, policy: &str) -> Vec<String> {
    let routes = desired
        .effective()
        .map(|(_, routes)| routes)
        .unwrap_or_else(|_| desired.file_routes.clone());
    let mut users: Vec<String> = routes
        .iter()
        .filter(|route| route.policies.iter().any(|name| name == policy))
        .map(RouteConfig::display_name)
        .collect();
    if desired.control.policies.iter().any(|name| name == policy) {
        users.push("control".to_owned());
    }
    users
}

/// Size and modification time of each policy file in the folder.
pub type Snapshot = BTreeMap<String, (u64, SystemTime)>;

/// Keeps the serving policies in step with the folder.
#[derive(Debug)]
pub struct PolicyReloader {
    directory: PathBuf,
    config: PoliciesConfig,
    /// Owns the policy set the routing is built from.
    plane: Arc<ControlPlane>,
    audit: Option<AuditLog>,
    /// The folder as the serving policies were loaded from it.
    loaded_from: Snapshot,
    /// Per policy: when its serving version loaded, and its last refusal.
    loaded_ms: Mutex<BTreeMap<String, i64>>,
    errors: Mutex<BTreeMap<String, String>>,
}

/// The policy named by a file in the folder (`NAME.wasm`, `NAME.toml`).
fn policy_of(file: &str) -> Option<&str> {
    file.strip_suffix(".wasm")
        .or_else(|| file.strip_suffix(".toml"))
        .filter(|name| !name.is_empty() && !name.starts_with('.'))
}

/// What the folder holds now. Taken before the policies are first loaded,
/// so that a file changed between that load and the watch is still seen.
pub fn snapshot(directory: &Path) -> Snapshot {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Snapshot::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            policy_of(&name)?;
            let metadata = entry.metadata().ok()?;
            Some((name, (metadata.len(), metadata.modified().ok()?)))
        })
        .collect()
}

/// Policies whose files differ between `before` and `after`.
fn changed(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|file| before.get(*file) != after.get(*file))
        .filter_map(|file| policy_of(file).map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

impl PolicyReloader {
    /// A reloader for `directory`, whose policies (`loaded`, loaded at
    /// start from the folder as `loaded_from` saw it) `plane` serves.
    pub fn new(
        directory: PathBuf,
        config: PoliciesConfig,
        plane: Arc<ControlPlane>,
        audit: Option<AuditLog>,
        (loaded, loaded_from): (&[String], Snapshot),
    ) -> PolicyReloader {
        let now = now_ms();
        let loaded_ms = loaded.iter().map(|name| (name.clone(), now)).collect();
        PolicyReloader {
            directory,
            config,
            plane,
            audit,
            loaded_from,
            loaded_ms: Mutex::new(loaded_ms),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The folder watched.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Watch the folder until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut applied = self.loaded_from.clone();
        let mut settling: Option<Snapshot> = None;
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let now = snapshot(&self.directory);
            if now == applied {
                settling = None;
                continue;
            }
            // Something changed: wait until it stays put for one look.
            if settling.as_ref() != Some(&now) {
                settling = Some(now);
                continue;
            }
            self.apply(&changed(&applied, &now)).await;
            applied = now;
            settling = None;
        }
    }

    /// Load, reload or remove each of `names` as the folder has it now, and
    /// swap the routing if anything changed.
    pub async fn apply(&self, names: &[String]) {
        // Compiled without holding the desired state (a compile can take
        // seconds); only this watcher changes the policy set, so `next`
        // still extends what serves when the lock is taken again below.
        let mut next = self.plane.lock().await.policies.clone();
        let mut loaded = Vec::new();
        let mut gone = Vec::new();
        for name in names {
            let file = self.directory.join(format!("{name}.wasm"));
            if !file.exists() {
                gone.push(name.clone());
                continue;
            }
            let reuse = self.config.reuse_instances.contains(name);
            // A Python or JavaScript policy's first compile takes seconds.
            tracing::info!(policy = %name, "policy loading (compile, setup, snapshot)");
            let (candidate, name_owned) = (next.clone(), name.clone());
            // Off the runtime's workers.
            let result = tokio::task::spawn_blocking(move || {
                let mut candidate = candidate;
                candidate
                    .load_file(&name_owned, &file, reuse)
                    .map(|()| candidate)
                    .map_err(|error| error.to_string())
            })
            .await
            .unwrap_or_else(|error| Err(format!("loading panicked: {error}")));
            match result {
                Ok(candidate) => {
                    next = candidate;
                    loaded.push(name.clone());
                }
                Err(reason) => self.refuse(name, reason).await,
            }
        }
        let mut desired = self.plane.lock().await;
        let mut removed = Vec::new();
        for name in gone {
            if let Some(user) = users(&desired, &name).first() {
                let reason = format!(
                    "removed from the folder, but `{user}` still names it: the loaded version keeps serving (take it out of the routes first)"
                );
                self.refuse(&name, reason).await;
            } else if next.remove(&name) {
                removed.push(name);
            }
        }
        if loaded.is_empty() && removed.is_empty() {
            return;
        }
        let previous = std::mem::replace(&mut desired.policies, next);
        let built = match self.plane.build(&desired) {
            Ok(built) => built,
            Err(reason) => {
                desired.policies = previous;
                for name in &loaded {
                    self.refuse(name, reason.clone()).await;
                }
                return;
            }
        };
        // Recorded before the new versions judge anything.
        for name in &loaded {
            let hash = desired
                .policies
                .get(name)
                .map(|policy| policy.hash().to_owned());
            self.record(EntryKind::PolicyLoaded, name, hash, None).await;
        }
        for name in &removed {
            self.record(EntryKind::PolicyRemoved, name, None, None)
                .await;
        }
        self.plane.install(built);
        for name in &loaded {
            tracing::info!(policy = %name, "policy reloaded");
            self.errors().remove(name);
            self.loaded_ms().insert(name.clone(), now_ms());
        }
        for name in &removed {
            tracing::info!(policy = %name, "policy removed");
            self.loaded_ms().remove(name);
        }
    }

    /// Keep the old version of `name`: log, audit and show `reason`.
    async fn refuse(&self, name: &str, reason: String) {
        tracing::error!(policy = %name, "policy refused: {reason}");
        self.record(EntryKind::PolicyRejected, name, None, Some(&reason))
            .await;
        self.errors().insert(name.to_owned(), reason);
    }

    async fn record(
        &self,
        kind: EntryKind,
        name: &str,
        hash: Option<String>,
        reason: Option<&str>,
    ) {
        let Some(audit) = &self.audit else { return };
        let mut entry = AuditEntry::new(kind, "airlock");
        entry.policies = vec![PolicyRef {
            name: name.to_owned(),
            hash: hash.unwrap_or_default(),
        }];
        entry.reason = reason.map(str::to_owned);
        if let Err(error) = audit.record(entry, Durability::Durable).await {
            tracing::error!(policy = %name, "policy change not recorded: {error}");
        }
    }

    /// Every policy loaded or refused, by name.
    pub async fn statuses(&self) -> Vec<PolicyStatus> {
        let desired = self.plane.lock().await;
        let loaded_ms = self.loaded_ms().clone();
        let errors = self.errors().clone();
        let mut names: Vec<String> = desired.policies.names().map(str::to_owned).collect();
        names.extend(errors.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let policy = desired.policies.get(&name);
                PolicyStatus {
                    version: policy.map(|policy| policy.metadata().version.clone()),
                    hash: policy.map(|policy| policy.hash().to_owned()),
                    parameters_sha256: desired.policies.parameters(&name).map(|parameters| {
                        crate::secrets::sha256_hex(
                            serde_json::Value::Object(parameters.clone())
                                .to_string()
                                .as_bytes(),
                        )
                    }),
                    loaded_ms: loaded_ms.get(&name).copied(),
                    routes: users(&desired, &name),
                    last_error: errors.get(&name).cloned(),
                    name,
                }
            })
            .collect()
    }

    fn loaded_ms(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.loaded_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_named_by_policy_whichever_file_moved() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let before: Snapshot = [
            ("a.wasm".to_owned(), (10, at(1))),
            ("a.toml".to_owned(), (5, at(1))),
            ("b.wasm".to_owned(), (10, at(1))),
        ]
        .into();
        let mut after = before.clone();
        after.insert("a.toml".to_owned(), (6, at(2)));
        after.remove("b.wasm");
        after.insert("c.wasm".to_owned(), (1, at(3)));
        after.insert("notes.txt".to_owned(), (1, at(3)));
        assert_eq!(changed(&before, &after), ["a", "b", "c"]);
        assert_eq!(changed(&after, &after), Vec::<String>::new());
        assert_eq!(policy_of(".wasm"), None);
        assert_eq!(policy_of("x.wasm.partial"), None);
    }
}
