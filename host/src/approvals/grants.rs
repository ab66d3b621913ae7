//! Grants: when a policy's hold carried a grant and the approval passed,
//! the same principal's actions that this policy holds under the same scope
//! pass without asking until the grant ends (its lifetime, capped by
//! `[approvals] max_grant_lifetime`), or an admin revokes it. Anonymous
//! principals never get one: there is nobody to bind it to.
//!
//! Grants live in the store's grants table and, for the request path, in a
//! map in memory; each start, revocation and expiry has its audit entry in
//! the same commit as the table change.

use serde::{Deserialize, Serialize};

use super::{Approval, ApprovalError, Approvals};
use crate::audit::{now_ms, AuditEntry, EntryKind};
use crate::store::{StateChange, StateTable, StoreError};

/// What a hold asks to be granted if approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// What the grant covers, as the policy named it (`DELETE /admin/users`).
    pub scope: String,
    pub lifetime_ms: u64,
}

/// A standing permission: `subject`'s actions held by `policy` under
/// `scope` pass until `expires_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub subject: String,
    pub policy: String,
    pub scope: String,
    /// The approval it came from.
    pub approval: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Grant {
    fn covers(&self, subject: &str, policy: &str, scope: &str, now: i64) -> bool {
        self.subject == subject
            && self.policy == policy
            && self.scope == scope
            && now < self.expires_ms
    }

    fn entry(&self, kind: EntryKind, actor: &str) -> AuditEntry {
        let mut entry = AuditEntry::new(kind, actor);
        entry.grant = Some(self.id.clone());
        entry.approval = Some(self.approval.clone());
        entry.reason = Some(format!(
            "`{}` may pass policy `{}` for `{}` until {}",
            self.subject, self.policy, self.scope, self.expires_ms
        ));
        entry
    }

    fn put(&self) -> StateChange {
        StateChange::Put {
            table: StateTable::Grants,
            key: self.id.clone(),
            // Plain strings and numbers always serialize.
            value: serde_json::to_vec(self).unwrap_or_default(),
        }
    }

    /// The store write that ends the grant, unless another writer (an
    /// admin's revocation, another node's sweep) changed it first.
    fn delete(&self) -> StateChange {
        StateChange::Replace {
            table: StateTable::Grants,
            key: self.id.clone(),
            // Plain strings and numbers always serialize.
            expected: Some(serde_json::to_vec(self).unwrap_or_default()),
            value: None,
        }
    }
}

/// The grants an approval starts, with what to commit for them.
pub(super) struct Granted {
    pub grants: Vec<Grant>,
    pub entries: Vec<AuditEntry>,
    pub changes: Vec<StateChange>,
}

/// The grants an approval that just passed starts (none for an anonymous
/// requester: its holds carry no terms).
pub(super) fn granted_by(
    approval: &Approval,
    max_lifetime_ms: u64,
    actor: &str,
) -> Result<Granted, StoreError> {
    let now = now_ms();
    let mut grants = Vec::new();
    for hold in &approval.holds {
        let Some(terms) = &hold.grant else { continue };
        let lifetime = terms.lifetime_ms.min(max_lifetime_ms);
        grants.push(Grant {
            id: super::new_id("grt")?,
            subject: approval.principal.clone(),
            policy: hold.policy.clone(),
            scope: terms.scope.clone(),
            approval: approval.id.clone(),
            created_ms: now,
            expires_ms: now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
        });
    }
    let entries = grants
        .iter()
        .map(|grant| grant.entry(EntryKind::GrantCreated, actor))
        .collect();
    let changes = grants.iter().map(Grant::put).collect();
    Ok(Granted {
        grants,
        entries,
        changes,
    })
}

impl Approvals {
    /// Load the stored grants (at start, and when the store's events were
    /// missed).
    pub(super) fn load_grants(&self) -> Result<(), StoreError> {
        let stored = self.store.state_list(StateTable::Grants)?;
        let mut grants = self.grant_map();
        grants.clear();
        for (id, bytes) in stored {
            match serde_json::from_slice::<Grant>(&bytes) {
                Ok(grant) => {
                    grants.insert(id, grant);
                }
                Err(error) => tracing::error!(grant = %id, "unreadable grant ignored: {error}"),
            }
        }
        Ok(())
    }

    /// The live grant letting `subject` pass `policy`'s hold of `scope`.
    pub fn grant_for(&self, subject: &str, policy: &str, scope: &str) -> Option<Grant> {
        let now = now_ms();
        self.grant_map()
            .values()
            .find(|grant| grant.covers(subject, policy, scope, now))
            .cloned()
    }

    /// Drop from `holds` those a live grant of `subject` covers (same
    /// policy, same scope); returns the covering grants' ids.
    pub fn cover(
        &self,
        subject: &str,
        holds: &mut Vec<(std::sync::Arc<str>, crate::policy::decision::HoldRequest)>,
    ) -> Vec<String> {
        let mut covering = Vec::new();
        holds.retain(|(policy, hold)| {
            let grant = hold
                .grant
                .as_ref()
                .and_then(|terms| self.grant_for(subject, policy, &terms.scope));
            match grant {
                Some(grant) => {
                    covering.push(grant.id);
                    false
                }
                None => true,
            }
        });
        covering
    }

    /// Every grant not yet ended, soonest to end first.
    pub fn grants(&self) -> Vec<Grant> {
        let now = now_ms();
        let mut grants: Vec<Grant> = self
            .grant_map()
            .values()
            .filter(|grant| now < grant.expires_ms)
            .cloned()
            .collect();
        grants.sort_by(|a, b| a.expires_ms.cmp(&b.expires_ms).then(a.id.cmp(&b.id)));
        grants
    }

    /// `actor` ends grant `id` now.
    ///
    /// # Errors
    /// [`ApprovalError::GrantNotFound`] for an unknown or ended grant; a failed
    /// commit (then the grant stands).
    pub async fn revoke_grant(&self, id: &str, actor: &str) -> Result<Grant, ApprovalError> {
        let grant = self
            .grants()
            .into_iter()
            .find(|grant| grant.id == id)
            .ok_or_else(|| ApprovalError::GrantNotFound(id.to_owned()))?;
        self.log
            .record_with(
                grant.entry(EntryKind::GrantRevoked, actor),
                vec![grant.delete()],
            )
            .await?;
        self.grant_map().remove(id);
        Ok(grant)
    }

    /// Record the end of every grant whose lifetime is over and drop it.
    /// (The request path already ignores them; this keeps the table and the
    /// trail in step.)
    ///
    /// # Errors
    /// When the commit fails; the grants stay for the next round.
    pub async fn expire_grants(&self) -> Result<usize, ApprovalError> {
        let now = now_ms();
        let ended: Vec<Grant> = self
            .grant_map()
            .values()
            .filter(|grant| grant.expires_ms <= now)
            .cloned()
            .collect();
        if ended.is_empty() {
            return Ok(0);
        }
        let entries = ended
            .iter()
            .map(|grant| grant.entry(EntryKind::GrantExpired, "airlock"))
            .collect();
        let changes = ended.iter().map(Grant::delete).collect();
        match self.log.record_all(entries, changes).await {
            Ok(_) => {}
            // Another node (or a revocation) ended one first: its event
            // drops it here, and the next sweep takes the rest.
            Err(crate::audit::AuditError::Conflict(_)) => return Ok(0),
            Err(error) => return Err(error.into()),
        }
        let mut grants = self.grant_map();
        for grant in &ended {
            grants.remove(&grant.id);
        }
        Ok(ended.len())
    }

    /// Grant `id` was written or deleted in the store, here or elsewhere.
    pub(super) fn grant_changed(&self, id: &str) {
        match self.store.state_get(StateTable::Grants, id) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Grant>(&bytes) {
                Ok(grant) => {
                    self.grant_map().insert(id.to_owned(), grant);
                }
                Err(error) => tracing::error!(grant = %id, "unreadable grant ignored: {error}"),
            },
            Ok(None) => {
                self.grant_map().remove(id);
            }
            Err(error) => tracing::error!(grant = %id, "grant not read: {error}"),
        }
    }

    pub(super) fn add_grants(&self, new: Vec<Grant>) {
        let mut grants = self.grant_map();
        for grant in new {
            grants.insert(grant.id.clone(), grant);
        }
    }

    fn grant_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Grant>> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
