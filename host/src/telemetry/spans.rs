//! The spans of an action, built from the instants its steps took.
//!
//! A request's span ([`RequestTrace`], server kind, OpenTelemetry HTTP
//! attributes) starts when the request arrived but is built once the
//! policies have decided, inside the caller's trace if it sent a valid
//! `traceparent`. Its children: the route match and each policy
//! evaluation (built then, with their recorded times), the audit commit,
//! the wait for approval, and each upstream attempt (client kind), whose
//! span is the parent the backend sees in the `traceparent` Airlock sends.
//! A request the sampler drops gets no span and its `traceparent` goes on
//! unchanged. Operators' changes and balancer events get one span each,
//! with their policies' spans ([`judged_action`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};

use super::sampler::{ACTION_KIND, DECISION};
use super::Tracing;

/// One moment on both clocks: spans need wall time, steps are measured
/// with [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// Now, if tracing is on (otherwise nothing is traced).
    pub fn start() -> Option<Clock> {
        super::tracing().map(|_| Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        })
    }

    /// The wall time of `at`.
    fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.mono) {
            Some(after) => self.wall + after,
            None => self.wall - self.mono.duration_since(at),
        }
    }
}

/// What a request's span describes.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub scheme: &'static str,
    pub host: &'a str,
    pub path: &'a str,
    pub client: std::net::IpAddr,
    pub route: &'a Arc<str>,
    pub pool: &'a str,
    pub principal: &'a str,
    /// `allow`, `deny`, `hold` or `failed`.
    pub decision: &'static str,
}

/// An open span under which finished steps are added.
#[derive(Debug)]
struct Parent {
    tracing: &'static Tracing,
    clock: Clock,
    /// The span (and the caller's context above it).
    cx: Context,
}

impl Parent {
    fn child(&self, name: &'static str, started: Instant) -> SpanBuilder {
        self.tracing
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(self.clock.wall(started))
    }

    /// Add a step that ended at `ended`, with the error code it failed with.
    fn finished_child(&self, builder: SpanBuilder, ended: Instant, failed: Option<&str>) {
        let mut span = self.tracing.tracer.build_with_context(builder, &self.cx);
        if let Some(code) = failed {
            span.set_attribute(KeyValue::new("error.type", code.to_owned()));
            span.set_status(Status::error(code.to_owned()));
        }
        span.end_with_timestamp(self.clock.wall(ended));
    }

    /// A span per policy evaluation, named by the policy.
    fn policies<E: PolicyEvaluation>(&self, evaluations: &[E]) {
        for evaluation in evaluations {
            let (started, ended) = evaluation.span();
            let builder = self.child("policy", started).with_attributes([
                KeyValue::new("airlock.policy.name", evaluation.name()),
                KeyValue::new("airlock.policy.hash", evaluation.hash().to_owned()),
                KeyValue::new("airlock.policy.decision", evaluation.decision()),
            ]);
            let failed = (evaluation.decision() == "failed").then_some("policy_failed");
            self.finished_child(builder, ended, failed);
        }
    }
}

/// What a policy's span shows of one evaluation. The policy chain's
/// evaluations provide it: telemetry sits below the policy engine and does
/// not know its types.
pub trait PolicyEvaluation {
    /// The policy's name.
    fn name(&self) -> Arc<str>;
    /// The SHA-256 of the policy's component, hex.
    fn hash(&self) -> &str;
    /// When the evaluation started and ended.
    fn span(&self) -> (Instant, Instant);
    /// `allow`, `deny`, `hold` or `failed`.
    fn decision(&self) -> &'static str;
}

/// A sampled request's span, open until the answer is known.
#[derive(Debug)]
pub struct RequestTrace(Parent);

impl RequestTrace {
    /// The span of a request that arrived at `clock`, now that its
    /// decision is known, with the spans of its route match (done at
    /// `matched`) and policy evaluations. `None` if the sampler drops it.
    pub fn start(
        clock: Clock,
        headers: &HeaderMap,
        facts: &RequestFacts<'_>,
        matched: Instant,
        evaluations: &[impl PolicyEvaluation],
    ) -> Option<RequestTrace> {
        let tracing = super::tracing()?;
        let caller = tracing.propagator.extract(&HeaderExtractor(headers));
        // Only what the sampler reads is set before it decides.
        let builder = tracing
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .with_start_time(clock.wall)
            .with_attributes([
                KeyValue::new(ACTION_KIND, "request"),
                KeyValue::new(DECISION, facts.decision),
            ]);
        let span = tracing.tracer.build_with_context(builder, &caller);
        if !span.span_context().is_sampled() {
            return None;
        }
        let cx = caller.with_span(span);
        let span = cx.span();
        span.update_name(format!("{} {}", facts.method, facts.route));
        span.set_attributes([
            KeyValue::new("http.request.method", method_name(facts.method)),
            KeyValue::new("url.scheme", facts.scheme),
            KeyValue::new("url.path", facts.path.to_owned()),
            KeyValue::new("server.address", facts.host.to_owned()),
            KeyValue::new("client.address", facts.client.to_string()),
            KeyValue::new("http.route", facts.route.clone()),
            KeyValue::new("airlock.pool", facts.pool.to_owned()),
            KeyValue::new("airlock.principal", facts.principal.to_owned()),
        ]);
        let parent = Parent { tracing, clock, cx };
        let route_match = parent
            .child("route match", clock.mono)
            .with_attributes([KeyValue::new("http.route", facts.route.clone())]);
        parent.finished_child(route_match, matched, None);
        parent.policies(evaluations);
        Some(RequestTrace(parent))
    }

    /// The trace id, which the audit trail and the approval record keep.
    pub fn trace_id(&self) -> String {
        self.0.cx.span().span_context().trace_id().to_string()
    }

    /// The audit commit of the request's decision, from `started` to now.
    pub fn audit_commit(&self, started: Instant, failed: Option<&str>) {
        let builder = self.0.child("audit commit", started);
        self.0.finished_child(builder, Instant::now(), failed);
    }

    /// The wait for approval `approval`, from `started` to now.
    pub fn approval_wait(
        &self,
        started: Instant,
        approval: &str,
        outcome: &str,
        approvers: Vec<String>,
    ) {
        let approvers: Vec<opentelemetry::StringValue> =
            approvers.into_iter().map(Into::into).collect();
        let builder = self.0.child("approval wait", started).with_attributes([
            KeyValue::new("airlock.approval.id", approval.to_owned()),
            KeyValue::new("airlock.approval.outcome", outcome.to_owned()),
            KeyValue::new(
                "airlock.approval.approvers",
                Value::Array(opentelemetry::Array::String(approvers)),
            ),
        ]);
        self.0.finished_child(builder, Instant::now(), None);
    }

    /// The span of one attempt to send the request to `backend` (its
    /// `host:port`) of `pool`, from now; `headers` get its `traceparent`,
    /// so the backend's spans sit under it.
    pub fn upstream(
        &self,
        method: &str,
        pool: &str,
        backend: &str,
        headers: &mut HeaderMap,
    ) -> UpstreamSpan {
        let Parent { tracing, cx, .. } = &self.0;
        let builder = tracing
            .tracer
            .span_builder(method_name(method))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method_name(method)),
                KeyValue::new("server.address", backend.to_owned()),
                KeyValue::new("airlock.pool", pool.to_owned()),
                KeyValue::new("airlock.backend", backend.to_owned()),
            ]);
        let cx = cx.with_span(tracing.tracer.build_with_context(builder, cx));
        tracing
            .propagator
            .inject_context(&cx, &mut HeaderInjector(headers));
        UpstreamSpan { cx }
    }

    /// End the request's span with the status Airlock answered, and the
    /// error code if Airlock refused or failed it.
    pub fn end(self, status: u16, error: Option<&str>) {
        let span = self.0.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(code) = error {
            span.set_attribute(KeyValue::new("error.type", code.to_owned()));
        }
        if status >= 500 {
            span.set_status(Status::error(error.unwrap_or("server error").to_owned()));
        }
        span.end();
    }
}

/// A method as span names and attributes take it: the common ones
/// without allocating.
fn method_name(method: &str) -> Cow<'static, str> {
    const COMMON: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    match COMMON.iter().find(|common| **common == method) {
        Some(common) => Cow::Borrowed(*common),
        None => Cow::Owned(method.to_owned()),
    }
}

/// One upstream attempt's span; ends when dropped if not before.
#[derive(Debug)]
pub struct UpstreamSpan {
    cx: Context,
}

impl UpstreamSpan {
    /// End it with the backend's status, or the error that ended the attempt.
    pub fn end(self, outcome: Result<u16, &str>) {
        let span = self.cx.span();
        match outcome {
            Ok(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 500 {
                    span.set_status(Status::error(format!("status {status}")));
                }
            }
            Err(error) => {
                span.set_attribute(KeyValue::new("error.type", error.to_owned()));
                span.set_status(Status::error(error.to_owned()));
            }
        }
        span.end();
    }
}

/// What a change or event span describes.
#[derive(Debug)]
pub struct ActionFacts<'a> {
    /// `change` or `event`: the span's name.
    pub kind: &'static str,
    /// What is asked, as the audit entry's JSON.
    pub detail: Option<&'a serde_json::Value>,
    pub principal: &'a str,
    pub decision: &'static str,
}

/// The span of an operator's change or a balancer event, judged from
/// `clock` until now, with its policies' spans. Always sampled.
pub fn judged_action(
    clock: Option<Clock>,
    facts: ActionFacts<'_>,
    evaluations: &[impl PolicyEvaluation],
) {
    let (Some(clock), Some(tracing)) = (clock, super::tracing()) else {
        return;
    };
    let mut attributes = vec![
        KeyValue::new(ACTION_KIND, facts.kind),
        KeyValue::new(DECISION, facts.decision),
        KeyValue::new("airlock.principal", facts.principal.to_owned()),
    ];
    if let Some(detail) = facts.detail {
        attributes.push(KeyValue::new("airlock.action", detail.to_string()));
    }
    let builder = tracing
        .tracer
        .span_builder(facts.kind)
        .with_kind(SpanKind::Internal)
        .with_start_time(clock.wall)
        .with_attributes(attributes);
    let span = tracing.tracer.build_with_context(builder, &Context::new());
    let parent = Parent {
        tracing,
        clock,
        cx: Context::new().with_span(span),
    };
    parent.policies(evaluations);
    parent.cx.span().end();
}
