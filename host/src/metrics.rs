//! Prometheus metrics, served as text at `/metrics` on the admin listener.
//!
//! Counters and histograms are recorded where things happen (the request
//! path, the policy chain, the approval wait, the audit writer) into one
//! process-wide [`Metrics`] ([`global`]); gauges that the live state already
//! knows (pending approvals, backend health and in-flight requests) are read
//! at scrape time. A recording is a short uncontended lock or a few atomic
//! adds; label sets are bounded by the config (routes, policies, backends)
//! and by small closed sets (decisions, status codes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (Prometheus' defaults,
/// extended down to 100 µs for policy evaluations and audit commits).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the approval wait buckets, in seconds (people are slow).
const WAIT_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not cumulative; summed on output).
    counts: Vec<AtomicU64>,
    /// Above the last bound.
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Count one observation of `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match self.bounds.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let comma = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{comma}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{comma}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |labels: &str| {
            if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// One route's requests by (decision, status).
type RouteCounts = BTreeMap<(&'static str, u16), u64>;

/// Everything recorded as it happens.
#[derive(Debug)]
pub struct Metrics {
    /// route -> (decision, status) -> requests (keyed so that counting an
    /// existing series allocates nothing).
    requests: Mutex<std::collections::HashMap<String, RouteCounts>>,
    /// Policy name -> evaluation durations.
    policy_evaluations: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// Outcome (`approved`, `denied`, ...) -> time from hold to outcome.
    approval_waits: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    audit_commits: Histogram,
    audit_checkpoints: Histogram,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The histogram for `key` in `map`, created on first use.
fn histogram(
    map: &Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    key: &str,
    bounds: &'static [f64],
) -> std::sync::Arc<Histogram> {
    let mut map = locked(map);
    if let Some(found) = map.get(key) {
        return found.clone();
    }
    let created = std::sync::Arc::new(Histogram::new(bounds));
    map.insert(key.to_owned(), created.clone());
    created
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            requests: Mutex::new(std::collections::HashMap::new()),
            policy_evaluations: Mutex::new(BTreeMap::new()),
            approval_waits: Mutex::new(BTreeMap::new()),
            audit_commits: Histogram::new(&LATENCY_BUCKETS),
            audit_checkpoints: Histogram::new(&LATENCY_BUCKETS),
        }
    }

    /// A request on `route` was decided (`allow`, `deny`, `hold`, a failure
    /// code) and answered with `status`.
    pub fn request(&self, route: &str, decision: &'static str, status: u16) {
        let mut requests = locked(&self.requests);
        let per_route = match requests.get_mut(route) {
            Some(per_route) => per_route,
            None => requests.entry(route.to_owned()).or_default(),
        };
        *per_route.entry((decision, status)).or_default() += 1;
    }

    /// `policy` took `elapsed` to judge an action.
    pub fn policy_evaluation(&self, policy: &str, elapsed: Duration) {
        histogram(&self.policy_evaluations, policy, &LATENCY_BUCKETS).observe(elapsed);
    }

    /// A held action waited `elapsed` until its approval ended as `outcome`.
    pub fn approval_wait(&self, outcome: &str, elapsed: Duration) {
        histogram(&self.approval_waits, outcome, &WAIT_BUCKETS).observe(elapsed);
    }

    /// One audit commit (a batch) took `elapsed`.
    pub fn audit_commit(&self, elapsed: Duration) {
        self.audit_commits.observe(elapsed);
    }

    /// One checkpoint of the store (redb made durable, the journal
    /// emptied) took `elapsed`; the commit that ran it waited for it.
    pub fn audit_checkpoint(&self, elapsed: Duration) {
        self.audit_checkpoints.observe(elapsed);
    }

    /// The text exposition of everything recorded, plus the live `gauges`
    /// (already formatted, with their HELP and TYPE lines).
    pub fn render(&self, gauges: &str) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP airlock_requests_total Requests decided, by route, decision and status.\n",
        );
        out.push_str("# TYPE airlock_requests_total counter\n");
        let requests = locked(&self.requests);
        let mut routes: Vec<&String> = requests.keys().collect();
        routes.sort();
        for route in routes {
            for ((decision, status), count) in &requests[route] {
                let _ = writeln!(
                    out,
                    "airlock_requests_total{{route=\"{}\",decision=\"{}\",status=\"{status}\"}} {count}",
                    escape(route),
                    escape(decision)
                );
            }
        }
        drop(requests);
        out.push_str(
            "# HELP airlock_policy_evaluation_seconds Time a policy took to judge an action.\n",
        );
        out.push_str("# TYPE airlock_policy_evaluation_seconds histogram\n");
        for (policy, histogram) in locked(&self.policy_evaluations).iter() {
            histogram.write(
                &mut out,
                "airlock_policy_evaluation_seconds",
                &format!("policy=\"{}\"", escape(policy)),
            );
        }
        out.push_str(
            "# HELP airlock_approval_wait_seconds Time from hold to the approval's outcome.\n",
        );
        out.push_str("# TYPE airlock_approval_wait_seconds histogram\n");
        for (outcome, histogram) in locked(&self.approval_waits).iter() {
            histogram.write(
                &mut out,
                "airlock_approval_wait_seconds",
                &format!("outcome=\"{}\"", escape(outcome)),
            );
        }
        out.push_str(
            "# HELP airlock_audit_commit_seconds Time of one audit commit (a batch of entries).\n",
        );
        out.push_str("# TYPE airlock_audit_commit_seconds histogram\n");
        self.audit_commits
            .write(&mut out, "airlock_audit_commit_seconds", "");
        out.push_str(
            "# HELP airlock_audit_checkpoint_seconds Time of one store checkpoint (the commit that runs it waits).\n",
        );
        out.push_str("# TYPE airlock_audit_checkpoint_seconds histogram\n");
        self.audit_checkpoints
            .write(&mut out, "airlock_audit_checkpoint_seconds", "");
        out.push_str(gauges);
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::new();
        metrics.request("a\"b", "allow", 200);
        metrics.request("a\"b", "allow", 200);
        metrics.audit_commit(Duration::from_micros(80));
        metrics.audit_commit(Duration::from_millis(3));
        metrics.audit_commit(Duration::from_secs(9));
        let text = metrics.render("");
        assert!(
            text.contains(
                "airlock_requests_total{route=\"a\\\"b\",decision=\"allow\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("airlock_audit_commit_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("airlock_audit_commit_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("airlock_audit_commit_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("airlock_audit_commit_seconds_count 3\n"),
            "{text}"
        );
    }
}
