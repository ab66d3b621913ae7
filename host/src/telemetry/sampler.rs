//! Which traces are kept. The operator's sampler (`sample_ratio` or the
//! `OTEL_TRACES_SAMPLER` variables, parent-based by default) decides for
//! ordinary traffic; [`ActionSampler`] overrides it to keep every request
//! that was not simply allowed (held, denied, failed), every change and
//! event, and every span
//! under a span Airlock already kept. It can, because Airlock starts an
//! action's span once its decision is known (see [`super::spans`]).

use opentelemetry::trace::{Link, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

/// The attribute naming an action's decision.
pub const DECISION: &str = "airlock.decision";
/// The attribute naming an action's kind (`request`, `change`, `event`).
pub const ACTION_KIND: &str = "airlock.action.kind";

/// The one decision whose traces the operator's sampler thins out.
const ORDINARY_DECISION: &str = "allow";
/// Action kinds whose traces are always kept: rare and consequential.
const ALWAYS_KEPT_KINDS: [&str; 2] = ["change", "event"];

/// The operator's sampler, overridden for actions that must be traced.
#[derive(Debug, Clone)]
pub struct ActionSampler {
    pub ordinary: Box<dyn ShouldSample>,
}

impl ShouldSample for ActionSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let parent_span = parent
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone());
        let under_own_kept_span = parent_span
            .as_ref()
            .is_some_and(|span| span.is_sampled() && !span.is_remote());
        if under_own_kept_span || must_keep(attributes) {
            return SamplingResult {
                decision: SamplingDecision::RecordAndSample,
                attributes: Vec::new(),
                trace_state: parent_span
                    .map(|span| span.trace_state().clone())
                    .unwrap_or_default(),
            };
        }
        self.ordinary
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

fn must_keep(attributes: &[KeyValue]) -> bool {
    attributes.iter().any(|attribute| {
        let Value::String(value) = &attribute.value else {
            return false;
        };
        match attribute.key.as_str() {
            DECISION => value.as_str() != ORDINARY_DECISION,
            ACTION_KIND => ALWAYS_KEPT_KINDS.contains(&value.as_str()),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::Sampler;

    fn decide(attributes: &[KeyValue]) -> SamplingDecision {
        let sampler = ActionSampler {
            ordinary: Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
        };
        sampler
            .should_sample(
                None,
                TraceId::from(7),
                "request",
                &SpanKind::Server,
                attributes,
                &[],
            )
            .decision
    }

    #[test]
    fn held_denied_and_failed_requests_and_all_changes_are_kept_whatever_the_ratio() {
        for decision in ["hold", "deny", "failed", "policy_timeout"] {
            let kept = decide(&[KeyValue::new(DECISION, decision)]);
            assert_eq!(kept, SamplingDecision::RecordAndSample, "{decision}");
        }
        for kind in ["change", "event"] {
            let kept = decide(&[KeyValue::new(ACTION_KIND, kind)]);
            assert_eq!(kept, SamplingDecision::RecordAndSample, "{kind}");
        }
        let allowed = decide(&[
            KeyValue::new(ACTION_KIND, "request"),
            KeyValue::new(DECISION, "allow"),
        ]);
        assert_eq!(allowed, SamplingDecision::Drop);
    }
}
