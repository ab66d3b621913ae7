//! Active health checks: one task per pool probes each backend with `GET path`
//! every `interval`, through the pool's own client (so TLS and HTTP/2 settings
//! are the ones real requests use). `unhealthy_threshold` failures in a row take
//! a backend out; `healthy_threshold` successes bring it back. The same task
//! decays the pool's figures so they describe the recent past.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use http_body_util::BodyExt;

use super::Pool;
use crate::config::HealthCheck;
use crate::upstream::body;
use crate::upstream::Reply;

/// How often windowed figures are halved when a pool has no health check.
const DECAY_INTERVAL: Duration = Duration::from_secs(5);

/// Runs forever; the caller aborts the task at shutdown.
pub async fn run(pool: Arc<Pool>, check: Option<HealthCheck>) {
    let Some(check) = check else {
        let mut ticker = tokio::time::interval(DECAY_INTERVAL);
        loop {
            ticker.tick().await;
            decay(&pool);
        }
    };
    let mut streaks = vec![Streak::default(); pool.backends.len()];
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_decay = Duration::ZERO;
    loop {
        ticker.tick().await;
        let probes = pool
            .backends
            .iter()
            .enumerate()
            .map(|(i, _)| probe(&pool, i, &check));
        let results = futures_util::future::join_all(probes).await;
        for ((i, ok), streak) in results.into_iter().enumerate().zip(&mut streaks) {
            let backend = &pool.backends[i];
            if let Some(now_healthy) = streak.update(ok, backend.is_healthy(), &check) {
                backend.set_healthy(now_healthy);
                if now_healthy {
                    tracing::info!(pool = %pool.name, backend = %backend.authority, "backend passed its health checks: back in rotation");
                } else {
                    tracing::warn!(pool = %pool.name, backend = %backend.authority, path = %check.path, "backend failed its health checks: out of rotation");
                }
            }
        }
        since_decay += check.interval;
        if since_decay >= DECAY_INTERVAL {
            since_decay = Duration::ZERO;
            decay(&pool);
        }
    }
}

fn decay(pool: &Pool) {
    for b in &pool.backends {
        b.figures.decay();
    }
}

/// One probe; true when the backend answered 2xx or 3xx in time.
async fn probe(pool: &Pool, index: usize, check: &HealthCheck) -> bool {
    let backend = &pool.backends[index];
    let Ok(request) = Request::builder()
        .method(Method::GET)
        .uri(check.path.as_str())
        .header(http::header::USER_AGENT, "airlock-health-check")
        .body(())
    else {
        return false;
    };
    let (head, ()) = request.into_parts();
    match tokio::time::timeout(
        check.timeout,
        pool.client
            .send(index, &backend.authority, &head, body::empty()),
    )
    .await
    {
        Ok(Ok(Reply::Response(response))) => {
            let status = response.status();
            // Read the (small) answer so the connection can be reused.
            let _ = tokio::time::timeout(check.timeout, response.into_body().collect()).await;
            status.is_success() || status.is_redirection()
        }
        _ => false,
    }
}

/// Consecutive results of one backend's probes.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Counts a probe; returns the new health when it flips.
    fn update(&mut self, ok: bool, healthy: bool, check: &HealthCheck) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (!healthy && self.successes >= check.healthy_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (healthy && self.failures >= check.unhealthy_threshold).then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_health_only_after_a_streak() {
        let check = HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        };
        let mut s = Streak::default();
        assert_eq!(s.update(false, true, &check), None);
        assert_eq!(s.update(false, true, &check), None);
        assert_eq!(s.update(true, true, &check), None);
        assert_eq!(s.update(false, true, &check), None);
        assert_eq!(s.update(false, true, &check), None);
        assert_eq!(s.update(false, true, &check), Some(false));
        assert_eq!(s.update(true, false, &check), None);
        assert_eq!(s.update(true, false, &check), Some(true));
    }
}
