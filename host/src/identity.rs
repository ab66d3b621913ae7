//! Who is asking. `[[principal]]` entries map a bearer token (stored only
//! as its SHA-256) or a verified client certificate's name to a subject,
//! groups and a role. The admin API reads `Authorization: Bearer TOKEN`; the
//! proxy reads `Proxy-Authorization: Bearer TOKEN` (so `Authorization` stays
//! the backend's) or the client certificate. Tokens are compared in
//! constant time, against every known hash.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::config::{PrincipalConfig, Role};
use subtle::ConstantTimeEq;

use crate::secrets;

/// A known principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub groups: Vec<String>,
    /// The roles listed in its `[[principal]]`; none for a proxy client only.
    pub roles: Vec<Role>,
}

impl Identity {
    /// Whether it holds `role`, listed or included in one listed
    /// ([`Role::includes`]).
    pub fn holds(&self, role: Role) -> bool {
        self.roles.iter().any(|held| held.includes(role))
    }
}

/// The demo's well-known tokens: they work in `airlock demo` (loopback
/// only), and `airlock run` refuses a config that accepts any of them.
pub const DEMO_TOKENS: [(&str, &str); 4] = [
    ("alice", "demo-alice-token"),
    ("bob", "demo-bob-token"),
    ("ops", "demo-ops-token"),
    ("client", "demo-client-token"),
];

/// A bearer token was presented but is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the {0} header is not `Bearer TOKEN`")]
    Malformed(&'static str),
    #[error("the token in {0} is not known")]
    Unknown(&'static str),
}

/// Every principal from the config.
#[derive(Debug, Default)]
pub struct Identities {
    tokens: Vec<([u8; 32], Arc<Identity>)>,
    certificates: HashMap<String, Arc<Identity>>,
}

impl Identities {
    /// From `[[principal]]` entries (validated: hashes are 64 hex digits).
    pub fn new(principals: &[PrincipalConfig]) -> Identities {
        let mut identities = Identities::default();
        for principal in principals {
            let identity = Arc::new(Identity {
                subject: principal.subject.clone(),
                groups: principal.groups.clone(),
                roles: principal.roles.clone(),
            });
            if let Some(hash) = principal
                .token_sha256
                .as_deref()
                .and_then(|hash| hex::decode(hash).ok()?.try_into().ok())
            {
                identities.tokens.push((hash, identity.clone()));
            }
            if let Some(name) = &principal.certificate {
                identities
                    .certificates
                    .insert(name.to_ascii_lowercase(), identity);
            }
        }
        identities
    }

    /// Whoever holds `token`; every known hash is compared, in constant time.
    pub fn by_token(&self, token: &str) -> Option<Arc<Identity>> {
        let presented = secrets::sha256(token.as_bytes());
        let mut found = None;
        for (hash, identity) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity.clone());
            }
        }
        found
    }

    /// The principal a verified certificate name maps to.
    pub fn by_certificate(&self, name: &str) -> Option<Arc<Identity>> {
        self.certificates.get(&name.to_ascii_lowercase()).cloned()
    }

    /// The principal of a `Bearer` token in `header`, `None` if the header
    /// is absent.
    ///
    /// # Errors
    /// A header that is not `Bearer TOKEN`, or a token nobody holds.
    pub fn bearer(
        &self,
        headers: &HeaderMap,
        header: &'static str,
    ) -> Result<Option<Arc<Identity>>, AuthError> {
        let Some(value) = headers.get(header) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|text| {
                let (scheme, token) = text.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Malformed(header))?;
        self.by_token(token)
            .map(Some)
            .ok_or(AuthError::Unknown(header))
    }
}

/// Whether a configured token hash is one of the demo's tokens.
pub fn is_demo_token(token_sha256: &str) -> bool {
    DEMO_TOKENS.iter().any(|(_, token)| {
        crate::secrets::sha256_hex(token.as_bytes()).eq_ignore_ascii_case(token_sha256)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str, token: &str, roles: Vec<Role>) -> PrincipalConfig {
        PrincipalConfig {
            subject: subject.into(),
            token_sha256: Some(crate::secrets::sha256_hex(token.as_bytes())),
            certificate: None,
            groups: vec!["oncall".into()],
            roles,
        }
    }

    #[test]
    fn tokens_map_to_their_principal_and_nothing_else_does() {
        let identities = Identities::new(&[
            principal("alice", "a-token", vec![Role::Viewer, Role::Approver]),
            principal("svc", "s-token", vec![]),
        ]);
        let alice = identities.by_token("a-token").unwrap();
        assert_eq!(alice.subject, "alice");
        assert!(alice.holds(Role::Approver) && alice.holds(Role::Viewer));
        assert!(!alice.holds(Role::Admin) && !alice.holds(Role::Auditor));
        let svc = identities.by_token("s-token").unwrap();
        assert!(!svc.holds(Role::Viewer));
        assert_eq!(identities.by_token("a-tokem"), None);

        let mut headers = HeaderMap::new();
        assert_eq!(identities.bearer(&headers, "authorization"), Ok(None));
        headers.insert("authorization", "Bearer a-token".parse().unwrap());
        assert_eq!(
            identities
                .bearer(&headers, "authorization")
                .unwrap()
                .unwrap()
                .subject,
            "alice"
        );
        headers.insert("authorization", "Basic a-token".parse().unwrap());
        assert_eq!(
            identities.bearer(&headers, "authorization"),
            Err(AuthError::Malformed("authorization"))
        );
        headers.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            identities.bearer(&headers, "authorization"),
            Err(AuthError::Unknown("authorization"))
        );
    }

    #[test]
    fn admin_holds_every_role_and_auditor_only_its_own() {
        let identities = Identities::new(&[
            principal("root", "r-token", vec![Role::Admin]),
            principal("carl", "c-token", vec![Role::Auditor]),
        ]);
        let root = identities.by_token("r-token").unwrap();
        let auditor = identities.by_token("c-token").unwrap();
        for role in [Role::Viewer, Role::Approver, Role::Admin, Role::Auditor] {
            assert!(root.holds(role), "admin holds {}", role.name());
            assert_eq!(
                auditor.holds(role),
                role == Role::Auditor,
                "{}",
                role.name()
            );
        }
    }

    #[test]
    fn demo_tokens_are_recognized_by_their_hash() {
        let hash = crate::secrets::sha256_hex(b"demo-bob-token");
        assert!(is_demo_token(&hash));
        assert!(is_demo_token(&hash.to_uppercase()));
        assert!(!is_demo_token(&crate::secrets::sha256_hex(b"real")));
    }
}
