//! What an approval is, apart from the service that changes it: the
//! action it holds, the holds it must satisfy, the votes it has, and the
//! pure rules over them (who may see it, who may vote, what the votes so
//! far decide, whose limits it counts against). Nothing here reads the
//! store or the clock.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::grants::GrantTerms;
use crate::audit::PolicyRef;
use crate::config::Role;
use crate::identity::Identity;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ApprovalState {
    /// The name used in the API and the trail.
    pub fn name(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
        }
    }
}

/// What is waiting: the request as it will be forwarded, or an operator's
/// routing change (`kind` = `change`, the change in `change`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionSummary {
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub host: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub route: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub pool: String,
    #[serde(default)]
    pub body_size: u64,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub body_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change: Option<serde_json::Value>,
    /// The `Host` as the client sent it, port included (an async ticket
    /// must come back to the same one).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub authority: String,
    /// The request's headers as approvers see them (credentials
    /// `[redacted]`).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub headers: Vec<ShownHeader>,
    /// SHA-256 of the headers an async ticket binds
    /// (`proxy::hygiene::bound_headers_digest`).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub headers_sha256: String,
}

/// A request header as approvers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownHeader {
    pub name: String,
    pub value: String,
}

/// One policy's hold: its own groups and quorum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRequirement {
    pub policy: String,
    pub reason: String,
    pub groups: Vec<String>,
    pub quorum: u32,
    /// What passing this hold grants (never for an anonymous requester).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grant: Option<GrantTerms>,
}

/// `approve` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    /// `approve` or `deny`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// A vote, with the voter's groups as they were when they voted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    pub subject: String,
    pub groups: Vec<String>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    pub time_ms: i64,
}

/// An approval, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    pub action: ActionSummary,
    /// The requester's subject.
    pub principal: String,
    pub policies: Vec<PolicyRef>,
    pub reason: String,
    pub holds: Vec<HoldRequirement>,
    pub votes: Vec<Vote>,
    pub created_ms: i64,
    pub expires_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resolved_ms: Option<i64>,
    /// Who denied it (`expired`, `cancelled` and `approved` need no name).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub denied_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace: Option<String>,
    /// The first body bytes, lossily as text, for approvers (never in the
    /// trail).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body_preview: Option<String>,
    /// The requester asked with `Prefer: respond-async` and comes back with
    /// a ticket.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub respond_async: bool,
    /// SHA-256 of the async ticket: stored, never shown ([`Approval::public`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ticket_sha256: Option<String>,
    /// An approved async request must come back before this.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redeem_by_ms: Option<i64>,
    /// When the async ticket was used, or the approved change or event
    /// carried out: an approval passes once.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redeemed_ms: Option<i64>,
    /// The grants its approval started.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub grants: Vec<String>,
    /// The node whose action waits on it: when that node goes, another
    /// cancels it (unless it is async: nothing waits on a connection).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// The requester's IP address (a held request's client).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client: Option<String>,
    /// That node's etcd lease when it made it: only the end of that lease
    /// cancels it, not the late news of an earlier one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lease: Option<i64>,
}

impl Approval {
    /// A new pending approval of `action` by `principal`, for `holds` (each
    /// holding policy and what it asked). Grant terms are kept only if
    /// `grantable` (the principal is not anonymous). Id, times and the rest
    /// are filled in by [`Approvals::create`] or left empty.
    pub fn pending(
        action: ActionSummary,
        principal: &str,
        policies: Vec<PolicyRef>,
        holds: &[(Arc<str>, crate::policy::decision::HoldRequest)],
        grantable: bool,
    ) -> Approval {
        Approval {
            id: String::new(),
            state: ApprovalState::Pending,
            action,
            principal: principal.to_owned(),
            policies,
            reason: holds
                .iter()
                .map(|(_, hold)| hold.reason.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            holds: holds
                .iter()
                .map(|(policy, hold)| HoldRequirement {
                    policy: policy.to_string(),
                    reason: hold.reason.clone(),
                    groups: hold.approver_groups.clone(),
                    quorum: hold.quorum,
                    grant: hold
                        .grant
                        .as_ref()
                        .filter(|_| grantable)
                        .map(|grant| GrantTerms {
                            scope: grant.scope.clone(),
                            lifetime_ms: u64::try_from(grant.lifetime.as_millis())
                                .unwrap_or(u64::MAX),
                        }),
                })
                .collect(),
            votes: Vec::new(),
            created_ms: 0,
            expires_ms: 0,
            resolved_ms: None,
            denied_by: None,
            trace: None,
            body_preview: None,
            respond_async: false,
            ticket_sha256: None,
            redeem_by_ms: None,
            redeemed_ms: None,
            grants: Vec::new(),
            node: None,
            client: None,
            lease: None,
        }
    }

    /// The approval as callers see it: without the ticket's hash, and,
    /// unless `with_preview`, without the body preview.
    pub fn public(mut self, with_preview: bool) -> Approval {
        self.ticket_sha256 = None;
        if !with_preview {
            self.body_preview = None;
        }
        self
    }

    /// Who voted to approve, in vote order.
    pub fn approvers(&self) -> Vec<String> {
        self.votes
            .iter()
            .filter(|vote| vote.verdict == Verdict::Approve)
            .map(|vote| vote.subject.clone())
            .collect()
    }

    /// Whose limits it counts against ([`quota_key`]).
    pub fn quota_key(&self) -> String {
        let client = self.client.as_deref().and_then(|ip| ip.parse().ok());
        quota_key(&self.principal, client)
    }

    /// Whether `identity` may see this approval: admins see all; others
    /// their own, and those asking one of their groups.
    pub fn visible_to(&self, identity: &Identity) -> bool {
        identity.holds(Role::Admin) || identity.subject == self.principal || self.may_vote(identity)
    }

    /// Approvals of one hold: distinct subjects from its groups who approved.
    pub(super) fn approvals_for(&self, hold: &HoldRequirement) -> usize {
        let mut subjects: Vec<&str> = self
            .votes
            .iter()
            .filter(|vote| vote.verdict == Verdict::Approve)
            .filter(|vote| vote.groups.iter().any(|group| hold.groups.contains(group)))
            .map(|vote| vote.subject.as_str())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        subjects.len()
    }

    /// What the votes so far decide: any deny denies; every hold's quorum
    /// met approves; otherwise still pending.
    pub(super) fn decided(&self) -> ApprovalState {
        if self.votes.iter().any(|vote| vote.verdict == Verdict::Deny) {
            ApprovalState::Denied
        } else if self.holds.iter().all(|hold| {
            self.approvals_for(hold) >= usize::try_from(hold.quorum).unwrap_or(usize::MAX)
        }) {
            ApprovalState::Approved
        } else {
            ApprovalState::Pending
        }
    }

    /// Whether `voter` belongs to a group some hold asks.
    pub(super) fn may_vote(&self, voter: &Identity) -> bool {
        self.holds
            .iter()
            .any(|hold| voter.groups.iter().any(|group| hold.groups.contains(group)))
    }
}

/// Whose approval limits a requester counts against: its subject, or for
/// an anonymous requester, its address (`anonymous@192.0.2.7`), so one
/// anonymous client cannot use up every anonymous client's share. An IPv6
/// client counts by its /64 (`anonymous@2001:db8:1:2::/64`): one host
/// usually has a whole /64 to pick addresses from.
pub fn quota_key(principal: &str, client: Option<std::net::IpAddr>) -> String {
    use std::net::IpAddr;
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(ip)) if principal == ANONYMOUS => format!("{ANONYMOUS}@{ip}"),
        Some(IpAddr::V6(ip)) if principal == ANONYMOUS => {
            let network = std::net::Ipv6Addr::from_bits(ip.to_bits() & !((1u128 << 64) - 1));
            format!("{ANONYMOUS}@{network}/64")
        }
        _ => principal.to_owned(),
    }
}

/// The subject of a requester nobody authenticated.
pub const ANONYMOUS: &str = "anonymous";

impl ActionSummary {
    /// One line for people: `DELETE host/path`, or the change or event.
    pub fn describe(&self) -> String {
        match &self.change {
            Some(change) => format!("{} {change}", self.kind),
            None => format!("{} {}{}", self.method, self.host, self.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Subjects `s0`..`s4`, each in some of groups `g0`..`g2`.
    fn vote() -> impl Strategy<Value = Vote> {
        (
            0..5u8,
            proptest::sample::subsequence(vec![0u8, 1, 2], 0..=3),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(subject, groups, deny)| Vote {
                subject: format!("s{subject}"),
                groups: groups.iter().map(|group| format!("g{group}")).collect(),
                verdict: if deny {
                    Verdict::Deny
                } else {
                    Verdict::Approve
                },
                comment: None,
                time_ms: 0,
            })
    }

    /// One to three holds, each asking some groups for a quorum of 1 to 3.
    fn holds() -> impl Strategy<Value = Vec<HoldRequirement>> {
        prop::collection::vec(
            (
                proptest::sample::subsequence(vec![0u8, 1, 2], 1..=3),
                1..=3u32,
            ),
            1..=3,
        )
        .prop_map(|holds| {
            holds
                .into_iter()
                .map(|(groups, quorum)| HoldRequirement {
                    policy: "p".into(),
                    reason: String::new(),
                    groups: groups.iter().map(|group| format!("g{group}")).collect(),
                    quorum,
                    grant: None,
                })
                .collect()
        })
    }

    fn approval(holds: Vec<HoldRequirement>, votes: Vec<Vote>) -> Approval {
        let mut approval =
            Approval::pending(ActionSummary::default(), "alice", Vec::new(), &[], false);
        approval.holds = holds;
        approval.votes = votes;
        approval
    }

    proptest! {
        /// The quorum rules, for any holds and votes: the order of the
        /// votes does not matter; a subject's repeated approvals count
        /// once; any deny denies; and otherwise the approval is approved
        /// exactly when each hold has its quorum of distinct subjects from
        /// its groups.
        #[test]
        fn quorum_counts_each_subject_once_and_any_deny_denies(
            holds in holds(),
            votes in prop::collection::vec(vote(), 0..8),
            seed in any::<u64>(),
        ) {
            let decided = approval(holds.clone(), votes.clone()).decided();

            let mut shuffled = votes.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                shuffled.swap(i, usize::try_from(state >> 33).unwrap() % (i + 1));
            }
            prop_assert_eq!(approval(holds.clone(), shuffled).decided(), decided);

            let mut repeated = votes.clone();
            repeated.extend(votes.iter().filter(|vote| vote.verdict == Verdict::Approve).cloned());
            prop_assert_eq!(approval(holds.clone(), repeated).decided(), decided);

            let expected = if votes.iter().any(|vote| vote.verdict == Verdict::Deny) {
                ApprovalState::Denied
            } else if holds.iter().all(|hold| {
                let subjects: std::collections::BTreeSet<&str> = votes
                    .iter()
                    .filter(|vote| vote.groups.iter().any(|group| hold.groups.contains(group)))
                    .map(|vote| vote.subject.as_str())
                    .collect();
                subjects.len() >= hold.quorum as usize
            }) {
                ApprovalState::Approved
            } else {
                ApprovalState::Pending
            };
            prop_assert_eq!(decided, expected);
        }
    }

    #[test]
    fn anonymous_quotas_are_kept_per_address_and_per_ipv6_64() {
        let key = |ip: &str| quota_key(ANONYMOUS, Some(ip.parse().unwrap()));
        assert_eq!(key("192.0.2.7"), "anonymous@192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        // One host picks any address of its /64: they all count as one.
        assert_eq!(key("2001:db8:1:2::1"), "anonymous@2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        // An IPv4 client seen on a dual-stack socket is still its IPv4 address.
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        // A known principal counts as itself, wherever it comes from.
        assert_eq!(
            quota_key("alice", Some("192.0.2.7".parse().unwrap())),
            "alice"
        );
    }
}
