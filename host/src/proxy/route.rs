//! The route table: which pool serves a host and path. The most specific route
//! wins: an exact host beats a wildcard (`*.example.com`, longer suffixes
//! first), which beats `*`; among routes for the same host, the longest path
//! prefix wins. Prefixes match whole segments: `/api` matches `/api` and
//! `/api/users`, never `/apix`. The table is an immutable snapshot; lookups take
//! no lock.

use std::collections::HashMap;
use std::sync::Arc;

use crate::balance::Pool;
use crate::config::RouteConfig;
use crate::policy::PolicyChain;

/// One route, resolved to its pool.
#[derive(Debug)]
pub struct Route {
    /// Name for logs and metrics (shared: metrics take it per request).
    pub name: Arc<str>,
    /// Path prefix, without a trailing slash (empty for `/`).
    prefix: String,
    /// The pool serving it.
    pub pool: Arc<Pool>,
    /// Another pool taking a share of its requests, and that share in percent.
    pub shift: Option<(Arc<Pool>, u8)>,
    /// Counts requests, to spread the shift evenly.
    shift_cursor: std::sync::atomic::AtomicU64,
    /// The policies judging its requests (empty: none).
    pub chain: PolicyChain,
    /// How its requests are recorded.
    pub audit: super::record::RouteAudit,
    /// Whether a `_method` query parameter is let through to its backend
    /// (`allow_method_parameter`); refused by default where policies judge.
    method_parameter: bool,
}

impl Route {
    /// Whether a method-override query parameter is refused on this route:
    /// where policies judge, unless the route allows it (a backend reading
    /// `_method` would run a method no policy saw).
    pub fn refuses_method_parameter(&self) -> bool {
        !self.chain.is_empty() && !self.method_parameter
    }

    /// The pool this request goes to: the shift's pool for its share of
    /// requests (spread evenly: `percent` of every 100 in a row), the
    /// route's pool for the rest.
    pub fn pick_pool(&self) -> &Arc<Pool> {
        match &self.shift {
            Some((pool, percent)) => {
                let n = self
                    .shift_cursor
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Bresenham over 100: request n is shifted when the running
                // share crosses a whole request.
                let percent = u64::from(*percent);
                if (n % 100 + 1) * percent / 100 > (n % 100) * percent / 100 {
                    pool
                } else {
                    &self.pool
                }
            }
            None => &self.pool,
        }
    }
}

/// All routes, grouped by how their host matches.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Vec<Route>>,
    /// (`.example.com`, routes), longest suffix first.
    wildcard: Vec<(String, Vec<Route>)>,
    any: Vec<Route>,
}

impl RouteTable {
    /// Builds the table; `pool_named` resolves a route's pool (validated to
    /// exist) and `chain_of` its policy chain.
    ///
    /// # Errors
    /// The first route whose chain cannot be built, and why.
    pub fn build(
        routes: &[RouteConfig],
        pool_named: impl Fn(&str) -> Option<Arc<Pool>>,
        chain_of: impl Fn(&RouteConfig) -> Result<PolicyChain, String>,
    ) -> Result<RouteTable, String> {
        let mut table = RouteTable::default();
        for config in routes {
            let Some(pool) = pool_named(&config.pool) else {
                continue;
            };
            let chain = chain_of(config)?;
            let shift = config
                .shift
                .as_ref()
                .filter(|shift| shift.percent > 0)
                .and_then(|shift| Some((pool_named(&shift.pool)?, shift.percent.min(100))));
            let route = Route {
                name: Arc::from(config.display_name()),
                prefix: config.path.trim_end_matches('/').to_owned(),
                pool,
                shift,
                // A random start, so that a route rebuilt often (reloads,
                // changes) still sends a small share its way.
                shift_cursor: std::sync::atomic::AtomicU64::new(
                    crate::secrets::random_bytes::<8>()
                        .map(u64::from_le_bytes)
                        .unwrap_or_default(),
                ),
                chain,
                audit: config.audit,
                method_parameter: config.allow_method_parameter,
            };
            let host = config.host.to_ascii_lowercase();
            if host == "*" {
                table.any.push(route);
            } else if let Some(domain) = host.strip_prefix('*') {
                match table.wildcard.iter_mut().find(|(d, _)| d == domain) {
                    Some((_, list)) => list.push(route),
                    None => table.wildcard.push((domain.to_owned(), vec![route])),
                }
            } else {
                table.exact.entry(host).or_default().push(route);
            }
        }
        let by_longest_prefix =
            |list: &mut Vec<Route>| list.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        table.exact.values_mut().for_each(by_longest_prefix);
        table
            .wildcard
            .iter_mut()
            .for_each(|(_, list)| by_longest_prefix(list));
        by_longest_prefix(&mut table.any);
        table
            .wildcard
            .sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
        Ok(table)
    }

    /// The route for a (lower-case, port-less) host and a normalized path.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        self.exact
            .get(host)
            .and_then(|l| first_match(l, path))
            .or_else(|| {
                self.wildcard
                    .iter()
                    .filter(|(domain, _)| {
                        host.len() > domain.len() && host.ends_with(domain.as_str())
                    })
                    .find_map(|(_, l)| first_match(l, path))
            })
            .or_else(|| first_match(&self.any, path))
    }
}

fn first_match<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes.iter().find(|r| prefix_matches(&r.prefix, path))
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable {
        let mut text = String::new();
        for pool in ["a", "b", "c", "d", "e"] {
            text += &format!(
                "[[pool]]\nname = \"{pool}\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n"
            );
        }
        for (host, path, pool) in routes {
            text +=
                &format!("[[route]]\nhost = \"{host}\"\npath = \"{path}\"\npool = \"{pool}\"\n");
        }
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        let pools: Vec<Arc<Pool>> = config
            .pools
            .iter()
            .map(|p| Arc::new(Pool::build(p, &config.limits).unwrap()))
            .collect();
        RouteTable::build(
            &config.routes,
            |name| pools.iter().find(|p| p.name == name).cloned(),
            |_| Ok(PolicyChain::default()),
        )
        .unwrap()
    }

    fn pool_for(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find(host, path).map(|r| r.pool.name.clone())
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            ("*", "/", "a"),
            ("*", "/api", "b"),
            ("*.example.com", "/", "c"),
            ("api.example.com", "/v1", "d"),
            ("*.eu.example.com", "/", "e"),
        ]);
        assert_eq!(pool_for(&t, "other.org", "/x").as_deref(), Some("a"));
        assert_eq!(
            pool_for(&t, "other.org", "/api/users").as_deref(),
            Some("b")
        );
        assert_eq!(pool_for(&t, "other.org", "/apix").as_deref(), Some("a"));
        assert_eq!(
            pool_for(&t, "www.example.com", "/api").as_deref(),
            Some("c")
        );
        assert_eq!(
            pool_for(&t, "api.example.com", "/v1/x").as_deref(),
            Some("d")
        );
        // The exact host has no route for this path: the wildcard serves it.
        assert_eq!(pool_for(&t, "api.example.com", "/v2").as_deref(), Some("c"));
        assert_eq!(pool_for(&t, "x.eu.example.com", "/").as_deref(), Some("e"));
        // `*.example.com` does not match the bare domain.
        assert_eq!(pool_for(&t, "example.com", "/").as_deref(), Some("a"));
    }

    #[test]
    fn no_route_is_none() {
        let t = table(&[("api.example.com", "/v1", "a")]);
        assert!(t.find("api.example.com", "/v2").is_none());
        assert!(t.find("example.com", "/v1").is_none());
    }

    #[test]
    fn trailing_slash_prefix_matches_segments() {
        let t = table(&[("*", "/static/", "a")]);
        assert!(t.find("h", "/static/x.css").is_some());
        assert!(t.find("h", "/static").is_some());
        assert!(t.find("h", "/staticx").is_none());
    }
}
