//! Unit-test a policy natively, with plain `cargo test`.
//!
//! Set a policy up from JSON parameters with [`crate::set_up`], install a
//! [`TestHost`] with [`TestHost::run`], then call the policy's `evaluate`
//! directly; the host functions answer from the test host:
//!
//! ```
//! use airlock_sdk::{host, testing::TestHost};
//!
//! let seen = TestHost::new()
//!     .now("2026-11-23T10:00:00Z")
//!     .header("X-Team", "payments")
//!     .run(|| (host::local_now("Europe/Berlin").map(|time| time.hour), host::header("x-team")));
//! assert_eq!(seen, (Some(11), Some("payments".to_owned())));
//! ```
//!
//! Build actions with [`request`] and adjust the fields you care about.
//! The end-to-end check of a built component is `airlock policy test`.

use std::cell::RefCell;

use crate::{
    Action, Authentication, Header, Level, LocalTime, PoolFigures, Principal, Request, Subject,
};

/// What the host functions answer during a native test.
#[derive(Debug, Clone)]
pub struct TestHost {
    now_unix_ms: i64,
    headers: Vec<Header>,
    pools: Vec<PoolFigures>,
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHost {
    /// A host at the Unix epoch with no request headers and no pools.
    pub fn new() -> Self {
        TestHost {
            now_unix_ms: 0,
            headers: Vec::new(),
            pools: Vec::new(),
        }
    }

    /// Fix the clock at an RFC 3339 time, e.g. `2026-11-23T10:00:00Z`.
    ///
    /// # Panics
    /// On a malformed time: this is test setup.
    pub fn now(mut self, rfc3339: &str) -> Self {
        let timestamp: jiff::Timestamp = rfc3339.parse().expect("an RFC 3339 time");
        self.now_unix_ms = timestamp.as_millisecond();
        self
    }

    /// Add a header of the judged request (the name is lower-cased, as
    /// Airlock passes names).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_owned(),
        });
        self
    }

    /// Add a pool that [`crate::host::pool_figures`] knows.
    pub fn pool(mut self, figures: PoolFigures) -> Self {
        self.pools.push(figures);
        self
    }

    /// Run `test` with this host serving the host functions on this thread.
    pub fn run<R>(self, test: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|current| current.replace(Some(self)));
        let result = test();
        CURRENT.with(|current| current.replace(previous));
        result
    }
}

thread_local! {
    static CURRENT: RefCell<Option<TestHost>> = const { RefCell::new(None) };
}

/// A GET request for `path` on host `example.com` by an anonymous client,
/// routed to route `default` and pool `app`.
pub fn request(method: &str, path: &str) -> Action {
    Action {
        subject: Subject::Request(Request {
            method: method.to_owned(),
            scheme: "http".to_owned(),
            host: "example.com".to_owned(),
            path: path.to_owned(),
            query: None,
            client_address: "127.0.0.1".to_owned(),
            route: "default".to_owned(),
            pool: "app".to_owned(),
            body_size: None,
            content_type: None,
        }),
        principal: Principal {
            id: "anonymous".to_owned(),
            groups: Vec::new(),
            authenticated_by: Authentication::None,
        },
    }
}

/// Figures of a healthy pool of `total` backends with no traffic.
pub fn healthy_pool(pool: &str, total: u32) -> PoolFigures {
    PoolFigures {
        pool: pool.to_owned(),
        healthy_backends: total,
        total_backends: total,
        in_flight: 0,
        error_rate: 0.0,
        latency_p99_ms: None,
    }
}

/// The host functions as the native build sees them.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use super::*;

    fn with_host<R>(answer: impl FnOnce(&TestHost) -> R) -> R {
        CURRENT.with(|current| {
            let current = current.borrow();
            let host = current.as_ref().expect(
                "a host function was called outside TestHost::run: wrap the test in TestHost::new().run(|| ...)",
            );
            answer(host)
        })
    }

    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("policy log {level:?}: {message}");
    }

    pub(crate) fn now_unix_ms() -> i64 {
        with_host(|host| host.now_unix_ms)
    }

    pub(crate) fn request_header(name: &str) -> Option<String> {
        with_host(|host| {
            host.headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| header.value.clone())
        })
    }

    pub(crate) fn request_headers() -> Vec<Header> {
        with_host(|host| host.headers.clone())
    }

    pub(crate) fn live_figures(pool: &str) -> Option<PoolFigures> {
        with_host(|host| {
            host.pools
                .iter()
                .find(|figures| figures.pool == pool)
                .cloned()
        })
    }

    /// Same conversion and tz database (jiff's bundled IANA data) as Airlock.
    pub(crate) fn to_local_time(zone: &str, unix_ms: i64) -> Option<LocalTime> {
        let zone = jiff::tz::db().get(zone).ok()?;
        let timestamp = jiff::Timestamp::from_millisecond(unix_ms).ok()?;
        let zoned = timestamp.to_zoned(zone.clone());
        let info = zone.to_offset_info(timestamp);
        Some(LocalTime {
            year: i32::from(zoned.year()),
            month: zoned.month().unsigned_abs(),
            day: zoned.day().unsigned_abs(),
            hour: zoned.hour().unsigned_abs(),
            minute: zoned.minute().unsigned_abs(),
            second: zoned.second().unsigned_abs(),
            weekday: zoned.weekday().to_monday_one_offset().unsigned_abs(),
            utc_offset_seconds: info.offset().seconds(),
            abbreviation: info.abbreviation().to_owned(),
        })
    }
}
