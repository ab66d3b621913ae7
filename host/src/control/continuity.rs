//! The continuity check: for `[control] watch_window` after a change is
//! applied, the pools it affects are looked at every [`CHECK_INTERVAL`]. If
//! one's error rate passes `rollback_error_rate` (over at least
//! [`MIN_REQUESTS`] recent requests, so that one early failure is not a
//! trend), its p99 latency passes `rollback_p99`, or none of its backends
//! is available any more (ejected or failing health checks), the change is rolled
//! back by itself and the rollback recorded with the figures that caused it.

use std::sync::Arc;
use std::time::Duration;

use super::{AppliedChange, ControlPlane};
use crate::balance::figures::PoolFigures;
use crate::config::ControlConfig;

/// How often the affected pools are looked at.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Recent requests a pool needs before its error rate counts.
pub const MIN_REQUESTS: u64 = 10;

/// Why `figures` break `limits`, if they do.
pub fn breach(figures: &PoolFigures, limits: &ControlConfig) -> Option<String> {
    if figures.total > 0 && figures.healthy == 0 {
        // Passive ejection or health checks took every backend out: the
        // pool's share of requests now fails without reaching it.
        return Some(format!(
            "pool `{}`: no backend available (error rate {:.2} before they were taken out)",
            figures.pool, figures.error_rate
        ));
    }
    if figures.recent_requests >= MIN_REQUESTS && figures.error_rate > limits.rollback_error_rate {
        return Some(format!(
            "pool `{}`: error rate {:.2} over {} recent requests passed {:.2}",
            figures.pool, figures.error_rate, figures.recent_requests, limits.rollback_error_rate
        ));
    }
    let p99 = figures.latency_p99_ms?;
    let limit = limits.rollback_p99?;
    (p99 > limit.as_secs_f64() * 1000.0).then(|| {
        format!(
            "pool `{}`: p99 latency {p99:.1} ms passed {} ms",
            figures.pool,
            limit.as_millis()
        )
    })
}

/// Watch `applied`'s `pools` for the window (a task).
pub fn watch(
    plane: Arc<ControlPlane>,
    applied: AppliedChange,
    pools: Vec<String>,
    limits: ControlConfig,
) {
    if limits.watch_window.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + limits.watch_window;
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        while tokio::time::Instant::now() < deadline {
            ticks.tick().await;
            let routing = plane.proxy.routing();
            let broken = routing
                .pools
                .iter()
                .filter(|pool| pools.contains(&pool.name))
                .find_map(|pool| breach(&pool.figures(), &limits));
            if let Some(reason) = broken {
                match plane.roll_back(&applied.id, &reason).await {
                    Ok(true) => tracing::warn!(change = %applied.id, "rolled back: {reason}"),
                    // Already gone (reset, or rolled back another way).
                    Ok(false) => {}
                    Err(error) => tracing::error!(
                        change = %applied.id,
                        "{reason}, but the rollback failed, and the change stays: {error}"
                    ),
                }
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(error_rate: f64, requests: u64, p99: Option<f64>) -> PoolFigures {
        PoolFigures {
            pool: "canary".into(),
            healthy: 1,
            total: 1,
            in_flight: 0,
            error_rate,
            recent_requests: requests,
            latency_p99_ms: p99,
            backends: Vec::new(),
        }
    }

    #[test]
    fn a_rollback_needs_enough_requests_or_a_slow_p99() {
        let limits = ControlConfig {
            rollback_error_rate: 0.2,
            rollback_p99: Some(Duration::from_millis(500)),
            ..ControlConfig::default()
        };
        assert_eq!(
            breach(&figures(1.0, 3, None), &limits),
            None,
            "too few requests"
        );
        assert!(breach(&figures(0.5, 40, None), &limits)
            .unwrap()
            .contains("error rate 0.50"));
        assert_eq!(breach(&figures(0.1, 40, Some(499.0)), &limits), None);
        assert!(breach(&figures(0.1, 40, Some(900.0)), &limits)
            .unwrap()
            .contains("p99"));
    }
}
