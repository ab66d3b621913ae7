//! Operators' routing changes: what the API takes, how each one edits the
//! pools and routes, and how policies see it (the contract's `change`).
//!
//! Two changes edit no pool or route but the state as a whole: a reset of
//! the overlay and a reload of the config file. They are judged, held and
//! recorded like the edits (an unjudged reset would undo approved changes);
//! the control plane carries them out ([`super::ControlPlane::request`]).

use serde::{Deserialize, Serialize};

use crate::config::{BackendConfig, PoolConfig, RouteConfig, ShiftConfig};
use crate::policy::bindings as contract;

/// One routing change, as `POST /v1/changes` takes it:
/// `{"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 10}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Add `backend` (`host:port`) to `pool`.
    AddBackend {
        pool: String,
        backend: String,
        #[serde(default = "one")]
        weight: u32,
    },
    /// Remove `backend` from `pool`.
    RemoveBackend { pool: String, backend: String },
    /// No new requests to `backend` (those in flight finish).
    DrainBackend { pool: String, backend: String },
    /// New weights for some of `pool`'s backends.
    SetWeights {
        pool: String,
        weights: Vec<BackendWeight>,
    },
    /// Send `percent` of `route`'s requests to `to_pool` (0 ends a shift).
    ShiftTraffic {
        route: String,
        to_pool: String,
        percent: u8,
    },
    /// Drop every applied change: routing as the config file has it.
    /// `changes` is how many that drops and `ids` which (sorted), both
    /// filled in by Airlock: a held reset drops exactly those or nothing.
    ResetOverlay {
        #[serde(default)]
        changes: u32,
        #[serde(default)]
        ids: Vec<String>,
    },
    /// Reload pools and routes from the config file. `sha256` pins the file
    /// (hex): given, the file must be exactly that; left out, Airlock fills
    /// in the file's as it reads it, and loads exactly that file or nothing,
    /// also after an approval. `summary`, what would change, is filled in
    /// by Airlock.
    ReloadConfig {
        #[serde(default)]
        sha256: Option<String>,
        #[serde(default)]
        summary: String,
    },
}

/// A backend's new weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendWeight {
    pub backend: String,
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl Change {
    /// Pools whose behaviour this change affects, for approvers (none named
    /// for a reset or reload: they may touch any).
    pub fn pools(&self, routes: &[RouteConfig]) -> Vec<String> {
        match self {
            Change::ResetOverlay { .. } | Change::ReloadConfig { .. } => Vec::new(),
            Change::AddBackend { pool, .. }
            | Change::RemoveBackend { pool, .. }
            | Change::DrainBackend { pool, .. }
            | Change::SetWeights { pool, .. } => vec![pool.clone()],
            Change::ShiftTraffic { route, to_pool, .. } => {
                let mut pools = vec![to_pool.clone()];
                pools.extend(
                    routes
                        .iter()
                        .filter(|candidate| candidate.display_name() == *route)
                        .map(|candidate| candidate.pool.clone()),
                );
                pools
            }
        }
    }

    /// Pools the continuity check watches after this change: the pool it
    /// edits, or the pool a shift sends traffic to (not the one it comes
    /// from: shifting away from a failing pool is the cure, not the harm).
    pub fn watched_pools(&self) -> Vec<String> {
        match self {
            Change::AddBackend { pool, .. }
            | Change::RemoveBackend { pool, .. }
            | Change::DrainBackend { pool, .. }
            | Change::SetWeights { pool, .. } => vec![pool.clone()],
            Change::ShiftTraffic { to_pool, .. } => vec![to_pool.clone()],
            Change::ResetOverlay { .. } | Change::ReloadConfig { .. } => Vec::new(),
        }
    }

    /// Apply this change to `pools` and `routes`.
    ///
    /// # Errors
    /// What it names does not exist, the result would be invalid, or it is
    /// not an edit (a reset or reload is carried out by the control plane).
    pub fn apply(
        &self,
        pools: &mut [PoolConfig],
        routes: &mut [RouteConfig],
    ) -> Result<(), String> {
        let pool_named = |pools: &mut [PoolConfig], name: &str| -> Result<usize, String> {
            pools
                .iter()
                .position(|pool| pool.name == name)
                .ok_or_else(|| format!("no pool named `{name}`"))
        };
        let backend_in = |pool: &PoolConfig, backend: &str| -> Result<usize, String> {
            pool.backends
                .iter()
                .position(|candidate| candidate.address == backend)
                .ok_or_else(|| format!("pool `{}` has no backend `{backend}`", pool.name))
        };
        match self {
            Change::AddBackend {
                pool,
                backend,
                weight,
            } => {
                let i = pool_named(pools, pool)?;
                if backend.parse::<http::uri::Authority>().is_err() || !backend.contains(':') {
                    return Err(format!("backend: expected `host:port`, found `{backend}`"));
                }
                if !(1..=1000).contains(weight) {
                    return Err("weight: expected 1 to 1000".to_owned());
                }
                if backend_in(&pools[i], backend).is_ok() {
                    return Err(format!("pool `{pool}` already has backend `{backend}`"));
                }
                pools[i].backends.push(BackendConfig {
                    address: backend.clone(),
                    weight: *weight,
                    drained: false,
                });
            }
            Change::RemoveBackend { pool, backend } => {
                let i = pool_named(pools, pool)?;
                let j = backend_in(&pools[i], backend)?;
                if pools[i].backends.len() == 1 {
                    return Err(format!("`{backend}` is the last backend of pool `{pool}`"));
                }
                pools[i].backends.remove(j);
            }
            Change::DrainBackend { pool, backend } => {
                let i = pool_named(pools, pool)?;
                let j = backend_in(&pools[i], backend)?;
                pools[i].backends[j].drained = true;
            }
            Change::SetWeights { pool, weights } => {
                let i = pool_named(pools, pool)?;
                for weight in weights {
                    if !(1..=1000).contains(&weight.weight) {
                        return Err(format!(
                            "weight of `{}`: expected 1 to 1000",
                            weight.backend
                        ));
                    }
                    let j = backend_in(&pools[i], &weight.backend)?;
                    pools[i].backends[j].weight = weight.weight;
                }
            }
            Change::ShiftTraffic {
                route,
                to_pool,
                percent,
            } => {
                pool_named(pools, to_pool)?;
                if *percent > 100 {
                    return Err("percent: expected 0 to 100".to_owned());
                }
                let target = routes
                    .iter_mut()
                    .find(|candidate| candidate.display_name() == *route)
                    .ok_or_else(|| format!("no route named `{route}`"))?;
                if target.pool == *to_pool {
                    return Err(format!("route `{route}` is already served by `{to_pool}`"));
                }
                target.shift = (*percent > 0).then(|| ShiftConfig {
                    pool: to_pool.clone(),
                    percent: *percent,
                });
            }
            Change::ResetOverlay { .. } | Change::ReloadConfig { .. } => {
                return Err("a reset or reload is not an edit of pools or routes".to_owned());
            }
        }
        Ok(())
    }

    /// The change as policies see it. `routes` names the pool a shifted
    /// route comes from.
    pub fn contract(&self, routes: &[RouteConfig]) -> contract::Change {
        match self {
            Change::AddBackend { pool, backend, .. } => {
                contract::Change::AddBackend(backend_change(pool, backend))
            }
            Change::RemoveBackend { pool, backend } => {
                contract::Change::RemoveBackend(backend_change(pool, backend))
            }
            Change::DrainBackend { pool, backend } => {
                contract::Change::DrainBackend(backend_change(pool, backend))
            }
            Change::SetWeights { pool, weights } => {
                contract::Change::SetWeights(contract::WeightsChange {
                    pool: pool.clone(),
                    weights: weights
                        .iter()
                        .map(|weight| contract::BackendWeight {
                            backend: weight.backend.clone(),
                            weight: weight.weight,
                        })
                        .collect(),
                })
            }
            Change::ShiftTraffic {
                route,
                to_pool,
                percent,
            } => contract::Change::ShiftTraffic(contract::TrafficShift {
                route: route.clone(),
                from_pool: routes
                    .iter()
                    .find(|candidate| candidate.display_name() == *route)
                    .map(|candidate| candidate.pool.clone())
                    .unwrap_or_default(),
                to_pool: to_pool.clone(),
                percent: *percent,
            }),
            Change::ResetOverlay { changes, .. } => {
                contract::Change::ResetOverlay(contract::OverlayReset { changes: *changes })
            }
            Change::ReloadConfig { sha256, summary } => {
                contract::Change::ReloadConfig(contract::ConfigReload {
                    sha256: sha256.clone().unwrap_or_default(),
                    summary: summary.clone(),
                })
            }
        }
    }
}

fn backend_change(pool: &str, backend: &str) -> contract::BackendChange {
    contract::BackendChange {
        pool: pool.to_owned(),
        backend: backend.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(toml: &str) -> (Vec<PoolConfig>, Vec<RouteConfig>) {
        let config = crate::config::Config::parse(toml, std::path::Path::new("test.toml")).unwrap();
        (config.pools, config.routes)
    }

    const CONFIG: &str = "[[listener]]\nname = \"l\"\naddress = \"127.0.0.1:0\"\n\n[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n\n[[pool]]\nname = \"canary\"\nbackends = [{ address = \"10.0.0.2:80\" }]\n\n[[route]]\nname = \"shop\"\npool = \"web\"\n";

    #[test]
    fn each_change_edits_what_it_names_and_refuses_what_does_not_exist() {
        let (mut pools, mut routes) = parsed(CONFIG);
        let add = Change::AddBackend {
            pool: "web".into(),
            backend: "10.0.0.3:80".into(),
            weight: 5,
        };
        add.apply(&mut pools, &mut routes).unwrap();
        assert_eq!(pools[0].backends[1].weight, 5);
        assert!(add
            .apply(&mut pools, &mut routes)
            .unwrap_err()
            .contains("already has"));

        let shift: Change = serde_json::from_str(
            r#"{"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 10}"#,
        )
        .unwrap();
        shift.apply(&mut pools, &mut routes).unwrap();
        assert_eq!(routes[0].shift.as_ref().unwrap().percent, 10);
        assert_eq!(shift.pools(&routes), ["canary", "web"]);

        for (bad, why) in [
            (
                r#"{"op": "remove_backend", "pool": "nope", "backend": "10.0.0.1:80"}"#,
                "no pool named `nope`",
            ),
            (
                r#"{"op": "drain_backend", "pool": "web", "backend": "10.9.9.9:80"}"#,
                "no backend `10.9.9.9:80`",
            ),
            (
                r#"{"op": "remove_backend", "pool": "canary", "backend": "10.0.0.2:80"}"#,
                "last backend",
            ),
            (
                r#"{"op": "shift_traffic", "route": "shop", "to_pool": "canary", "percent": 101}"#,
                "0 to 100",
            ),
            (
                r#"{"op": "shift_traffic", "route": "cart", "to_pool": "canary", "percent": 1}"#,
                "no route named `cart`",
            ),
            (
                r#"{"op": "set_weights", "pool": "web", "weights": [{"backend": "10.0.0.1:80", "weight": 0}]}"#,
                "1 to 1000",
            ),
        ] {
            let change: Change = serde_json::from_str(bad).unwrap();
            let error = change.apply(&mut pools, &mut routes).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(serde_json::from_str::<Change>(r#"{"op": "reboot"}"#).is_err());
    }
}
