//! Policy decisions, Airlock against Cedar (`cargo bench -p airlock-policy-bench`).
//!
//! For each bundled policy: one realistic action and the parameters of its
//! case table, judged
//!
//! - `policy/fresh/NAME`: by the component, `LoadedPolicy::evaluate` in the
//!   default mode (a fresh instance per evaluation), deadline at its default;
//! - `policy/reused/NAME`: the same with instance reuse on;
//! - `cedar/NAME`: by the same rules written in Cedar: the policy set parsed
//!   once, then per decision what a host would do from the same `Action`:
//!   build the entities, the context and the request, call
//!   `Authorizer::is_authorized`, and read the answer (status, approvers)
//!   from the deciding policy's annotations.
//!
//! `policy/load/deny-list` is one `PolicyEngine::load` (compile and check,
//! no compile cache).
//!
//! The ports to other languages (`policies/*-go`, `*-py`, `*-js`, built
//! from source here as `airlock policy build` builds them) are judged beside
//! their Rust twins on the same case: `LANG/fresh/NAME`, `LANG/reused/NAME`,
//! and `LANG/load/NAME` (compiling and setting up the component). Each must
//! give exactly the Rust verdict first. Before measuring, every pair is checked to reach the
//! same decision (allow, deny or hold); the run then writes
//! `airlock-policy-bench.json` beside criterion's results for
//! `benches/report.py` (the actions, parameters, Cedar texts and decisions).
//!
//! Modelling choices for Cedar, which has only permit and forbid:
//!
//! - Hold: a second policy set per policy, `needs-approval`, checked only
//!   when the main set allows; a permit there means "hold", and its
//!   annotations name the approvers. This keeps Cedar's own semantics (the
//!   main set alone decides allow or deny, deny wins) and costs a second
//!   `is_authorized` call only for policies that can hold. (A forbid with a
//!   `@hold` annotation would need one call, but would let a hold outvote an
//!   allow-listing permit and mix two meanings in one set.)
//! - Time: Cedar has no time zones, so the host puts the local weekday and
//!   minute of the day, computed with Airlock's own tz database
//!   (`airlock::policy::engine::local_time`, the `to-local-time` import the
//!   components call), into the context as `context.local`; that work is
//!   part of the measured Cedar decision.
//! - Method: Cedar compares strings exactly, so the host upper-cases the
//!   method (the components compare case-insensitively).
//! - Globs: `**` is Cedar's `like "*"`; a single-segment `*` is
//!   `like "/users/*" && !(like "/users/*/*")`.
//! - First matching rule: Cedar's answer is a set of deciding policies; the
//!   host takes the first in source order, as the components do, and reads
//!   its answer from annotations it extracted once at load
//!   (`PolicySet::annotation` re-parses the key on every call).
//! - No schema: requests and entities are built without schema validation
//!   (a host would validate the policies against a schema once, at load).
//! - No extension values: `RestrictedExpression::new_decimal` and `new_ip`
//!   re-parse the extension's name ("decimal", "ip") with Cedar's full
//!   parser, lexer regex included, on every call: about 40% of a decision in
//!   a profile. A host that cares avoids them, so fractions go in as integers
//!   (`error_rate_ppm`, `latency_p99_us`) and the client address as a string
//!   (no bundled rule needs `ip()` ranges).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock::policy::bindings::{
    Action, Authentication, BackendChange, Change, Event, Failover, Header, PoolFigures, Principal,
    Request as HttpRequest, Subject, TrafficShift,
};
use airlock::policy::engine::local_time;
use airlock::policy::{bundled, CallContext, EngineSettings, LoadedPolicy, PolicyEngine, Verdict};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use criterion::{Criterion, SamplingMode};

/// Monday 2026-11-23 10:00 UTC (11:00 in Berlin): inside business hours.
const MONDAY_10_UTC: i64 = 1_795_428_000_000;
/// Friday 2026-11-27 18:30 UTC: inside the Friday-evening change freeze.
const FRIDAY_1830_UTC: i64 = 1_795_804_200_000;

// ------------------------------------------------------------------ cases

/// One policy, its action, and its rules in both languages.
struct Case {
    name: &'static str,
    /// What the action is, for the report.
    summary: &'static str,
    action: Judged,
    /// Parameters of the component (its case table's, made explicit).
    parameters: &'static str,
    /// The clock the decision sees.
    now_unix_ms: i64,
    /// The same rules in Cedar: the main set (permit/forbid) ...
    cedar: &'static str,
    /// ... and the `needs-approval` set, checked when the main set allows.
    cedar_hold: Option<&'static str>,
    /// The zone whose local time goes into `context.local`, if the rules need it.
    zone: Option<&'static str>,
}

/// An action with what the host answers about it: the request's headers
/// (`request-header`) and the figures of the pools it touches
/// (`live-figures`). Cedar gets them all in its request.
#[derive(Clone)]
struct Judged {
    action: Action,
    headers: Vec<Header>,
    figures: Vec<PoolFigures>,
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn alice(groups: &[&str]) -> Principal {
    Principal {
        id: "alice".to_owned(),
        groups: groups.iter().map(|group| (*group).to_owned()).collect(),
        authenticated_by: Authentication::Token,
    }
}

fn figures(pool: &str, healthy: u32, total: u32, in_flight: u32, error_rate: f64) -> PoolFigures {
    PoolFigures {
        pool: pool.to_owned(),
        healthy_backends: healthy,
        total_backends: total,
        in_flight,
        error_rate,
        latency_p99_ms: Some(12.5),
    }
}

/// A client request with the headers a browser or API client sends (eight,
/// the credential already redacted as the host does), from an authenticated
/// principal in three groups, with its pool's figures.
fn request(method: &str, path: &str, query: Option<&str>, body: Option<u64>) -> Judged {
    let mut headers = vec![
        header("host", "shop.example.com"),
        header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        ),
        header("accept", "application/json, text/plain, */*"),
        header("accept-encoding", "gzip, deflate, br, zstd"),
        header("accept-language", "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7"),
        header("authorization", "[redacted]"),
        header("x-request-id", "3f2b8c1e-7a4d-4e9b-9c61-2d5f0a8e4b17"),
    ];
    headers.push(match body {
        Some(_) => header("content-type", "application/json"),
        None => header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    });
    let action = Action {
        subject: Subject::Request(HttpRequest {
            method: method.to_owned(),
            scheme: "https".to_owned(),
            host: "shop.example.com".to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            client_address: "203.0.113.57".to_owned(),
            route: "shop-api".to_owned(),
            pool: "shop".to_owned(),
            body_size: body,
            content_type: body.map(|_| "application/json".to_owned()),
        }),
        principal: alice(&["dev", "payments", "eu-staff"]),
    };
    Judged {
        action,
        headers,
        figures: vec![figures("shop", 4, 4, 17, 0.002)],
    }
}

/// An action that is not a request: no headers.
fn unheaded(action: Action, figures: Vec<PoolFigures>) -> Judged {
    Judged {
        action,
        headers: Vec::new(),
        figures,
    }
}

fn cases() -> Vec<Case> {
    let get = request(
        "GET",
        "/api/v1/orders/8812/items",
        Some("expand=product&page=2"),
        None,
    );
    let post = request("POST", "/api/v1/orders", None, Some(1834));
    let delete = request("DELETE", "/api/v1/orders/8812", None, None);
    let shift = unheaded(
        Action {
            subject: Subject::Change(Change::ShiftTraffic(TrafficShift {
                route: "shop-api".to_owned(),
                from_pool: "shop".to_owned(),
                to_pool: "shop-canary".to_owned(),
                percent: 50,
            })),
            principal: alice(&["ops", "release", "eu-staff"]),
        },
        vec![
            figures("shop", 4, 4, 17, 0.002),
            figures("shop-canary", 2, 2, 5, 0.004),
        ],
    );

    let remove = unheaded(
        Action {
            subject: Subject::Change(Change::RemoveBackend(BackendChange {
                pool: "shop".to_owned(),
                backend: "10.0.3.14:8080".to_owned(),
            })),
            principal: alice(&["ops", "release", "eu-staff"]),
        },
        vec![figures("shop", 4, 4, 17, 0.002)],
    );

    let failover = unheaded(
        Action {
            subject: Subject::Event(Event::Failover(Failover {
                route: "shop-api".to_owned(),
                from_pool: "shop".to_owned(),
                to_pool: "shop-backup".to_owned(),
            })),
            principal: Principal {
                id: "airlock".to_owned(),
                groups: Vec::new(),
                authenticated_by: Authentication::Balancer,
            },
        },
        vec![
            PoolFigures {
                latency_p99_ms: Some(950.0),
                ..figures("shop", 1, 3, 41, 0.6)
            },
            figures("shop-backup", 3, 3, 0, 0.0),
        ],
    );

    vec![
        Case {
            name: "allow-all",
            summary: "GET with query, 8 headers → allow",
            action: get.clone(),
            parameters: "{}",
            now_unix_ms: MONDAY_10_UTC,
            cedar: r#"permit(principal, action, resource);"#,
            cedar_hold: None,
            zone: None,
        },
        Case {
            name: "deny-list",
            summary: "GET with query, 8 headers; no rule matches (all 3 checked) → allow",
            action: get,
            parameters: r#"{"rules": [
                {"methods": ["TRACE", "CONNECT"]},
                {"paths": ["/internal/**"], "hosts": ["*.internal"], "status": 404, "reason": "no such page"},
                {"methods": ["DELETE"], "paths": ["/users/*"]}
            ]}"#,
            now_unix_ms: MONDAY_10_UTC,
            cedar: r#"
                permit(principal, action == Action::"request", resource);

                @status("403")
                forbid(principal, action == Action::"request", resource)
                when { ["TRACE", "CONNECT"].contains(context.method) };

                @status("404") @reason("no such page")
                forbid(principal, action == Action::"request", resource)
                when { context.path like "/internal/*" && context.host like "*.internal" };

                @status("403")
                forbid(principal, action == Action::"request", resource)
                when {
                    context.method == "DELETE" &&
                    context.path like "/users/*" && !(context.path like "/users/*/*")
                };
            "#,
            cedar_hold: None,
            zone: None,
        },
        Case {
            name: "approval-rules",
            summary: "DELETE, 8 headers; the first of 2 rules matches → hold for oncall",
            action: delete,
            parameters: r#"{"rules": [
                {"methods": ["DELETE"], "paths": ["/**"], "approvers": {"groups": ["oncall"], "quorum": 1}},
                {"paths": ["/admin/**"], "approvers": {"groups": ["oncall"], "quorum": 1}}
            ]}"#,
            now_unix_ms: MONDAY_10_UTC,
            cedar: r#"permit(principal, action == Action::"request", resource);"#,
            cedar_hold: Some(
                r#"
                @approvers("oncall") @quorum("1") @timeout_seconds("900")
                permit(principal, action == Action::"request", resource)
                when { context.method == "DELETE" && context.path like "/*" };

                @approvers("oncall") @quorum("1") @timeout_seconds("900")
                permit(principal, action == Action::"request", resource)
                when { context.path like "/admin/*" };
            "#,
            ),
            zone: None,
        },
        Case {
            name: "change-freeze",
            summary: "remove-backend on Friday 18:30 UTC, inside `Fri 16:00-24:00` → hold for release",
            action: remove,
            parameters: r#"{"zone": "UTC", "windows": ["Fri 16:00-24:00", "Sat,Sun 00:00-24:00"],
                "approvers": {"groups": ["release"], "quorum": 1, "timeout_seconds": 1800}}"#,
            now_unix_ms: FRIDAY_1830_UTC,
            cedar: r#"permit(principal, action, resource);"#,
            cedar_hold: Some(
                r#"
                @approvers("release") @quorum("1") @timeout_seconds("1800")
                @reason("changes are frozen during Fri 16:00-24:00 (UTC)")
                permit(
                    principal,
                    action in [Action::"add-backend", Action::"remove-backend", Action::"drain-backend",
                               Action::"set-weights", Action::"shift-traffic"],
                    resource
                )
                when { context.local.weekday == 5 && context.local.minute_of_day >= 960 };

                @approvers("release") @quorum("1") @timeout_seconds("1800")
                @reason("changes are frozen during Sat,Sun 00:00-24:00 (UTC)")
                permit(
                    principal,
                    action in [Action::"add-backend", Action::"remove-backend", Action::"drain-backend",
                               Action::"set-weights", Action::"shift-traffic"],
                    resource
                )
                when { context.local.weekday >= 6 };
            "#,
            ),
            zone: Some("UTC"),
        },
        Case {
            name: "business-hours",
            summary: "POST with body, 8 headers, Monday 11:00 Berlin (inside Mon-Fri 09:00-17:00) → allow",
            action: post,
            parameters: r#"{"zone": "Europe/Berlin", "hours": ["Mon-Fri 09:00-17:00"],
                "approvers": {"groups": ["oncall"], "quorum": 1, "timeout_seconds": 600}}"#,
            now_unix_ms: MONDAY_10_UTC,
            cedar: r#"permit(principal, action == Action::"request", resource);"#,
            cedar_hold: Some(
                r#"
                @approvers("oncall") @quorum("1") @timeout_seconds("600")
                @reason("a write outside business hours (Mon-Fri 09:00-17:00 Europe/Berlin)")
                permit(principal, action == Action::"request", resource)
                when {
                    !(["GET", "HEAD", "OPTIONS", "TRACE"].contains(context.method)) &&
                    !(context.local.weekday <= 5 &&
                      context.local.minute_of_day >= 540 && context.local.minute_of_day < 1020)
                };
            "#,
            ),
            zone: Some("Europe/Berlin"),
        },
        Case {
            name: "canary-guard",
            summary: "shift 50% to a healthy canary (error rate 0.004 < 0.01) → allow",
            action: shift,
            parameters: r#"{"max_percent": 25, "max_error_rate": 0.01,
                "approvers": {"groups": ["release"], "quorum": 1, "timeout_seconds": 600}}"#,
            now_unix_ms: MONDAY_10_UTC,
            // The resource is the target pool, its figures its attributes.
            cedar: r#"permit(principal, action, resource);"#,
            cedar_hold: Some(
                r#"
                @approvers("release") @quorum("1") @timeout_seconds("600")
                @reason("a shift above 25% to a pool that is not healthy")
                permit(principal, action == Action::"shift-traffic", resource)
                when {
                    context.percent > 25 &&
                    (!(resource has healthy_backends) ||
                     resource.healthy_backends == 0 ||
                     resource.error_rate_ppm >= 10000)
                };
            "#,
            ),
            zone: None,
        },
        Case {
            name: "failover-guard",
            summary: "failover while the primary still has 1 of 3 backends healthy → hold for oncall",
            action: failover,
            parameters: r#"{"approvers": {"groups": ["oncall"], "quorum": 1, "timeout_seconds": 120}}"#,
            now_unix_ms: MONDAY_10_UTC,
            // The resource is the primary pool (`from_pool`).
            cedar: r#"permit(principal, action, resource);"#,
            cedar_hold: Some(
                r#"
                @approvers("oncall") @quorum("1") @timeout_seconds("120")
                @reason("the primary pool still has a healthy backend")
                permit(principal, action == Action::"failover", resource)
                when { !(resource has healthy_backends) || resource.healthy_backends > 0 };
            "#,
            ),
            zone: None,
        },
    ]
}

// ------------------------------------------------------------------ Cedar host

/// What a host answers from Cedar's responses.
#[derive(Debug, Clone, PartialEq)]
enum CedarVerdict {
    Allow,
    Deny {
        status: u16,
        reason: String,
    },
    Hold {
        reason: String,
        approver_groups: Vec<String>,
        quorum: u32,
        timeout_ms: u64,
    },
}

impl CedarVerdict {
    fn kind(&self) -> &'static str {
        match self {
            CedarVerdict::Allow => "allow",
            CedarVerdict::Deny { .. } => "deny",
            CedarVerdict::Hold { .. } => "hold",
        }
    }
}

fn verdict_kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Allow(_) => "allow",
        Verdict::Deny(_) => "deny",
        Verdict::Hold(_) => "hold",
    }
}

/// A policy in Cedar as a host keeps it: parsed once, with the type names
/// and action ids it builds requests from.
struct CedarPolicy {
    main: (PolicySet, Vec<Option<Answer>>),
    hold: Option<(PolicySet, Vec<Option<Answer>>)>,
    zone: Option<&'static str>,
    authorizer: Authorizer,
    user: EntityTypeName,
    group: EntityTypeName,
    pool: EntityTypeName,
    actions: HashMap<&'static str, EntityUid>,
}

const ACTION_KINDS: [&str; 11] = [
    "request",
    "add-backend",
    "remove-backend",
    "drain-backend",
    "set-weights",
    "shift-traffic",
    "reset-overlay",
    "reload-config",
    "failover",
    "eject-outlier",
    "spill-surge",
];

/// The resource of an action that names no pool (a reset or reload).
static NO_POOL: String = String::new();

fn type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(name).expect("a valid Cedar type name")
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn long(value: impl Into<i64>) -> RestrictedExpression {
    RestrictedExpression::new_long(value.into())
}

/// `value × scale` as a Cedar long (Cedar has no floats; see the top of the
/// file for why not its `decimal` extension). NaN counts as the worst value.
fn scaled(value: f64, scale: f64) -> RestrictedExpression {
    let scaled = if value.is_nan() {
        i64::MAX
    } else {
        // `as` saturates: a float out of range becomes i64::MIN or i64::MAX.
        (value * scale).round() as i64
    };
    RestrictedExpression::new_long(scaled)
}

impl CedarPolicy {
    fn new(case: &Case) -> CedarPolicy {
        let parse = |text: &str| {
            let set = PolicySet::from_str(text).expect("the Cedar policies parse");
            let answers = answers(&set);
            (set, answers)
        };
        let action_type = type_name("Action");
        CedarPolicy {
            main: parse(case.cedar),
            hold: case.cedar_hold.map(parse),
            zone: case.zone,
            authorizer: Authorizer::new(),
            user: type_name("User"),
            group: type_name("Group"),
            pool: type_name("Pool"),
            actions: ACTION_KINDS
                .iter()
                .map(|kind| {
                    let uid =
                        EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(kind));
                    (*kind, uid)
                })
                .collect(),
        }
    }

    fn pool_uid(&self, pool: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.pool.clone(), EntityId::new(pool))
    }

    /// The request and entities a host builds from `action`.
    fn request(&self, judged: &Judged, now_unix_ms: i64) -> (Request, Entities) {
        let action = &judged.action;
        let principal = &action.principal;
        let principal_uid =
            EntityUid::from_type_name_and_id(self.user.clone(), EntityId::new(&principal.id));
        let parents: HashSet<EntityUid> = principal
            .groups
            .iter()
            .map(|group| EntityUid::from_type_name_and_id(self.group.clone(), EntityId::new(group)))
            .collect();
        let authenticated_by = match principal.authenticated_by {
            Authentication::None => "none",
            Authentication::Token => "token",
            Authentication::Mtls => "mtls",
            Authentication::Balancer => "balancer",
        };
        let mut entities = Vec::with_capacity(1 + judged.figures.len());
        entities.push(
            Entity::new(
                principal_uid.clone(),
                HashMap::from([("authenticated_by".to_owned(), string(authenticated_by))]),
                parents,
            )
            .expect("a valid principal entity"),
        );
        // Every pool the action carries figures for, its figures as attributes.
        for figures in &judged.figures {
            let mut attributes = HashMap::from([
                (
                    "healthy_backends".to_owned(),
                    long(figures.healthy_backends),
                ),
                ("total_backends".to_owned(), long(figures.total_backends)),
                ("in_flight".to_owned(), long(figures.in_flight)),
                (
                    "error_rate_ppm".to_owned(),
                    scaled(figures.error_rate, 1_000_000.0),
                ),
            ]);
            if let Some(p99) = figures.latency_p99_ms {
                attributes.insert("latency_p99_us".to_owned(), scaled(p99, 1_000.0));
            }
            entities.push(
                Entity::new(self.pool_uid(&figures.pool), attributes, HashSet::new())
                    .expect("a valid pool entity"),
            );
        }

        let mut context: Vec<(String, RestrictedExpression)> = Vec::with_capacity(12);
        let mut field =
            |name: &str, value: RestrictedExpression| context.push((name.to_owned(), value));
        let (kind, resource) = match &action.subject {
            Subject::Request(request) => {
                field("method", string(&request.method.to_ascii_uppercase()));
                field("scheme", string(&request.scheme));
                field("host", string(&request.host));
                field("path", string(&request.path));
                if let Some(query) = &request.query {
                    field("query", string(query));
                }
                let mut headers: Vec<(String, RestrictedExpression)> =
                    Vec::with_capacity(judged.headers.len());
                let mut seen: Vec<(&str, String)> = Vec::with_capacity(judged.headers.len());
                for header in &judged.headers {
                    match seen.iter_mut().find(|(name, _)| *name == header.name) {
                        // A repeated header: one entry, values joined as HTTP allows.
                        Some((_, value)) => {
                            value.push_str(", ");
                            value.push_str(&header.value);
                        }
                        None => seen.push((&header.name, header.value.clone())),
                    }
                }
                for (name, value) in seen {
                    headers.push((name.to_owned(), RestrictedExpression::new_string(value)));
                }
                field(
                    "headers",
                    RestrictedExpression::new_record(headers).expect("unique header names"),
                );
                field("client_address", string(&request.client_address));
                field("route", string(&request.route));
                field("pool", string(&request.pool));
                if let Some(size) = request.body_size {
                    field("body_size", long(i64::try_from(size).unwrap_or(i64::MAX)));
                }
                if let Some(content_type) = &request.content_type {
                    field("content_type", string(content_type));
                }
                ("request", &request.pool)
            }
            Subject::Change(change) => match change {
                Change::AddBackend(backend)
                | Change::RemoveBackend(backend)
                | Change::DrainBackend(backend) => {
                    field("pool", string(&backend.pool));
                    field("backend", string(&backend.backend));
                    let kind = match change {
                        Change::AddBackend(_) => "add-backend",
                        Change::RemoveBackend(_) => "remove-backend",
                        _ => "drain-backend",
                    };
                    (kind, &backend.pool)
                }
                Change::SetWeights(weights) => {
                    field("pool", string(&weights.pool));
                    field(
                        "weights",
                        RestrictedExpression::new_set(weights.weights.iter().map(|weight| {
                            RestrictedExpression::new_record([
                                ("backend".to_owned(), string(&weight.backend)),
                                ("weight".to_owned(), long(weight.weight)),
                            ])
                            .expect("a valid weight record")
                        })),
                    );
                    ("set-weights", &weights.pool)
                }
                Change::ShiftTraffic(shift) => {
                    field("route", string(&shift.route));
                    field("from_pool", string(&shift.from_pool));
                    field("to_pool", string(&shift.to_pool));
                    field("percent", long(shift.percent));
                    ("shift-traffic", &shift.to_pool)
                }
                Change::ResetOverlay(reset) => {
                    field("changes", long(reset.changes));
                    ("reset-overlay", &NO_POOL)
                }
                Change::ReloadConfig(reload) => {
                    field("sha256", string(&reload.sha256));
                    field("summary", string(&reload.summary));
                    ("reload-config", &NO_POOL)
                }
            },
            Subject::Event(event) => match event {
                Event::Failover(failover) => {
                    field("route", string(&failover.route));
                    field("from_pool", string(&failover.from_pool));
                    field("to_pool", string(&failover.to_pool));
                    ("failover", &failover.from_pool)
                }
                Event::EjectOutlier(outlier) => {
                    field("pool", string(&outlier.pool));
                    field("backend", string(&outlier.backend));
                    field("evidence", string(&outlier.evidence));
                    ("eject-outlier", &outlier.pool)
                }
                Event::SpillSurge(spill) => {
                    field("route", string(&spill.route));
                    field("from_pool", string(&spill.from_pool));
                    field("to_pool", string(&spill.to_pool));
                    field("percent", long(spill.percent));
                    ("spill-surge", &spill.from_pool)
                }
            },
        };
        if let Some(zone) = self.zone {
            // Cedar has no time zones: the host resolves the policy's zone,
            // as Airlock's `to-local-time` import does for the components.
            let local = local_time(zone, now_unix_ms).expect("a known zone");
            field(
                "local",
                RestrictedExpression::new_record([
                    ("weekday".to_owned(), long(local.weekday)),
                    ("hour".to_owned(), long(local.hour)),
                    ("minute".to_owned(), long(local.minute)),
                    (
                        "minute_of_day".to_owned(),
                        long(i64::from(local.hour) * 60 + i64::from(local.minute)),
                    ),
                ])
                .expect("a valid local-time record"),
            );
        }
        let request = Request::new(
            principal_uid,
            self.actions[kind].clone(),
            self.pool_uid(resource),
            Context::from_pairs(context).expect("a valid context"),
            None,
        )
        .expect("a valid request");
        let entities = Entities::from_entities(entities, None).expect("valid entities");
        (request, entities)
    }

    /// One decision, as a host makes it: main set, then `needs-approval`.
    fn decide(&self, action: &Judged, now_unix_ms: i64) -> CedarVerdict {
        let (request, entities) = self.request(action, now_unix_ms);
        let response = self
            .authorizer
            .is_authorized(&request, &self.main.0, &entities);
        if response.decision() == Decision::Deny {
            // The first deciding forbid in source order (policy0, policy1, ...);
            // none when nothing permitted (Cedar's default deny).
            let answer = first_answer(&self.main.1, response.diagnostics().reason());
            return CedarVerdict::Deny {
                status: answer.and_then(|answer| answer.status).unwrap_or(403),
                reason: answer
                    .and_then(|answer| answer.reason.clone())
                    .unwrap_or_else(|| "denied by policy".to_owned()),
            };
        }
        let Some((hold, answers)) = &self.hold else {
            return CedarVerdict::Allow;
        };
        let response = self.authorizer.is_authorized(&request, hold, &entities);
        if response.decision() == Decision::Allow {
            let Some(answer) = first_answer(answers, response.diagnostics().reason()) else {
                return CedarVerdict::Allow;
            };
            return CedarVerdict::Hold {
                reason: answer
                    .reason
                    .clone()
                    .unwrap_or_else(|| "needs approval".to_owned()),
                approver_groups: answer.approvers.clone(),
                quorum: answer.quorum,
                timeout_ms: answer.timeout_ms,
            };
        }
        CedarVerdict::Allow
    }
}

/// What a policy's annotations say, read once at load: `PolicySet::annotation`
/// parses the key with Cedar's full parser on every call (~6 µs each here).
#[derive(Debug, Clone)]
struct Answer {
    status: Option<u16>,
    reason: Option<String>,
    approvers: Vec<String>,
    quorum: u32,
    timeout_ms: u64,
}

/// Each policy's answer, by source order (`policyN` at index N).
fn answers(set: &PolicySet) -> Vec<Option<Answer>> {
    let mut answers = Vec::new();
    for policy in set.policies() {
        let index = policy_index(policy.id());
        if answers.len() <= index {
            answers.resize(index + 1, None);
        }
        let annotations: HashMap<&str, &str> = policy.annotations().collect();
        answers[index] = Some(Answer {
            status: annotations
                .get("status")
                .and_then(|status| status.parse().ok()),
            reason: annotations.get("reason").map(|reason| (*reason).to_owned()),
            approvers: annotations
                .get("approvers")
                .map(|groups| {
                    groups
                        .split(',')
                        .map(|group| group.trim().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            quorum: annotations
                .get("quorum")
                .and_then(|quorum| quorum.parse().ok())
                .unwrap_or(1),
            timeout_ms: annotations
                .get("timeout_seconds")
                .and_then(|seconds| seconds.parse::<u64>().ok())
                .unwrap_or(900)
                .saturating_mul(1000),
        });
    }
    answers
}

/// The answer of the first deciding policy in source order.
fn first_answer<'a, 'b>(
    answers: &'a [Option<Answer>],
    reasons: impl Iterator<Item = &'b PolicyId>,
) -> Option<&'a Answer> {
    let first = reasons.map(policy_index).min()?;
    answers.get(first)?.as_ref()
}

/// `policyN` → N: the source order of policies parsed from one text.
fn policy_index(id: &PolicyId) -> usize {
    let id: &str = id.as_ref();
    id.strip_prefix("policy")
        .and_then(|index| index.parse().ok())
        .unwrap_or(usize::MAX)
}

// ------------------------------------------------------------------ bench

fn context(case: &Case) -> CallContext {
    CallContext {
        policy: Arc::from(case.name),
        fixed_now_unix_ms: Some(case.now_unix_ms),
        // The live figures the balancer would answer `live-figures` with.
        figures: Arc::new(case.action.figures.clone()),
        headers: Arc::new(case.action.headers.clone()),
    }
}

/// The ports of bundled policies to other languages: (language, the
/// bundled policy's name, the port's directory). Set `BENCH_PORTS` (e.g.
/// `go,python`) to bench only some languages.
const PORTS: [(&str, &str, &str); 6] = [
    ("go", "approval-rules", "policies/approval-rules-go"),
    ("go", "business-hours", "policies/business-hours-go"),
    ("python", "approval-rules", "policies/approval-rules-py"),
    ("python", "business-hours", "policies/business-hours-py"),
    ("js", "approval-rules", "policies/approval-rules-js"),
    ("js", "business-hours", "policies/business-hours-js"),
];

/// A port, loaded fresh and reused, checked against its Rust twin.
struct Twin {
    language: &'static str,
    name: &'static str,
    parameters: &'static str,
    wasm: Vec<u8>,
    fresh: LoadedPolicy,
    reused: LoadedPolicy,
}

/// Build the port in `directory` as `airlock policy build` does, load it,
/// and check that it decides as `rust` does.
fn twin(engine: &PolicyEngine, rust: &Prepared, language: &'static str, directory: &str) -> Twin {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(directory);
    let output =
        std::env::temp_dir().join(format!("airlock-bench-{language}-{}.wasm", rust.case.name));
    airlock::policy::author::build_policy(&directory, Some(&output))
        .unwrap_or_else(|error| panic!("building {}: {error}", directory.display()));
    let wasm = std::fs::read(&output).expect("the port was written");
    let _ = std::fs::remove_file(&output);
    let parameters = rust.case.parameters;
    let fresh = engine
        .load(&wasm, parameters, false)
        .expect("the port loads");
    let reused = engine
        .load(&wasm, parameters, true)
        .expect("the port loads");
    for port in [&fresh, &reused] {
        assert_eq!(
            decide(port, &rust.case),
            decide(&rust.fresh, &rust.case),
            "{}: the {language} port decides otherwise than the Rust policy",
            rust.case.name
        );
    }
    Twin {
        language,
        name: rust.case.name,
        parameters,
        wasm,
        fresh,
        reused,
    }
}

struct Prepared {
    case: Case,
    fresh: LoadedPolicy,
    reused: LoadedPolicy,
    cedar: CedarPolicy,
    airlock_decision: String,
    cedar_decision: CedarVerdict,
    /// Evaluations that failed while measuring (fresh, reused), by code:
    /// with a wall-clock deadline, a busy machine can preempt one past it.
    failures: [RefCell<BTreeMap<&'static str, u64>>; 2],
}

/// The policy's verdict; a few tries, since on a busy machine a preempted
/// evaluation can overrun the (wall-clock) deadline.
fn decide(policy: &LoadedPolicy, case: &Case) -> Verdict {
    let mut last = None;
    for _ in 0..5 {
        match policy.evaluate(&case.action.action, context(case)) {
            Ok(verdict) => return verdict,
            Err(failure) => last = Some(failure),
        }
    }
    panic!("{}: the policy does not decide: {last:?}", case.name);
}

fn prepare(engine: &PolicyEngine, case: Case) -> Prepared {
    let wasm = bundled::component(case.name).expect("a bundled policy");
    let fresh = engine
        .load(wasm, case.parameters, false)
        .expect("the policy loads");
    let reused = engine
        .load(wasm, case.parameters, true)
        .expect("the policy loads");
    let cedar = CedarPolicy::new(&case);
    let verdict = decide(&fresh, &case);
    let again = decide(&reused, &case);
    assert_eq!(
        verdict, again,
        "{}: fresh and reused instances disagree",
        case.name
    );
    let cedar_decision = cedar.decide(&case.action, case.now_unix_ms);
    assert_eq!(
        verdict_kind(&verdict),
        cedar_decision.kind(),
        "{}: Airlock says {verdict:?}, Cedar says {cedar_decision:?}",
        case.name
    );
    let airlock_decision = match &verdict {
        Verdict::Allow(_) => "allow".to_owned(),
        Verdict::Deny(refusal) => format!("deny {}: {}", refusal.status.as_u16(), refusal.reason),
        Verdict::Hold(hold) => format!(
            "hold for {} (quorum {}): {}",
            hold.approver_groups.join(", "),
            hold.quorum,
            hold.reason
        ),
    };
    Prepared {
        case,
        fresh,
        reused,
        cedar,
        airlock_decision,
        cedar_decision,
        failures: Default::default(),
    }
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Busy clock ticks of all CPUs, and of this process (all its threads).
fn cpu_ticks() -> (u64, u64) {
    let all = read_proc("/proc/stat")
        .lines()
        .next()
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            // user nice system (idle iowait) irq softirq steal
            [0, 1, 2, 5, 6, 7]
                .iter()
                .map(|&index| fields.get(index).copied().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let own = read_proc("/proc/self/stat")
        .rsplit_once(") ")
        .map(|(_, rest)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime stime
            [11, 12]
                .iter()
                .map(|&index| {
                    fields
                        .get(index)
                        .and_then(|f| f.parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        })
        .unwrap_or(0);
    (all, own)
}

fn loadavg() -> String {
    read_proc("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where criterion writes (`$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`,
/// else the workspace's `target/criterion`): the report reads both from there.
fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion")
}

fn main() {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let load_start = loadavg();
    let clock = Instant::now();
    let ticks_start = cpu_ticks();
    let settings = EngineSettings::default();
    let deadline = settings.deadline;
    let engine = PolicyEngine::new(settings).expect("the policy engine starts");
    let prepared: Vec<Prepared> = cases()
        .into_iter()
        .map(|case| prepare(&engine, case))
        .collect();

    let languages = std::env::var("BENCH_PORTS").unwrap_or_else(|_| "go,python,js".to_owned());
    let twins: Vec<Twin> = PORTS
        .iter()
        .filter(|(language, _, _)| languages.split(',').any(|wanted| wanted == *language))
        .filter_map(|(language, name, directory)| {
            let rust = prepared.iter().find(|p| p.case.name == *name)?;
            Some(twin(&engine, rust, language, directory))
        })
        .collect();

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();

    for (group, mode) in [("policy/fresh", false), ("policy/reused", true)] {
        let mut group = criterion.benchmark_group(group);
        for p in &prepared {
            let policy = if mode { &p.reused } else { &p.fresh };
            let failures = &p.failures[usize::from(mode)];
            let context = context(&p.case);
            group.bench_function(p.case.name, |b| {
                b.iter(|| {
                    let result = policy.evaluate(black_box(&p.case.action.action), context.clone());
                    if let Err(failure) = &result {
                        *failures.borrow_mut().entry(failure.code()).or_default() += 1;
                    }
                    result
                });
            });
        }
        group.finish();
    }
    for (twin, (mode_name, mode)) in twins
        .iter()
        .flat_map(|twin| [("fresh", false), ("reused", true)].map(|mode| (twin, mode)))
    {
        let mut group = criterion.benchmark_group(format!("{}/{mode_name}", twin.language));
        let p = prepared
            .iter()
            .find(|p| p.case.name == twin.name)
            .expect("its Rust twin");
        let policy = if mode { &twin.reused } else { &twin.fresh };
        let context = context(&p.case);
        group.bench_function(twin.name, |b| {
            b.iter(|| policy.evaluate(black_box(&p.case.action.action), context.clone()));
        });
        group.finish();
    }
    for twin in &twins {
        let mut group = criterion.benchmark_group(format!("{}/load", twin.language));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(10));
        group.bench_function(twin.name, |b| {
            b.iter_with_large_drop(|| {
                engine
                    .load(black_box(&twin.wasm), twin.parameters, false)
                    .expect("the port loads")
            });
        });
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("cedar");
        for p in &prepared {
            group.bench_function(p.case.name, |b| {
                b.iter(|| {
                    p.cedar
                        .decide(black_box(&p.case.action), p.case.now_unix_ms)
                });
            });
        }
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("policy/load");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(5));
        let wasm = bundled::component("deny-list").expect("a bundled policy");
        group.bench_function("deny-list", |b| {
            b.iter_with_large_drop(|| {
                engine
                    .load(
                        black_box(wasm),
                        r#"{"rules": [{"paths": ["/internal/**"]}]}"#,
                        false,
                    )
                    .expect("the policy loads")
            });
        });
        group.finish();
    }
    criterion.final_summary();
    // CPU time used by other processes while this bench ran, as a share of
    // one CPU (USER_HZ is 100 on Linux).
    let ticks_end = cpu_ticks();
    let others = ticks_end.0.saturating_sub(ticks_start.0) as f64
        - ticks_end.1.saturating_sub(ticks_start.1) as f64;
    let background_cpu_pct = (others.max(0.0) / (clock.elapsed().as_secs_f64() * 100.0)) * 100.0;

    // What the report prints beside the figures.
    let cpu_model = read_proc("/proc/cpuinfo")
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cases: Vec<serde_json::Value> = prepared
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.case.name,
                "action": p.case.summary,
                "parameters": serde_json::from_str::<serde_json::Value>(p.case.parameters)
                    .expect("the parameters are JSON"),
                "cedar": p.case.cedar.trim(),
                "cedar_needs_approval": p.case.cedar_hold.map(str::trim),
                "zone": p.case.zone,
                "airlock_decision": p.airlock_decision,
                "cedar_decision": format!("{:?}", p.cedar_decision),
                "decision": p.cedar_decision.kind(),
                "failures_fresh": *p.failures[0].borrow(),
                "failures_reused": *p.failures[1].borrow(),
            })
        })
        .collect();
    let meta = serde_json::json!({
        "unix_time": started,
        "invocation": std::env::var("AIRLOCK_BENCH_INVOCATION")
            .unwrap_or_else(|_| "cargo bench -p airlock-policy-bench".to_owned()),
        "cpu_model": cpu_model,
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
        "background_cpu_pct": background_cpu_pct.round(),
        "cedar_policy": cedar_policy::get_sdk_version().to_string(),
        "cedar_lang": cedar_policy::get_lang_version().to_string(),
        "deadline_ms": deadline.as_secs_f64() * 1000.0,
        "cases": cases,
        "ports": twins
            .iter()
            .map(|twin| serde_json::json!({
                "language": twin.language,
                "name": twin.name,
                "component_bytes": twin.wasm.len(),
            }))
            .collect::<Vec<_>>(),
        "rust_component_bytes": prepared
            .iter()
            .map(|p| (p.case.name, bundled::component(p.case.name).map_or(0, <[u8]>::len)))
            .collect::<BTreeMap<_, _>>(),
    });
    let directory = output_directory();
    std::fs::create_dir_all(&directory).expect("create the criterion directory");
    let file = directory.join("airlock-policy-bench.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&meta).expect("JSON") + "\n",
    )
    .expect("write the bench metadata");
    eprintln!("policy bench: wrote {}", file.display());
}
