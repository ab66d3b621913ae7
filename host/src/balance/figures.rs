//! Live figures of backends and pools: requests in flight, error rate, latency
//! EWMA and p99. Policies judge with them and the admin API shows them. Every
//! update is a few relaxed atomic operations; the window is kept recent by
//! [`BackendFigures::decay`], which health tasks call every few seconds.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{now_ms, Pool};

/// Latency buckets: four per power of two of microseconds, up to ~2^31 us.
const BUCKETS: usize = 128;

/// Weight of a new sample in the latency EWMA, as a right shift (1/8).
const EWMA_SHIFT: u32 = 3;

/// Counters of one backend.
#[derive(Debug)]
pub struct BackendFigures {
    in_flight: Arc<AtomicU32>,
    requests: AtomicU64,
    errors: AtomicU64,
    latency_ewma_us: AtomicU64,
    latency_buckets: [AtomicU32; BUCKETS],
}

impl Default for BackendFigures {
    fn default() -> Self {
        Self {
            in_flight: Arc::new(AtomicU32::new(0)),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_ewma_us: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// Counts a request in flight until dropped; it travels with the response body,
/// so a streaming response counts until its last byte.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendFigures {
    /// Marks a request in flight for as long as the guard lives.
    pub fn start(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records one finished exchange.
    pub fn record(&self, failed: bool, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u32::MAX)) as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        // A lost update under a race only delays the average by one sample.
        let old = self.latency_ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us
        } else {
            old - (old >> EWMA_SHIFT) + (us >> EWMA_SHIFT)
        };
        self.latency_ewma_us.store(new, Ordering::Relaxed);
    }

    /// Halves every windowed count, so old samples fade.
    pub fn decay(&self) {
        let halve = |a: &AtomicU64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v / 2));
        };
        halve(&self.requests);
        halve(&self.errors);
        for b in &self.latency_buckets {
            let _ = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v / 2));
        }
    }

    /// Errors over requests in the recent window, 0 to 1.
    pub fn error_rate(&self) -> f64 {
        let requests = self.requests.load(Ordering::Relaxed);
        if requests == 0 {
            return 0.0;
        }
        self.errors.load(Ordering::Relaxed) as f64 / requests as f64
    }

    /// Exponentially weighted mean latency.
    pub fn latency_ewma(&self) -> Duration {
        Duration::from_micros(self.latency_ewma_us.load(Ordering::Relaxed))
    }

    /// The 99th percentile of recent latencies (upper bound of its bucket, so
    /// within 25% above the true value); `None` without recent samples.
    pub fn latency_p99(&self) -> Option<Duration> {
        let counts: Vec<u64> = self
            .latency_buckets
            .iter()
            .map(|b| u64::from(b.load(Ordering::Relaxed)))
            .collect();
        percentile_us(&counts, 0.99).map(Duration::from_micros)
    }

    fn bucket_counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.latency_buckets
            .iter()
            .map(|b| u64::from(b.load(Ordering::Relaxed)))
    }
}

/// Values 1-3 have a bucket each; from 4 on, four buckets per power of two.
fn bucket_of(us: u64) -> usize {
    let v = us.max(1);
    if v < 4 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() as usize;
    let mantissa = ((v >> (exp - 2)) & 3) as usize;
    (exp * 4 + mantissa).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds.
fn bucket_upper_us(i: usize) -> u64 {
    if i < 8 {
        return i as u64;
    }
    let (exp, mantissa) = (i / 4, (i % 4) as u64);
    ((4 + mantissa + 1) << (exp - 2)) - 1
}

fn percentile_us(counts: &[u64], quantile: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * quantile).ceil() as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_upper_us(i));
        }
    }
    Some(bucket_upper_us(counts.len() - 1))
}

/// A snapshot of one backend's figures, as shown to operators and policies.
#[derive(Debug, Clone, Serialize)]
pub struct BackendSnapshot {
    /// `host:port`.
    pub address: String,
    /// Configured weight.
    pub weight: u32,
    /// Active health checks say up.
    pub healthy: bool,
    /// Passive ejection has it out now.
    pub ejected: bool,
    /// Requests in flight.
    pub in_flight: u32,
    /// Recent errors over requests.
    pub error_rate: f64,
    /// Mean latency in milliseconds (EWMA).
    pub latency_ewma_ms: f64,
    /// 99th percentile latency in milliseconds; `null` without recent samples.
    pub latency_p99_ms: Option<f64>,
}

/// A snapshot of one pool's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PoolFigures {
    /// The pool.
    pub pool: String,
    /// Backends that may receive requests now.
    pub healthy: usize,
    /// All backends.
    pub total: usize,
    /// Requests in flight over all backends.
    pub in_flight: u32,
    /// Recent errors over requests, pool-wide.
    pub error_rate: f64,
    /// Requests in the recent window (what `error_rate` is over).
    pub recent_requests: u64,
    /// 99th percentile latency in milliseconds, pool-wide; `null` without
    /// recent samples.
    pub latency_p99_ms: Option<f64>,
    /// Each backend.
    pub backends: Vec<BackendSnapshot>,
}

impl PoolFigures {
    pub(super) fn of(pool: &Pool) -> Self {
        let now = now_ms();
        let mut counts = vec![0u64; BUCKETS];
        let (mut requests, mut errors) = (0u64, 0u64);
        let backends = pool
            .backends
            .iter()
            .map(|b| {
                let f = &b.figures;
                for (acc, c) in counts.iter_mut().zip(f.bucket_counts()) {
                    *acc += c;
                }
                requests += f.requests.load(Ordering::Relaxed);
                errors += f.errors.load(Ordering::Relaxed);
                BackendSnapshot {
                    address: b.authority.to_string(),
                    weight: b.weight,
                    healthy: b.is_healthy(),
                    ejected: !b.is_available(now) && b.is_healthy(),
                    in_flight: f.in_flight(),
                    error_rate: f.error_rate(),
                    latency_ewma_ms: millis(f.latency_ewma()),
                    latency_p99_ms: f.latency_p99().map(millis),
                }
            })
            .collect::<Vec<_>>();
        PoolFigures {
            pool: pool.name.clone(),
            healthy: pool.backends.iter().filter(|b| b.is_available(now)).count(),
            total: pool.backends.len(),
            in_flight: backends.iter().map(|b| b.in_flight).sum(),
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            recent_requests: requests,
            latency_p99_ms: percentile_us(&counts, 0.99)
                .map(|us| millis(Duration::from_micros(us))),
            backends,
        }
    }
}

/// Milliseconds with microsecond precision (prints as `1.136`, not `1.1360000000000001`).
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for us in [1u64, 2, 3, 5, 7, 100, 999, 1000, 1001, 65_537, 1_000_000] {
            let i = bucket_of(us);
            assert!(
                bucket_upper_us(i) >= us,
                "{us} in bucket {i} with upper {}",
                bucket_upper_us(i)
            );
            assert!(
                bucket_upper_us(i) as f64 <= us as f64 * 1.25 + 1.0,
                "{us}: upper {}",
                bucket_upper_us(i)
            );
            if i > 0 {
                assert!(
                    bucket_upper_us(i - 1) < us,
                    "{us}: previous bucket also holds it"
                );
            }
        }
    }

    #[test]
    fn p99_error_rate_and_decay() {
        let f = BackendFigures::default();
        assert_eq!(f.latency_p99(), None, "no samples yet");
        for _ in 0..990 {
            f.record(false, Duration::from_millis(1));
        }
        for _ in 0..10 {
            f.record(true, Duration::from_millis(200));
        }
        let p99 = f.latency_p99().unwrap();
        assert!(
            p99 >= Duration::from_millis(1) && p99 < Duration::from_millis(2),
            "{p99:?}"
        );
        assert!((f.error_rate() - 0.01).abs() < 1e-9);
        for _ in 0..20 {
            f.record(true, Duration::from_millis(200));
        }
        assert!(f.latency_p99().unwrap() >= Duration::from_millis(200));
        for _ in 0..12 {
            f.decay();
        }
        assert_eq!(f.latency_p99(), None, "every sample decayed away");
        assert_eq!(f.error_rate(), 0.0);
    }

    #[test]
    fn in_flight_guard_counts_until_dropped() {
        let f = BackendFigures::default();
        let a = f.start();
        let b = f.start();
        assert_eq!(f.in_flight(), 2);
        drop(a);
        assert_eq!(f.in_flight(), 1);
        drop(b);
        assert_eq!(f.in_flight(), 0);
    }
}
