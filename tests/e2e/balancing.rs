//! Load balancing over real backends: spread, weights, hashing, health, ejection, retry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use serde_json::Value;

use crate::harness::*;

/// Generous bound for anything `eventually` waits for; the intervals below are
/// a few hundred milliseconds at most.
const PATIENCE: Duration = Duration::from_secs(5);

/// `GET path` `n` times in sequence; how many answers each backend gave.
async fn spread(
    airlock: &Airlock,
    client: &Client,
    path: &str,
    n: usize,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = client.get(&airlock.url(path)).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        *counts.entry(reply.backend()).or_default() += 1;
    }
    counts
}

/// A GET carrying one extra header.
async fn get_with(client: &Client, url: &str, name: &str, value: &str) -> Reply {
    let request = Request::get(url)
        .header(name, value)
        .body(full(""))
        .unwrap();
    client.send(request).await
}

/// The `/v1/pools` entry of one backend of pool `web`.
async fn backend_figures(airlock: &Airlock, upstream: &Upstream) -> Value {
    let (status, body) = airlock.admin_json("/v1/pools").await;
    assert_eq!(status, 200);
    let pool = body["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pool"] == "web")
        .unwrap_or_else(|| panic!("no pool `web` in {body}"))
        .clone();
    let address = upstream.addr.to_string();
    pool["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address.as_str())
        .unwrap_or_else(|| panic!("no backend {address} in {pool}"))
        .clone()
}

/// Whether `/v1/pools` shows the backend as able to receive requests.
async fn in_rotation(airlock: &Airlock, upstream: &Upstream) -> bool {
    let b = backend_figures(airlock, upstream).await;
    b["healthy"] == true && b["ejected"] == false
}

/// A pool `web` written by hand, for per-backend weights.
fn weighted_config(backends: &[(&Upstream, u32)], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(u, w)| format!("{{ address = \"{}\", weight = {w} }}", u.addr))
        .collect();
    format!(
        "{PUBLIC_LISTENER}\n[[pool]]\nname = \"web\"\nbackends = [{}]\n{extra}\n\n[[route]]\npool = \"web\"\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_spreads_requests_evenly_and_in_turn() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let airlock = Airlock::start(&simple_config(&[&a, &b, &c], ""));
    let client = Client::http1();
    let mut order = Vec::new();
    for _ in 0..300 {
        let reply = client.get(&airlock.url("/rr")).await;
        assert_eq!(reply.status, 200);
        order.push(reply.backend());
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &order {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    assert_eq!(counts, HashMap::from([("a", 100), ("b", 100), ("c", 100)]));
    // In turn, not merely even overall: every three consecutive requests
    // reach three different backends.
    for window in order.windows(3) {
        let distinct: HashSet<&String> = window.iter().collect();
        assert_eq!(distinct.len(), 3, "not in turn: {window:?}");
    }

    // Concurrent requests share one cursor: still exactly even.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (client, url) = (client.clone(), airlock.url("/rr"));
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(client.get(&url).await.backend());
            }
            seen
        });
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    while let Some(seen) = tasks.join_next().await {
        for name in seen.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    assert_eq!(
        counts,
        HashMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_round_robin_honours_weights_smoothly() {
    let (heavy, light) = (
        Upstream::start("heavy").await,
        Upstream::start("light").await,
    );
    let airlock = Airlock::start(&weighted_config(
        &[(&heavy, 3), (&light, 1)],
        "balance = \"weighted_round_robin\"",
    ));
    let client = Client::http1();
    let mut order = Vec::new();
    for _ in 0..400 {
        let reply = client.get(&airlock.url("/w")).await;
        assert_eq!(reply.status, 200);
        order.push(reply.backend());
    }
    let heavy_count = order.iter().filter(|n| *n == "heavy").count();
    let light_count = order.iter().filter(|n| *n == "light").count();
    assert_eq!((heavy_count, light_count), (300, 100));
    // Smooth: every cycle of four holds exactly one `light`, and `heavy` never
    // gets more than three in a row.
    for cycle in order.chunks(4) {
        assert_eq!(
            cycle.iter().filter(|n| *n == "light").count(),
            1,
            "cycle {cycle:?}"
        );
    }
    let longest_heavy_run = order
        .split(|n| n == "light")
        .map(<[String]>::len)
        .max()
        .unwrap();
    assert!(longest_heavy_run <= 3, "{longest_heavy_run} heavy in a row");
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_stay_proportional_over_the_backends_left() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let airlock = Airlock::start(&weighted_config(
        &[(&a, 2), (&b, 1), (&c, 1)],
        "balance = \"weighted_round_robin\"\n\
         health_check = { path = \"/healthz\", interval = \"100ms\", \
         healthy_threshold = 1, unhealthy_threshold = 1 }",
    ));
    let client = Client::http1();
    assert_eq!(
        spread(&airlock, &client, "/", 400).await,
        HashMap::from([
            ("a".to_owned(), 200),
            ("b".to_owned(), 100),
            ("c".to_owned(), 100)
        ])
    );
    b.set_healthy(false);
    assert!(eventually(PATIENCE, || async { !in_rotation(&airlock, &b).await }).await);
    // b's turns are shared in proportion, not all handed to its neighbour c.
    assert_eq!(
        spread(&airlock, &client, "/", 300).await,
        HashMap::from([("a".to_owned(), 200), ("c".to_owned(), 100)])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hash_on_a_header_is_sticky_and_only_moves_lost_keys() {
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    let airlock = Airlock::start(&simple_config(
        &[&ups[0], &ups[1], &ups[2]],
        "balance = \"consistent_hash\"\nhash_key = { header = \"x-user\" }\n\
         passive_health = { consecutive_failures = 1, ejection_time = \"60s\" }",
    ));
    let client = Client::http1();
    let url = airlock.url("/profile");
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();

    let mut home: HashMap<&str, String> = HashMap::new();
    for user in &users {
        home.insert(
            user,
            get_with(&client, &url, "x-user", user).await.backend(),
        );
    }
    // Sticky: many more rounds, interleaved, every key stays where it was.
    for _ in 0..5 {
        for user in &users {
            let reply = get_with(&client, &url, "x-user", user).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.backend(), home[user.as_str()], "{user} moved");
        }
    }
    let used: HashSet<&String> = home.values().collect();
    assert!(used.len() > 1, "all 40 keys on one backend: {home:?}");

    // Stop the backend holding the most keys (it holds at least one).
    let victim = ups
        .iter()
        .max_by_key(|u| home.values().filter(|b| **b == u.name).count())
        .unwrap();
    victim.stop();
    // A request already on its way to the victim when it died may fail once
    // (see `backend_killed_mid_load_...`); its failure or a retry ejects it.
    let victim_key = home
        .iter()
        .find(|(_, b)| **b == victim.name)
        .map(|(u, _)| *u)
        .unwrap();
    assert!(
        eventually(PATIENCE, || async {
            get_with(&client, &url, "x-user", victim_key).await.status == 200
        })
        .await
    );
    for round in 0..3 {
        let mut moved_to: HashMap<&str, String> = HashMap::new();
        for user in &users {
            // GETs to the stopped backend are retried: never a failure.
            let reply = get_with(&client, &url, "x-user", user).await;
            assert_eq!(reply.status, 200, "{user}: {}", reply.text());
            let now = reply.backend();
            if home[user.as_str()] == victim.name {
                assert_ne!(now, victim.name);
                moved_to.insert(user, now);
            } else {
                assert_eq!(
                    now,
                    home[user.as_str()],
                    "{user} moved although its backend is up (round {round})"
                );
            }
        }
        assert!(!moved_to.is_empty());
    }
    assert!(!in_rotation(&airlock, victim).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_hash_on_a_cookie_is_sticky() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let airlock = Airlock::start(&simple_config(
        &[&a, &b, &c],
        "balance = \"consistent_hash\"\nhash_key = { cookie = \"session\" }",
    ));
    let client = Client::http1();
    let url = airlock.url("/cart");
    let mut home: HashMap<String, String> = HashMap::new();
    for i in 0..40 {
        let session = format!("s{i}");
        let cookie = format!("theme=dark; session={session}; lang=en");
        home.insert(
            session,
            get_with(&client, &url, "cookie", &cookie).await.backend(),
        );
    }
    let used: HashSet<&String> = home.values().collect();
    assert!(used.len() > 1, "all 40 sessions on one backend: {home:?}");
    for round in 0..5 {
        for (session, backend) in &home {
            // Other cookies, their order and spacing do not matter; only the
            // session cookie's value does.
            let cookie = format!("session={session};theme=light{round}");
            let reply = get_with(&client, &url, "cookie", &cookie).await;
            assert_eq!(reply.status, 200);
            assert_eq!(&reply.backend(), backend, "session {session} moved");
        }
    }
}

/// Runs GETs on several connections until stopped; remembers who served and
/// every failure a client saw.
struct Load {
    running: Arc<AtomicBool>,
    completed: Arc<AtomicUsize>,
    served: Arc<Mutex<HashMap<String, usize>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: tokio::task::JoinSet<()>,
}

impl Load {
    fn start(url: String, workers: usize) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let completed = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (url, running, completed, served, failures) = (
                url.clone(),
                running.clone(),
                completed.clone(),
                served.clone(),
                failures.clone(),
            );
            tasks.spawn(async move {
                let client = Client::http1();
                while running.load(Ordering::SeqCst) {
                    let request = Request::get(&url).body(full("")).unwrap();
                    match client.try_send(request).await {
                        Ok(reply) if reply.status == 200 => {
                            *served.lock().unwrap().entry(reply.backend()).or_default() += 1;
                        }
                        Ok(reply) => failures.lock().unwrap().push(format!(
                            "{}: {}",
                            reply.status,
                            reply.text()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                    }
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        Load {
            running,
            completed,
            served,
            failures,
            tasks,
        }
    }

    fn served_by(&self, name: &str) -> usize {
        self.served.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }

    async fn stop(mut self) -> Vec<String> {
        self.running.store(false, Ordering::SeqCst);
        while let Some(r) = self.tasks.join_next().await {
            r.unwrap();
        }
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

/// Health settings that notice a stopped backend, and readmit it, within a
/// few hundred milliseconds.
const FAST_HEALTH: &str = "passive_health = { consecutive_failures = 1, ejection_time = \"300ms\" }
health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"500ms\", healthy_threshold = 2, unhealthy_threshold = 2 }";

#[tokio::test(flavor = "multi_thread")]
async fn stopped_backend_is_taken_out_and_readmitted_after_restart() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let airlock = Airlock::start(&simple_config(&[&a, &b, &c], FAST_HEALTH));
    let client = Client::http1();
    assert_eq!(spread(&airlock, &client, "/", 9).await["b"], 3);

    b.stop();
    assert!(
        eventually(PATIENCE, || async {
            backend_figures(&airlock, &b).await["healthy"] == false
        })
        .await,
        "the health checks never took b out"
    );
    let (_, pools) = airlock.admin_json("/v1/pools").await;
    assert_eq!(
        (&pools["pools"][0]["healthy"], &pools["pools"][0]["total"]),
        (&2.into(), &3.into()),
        "{pools}"
    );
    assert_eq!(
        spread(&airlock, &client, "/", 20).await,
        HashMap::from([("a".to_owned(), 10), ("c".to_owned(), 10)])
    );

    let b = Upstream::start_on("b", b.addr, None).await;
    assert!(
        eventually(PATIENCE, || async { in_rotation(&airlock, &b).await }).await,
        "b was not readmitted: {}",
        backend_figures(&airlock, &b).await
    );
    assert_eq!(spread(&airlock, &client, "/", 9).await["b"], 3);
}

/// GETs in flight on pooled connections to the backend when it dies fail with
/// `SendRequest`, not a connect error: they must be retried on another backend
/// too (this failed about one run in three while only connect errors were).
#[tokio::test(flavor = "multi_thread")]
async fn backend_killed_mid_load_is_invisible_to_gets_and_readmitted_after_restart() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let airlock = Airlock::start(&simple_config(&[&a, &b, &c], FAST_HEALTH));
    let load = Load::start(airlock.url("/work"), 4);
    assert!(
        eventually(PATIENCE, || async { load.served_by("b") >= 20 }).await,
        "b never served"
    );

    b.stop();
    let killed_at = load.completed();
    assert!(
        eventually(PATIENCE, || async {
            let f = backend_figures(&airlock, &b).await;
            f["healthy"] == false
        })
        .await,
        "the health checks never took b out: {}",
        backend_figures(&airlock, &b).await
    );
    let (_, pools) = airlock.admin_json("/v1/pools").await;
    assert_eq!(pools["pools"][0]["healthy"], 2, "{pools}");
    // The load goes on while b is down.
    assert!(eventually(PATIENCE, || async { load.completed() >= killed_at + 200 }).await);
    let served_while_down = load.served_by("b");

    let b = Upstream::start_on("b", b.addr, None).await;
    assert!(
        eventually(PATIENCE, || async { in_rotation(&airlock, &b).await }).await,
        "b was not readmitted: {}",
        backend_figures(&airlock, &b).await
    );
    assert!(
        eventually(PATIENCE, || async {
            load.served_by("b") >= served_while_down + 20
        })
        .await,
        "b gets no traffic after its restart"
    );
    let failures = load.stop().await;
    assert!(
        failures.is_empty(),
        "{} GETs failed, first: {:?}",
        failures.len(),
        failures.first()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn active_health_checks_take_a_backend_out_and_bring_it_back() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let interval = Duration::from_millis(150);
    let airlock = Airlock::start(&simple_config(
        &[&a, &b],
        "passive_health = { consecutive_failures = 0 }\n\
         health_check = { path = \"/healthz\", interval = \"150ms\", timeout = \"500ms\", \
         healthy_threshold = 2, unhealthy_threshold = 3 }",
    ));
    let client = Client::http1();
    assert_eq!(spread(&airlock, &client, "/", 10).await["b"], 5);

    b.set_healthy(false);
    let failing_since = Instant::now();
    assert!(
        eventually(PATIENCE, || async { !in_rotation(&airlock, &b).await }).await,
        "b was never taken out"
    );
    // Three failed probes in a row: at least two intervals after the first.
    let took = failing_since.elapsed();
    assert!(took >= interval * 2 - Duration::from_millis(20), "{took:?}");
    let f = backend_figures(&airlock, &b).await;
    assert_eq!(
        (f["healthy"].clone(), f["ejected"].clone()),
        (false.into(), false.into())
    );
    // b still answers ordinary requests; only its health endpoint fails.
    let direct = client.get(&format!("http://{}/direct", b.addr)).await;
    assert_eq!((direct.status, direct.backend()), (200, "b".to_owned()));
    assert_eq!(
        spread(&airlock, &client, "/", 20).await,
        HashMap::from([("a".to_owned(), 20)])
    );

    b.set_healthy(true);
    let passing_since = Instant::now();
    assert!(
        eventually(PATIENCE, || async { in_rotation(&airlock, &b).await }).await,
        "b never came back"
    );
    let took = passing_since.elapsed();
    assert!(took >= interval - Duration::from_millis(20), "{took:?}");
    let counts = spread(&airlock, &client, "/", 10).await;
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn passive_ejection_on_5xx_sends_everything_to_the_other_backend() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let airlock = Airlock::start(&simple_config(
        &[&a, &b],
        "passive_health = { consecutive_failures = 3, ejection_time = \"1s\" }",
    ));
    let client = Client::http1();
    b.force_status(502);
    // Round robin alternates; b's 502s reach the client (an answer is not
    // retried) until the third in a row ejects it. a's successes in between
    // do not reset b's count.
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let reply = client.get(&airlock.url("/x")).await;
        statuses.push((reply.status, reply.backend()));
    }
    let failed: Vec<&(u16, String)> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert_eq!(failed.len(), 3, "{statuses:?}");
    assert!(failed.iter().all(|(s, n)| *s == 502 && n == "b"));
    assert!(
        statuses[6..].iter().all(|(s, n)| *s == 200 && n == "a"),
        "{statuses:?}"
    );
    let f = backend_figures(&airlock, &b).await;
    assert_eq!(f["ejected"], true, "{f}");
    assert_eq!(f["healthy"], true, "{f}");
    assert!(f["error_rate"].as_f64().unwrap() > 0.9, "{f}");
    let fa = backend_figures(&airlock, &a).await;
    assert_eq!(fa["error_rate"].as_f64(), Some(0.0), "{fa}");

    // Once the ejection time has passed, a recovered b is back in turn.
    b.force_status(0);
    assert!(eventually(PATIENCE, || async { in_rotation(&airlock, &b).await }).await);
    let counts = spread(&airlock, &client, "/x", 10).await;
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");
}

fn assert_error_names_pool(reply: &Reply, statuses: &[u16]) {
    assert!(
        statuses.contains(&reply.status),
        "{}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    let body = reply.json();
    assert_eq!(body["pool"], "web", "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_to_a_dead_backend_is_not_retried() {
    let (dead, alive) = (
        Upstream::start("dead").await,
        Upstream::start("alive").await,
    );
    dead.stop();
    // Ejection off: the dead backend stays in turn.
    let airlock = Airlock::start(&simple_config(
        &[&dead, &alive],
        "passive_health = { consecutive_failures = 0 }",
    ));
    let client = Client::http1();
    let post = |body: &'static str| {
        Request::post(airlock.url("/orders"))
            .header("content-type", "text/plain")
            .body(full(body))
            .unwrap()
    };
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for _ in 0..6 {
        let reply = client.send(post("order")).await;
        *by_status.entry(reply.status).or_default() += 1;
        if reply.status == 200 {
            assert_eq!(reply.backend(), "alive");
            assert_eq!(reply.json()["body_len"], 5);
        } else {
            assert_error_names_pool(&reply, &[502]);
            assert_eq!(reply.json()["error"], "upstream_unavailable");
            // No internals: the backend's address stays in the log.
            assert!(!reply.text().contains(&dead.addr.to_string()));
        }
    }
    assert_eq!(by_status, HashMap::from([(200, 3), (502, 3)]));

    // A POST without a body is not idempotent either.
    let mut bodiless = HashMap::<u16, usize>::new();
    for _ in 0..4 {
        *bodiless
            .entry(client.send(post("")).await.status)
            .or_default() += 1;
    }
    assert_eq!(bodiless, HashMap::from([(200, 2), (502, 2)]));

    // The same GETs are retried on the other backend: none fail.
    assert_eq!(
        spread(&airlock, &client, "/orders", 6).await,
        HashMap::from([("alive".to_owned(), 6)])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_backend_down_answers_a_json_error_naming_the_pool() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let airlock = Airlock::start(&simple_config(
        &[&a, &b],
        "passive_health = { consecutive_failures = 1, ejection_time = \"60s\" }",
    ));
    let client = Client::http1();
    assert_eq!(spread(&airlock, &client, "/", 2).await.len(), 2);
    a.stop();
    b.stop();
    // GETs fail with 502 while they still try the dead backends (each failure
    // ejects one), then with 503 once both are out.
    let mut statuses = Vec::new();
    while statuses.last() != Some(&503) {
        assert!(statuses.len() < 3, "still no 503: {statuses:?}");
        let reply = client.get(&airlock.url("/")).await;
        assert_error_names_pool(&reply, &[502, 503]);
        statuses.push(reply.status);
    }
    assert!(statuses.len() <= 3, "{statuses:?}");
    for _ in 0..3 {
        let reply = client.get(&airlock.url("/")).await;
        assert_error_names_pool(&reply, &[503]);
        assert_eq!(reply.json()["error"], "no_healthy_backend");
        let post = Request::post(airlock.url("/")).body(full("x")).unwrap();
        assert_error_names_pool(&client.send(post).await, &[503]);
    }
    let (_, pools) = airlock.admin_json("/v1/pools").await;
    assert_eq!(pools["pools"][0]["healthy"], 0, "{pools}");
}

#[tokio::test(flavor = "multi_thread")]
async fn least_in_flight_sends_new_requests_to_idle_backends() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let ups = [&a, &b, &c];
    let airlock = Airlock::start(&simple_config(&ups, "balance = \"least_in_flight\""));
    let client = Client::http1();
    let pool_in_flight = || async {
        let (_, pools) = airlock.admin_json("/v1/pools").await;
        pools["pools"][0]["in_flight"].as_u64().unwrap()
    };

    // Two slow requests, started one after the other: the second must not
    // join the first on its busy backend.
    let mut slow = Vec::new();
    for expected in 1..=2 {
        let (client, url) = (client.clone(), airlock.url("/slow/1500"));
        slow.push(tokio::spawn(async move { client.get(&url).await }));
        assert!(
            eventually(PATIENCE, || async { pool_in_flight().await == expected }).await,
            "slow request {expected} not in flight"
        );
    }
    let mut busy = HashSet::new();
    for u in ups {
        if backend_figures(&airlock, u).await["in_flight"] == 1 {
            busy.insert(u.name.clone());
        }
    }
    assert_eq!(busy.len(), 2, "the slow requests share a backend");
    let idle = ups.iter().find(|u| !busy.contains(&u.name)).unwrap();

    // While they run, every quick request goes to the idle backend.
    let started = Instant::now();
    let counts = spread(&airlock, &client, "/quick", 20).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "too slow to tell"
    );
    assert_eq!(counts, HashMap::from([(idle.name.clone(), 20)]));

    let mut served = HashSet::new();
    for task in slow {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200);
        served.insert(reply.backend());
    }
    assert_eq!(served, busy);
    assert!(eventually(PATIENCE, || async { pool_in_flight().await == 0 }).await);
}

/// A backend that restarts closes every pooled connection Airlock holds to it;
/// a POST (which is never retried) must not be sent down one of them.
#[tokio::test(flavor = "multi_thread")]
async fn connections_the_backend_closed_are_not_reused() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&simple_config(&[&up], ""));
    let client = Client::http1();
    for _ in 0..5 {
        assert_eq!(client.get(&airlock.url("/warm")).await.status, 200);
    }
    let addr = up.addr;
    up.stop();
    drop(up);
    let up = Upstream::start_on("a", addr, None).await;
    for i in 0..5 {
        let post = Request::post(airlock.url("/write"))
            .body(full(format!("#{i}")))
            .unwrap();
        let reply = client.send(post).await;
        assert_eq!(reply.status, 200, "POST #{i}: {}", reply.text());
        assert_eq!(reply.backend(), up.name);
    }
}

/// A client that sends more than the limit fails its own request (413); that
/// must not count against the backend that was reading the body.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_client_bodies_do_not_eject_backends() {
    let up = Upstream::start("a").await;
    let airlock = Airlock::start(&format!(
        "[limits]\nmax_body_bytes = \"16KiB\"\n\n{}",
        simple_config(
            &[&up],
            "passive_health = { consecutive_failures = 2, ejection_time = \"60s\" }"
        )
    ));
    let client = Client::http1();
    for _ in 0..4 {
        // Chunked, so the limit trips while the body streams to the backend.
        let chunks = futures_util::stream::iter((0..8).map(|_| {
            Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
                7u8;
                4096
            ])))
        }));
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(chunks));
        let reply = client
            .send(Request::post(airlock.url("/collect")).body(body).unwrap())
            .await;
        assert_eq!(reply.status, 413);
    }
    let (_, pools) = airlock.admin_json("/v1/pools").await;
    let backend = &pools["pools"][0]["backends"][0];
    assert_eq!(backend["ejected"], false, "{pools}");
    assert_eq!(client.get(&airlock.url("/after")).await.status, 200);
}

/// A backend that closes a kept-alive connection right after reading the next
/// request (as one whose idle timeout fires just then would): on a pool with a
/// single backend, a GET is sent again on a fresh connection; a POST, which
/// must not be sent twice, gets a 502.
#[tokio::test(flavor = "multi_thread")]
async fn a_get_survives_a_kept_alive_connection_closing_under_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = backend.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                // Answer the first request on each connection, then read the
                // second one and hang up without answering.
                let mut buf = vec![0u8; 8192];
                for answered in [true, false] {
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    if !answered {
                        return;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let config = format!(
        "{PUBLIC_LISTENER}\n[[pool]]\nname = \"single\"\nbackends = [{{ address = \"{addr}\" }}]\npassive_health = {{ consecutive_failures = 0 }}\n\n[[route]]\npool = \"single\"\n"
    );
    let airlock = Airlock::start(&config);
    let client = Client::http1();
    for i in 0..4 {
        let reply = client.get(&airlock.url("/read")).await;
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "ok"),
            "GET #{i}"
        );
    }
    // Leave one kept-alive connection behind, then POST on it.
    assert_eq!(client.get(&airlock.url("/read")).await.status, 200);
    let post = client
        .send(
            Request::post(airlock.url("/write"))
                .body(full("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, 502, "{}", post.text());
}
