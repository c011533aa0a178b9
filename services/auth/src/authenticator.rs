//! [`Authenticator`]: from an `Authorization: Bearer …` header to a [`Caller`], or an
//! [`AuthError`] that says what is wrong without ever quoting the secret.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};
use jiff::Timestamp;
use retrace_telemetry::InternalEvent;

use crate::caller::{Caller, CredentialKind};
use crate::config::{AuthConfig, AuthConfigError};
use crate::events::{AuthDisabled, Authenticated, BootstrapAdminUsed};
use crate::flood::BootstrapWarnings;
use crate::oidc::{OidcSetupError, OidcVerifier};
use crate::permissions::Role;
use crate::registry::TokenRegistry;
use crate::token::{TOKEN_PREFIX, digest_matches, parse};

/// The actor named in audit records for the bootstrap admin token.
pub const BOOTSTRAP_ACTOR: &str = "bootstrap-admin";
/// The actor of every caller when authentication is disabled.
pub const ANONYMOUS_ACTOR: &str = "anonymous";

/// Why a request could not be tied to a caller with a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credential: send `Authorization: Bearer <token>` with an API token (rtk_…) or an \
         OIDC access token"
    )]
    Missing,
    #[error("the credential is malformed: {reason}")]
    Malformed { reason: String },
    #[error("{credential} is not known to this service; check the token or ask an admin for one")]
    Unknown { credential: String },
    #[error("{credential} has expired; ask for a new one")]
    Expired { credential: String },
    #[error("{credential} was revoked at {at}; ask an admin for a new one")]
    Revoked { credential: String, at: Timestamp },
    #[error(
        "the bearer token's signature does not verify against the OIDC provider's keys; get a \
         fresh token from the provider"
    )]
    BadSignature,
    #[error("the bearer token was not issued by {expected}, the issuer this service trusts")]
    WrongIssuer { expected: String },
    #[error(
        "the bearer token is not meant for this service: its `aud` does not include {expected}"
    )]
    WrongAudience { expected: String },
    #[error("the bearer token is not valid yet (`nbf` is in the future); check the clocks")]
    NotYetValid,
    #[error(
        "{actor} is authenticated but holds no Retrace role: none of the values at claim \
         `{claim}` is in auth.oidc.role_map; ask an admin to grant one"
    )]
    NoRole { actor: String, claim: String },
    #[error(
        "this service is still reading API tokens from Kafka and does not know this one yet; \
         retry in a moment"
    )]
    NotReady,
    #[error("the OIDC provider's keys are unavailable: {0}; retry later")]
    KeysUnavailable(String),
}

impl AuthError {
    /// 401 when the caller is not authenticated; 403 for a known person without a role;
    /// 503 while this service cannot tell yet.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::NoRole { .. } => StatusCode::FORBIDDEN,
            AuthError::NotReady | AuthError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short fixed name, the `reason` label of `retrace_auth_denied_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed { .. } => "malformed",
            AuthError::Unknown { .. } => "unknown",
            AuthError::Expired { .. } => "expired",
            AuthError::Revoked { .. } => "revoked",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongIssuer { .. } => "wrong_issuer",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::NoRole { .. } => "no_role",
            AuthError::NotReady => "not_ready",
            AuthError::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    /// Every [`reason`](Self::reason), for registering the metric at start.
    pub(crate) fn reasons() -> [&'static str; 12] {
        let none = String::new;
        [
            AuthError::Missing,
            AuthError::Malformed { reason: none() },
            AuthError::Unknown { credential: none() },
            AuthError::Expired { credential: none() },
            AuthError::Revoked {
                credential: none(),
                at: Timestamp::UNIX_EPOCH,
            },
            AuthError::BadSignature,
            AuthError::WrongIssuer { expected: none() },
            AuthError::WrongAudience { expected: none() },
            AuthError::NotYetValid,
            AuthError::NoRole {
                actor: none(),
                claim: none(),
            },
            AuthError::NotReady,
            AuthError::KeysUnavailable(none()),
        ]
        .map(|error| error.reason())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    #[error("cannot set up OIDC: {0}")]
    Oidc(#[from] OidcSetupError),
}

/// Tells who is calling. One per service; share it behind an `Arc`.
pub struct Authenticator {
    enabled: bool,
    metrics_public: bool,
    bootstrap_sha256: Option<String>,
    registry: Option<TokenRegistry>,
    oidc: Option<OidcVerifier>,
    bootstrap_warnings: BootstrapWarnings,
}

impl Authenticator {
    /// Checks `config`, and loads the OIDC provider's keys once if OIDC is configured.
    /// Without a `registry`, only the bootstrap token and OIDC tokens are accepted.
    pub async fn new(
        config: &AuthConfig,
        registry: Option<TokenRegistry>,
    ) -> Result<Authenticator, AuthSetupError> {
        config.validate()?;
        crate::events::register_metrics(&[]);
        if !config.enabled {
            AuthDisabled.emit();
        }
        let oidc = match &config.oidc {
            Some(oidc) if config.enabled => Some(OidcVerifier::new(oidc).await?),
            _ => None,
        };
        Ok(Authenticator {
            enabled: config.enabled,
            metrics_public: config.metrics_public,
            bootstrap_sha256: config.bootstrap_admin_sha256.clone(),
            registry,
            oidc,
            bootstrap_warnings: BootstrapWarnings::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn metrics_public(&self) -> bool {
        self.metrics_public
    }

    /// The registry API tokens are checked against, when there is one.
    pub fn registry(&self) -> Option<&TokenRegistry> {
        self.registry.as_ref()
    }

    /// The caller behind `headers`' `Authorization: Bearer …`; `origin` is the remote address.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        origin: &str,
    ) -> Result<Caller, AuthError> {
        let caller = if self.enabled {
            self.authenticate_bearer(bearer(headers)?, origin).await?
        } else {
            Caller {
                actor: ANONYMOUS_ACTOR.to_owned(),
                actor_id: String::new(),
                role: Role::Admin,
                extra: Vec::new(),
                topics: None,
                origin: origin.to_owned(),
                credential: CredentialKind::Anonymous,
            }
        };
        Authenticated { caller: &caller }.emit();
        Ok(caller)
    }

    /// The caller holding `token` (the text after `Bearer `).
    pub async fn authenticate_bearer(
        &self,
        token: &str,
        origin: &str,
    ) -> Result<Caller, AuthError> {
        if token.starts_with(TOKEN_PREFIX) {
            return self.api_token(token, origin, Instant::now());
        }
        match &self.oidc {
            Some(oidc) => oidc.verify(token, origin).await,
            None => Err(AuthError::Malformed {
                reason: "the bearer token is not an API token (rtk_…), and this service does \
                         not accept OIDC tokens (auth.oidc is not configured)"
                    .into(),
            }),
        }
    }

    /// The caller holding API token `text`, used at `now` (which paces the bootstrap
    /// token's warning).
    fn api_token(&self, text: &str, origin: &str, now: Instant) -> Result<Caller, AuthError> {
        let parts = parse(text).map_err(|e| AuthError::Malformed {
            reason: e.to_string(),
        })?;
        if let Some(bootstrap) = &self.bootstrap_sha256
            && digest_matches(bootstrap, text.as_bytes())
        {
            BootstrapAdminUsed {
                origin,
                warning: self.bootstrap_warnings.used(now),
            }
            .emit();
            return Ok(Caller {
                actor: BOOTSTRAP_ACTOR.to_owned(),
                actor_id: String::new(),
                role: Role::Admin,
                extra: Vec::new(),
                topics: None,
                origin: origin.to_owned(),
                credential: CredentialKind::ApiToken,
            });
        }
        let credential = format!("API token {}", parts.id);
        let Some(registry) = &self.registry else {
            return Err(AuthError::Unknown { credential });
        };
        let Some(record) = registry.get(parts.id) else {
            if !registry.caught_up() {
                return Err(AuthError::NotReady);
            }
            return Err(AuthError::Unknown { credential });
        };
        // The secret is checked first: knowing an id alone tells nothing about the token.
        if !record.secret_matches(parts.secret) {
            return Err(AuthError::Unknown { credential });
        }
        let credential = format!("API token {} ({})", record.id, record.name);
        if let Some(at) = record.revoked_at {
            return Err(AuthError::Revoked { credential, at });
        }
        if record.is_expired(Timestamp::now()) {
            return Err(AuthError::Expired { credential });
        }
        Ok(Caller {
            actor: record.name,
            actor_id: record.id,
            role: record.role,
            extra: record.extra,
            topics: record.topics,
            origin: origin.to_owned(),
            credential: CredentialKind::ApiToken,
        })
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let malformed = |reason: &str| AuthError::Malformed {
        reason: reason.to_owned(),
    };
    let value = value
        .to_str()
        .map_err(|_| malformed("the Authorization header is not ASCII text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| malformed("the Authorization header is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed(
            "the Authorization header uses another scheme than Bearer; send `Bearer <token>`",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(malformed(
            "the Authorization header has an empty bearer token",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::HeaderValue;

    use super::*;
    use crate::token::{NewToken, TokenRecord, generate};
    use crate::{AuthConfig, FLOOD_WINDOW, Permission};

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn issue(name: &str, role: Role, expires_in: Option<Duration>) -> (String, TokenRecord) {
        TokenRecord::issue(
            NewToken {
                name: name.into(),
                role,
                extra: vec![],
                topics: Some(vec!["births".into()]),
                expires_in,
            },
            "test",
            Timestamp::now(),
        )
        .unwrap()
    }

    async fn authenticator(records: Vec<TokenRecord>, bootstrap: Option<String>) -> Authenticator {
        let config = AuthConfig {
            bootstrap_admin_sha256: bootstrap,
            ..AuthConfig::default()
        };
        Authenticator::new(&config, Some(TokenRegistry::detached(records)))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn api_tokens_are_checked_against_their_records() {
        let (good, good_record) = issue("good", Role::Publisher, None);
        let (revoked, mut revoked_record) = issue("gone", Role::Support, None);
        revoked_record.revoked_at = Some(Timestamp::now());
        let (expired, mut expired_record) = issue("old", Role::Support, None);
        expired_record.expires_at = Some(Timestamp::now() - jiff::SignedDuration::from_secs(1));
        let (unknown, _) = issue("never-stored", Role::Admin, None);
        let auth = authenticator(vec![good_record, revoked_record, expired_record], None).await;

        let caller = auth
            .authenticate(&headers(&format!("Bearer {good}")), "10.0.0.1:5")
            .await
            .unwrap();
        assert_eq!(caller.actor, "good");
        assert_eq!(caller.credential, CredentialKind::ApiToken);
        assert!(caller.can_publish_to("births") && !caller.can_publish_to("deaths"));
        assert!(!caller.can(Permission::TraceRead));

        for (text, expected) in [
            (revoked.as_str(), "revoked"),
            (expired.as_str(), "expired"),
            (unknown.as_str(), "unknown"),
        ] {
            let error = auth
                .authenticate(&headers(&format!("bearer {text}")), "o")
                .await
                .unwrap_err();
            assert_eq!(error.reason(), expected, "{error}");
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
            let secret = parse(text).unwrap().secret;
            assert!(!error.to_string().contains(secret), "{error}");
        }
    }

    #[tokio::test]
    async fn a_right_id_with_a_wrong_secret_is_unknown() {
        let (good, record) = issue("good", Role::Admin, None);
        let auth = authenticator(vec![record], None).await;
        let forged = format!("{}{}", &good[..good.len() - 64], "0".repeat(64));
        let error = auth
            .authenticate(&headers(&format!("Bearer {forged}")), "o")
            .await
            .unwrap_err();
        assert!(matches!(error, AuthError::Unknown { .. }), "{error}");
    }

    #[tokio::test]
    async fn missing_and_malformed_headers_are_named() {
        let auth = authenticator(vec![], None).await;
        let error = auth.authenticate(&HeaderMap::new(), "o").await.unwrap_err();
        assert_eq!(error, AuthError::Missing);
        for value in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer  ",
            "Bearer rtk_zz_top",
            "Bearer a.b",
        ] {
            let error = auth.authenticate(&headers(value), "o").await.unwrap_err();
            assert_eq!(error.reason(), "malformed", "{value}: {error}");
        }
    }

    #[tokio::test]
    async fn the_bootstrap_token_is_an_admin() {
        let (text, digest) = generate();
        let auth = authenticator(vec![], Some(digest)).await;
        let caller = auth
            .authenticate(&headers(&format!("Bearer {text}")), "o")
            .await
            .unwrap();
        assert_eq!(caller.actor, BOOTSTRAP_ACTOR);
        assert!(caller.can(Permission::TokenAdmin));
        let (other, _) = generate();
        let error = auth
            .authenticate(&headers(&format!("Bearer {other}")), "o")
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "unknown");
    }

    /// Log lines, as a subscriber writes them.
    #[derive(Clone, Default)]
    struct Written(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn warnings(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .filter(|line| line.contains("bootstrap admin token was used"))
                .map(str::to_owned)
                .collect()
        }
    }

    #[tokio::test]
    async fn the_bootstrap_token_warns_once_a_minute_and_counts_every_use() {
        let (text, digest) = generate();
        let auth = authenticator(vec![], Some(digest)).await;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let counted = || {
            metrics
                .render()
                .lines()
                .find_map(|line| line.strip_prefix("retrace_auth_bootstrap_admin_uses_total "))
                .map(|value| value.parse::<u64>().unwrap())
        };
        let written = Written::default();
        let log = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer({
                    let written = written.clone();
                    move || written.clone()
                })
                .with_ansi(false)
                .finish(),
        );
        let start = Instant::now();
        let use_at = |after: Duration| {
            tracing::dispatcher::with_default(&log, || {
                metrics::with_local_recorder(&recorder, || {
                    let caller = auth.api_token(&text, "10.0.0.1:5", start + after).unwrap();
                    assert_eq!(caller.actor, BOOTSTRAP_ACTOR);
                })
            });
        };

        // 6,000 requests in 59.98 s: the first warns, every one counts.
        for n in 0..6_000 {
            use_at(Duration::from_micros(n * 9_999));
        }
        let warnings = written.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].contains("origin=\"10.0.0.1:5\""),
            "{}",
            warnings[0]
        );
        assert_eq!(counted(), Some(6_000));

        // A minute after the warning, the next use warns with the uses left out since.
        use_at(FLOOD_WINDOW);
        let warnings = written.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[1].contains("used again, and 5999 more times in the 60 s since the last"),
            "{}",
            warnings[1]
        );
        assert_eq!(counted(), Some(6_001));
        use_at(FLOOD_WINDOW + Duration::from_secs(1));
        assert_eq!(written.warnings().len(), 2);
        assert_eq!(counted(), Some(6_002));
    }

    #[tokio::test]
    async fn disabled_means_anonymous_admin() {
        let config = AuthConfig {
            enabled: false,
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(&config, None).await.unwrap();
        let caller = auth.authenticate(&HeaderMap::new(), "o").await.unwrap();
        assert_eq!(caller.credential, CredentialKind::Anonymous);
        assert_eq!(caller.role, Role::Admin);
    }
}
