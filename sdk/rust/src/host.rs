//! What Airlock offers a policy: log, clock, local time, live pool figures
//! and the judged request's headers.
//!
//! In a component these call the host. Natively (unit tests) they are served
//! by the [`TestHost`](crate::testing::TestHost) installed on the current thread.

use crate::{Header, Level, LocalTime, PoolFigures};

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

/// The first value of the judged request's header `name` (any case), if
/// present; `None` when the action is not a request.
pub fn header(name: &str) -> Option<String> {
    imports::request_header(name)
}

/// Every header of the judged request, in order, names in lower case.
pub fn headers() -> Vec<Header> {
    imports::request_headers()
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
