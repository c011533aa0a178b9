//! `[auth]` in a service's configuration file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::permissions::{Grant, GrantError};
use crate::signing::{SigningKeyError, SigningKeys};
use crate::token::{from_hex_32, is_lower_hex};

/// The compacted topic API tokens live on unless configured otherwise.
pub const DEFAULT_TOKENS_TOPIC: &str = "retrace.tokens";

/// `[auth]`: who may call this service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `false` makes every caller an anonymous admin: development and tests only.
    pub enabled: bool,
    /// SHA-256 (hex) of a token text made offline with `retrace_auth::generate`; that token is
    /// accepted as an admin (`bootstrap-admin`) to create the first real tokens.
    pub bootstrap_admin_sha256: Option<String>,
    /// Whether `/metrics` answers without a credential (else any authenticated caller).
    pub metrics_public: bool,
    /// The compacted Kafka topic holding API token records.
    pub tokens_topic: String,
    /// People's bearer tokens from an OIDC provider (Keycloak, ...).
    pub oidc: Option<OidcConfig>,
    /// Keys (hex, at least 64 digits each) that token records and audit events are signed
    /// with (the first) and verified with (all of them: two during a rotation). Shared by
    /// every Retrace service; `RETRACE_SIGNING_KEYS` (comma-separated) replaces them.
    /// Secret: shown as `***` in `/v1/config`.
    pub signing_keys: Vec<String>,
    /// A file of signing keys, one a line, the current one first (after `signing_keys`).
    pub signing_key_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            bootstrap_admin_sha256: None,
            metrics_public: true,
            tokens_topic: DEFAULT_TOKENS_TOPIC.to_owned(),
            oidc: None,
            signing_keys: Vec::new(),
            signing_key_file: None,
        }
    }
}

/// `[auth.oidc]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` every token must carry, e.g. `https://sso.example.gov/realms/retrace`.
    pub issuer: String,
    /// The `aud` every token must include, e.g. `retrace`.
    pub audience: String,
    /// A JWKS document on disk...
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// ...or at a URL (the provider's `jwks_uri`). Exactly one of the two.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA certificates trusted for an `https` `jwks_url` besides the system's: for a
    /// provider whose certificate a private CA issued.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
    /// Dotted path of the claim holding the person's roles or groups:
    /// `realm_access.roles` (Keycloak), `roles`, `groups`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Provider role → Retrace role or permission, e.g. `"retrace-support" = "support"`,
    /// `"retrace-pii" = "payload:read"`. Unmapped roles grant nothing.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

fn default_leeway() -> u64 {
    30
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "auth.bootstrap_admin_sha256 must be 64 lowercase hex digits (the SHA-256 of the \
         bootstrap token text); it has {len} characters"
    )]
    BadBootstrapHash { len: usize },
    #[error("auth.oidc needs exactly one of jwks_file and jwks_url")]
    JwksSource,
    #[error("auth.oidc.role_map maps {provider_role:?} to something unknown: {source}")]
    RoleMap {
        provider_role: String,
        source: GrantError,
    },
    #[error("auth.oidc.{field} must not be empty")]
    Empty { field: &'static str },
    #[error("auth.tokens_topic {topic:?} is not a valid Kafka topic name: {problem}")]
    TokensTopic { topic: String, problem: String },
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
}

impl AuthConfig {
    /// Checks what serde cannot: the bootstrap hash, the role map, the JWKS source.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if let Some(hash) = &self.bootstrap_admin_sha256
            && (from_hex_32(hash).is_none() || !is_lower_hex(hash))
        {
            return Err(AuthConfigError::BadBootstrapHash { len: hash.len() });
        }
        retrace_sdk::check_topic_name(&self.tokens_topic).map_err(|problem| {
            AuthConfigError::TokensTopic {
                topic: self.tokens_topic.clone(),
                problem: problem.to_string(),
            }
        })?;
        SigningKeys::from_hex(&self.signing_keys, "in auth.signing_keys")?;
        if let Some(oidc) = &self.oidc {
            oidc.role_grants()?;
            if oidc.jwks_file.is_some() == oidc.jwks_url.is_some() {
                return Err(AuthConfigError::JwksSource);
            }
            for (field, value) in [
                ("issuer", &oidc.issuer),
                ("audience", &oidc.audience),
                ("roles_claim", &oidc.roles_claim),
            ] {
                if value.trim().is_empty() {
                    return Err(AuthConfigError::Empty { field });
                }
            }
        }
        Ok(())
    }
}

impl AuthConfig {
    /// The signing keys: `signing_keys`, then the keys of `signing_key_file` (read now).
    /// Empty when neither is set: then what this service writes is unsigned, and every
    /// token record and audit event it reads is flagged and not applied.
    pub fn signing_keys(&self) -> Result<SigningKeys, SigningKeyError> {
        let inline = SigningKeys::from_hex(&self.signing_keys, "in auth.signing_keys")?;
        match &self.signing_key_file {
            Some(path) => Ok(inline.and(&SigningKeys::from_file(path)?)),
            None => Ok(inline),
        }
    }
}

impl OidcConfig {
    /// The role map, parsed.
    pub fn role_grants(&self) -> Result<BTreeMap<String, Grant>, AuthConfigError> {
        self.role_map
            .iter()
            .map(|(provider_role, ours)| {
                ours.parse()
                    .map(|grant| (provider_role.clone(), grant))
                    .map_err(|source| AuthConfigError::RoleMap {
                        provider_role: provider_role.clone(),
                        source,
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        auth: AuthConfig,
    }

    #[test]
    fn a_full_section_parses() {
        let text = r#"
            [auth]
            bootstrap_admin_sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            metrics_public = false

            [auth.oidc]
            issuer = "https://sso.example.gov/realms/retrace"
            audience = "retrace"
            jwks_url = "http://sso.example.gov/realms/retrace/protocol/openid-connect/certs"
            roles_claim = "realm_access.roles"
            role_map = { "retrace-support" = "support", "retrace-pii" = "payload:read" }
        "#;
        let config = toml::from_str::<File>(text).unwrap().auth;
        config.validate().unwrap();
        assert!(config.enabled);
        assert!(!config.metrics_public);
        assert_eq!(config.tokens_topic, "retrace.tokens");
        let oidc = config.oidc.unwrap();
        assert_eq!(oidc.leeway_seconds, 30);
        assert_eq!(oidc.role_grants().unwrap().len(), 2);
    }

    #[test]
    fn mistakes_are_named() {
        let error = toml::from_str::<File>("[auth]\nenabeld = false")
            .err()
            .unwrap();
        assert!(error.to_string().contains("enabeld"), "{error}");

        let config = AuthConfig {
            bootstrap_admin_sha256: Some("abc".into()),
            ..AuthConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(AuthConfigError::BadBootstrapHash { len: 3 })
        );

        let oidc = OidcConfig {
            issuer: "i".into(),
            audience: "a".into(),
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            roles_claim: "roles".into(),
            role_map: BTreeMap::from([("ops".into(), "root".into())]),
            leeway_seconds: 0,
        };
        let mut config = AuthConfig {
            oidc: Some(oidc),
            ..AuthConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("\"ops\"") && error.contains("\"root\""),
            "{error}"
        );
        config.oidc.as_mut().unwrap().role_map.clear();
        assert_eq!(config.validate(), Err(AuthConfigError::JwksSource));
    }
}
