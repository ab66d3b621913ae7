//! Load balancing: pools of backends, how one backend is picked for a request,
//! and whether a backend may be picked at all. Picking is lock-free (atomics
//! only), because it runs on every request; the structures it reads (weighted
//! schedule, hash ring) are built once when the pool is built.
//!
//! A backend is *available* when active health checks (see [`health`]) have not
//! marked it down and passive ejection has not taken it out. The live
//! [`figures`] of every backend and pool are what policies will read.

pub mod figures;
pub mod health;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::Authority;

use crate::config::{BalanceAlgorithm, HashKey, PassiveHealth, PoolConfig};
use crate::tls::TlsError;
use crate::upstream::UpstreamClient;
use figures::{BackendFigures, PoolFigures};

/// Virtual nodes per unit of weight on the consistent-hash ring: enough for an
/// even spread over a handful of backends, small enough to build instantly.
const RING_POINTS_PER_WEIGHT: u32 = 160;

/// A group of interchangeable backends and the way requests are spread over them.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name, as routes refer to it.
    pub name: String,
    algorithm: BalanceAlgorithm,
    hash_key: Option<HashKey>,
    /// The backends, in configuration order.
    pub backends: Vec<Arc<Backend>>,
    /// Weighted round-robin: backend indices interleaved smoothly by weight.
    schedule: Vec<usize>,
    /// Consistent hashing: (point, backend index), sorted by point.
    ring: Vec<(u64, usize)>,
    cursor: AtomicUsize,
    passive: PassiveHealth,
    /// Whether the backends are spoken to in HTTP/2.
    pub http2: bool,
    /// The pooled keep-alive client for this pool's backends.
    pub client: UpstreamClient,
}

/// One upstream server.
#[derive(Debug)]
pub struct Backend {
    /// `host:port` as configured.
    pub authority: Authority,
    /// Share for weighted algorithms.
    pub weight: u32,
    /// Set by active health checks; backends start healthy.
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Passive ejection: milliseconds since [`clock_origin`] until which the
    /// backend is out; 0 when it is in.
    ejected_until_ms: AtomicU64,
    /// Live figures: in-flight, errors, latency.
    pub figures: BackendFigures,
    /// Drained by an operator: no new requests.
    pub drained: bool,
}

impl Pool {
    /// Builds a pool and its upstream client from its configuration.
    pub fn build(config: &PoolConfig, limits: &crate::config::Limits) -> Result<Pool, TlsError> {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                Arc::new(Backend {
                    // Validated by the config loader.
                    authority: b
                        .address
                        .parse()
                        .unwrap_or_else(|_| Authority::from_static("invalid:0")),
                    weight: b.weight,
                    healthy: AtomicBool::new(true),
                    consecutive_failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    figures: BackendFigures::default(),
                    drained: b.drained,
                })
            })
            .collect();
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Ok(Pool {
            name: config.name.clone(),
            algorithm: config.balance,
            hash_key: config.hash_key.clone(),
            schedule: smooth_weighted_schedule(&weights),
            ring: hash_ring(&backends),
            backends,
            cursor: AtomicUsize::new(0),
            passive: config.passive_health.clone(),
            http2: config.http2,
            client: UpstreamClient::build(config, limits)?,
        })
    }

    /// Picks a backend for a request, skipping unavailable ones and `exclude`
    /// (the backend a retry is moving away from). `None`: nothing is available.
    pub fn pick(&self, request: &Parts, exclude: Option<usize>) -> Option<usize> {
        let now = now_ms();
        let usable = |i: usize| Some(i) != exclude && self.backends[i].is_available(now);
        let n = self.backends.len();
        match self.algorithm {
            BalanceAlgorithm::RoundRobin => self.next_in_turn(n, |k| k, usable),
            BalanceAlgorithm::WeightedRoundRobin => {
                self.next_in_turn(self.schedule.len(), |k| self.schedule[k], usable)
            }
            BalanceAlgorithm::LeastInFlight => {
                // Start the scan at the next usable backend in turn, so ties
                // spread evenly over the backends that may be picked.
                let start = self.next_in_turn(n, |k| k, usable)?;
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by_key(|&i| self.backends[i].figures.in_flight())
            }
            BalanceAlgorithm::ConsistentHash => {
                match self.hash_key.as_ref().and_then(|k| key_of(request, k)) {
                    Some(key) => self.walk_ring(hash64(key.as_bytes()), usable),
                    // No key on this request: nothing to keep sticky, spread it.
                    None => self.next_in_turn(n, |k| k, usable),
                }
            }
        }
    }

    /// The next usable entry of a cyclic sequence of backend indices.
    ///
    /// An unusable entry is passed over by taking the next turn, not by looking
    /// ahead from it: looking ahead hands every turn of a missing backend to the
    /// one after it (`a c c a c c` for `a b c` without `b`; `a c c a` for the
    /// 2:1:1 schedule `a b c a`), where taking turns keeps the sequence, minus
    /// the missing entries, even and in proportion to the weights.
    fn next_in_turn(
        &self,
        len: usize,
        backend_at: impl Fn(usize) -> usize,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut turn = 0;
        for _ in 0..len {
            turn = self.cursor.fetch_add(1, Ordering::Relaxed);
            let i = backend_at(turn % len);
            if usable(i) {
                return Some(i);
            }
        }
        // Concurrent picks took the turns in between ours: a scan settles it, so
        // a usable backend is always found.
        (1..=len)
            .map(|k| backend_at((turn + k) % len))
            .find(|&i| usable(i))
    }

    /// The first usable backend clockwise from `point` on the ring.
    fn walk_ring(&self, point: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.ring.partition_point(|&(p, _)| p < point);
        let len = self.ring.len();
        (0..len)
            .map(|k| self.ring[(start + k) % len].1)
            .find(|&i| usable(i))
    }

    /// Records how a forwarded request went, for passive ejection and figures.
    /// `failed`: the connection failed or the backend answered 5xx.
    pub fn record_outcome(&self, index: usize, failed: bool, latency: Duration) {
        let backend = &self.backends[index];
        backend.figures.record(failed, latency);
        if !failed {
            backend.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let threshold = self.passive.consecutive_failures;
        let failures = backend.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && failures >= threshold {
            backend.consecutive_failures.store(0, Ordering::Relaxed);
            let until = now_ms() + self.passive.ejection_time.as_millis() as u64;
            backend.ejected_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(pool = %self.name, backend = %backend.authority, failures, ejection = ?self.passive.ejection_time, "backend ejected after consecutive failures");
        }
    }

    /// This pool's live figures.
    pub fn figures(&self) -> PoolFigures {
        PoolFigures::of(self)
    }
}

impl Backend {
    /// Whether requests may be sent to this backend now.
    pub fn is_available(&self, now_ms: u64) -> bool {
        !self.drained
            && self.healthy.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// Whether the active health checks consider this backend up.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive ejection has this backend out right now.
    pub fn is_ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// Until when passive ejection has it out (0: it is in).
    pub fn ejected_until_ms(&self) -> u64 {
        self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// End an ejection now (a policy denied it).
    pub(crate) fn readmit(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(0, Ordering::Relaxed);
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            // A backend that passes its health checks again gets a clean slate.
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the first call; a cheap monotonic clock for ejections.
pub fn now_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Offset by one so that 0 always means "not ejected".
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The hash key of a request: a header's value or a cookie's value.
fn key_of<'a>(request: &'a Parts, key: &HashKey) -> Option<&'a str> {
    match key {
        HashKey::Header(name) => request.headers.get(name.as_str())?.to_str().ok(),
        HashKey::Cookie(name) => request
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v),
    }
}

/// Nginx's smooth weighted round-robin, unrolled into one cycle: weights 5,1,1
/// give `a a b a c a a`, never five `a` in a row.
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = (0..current.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            current[best] -= total;
            best
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn hash_ring(backends: &[Arc<Backend>]) -> Vec<(u64, usize)> {
    let mut ring: Vec<(u64, usize)> = backends
        .iter()
        .enumerate()
        .flat_map(|(i, b)| {
            (0..b.weight * RING_POINTS_PER_WEIGHT)
                .map(move |v| (hash64(format!("{}#{v}", b.authority).as_bytes()), i))
        })
        .collect();
    ring.sort_unstable();
    ring
}

/// FNV-1a with a final avalanche: stable across releases and platforms, so a
/// key maps to the same backend after an upgrade or on another node.
fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finalizer
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;
    use std::path::Path;

    fn pool(extra: &str, weights: &[u32]) -> Pool {
        let backends: Vec<String> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{{ address = \"10.0.0.{i}:80\", weight = {w} }}"))
            .collect();
        let text = format!(
            "[[pool]]\nname = \"p\"\n{extra}\nbackends = [{}]\n",
            backends.join(", ")
        );
        let config = Config::parse(&text, Path::new("t.toml")).unwrap();
        Pool::build(&config.pools[0], &config.limits).unwrap()
    }

    fn request(header: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri("/");
        if let Some(v) = header {
            b = b.header("x-user", v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn spread(p: &Pool, n: usize) -> HashMap<usize, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            *counts
                .entry(p.pick(&request(None), None).unwrap())
                .or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even_and_skips_unavailable() {
        let p = pool("", &[1, 1, 1]);
        assert_eq!(
            spread(&p, 300),
            HashMap::from([(0, 100), (1, 100), (2, 100)])
        );
        p.backends[1].set_healthy(false);
        assert_eq!(spread(&p, 300).get(&1), None);
    }

    #[test]
    fn round_robin_stays_even_over_the_backends_left() {
        let p = pool("", &[1, 1, 1]);
        p.backends[1].set_healthy(false);
        assert_eq!(spread(&p, 300), HashMap::from([(0, 150), (2, 150)]));
        let order: Vec<usize> = (0..6)
            .map(|_| p.pick(&request(None), None).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
    }

    #[test]
    fn weights_stay_proportional_over_the_backends_left() {
        let p = pool("balance = \"weighted_round_robin\"", &[2, 1, 1]);
        p.backends[1].set_healthy(false);
        assert_eq!(spread(&p, 300), HashMap::from([(0, 200), (2, 100)]));
    }

    #[test]
    fn least_in_flight_ties_spread_evenly_over_the_backends_left() {
        let p = pool("balance = \"least_in_flight\"", &[1, 1, 1]);
        p.backends[1].set_healthy(false);
        assert_eq!(spread(&p, 300), HashMap::from([(0, 150), (2, 150)]));
    }

    #[test]
    fn weighted_schedule_is_proportional_and_smooth() {
        assert_eq!(
            smooth_weighted_schedule(&[5, 1, 1]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
        assert_eq!(smooth_weighted_schedule(&[2, 2]), vec![0, 1]);
        let p = pool("balance = \"weighted_round_robin\"", &[3, 1]);
        assert_eq!(spread(&p, 400), HashMap::from([(0, 300), (1, 100)]));
    }

    proptest::proptest! {
        /// For any weights, one cycle of the schedule gives each backend
        /// exactly its share of the weights (over their common divisor):
        /// a weight-1 backend beside heavy ones is never starved.
        #[test]
        fn weighted_schedule_gives_each_backend_its_exact_share(
            weights in proptest::collection::vec(1..=50u32, 1..=6),
        ) {
            let schedule = smooth_weighted_schedule(&weights);
            let divisor = weights.iter().copied().fold(0, gcd);
            let total: u32 = weights.iter().map(|weight| weight / divisor).sum();
            proptest::prop_assert_eq!(schedule.len(), total as usize);
            for (index, weight) in weights.iter().enumerate() {
                let picks = schedule.iter().filter(|&&picked| picked == index).count();
                proptest::prop_assert_eq!(picks, (weight / divisor) as usize);
            }
        }

        /// For any weights and any backend going down, consistent hashing
        /// moves only the keys that were on that backend.
        #[test]
        fn consistent_hash_moves_only_the_keys_of_a_backend_that_went_down(
            weights in proptest::collection::vec(1..=4u32, 2..=5),
            down in 0..5usize,
        ) {
            let down = down % weights.len();
            let p = pool(
                "balance = \"consistent_hash\"\nhash_key = { header = \"x-user\" }",
                &weights,
            );
            let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
            let before: Vec<usize> = users
                .iter()
                .map(|u| p.pick(&request(Some(u)), None).unwrap())
                .collect();
            p.backends[down].set_healthy(false);
            for (u, &was) in users.iter().zip(&before) {
                let now = p.pick(&request(Some(u)), None).unwrap();
                if was == down {
                    proptest::prop_assert_ne!(now, down);
                } else {
                    proptest::prop_assert_eq!(now, was, "{} moved", u);
                }
            }
        }
    }

    #[test]
    fn least_in_flight_prefers_idle_backends() {
        let p = pool("balance = \"least_in_flight\"", &[1, 1, 1]);
        let _busy0 = p.backends[0].figures.start();
        let _busy2 = p.backends[2].figures.start();
        for _ in 0..10 {
            assert_eq!(p.pick(&request(None), None), Some(1));
        }
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_only_the_lost_keys() {
        let p = pool(
            "balance = \"consistent_hash\"\nhash_key = { header = \"x-user\" }",
            &[1, 1, 1, 1],
        );
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let before: Vec<usize> = users
            .iter()
            .map(|u| p.pick(&request(Some(u)), None).unwrap())
            .collect();
        let again: Vec<usize> = users
            .iter()
            .map(|u| p.pick(&request(Some(u)), None).unwrap())
            .collect();
        assert_eq!(before, again);
        // Every backend gets a fair share (within 30% of even).
        for b in 0..4 {
            let share = before.iter().filter(|&&x| x == b).count();
            assert!((350..=650).contains(&share), "backend {b}: {share}");
        }
        p.backends[2].set_healthy(false);
        for (u, &was) in users.iter().zip(&before) {
            let now = p.pick(&request(Some(u)), None).unwrap();
            if was == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, was, "{u} moved although its backend is up");
            }
        }
    }

    #[test]
    fn consistent_hash_reads_cookies() {
        let p = pool(
            "balance = \"consistent_hash\"\nhash_key = { cookie = \"session\" }",
            &[1, 1, 1],
        );
        let with_cookie = |v: &str| {
            let parts = http::Request::builder()
                .header("cookie", format!("theme=dark; session={v}"))
                .body(())
                .unwrap()
                .into_parts()
                .0;
            p.pick(&parts, None).unwrap()
        };
        assert!((0..50).all(|_| with_cookie("abc") == with_cookie("abc")));
        let distinct: std::collections::HashSet<usize> =
            (0..100).map(|i| with_cookie(&format!("s{i}"))).collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn passive_ejection_takes_a_failing_backend_out_for_a_while() {
        let p = pool(
            "passive_health = { consecutive_failures = 3, ejection_time = \"100ms\" }",
            &[1, 1],
        );
        p.record_outcome(0, true, Duration::from_millis(1));
        p.record_outcome(0, true, Duration::from_millis(1));
        assert!(!p.backends[0].is_ejected());
        p.record_outcome(0, true, Duration::from_millis(1));
        assert!(p.backends[0].is_ejected());
        assert_eq!(spread(&p, 10), HashMap::from([(1, 10)]));
        std::thread::sleep(Duration::from_millis(120));
        assert!(!p.backends[0].is_ejected());
        assert_eq!(spread(&p, 10).len(), 2);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let p = pool(
            "passive_health = { consecutive_failures = 2, ejection_time = \"10s\" }",
            &[1],
        );
        for _ in 0..5 {
            p.record_outcome(0, true, Duration::ZERO);
            p.record_outcome(0, false, Duration::ZERO);
        }
        assert!(!p.backends[0].is_ejected());
    }

    #[test]
    fn exclude_and_nothing_available() {
        let p = pool("", &[1, 1]);
        assert!((0..10).all(|_| p.pick(&request(None), Some(0)) == Some(1)));
        p.backends[1].set_healthy(false);
        assert_eq!(p.pick(&request(None), Some(0)), None);
    }
}
