//! `airlock policy test POLICY.wasm CASES.toml`: run a table of actions
//! through the real component in the real sandbox and compare each decision
//! with what the table expects, like `opa test`.
//!
//! Each case may fix `now`, the parameters and the pools' figures, so
//! time- and load-dependent policies test deterministically. The format is
//! documented in `policies/README.md`; every bundled policy ships a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::action::Redaction;
use super::bindings::{
    Action, Authentication, BackendChange, BackendWeight, Change, ConfigReload, Event, Failover,
    Header, Outlier, OverlayReset, PoolFigures, Principal, Request, Spill, Subject, TrafficShift,
    WeightsChange,
};
use super::chain::kind_of;
use super::decision::Verdict;
use super::engine::{CallContext, EngineSettings, LoadedPolicy, PolicyEngine, PolicyFailure};

/// Why a case table could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("{}: {cause}", .file.display())]
    Read {
        file: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {cause}", .file.display())]
    Table { file: PathBuf, cause: String },
    #[error("{}: {cause}", .file.display())]
    Policy {
        file: PathBuf,
        cause: super::LoadError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseTable {
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    now: Option<String>,
    parameters: Option<toml::Table>,
    principal: Option<PrincipalSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    now: Option<String>,
    parameters: Option<toml::Table>,
    principal: Option<PrincipalSpec>,
    request: Option<RequestSpec>,
    change: Option<ChangeSpec>,
    event: Option<EventSpec>,
    #[serde(default)]
    pools: Vec<PoolSpec>,
    /// A decision name, or an [`Expectation`] table.
    expect: toml::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    id: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default = "default_authentication")]
    authenticated_by: String,
}

fn default_authentication() -> String {
    "token".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_scheme")]
    scheme: String,
    query: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_route")]
    route: String,
    #[serde(default = "default_pool")]
    pool: String,
    body_size: Option<u64>,
    content_type: Option<String>,
    #[serde(default = "default_client")]
    client_address: String,
}

fn default_method() -> String {
    "GET".to_owned()
}
fn default_path() -> String {
    "/".to_owned()
}
fn default_host() -> String {
    "example.com".to_owned()
}
fn default_scheme() -> String {
    "http".to_owned()
}
fn default_route() -> String {
    "default".to_owned()
}
fn default_pool() -> String {
    "app".to_owned()
}
fn default_client() -> String {
    "127.0.0.1".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum ChangeSpec {
    AddBackend {
        pool: String,
        backend: String,
    },
    RemoveBackend {
        pool: String,
        backend: String,
    },
    DrainBackend {
        pool: String,
        backend: String,
    },
    SetWeights {
        pool: String,
        weights: BTreeMap<String, u32>,
    },
    ShiftTraffic {
        route: String,
        from_pool: String,
        to_pool: String,
        percent: u8,
    },
    ResetOverlay {
        #[serde(default)]
        changes: u32,
    },
    ReloadConfig {
        #[serde(default)]
        sha256: String,
        #[serde(default)]
        summary: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum EventSpec {
    Failover {
        route: String,
        from_pool: String,
        to_pool: String,
    },
    EjectOutlier {
        pool: String,
        backend: String,
        #[serde(default)]
        evidence: String,
    },
    SpillSurge {
        route: String,
        from_pool: String,
        to_pool: String,
        percent: u8,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSpec {
    pool: String,
    healthy: u32,
    total: u32,
    #[serde(default)]
    in_flight: u32,
    #[serde(default)]
    error_rate: f64,
    p99_ms: Option<f64>,
}

/// What a case expects; only the fields given are compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    /// `allow`, `deny`, `hold`, `not-judged` or `error`.
    decision: String,
    status: Option<u16>,
    reason_contains: Option<String>,
    groups: Option<Vec<String>>,
    quorum: Option<u32>,
    timeout_ms: Option<u64>,
    grant_scope: Option<String>,
    set_headers: Option<BTreeMap<String, String>>,
    /// For `error`: the failure code, e.g. `policy_timeout`.
    code: Option<String>,
}

/// What the policy did with one case.
#[derive(Debug)]
enum Outcome {
    NotJudged,
    Decided(Verdict),
    Failed(PolicyFailure),
    /// The policy refused the case's parameters at setup.
    Refused(String),
}

/// The result of one case table.
#[derive(Debug, Default)]
pub struct CaseReport {
    /// One line per case, `ok` or `FAIL` with what differed.
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

/// Settings of a `policy test` run.
#[derive(Debug, Clone)]
pub struct TestSettings {
    /// Deadline per evaluation; generous by default, since a case table tests
    /// logic, not speed, and CI machines stall.
    pub deadline: Duration,
}

impl Default for TestSettings {
    fn default() -> Self {
        TestSettings {
            deadline: Duration::from_millis(250),
        }
    }
}

/// Run every case of `cases_file` against the component in `policy_file`
/// (with `NAME.toml` beside it as base parameters, if present).
///
/// # Errors
/// When the table or the component cannot be read or loaded; case mismatches
/// are reported in the [`CaseReport`], not as errors.
pub fn run(
    policy_file: &Path,
    cases_file: &Path,
    settings: &TestSettings,
) -> Result<CaseReport, CasesError> {
    let table_text = std::fs::read_to_string(cases_file).map_err(|cause| CasesError::Read {
        file: cases_file.to_owned(),
        cause,
    })?;
    let table: CaseTable = toml::from_str(&table_text).map_err(|error| CasesError::Table {
        file: cases_file.to_owned(),
        cause: error.to_string(),
    })?;
    let wasm = std::fs::read(policy_file).map_err(|cause| CasesError::Read {
        file: policy_file.to_owned(),
        cause,
    })?;
    let engine = PolicyEngine::new(EngineSettings {
        deadline: settings.deadline,
        max_instances: 4,
        ..EngineSettings::default()
    })
    .map_err(|cause| CasesError::Policy {
        file: policy_file.to_owned(),
        cause,
    })?;
    let component = engine.compile(&wasm).map_err(|cause| CasesError::Policy {
        file: policy_file.to_owned(),
        cause,
    })?;
    // Cases that share parameters share one setup.
    let mut prepared_policies = BTreeMap::new();
    let parameters_file = policy_file.with_extension("toml");
    let base_parameters =
        super::read_parameters(&parameters_file).map_err(|cause| CasesError::Table {
            file: parameters_file,
            cause,
        })?;

    let mut report = CaseReport::default();
    let table_error = |cause: String| CasesError::Table {
        file: cases_file.to_owned(),
        cause,
    };
    if table.cases.is_empty() {
        return Err(table_error("no [[case]] in the table".to_owned()));
    }
    for case in &table.cases {
        let prepared = prepare(case, &table.defaults, &base_parameters)
            .map_err(|cause| table_error(format!("case {:?}: {cause}", case.name)))?;
        let policy = prepared_policies
            .entry(prepared.parameters.clone())
            .or_insert_with(|| {
                component
                    .prepare(&prepared.parameters, false)
                    .map(Arc::new)
                    .map_err(|error| error.to_string())
            });
        let outcome = match policy {
            Ok(policy) => run_case(policy, prepared),
            Err(refusal) => Outcome::Refused(refusal.clone()),
        };
        let expectation = expectation(&case.expect)
            .map_err(|cause| table_error(format!("case {:?}: {cause}", case.name)))?;
        let differences = compare(&expectation, &outcome);
        if differences.is_empty() {
            report.passed += 1;
            let _ = writeln!(report.text, "ok    {}", case.name);
        } else {
            report.failed += 1;
            let _ = writeln!(report.text, "FAIL  {}", case.name);
            let _ = writeln!(report.text, "        got: {}", describe(&outcome));
            for difference in differences {
                let _ = writeln!(report.text, "        {difference}");
            }
        }
    }
    let _ = writeln!(
        report.text,
        "{}: {} passed, {} failed",
        cases_file.display(),
        report.passed,
        report.failed
    );
    Ok(report)
}

/// A case turned into what the engine takes.
struct PreparedCase {
    /// The policy's parameters with the case's applied, as JSON.
    parameters: String,
    action: Action,
    context: CallContext,
}

fn prepare(
    case: &Case,
    defaults: &Defaults,
    base_parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<PreparedCase, String> {
    let now = case
        .now
        .as_ref()
        .or(defaults.now.as_ref())
        .map(|text| parse_time(text))
        .transpose()?;
    let mut parameters = base_parameters.clone();
    for layer in [&defaults.parameters, &case.parameters]
        .into_iter()
        .flatten()
    {
        parameters.extend(super::toml_to_json(layer.clone())?);
    }
    let principal = match case.principal.as_ref().or(defaults.principal.as_ref()) {
        Some(spec) => principal(spec)?,
        None => super::action::anonymous(),
    };
    let mut headers = Vec::new();
    let subject = match (&case.request, &case.change, &case.event) {
        (Some(request), None, None) => {
            let (request, seen) = request_subject(request)?;
            headers = seen;
            Subject::Request(request)
        }
        (None, Some(change), None) => Subject::Change(change_subject(change)),
        (None, None, Some(event)) => Subject::Event(event_subject(event)),
        _ => return Err("give exactly one of `request`, `change` or `event`".to_owned()),
    };
    let figures: Vec<PoolFigures> = case
        .pools
        .iter()
        .map(|pool| PoolFigures {
            pool: pool.pool.clone(),
            healthy_backends: pool.healthy,
            total_backends: pool.total,
            in_flight: pool.in_flight,
            error_rate: pool.error_rate,
            latency_p99_ms: pool.p99_ms,
        })
        .collect();
    Ok(PreparedCase {
        parameters: serde_json::Value::Object(parameters).to_string(),
        action: Action { subject, principal },
        context: CallContext {
            policy: Arc::from(case.name.as_str()),
            fixed_now_unix_ms: now,
            figures: Arc::new(figures),
            headers: Arc::new(headers),
        },
    })
}

fn run_case(policy: &LoadedPolicy, case: PreparedCase) -> Outcome {
    if !policy.metadata().judges.contains(kind_of(&case.action)) {
        return Outcome::NotJudged;
    }
    match policy.evaluate(&case.action, case.context) {
        Ok(verdict) => Outcome::Decided(verdict),
        Err(failure) => Outcome::Failed(failure),
    }
}

/// Which expectation fields apply to which decision. `refused`: the policy
/// refused the case's parameters at setup (Airlock would keep serving the
/// previous version).
const FIELDS_BY_DECISION: [(&str, &[&str]); 6] = [
    ("allow", &["set_headers"]),
    ("deny", &["status", "reason_contains"]),
    (
        "hold",
        &[
            "groups",
            "quorum",
            "timeout_ms",
            "grant_scope",
            "reason_contains",
        ],
    ),
    ("not-judged", &[]),
    ("error", &["code"]),
    ("refused", &["reason_contains"]),
];

fn expectation(expect: &toml::Value) -> Result<Expectation, String> {
    let expectation = match expect {
        toml::Value::String(decision) => Expectation {
            decision: decision.clone(),
            ..Expectation::default()
        },
        toml::Value::Table(table) => {
            let expectation = Expectation::deserialize(expect.clone())
                .map_err(|error| format!("expect: {}", error.message()))?;
            if let Some((_, fields)) = FIELDS_BY_DECISION
                .iter()
                .find(|(decision, _)| *decision == expectation.decision)
            {
                if let Some(field) = table
                    .keys()
                    .find(|key| *key != "decision" && !fields.contains(&key.as_str()))
                {
                    return Err(format!(
                        "expect: `{field}` does not apply to {:?} (it takes: {})",
                        expectation.decision,
                        if fields.is_empty() {
                            "nothing more".to_owned()
                        } else {
                            fields.join(", ")
                        }
                    ));
                }
            }
            expectation
        }
        _ => return Err("expect: give a decision name or a table".to_owned()),
    };
    if !FIELDS_BY_DECISION
        .iter()
        .any(|(decision, _)| *decision == expectation.decision)
    {
        let decisions: Vec<&str> = FIELDS_BY_DECISION
            .iter()
            .map(|(decision, _)| *decision)
            .collect();
        return Err(format!(
            "expect {:?}: use one of {}",
            expectation.decision,
            decisions.join(", ")
        ));
    }
    Ok(expectation)
}

/// Every way `outcome` differs from `expected`, as readable lines.
fn compare(expected: &Expectation, outcome: &Outcome) -> Vec<String> {
    let mut differences = Vec::new();
    let mut differ = |field: &str, want: String, got: String| {
        if want != got {
            differences.push(format!("{field}: expected {want}, got {got}"));
        }
    };
    let got_decision = match outcome {
        Outcome::NotJudged => "not-judged",
        Outcome::Decided(verdict) => verdict.kind(),
        Outcome::Failed(_) => "error",
        Outcome::Refused(_) => "refused",
    };
    differ(
        "decision",
        expected.decision.clone(),
        got_decision.to_owned(),
    );
    if expected.decision != got_decision {
        return differences;
    }
    match outcome {
        Outcome::Decided(Verdict::Deny(refusal)) => {
            if let Some(status) = expected.status {
                differ(
                    "status",
                    status.to_string(),
                    refusal.status.as_u16().to_string(),
                );
            }
            if let Some(part) = &expected.reason_contains {
                if !refusal.reason.contains(part.as_str()) {
                    differ(
                        "reason",
                        format!("to contain {part:?}"),
                        format!("{:?}", refusal.reason),
                    );
                }
            }
        }
        Outcome::Decided(Verdict::Hold(hold)) => {
            if let Some(groups) = &expected.groups {
                differ(
                    "groups",
                    format!("{groups:?}"),
                    format!("{:?}", hold.approver_groups),
                );
            }
            if let Some(quorum) = expected.quorum {
                differ("quorum", quorum.to_string(), hold.quorum.to_string());
            }
            if let Some(timeout) = expected.timeout_ms {
                differ(
                    "timeout_ms",
                    timeout.to_string(),
                    hold.timeout.as_millis().to_string(),
                );
            }
            if let Some(scope) = &expected.grant_scope {
                let got = hold.grant.as_ref().map(|grant| grant.scope.clone());
                differ(
                    "grant_scope",
                    format!("{scope:?}"),
                    format!("{:?}", got.unwrap_or_default()),
                );
            }
            if let Some(part) = &expected.reason_contains {
                if !hold.reason.contains(part.as_str()) {
                    differ(
                        "reason",
                        format!("to contain {part:?}"),
                        format!("{:?}", hold.reason),
                    );
                }
            }
        }
        Outcome::Decided(Verdict::Allow(edits)) => {
            if let Some(headers) = &expected.set_headers {
                let got: BTreeMap<String, String> = edits
                    .set_headers()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                differ("set_headers", format!("{headers:?}"), format!("{got:?}"));
            }
        }
        Outcome::Failed(failure) => {
            if let Some(code) = &expected.code {
                differ("code", code.clone(), failure.code().to_owned());
            }
        }
        Outcome::Refused(refusal) => {
            if let Some(part) = &expected.reason_contains {
                if !refusal.contains(part.as_str()) {
                    differ(
                        "reason",
                        format!("to contain {part:?}"),
                        format!("{refusal:?}"),
                    );
                }
            }
        }
        Outcome::NotJudged => {}
    }
    differences
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::NotJudged => "not-judged (describe() excludes this kind of action)".to_owned(),
        Outcome::Decided(Verdict::Allow(edits)) if edits.edits.is_empty() => "allow".to_owned(),
        Outcome::Decided(Verdict::Allow(edits)) => format!("allow, then {:?}", edits.edits),
        Outcome::Decided(Verdict::Deny(refusal)) => {
            format!("deny {} {:?}", refusal.status.as_u16(), refusal.reason)
        }
        Outcome::Decided(Verdict::Hold(hold)) => format!(
            "hold for {:?} quorum {} within {}ms{} ({:?})",
            hold.approver_groups,
            hold.quorum,
            hold.timeout.as_millis(),
            hold.grant
                .as_ref()
                .map(|grant| format!(", grant {:?}", grant.scope))
                .unwrap_or_default(),
            hold.reason
        ),
        Outcome::Failed(failure) => format!("error {}: {failure}", failure.code()),
        Outcome::Refused(refusal) => format!("refused its parameters: {refusal}"),
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|timestamp| timestamp.as_millisecond())
        .map_err(|error| format!("now {text:?} is not an RFC 3339 time: {error}"))
}

fn principal(spec: &PrincipalSpec) -> Result<Principal, String> {
    let authenticated_by = match spec.authenticated_by.as_str() {
        "none" => Authentication::None,
        "token" => Authentication::Token,
        "mtls" => Authentication::Mtls,
        "balancer" => Authentication::Balancer,
        other => {
            return Err(format!(
                "authenticated_by {other:?}: use none, token, mtls or balancer"
            ))
        }
    };
    Ok(Principal {
        id: spec.id.clone(),
        groups: spec.groups.clone(),
        authenticated_by,
    })
}

/// The request of a case, and its headers as a policy sees them.
fn request_subject(spec: &RequestSpec) -> Result<(Request, Vec<Header>), String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
        headers.append(name, value);
    }
    let request = Request {
        method: spec.method.clone(),
        scheme: spec.scheme.clone(),
        host: spec.host.clone(),
        path: spec.path.clone(),
        query: spec.query.clone(),
        client_address: spec.client_address.clone(),
        route: spec.route.clone(),
        pool: spec.pool.clone(),
        body_size: spec.body_size,
        content_type: spec.content_type.clone(),
    };
    // The same redaction as in production, so a table shows what a policy really sees.
    Ok((request, Redaction::default().headers(&headers)))
}

fn change_subject(spec: &ChangeSpec) -> Change {
    let backend = |pool: &String, backend: &String| BackendChange {
        pool: pool.clone(),
        backend: backend.clone(),
    };
    match spec {
        ChangeSpec::AddBackend {
            pool,
            backend: name,
        } => Change::AddBackend(backend(pool, name)),
        ChangeSpec::RemoveBackend {
            pool,
            backend: name,
        } => Change::RemoveBackend(backend(pool, name)),
        ChangeSpec::DrainBackend {
            pool,
            backend: name,
        } => Change::DrainBackend(backend(pool, name)),
        ChangeSpec::SetWeights { pool, weights } => Change::SetWeights(WeightsChange {
            pool: pool.clone(),
            weights: weights
                .iter()
                .map(|(backend, weight)| BackendWeight {
                    backend: backend.clone(),
                    weight: *weight,
                })
                .collect(),
        }),
        ChangeSpec::ShiftTraffic {
            route,
            from_pool,
            to_pool,
            percent,
        } => Change::ShiftTraffic(TrafficShift {
            route: route.clone(),
            from_pool: from_pool.clone(),
            to_pool: to_pool.clone(),
            percent: *percent,
        }),
        ChangeSpec::ResetOverlay { changes } => {
            Change::ResetOverlay(OverlayReset { changes: *changes })
        }
        ChangeSpec::ReloadConfig { sha256, summary } => Change::ReloadConfig(ConfigReload {
            sha256: sha256.clone(),
            summary: summary.clone(),
        }),
    }
}

fn event_subject(spec: &EventSpec) -> Event {
    match spec {
        EventSpec::Failover {
            route,
            from_pool,
            to_pool,
        } => Event::Failover(Failover {
            route: route.clone(),
            from_pool: from_pool.clone(),
            to_pool: to_pool.clone(),
        }),
        EventSpec::EjectOutlier {
            pool,
            backend,
            evidence,
        } => Event::EjectOutlier(Outlier {
            pool: pool.clone(),
            backend: backend.clone(),
            evidence: evidence.clone(),
        }),
        EventSpec::SpillSurge {
            route,
            from_pool,
            to_pool,
            percent,
        } => Event::SpillSurge(Spill {
            route: route.clone(),
            from_pool: from_pool.clone(),
            to_pool: to_pool.clone(),
            percent: *percent,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(text: &str) -> Result<Expectation, String> {
        let table: toml::Table = toml::from_str(&format!("expect = {text}")).unwrap();
        expectation(&table["expect"])
    }

    #[test]
    fn expectations_name_their_mistakes() {
        assert_eq!(expect(r#""hold""#).unwrap().decision, "hold");
        assert_eq!(
            expect(r#"{ decision = "deny", status = 451 }"#)
                .unwrap()
                .status,
            Some(451)
        );
        let misplaced = expect(r#"{ decision = "allow", status = 403 }"#).unwrap_err();
        assert!(
            misplaced.contains("`status` does not apply to \"allow\""),
            "{misplaced}"
        );
        let typo = expect(r#"{ decision = "hold", qourum = 1 }"#).unwrap_err();
        assert!(typo.contains("qourum"), "{typo}");
        let unknown = expect(r#""maybe""#).unwrap_err();
        assert!(
            unknown.contains("use one of allow, deny, hold, not-judged, error"),
            "{unknown}"
        );
    }
}
