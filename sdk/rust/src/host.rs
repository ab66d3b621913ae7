//! What Airlock offers a policy: log, clock, local time, parameters and live
//! pool figures.
//!
//! In a component these call the host. Natively (unit tests) they are served
//! by the [`TestHost`](crate::testing::TestHost) installed on the current thread.

use serde::de::DeserializeOwned;

use crate::{Level, LocalTime, PoolFigures};

#[cfg(target_arch = "wasm32")]
use crate::wit::airlock::policy::host as imports;

#[cfg(not(target_arch = "wasm32"))]
use crate::testing::native as imports;

/// Write `message` to Airlock's log, tagged with the policy's name.
pub fn log(level: Level, message: &str) {
    imports::log(level, message);
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    imports::now_unix_ms()
}

/// The time `unix_ms` in the IANA zone `zone`, or `None` for an unknown zone.
pub fn local_time(zone: &str, unix_ms: i64) -> Option<LocalTime> {
    imports::to_local_time(zone, unix_ms)
}

/// The current time in the IANA zone `zone`, or `None` for an unknown zone.
pub fn local_now(zone: &str) -> Option<LocalTime> {
    local_time(zone, now_unix_ms())
}

/// Live figures of `pool`, or `None` if there is no such pool.
pub fn pool_figures(pool: &str) -> Option<PoolFigures> {
    imports::live_figures(pool)
}

/// The policy's parameters (the TOML file beside the .wasm, with the route's
/// overrides applied) as raw JSON.
pub fn parameters_json() -> String {
    imports::parameters()
}

/// The policy's parameters, deserialized into `P`.
///
/// # Errors
/// A message naming the field when the parameters do not fit `P`; a policy
/// usually answers it with a deny, so a misconfiguration fails closed.
pub fn parameters<P: DeserializeOwned>() -> Result<P, String> {
    serde_json::from_str(&parameters_json()).map_err(|error| format!("bad parameters: {error}"))
}

/// Forward panic messages to Airlock's log: a panicking policy traps, and
/// without this its message would be lost.
#[doc(hidden)]
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                log(Level::Error, &format!("panic: {info}"));
            }));
        });
    }
}
