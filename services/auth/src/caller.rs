//! [`Caller`]: who is calling, with which credential, and what they may do.

use serde::Serialize;

use crate::permissions::{Permission, Role};

/// The kind of credential a caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A Retrace API token (`rtk_…`), or the bootstrap admin token.
    ApiToken,
    /// An OIDC bearer token (a JWT from Keycloak or similar).
    Jwt,
    /// Nobody: authentication is disabled (development and tests only).
    Anonymous,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::ApiToken => "api_token",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Anonymous => "anonymous",
        }
    }
}

/// An authenticated caller. The guard puts one in each request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// Token name, or the JWT's `preferred_username` (else `sub`); what audit records name.
    pub actor: String,
    /// Which credential exactly, where a name can be given again: the API token's id, or
    /// the JWT's `sub`; empty for the bootstrap admin and when authentication is off.
    pub actor_id: String,
    pub role: Role,
    /// Permissions granted beyond the role (e.g. `payload:read` for an analyst).
    pub extra: Vec<Permission>,
    /// Topics this caller may publish to; `None` means any.
    pub topics: Option<Vec<String>>,
    /// The remote address the request came from.
    pub origin: String,
    pub credential: CredentialKind,
}

impl Caller {
    /// Whether the caller holds `permission`, through its role or explicitly.
    pub fn can(&self, permission: Permission) -> bool {
        self.role.grants(permission) || self.extra.contains(&permission)
    }

    /// Whether the caller may publish to `topic`: it holds [`Permission::Publish`] and the
    /// topic is on its allow-list (if it has one).
    pub fn can_publish_to(&self, topic: &str) -> bool {
        self.can(Permission::Publish)
            && self
                .topics
                .as_ref()
                .is_none_or(|allowed| allowed.iter().any(|t| t == topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, extra: Vec<Permission>, topics: Option<Vec<String>>) -> Caller {
        Caller {
            actor: "t".into(),
            actor_id: String::new(),
            role,
            extra,
            topics,
            origin: "127.0.0.1:1".into(),
            credential: CredentialKind::ApiToken,
        }
    }

    #[test]
    fn extra_permissions_add_to_the_role() {
        let analyst = caller(Role::Analyst, vec![], None);
        assert!(!analyst.can(Permission::PayloadRead));
        let granted = caller(Role::Analyst, vec![Permission::PayloadRead], None);
        assert!(granted.can(Permission::PayloadRead));
        assert!(granted.can(Permission::Export));
        assert!(!granted.can(Permission::Replay));
    }

    #[test]
    fn publishing_follows_the_allow_list() {
        let limited = caller(
            Role::Publisher,
            vec![],
            Some(vec!["births".into(), "deaths".into()]),
        );
        assert!(limited.can_publish_to("births"));
        assert!(!limited.can_publish_to("payments"));
        let any = caller(Role::Publisher, vec![], None);
        assert!(any.can_publish_to("payments"));
        let support = caller(Role::Support, vec![], None);
        assert!(!support.can_publish_to("births"));
    }
}
