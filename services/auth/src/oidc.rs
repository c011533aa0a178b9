//! People's bearer tokens: JWTs from an OIDC provider (Keycloak and similar), verified
//! against the provider's keys (a JWKS file or URL), issuer, audience and validity times, with
//! a claim mapped to Retrace roles.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use retrace_telemetry::InternalEvent;
use serde_json::Value;

use crate::authenticator::AuthError;
use crate::caller::{Caller, CredentialKind};
use crate::config::{AuthConfigError, OidcConfig};
use crate::events::{JwksLoadFailed, JwksLoaded};
use crate::permissions::{Grant, Role};

/// An unknown `kid` makes the keys reload, but not more often than this.
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error(
        "cannot use {path} (auth.oidc.jwks_ca_file) as CA certificates: {problem}; give a \
         PEM file of certificates"
    )]
    CaFile { path: PathBuf, problem: String },
    #[error("cannot start the HTTP client that fetches the JWKS: {0}")]
    Client(reqwest::Error),
    #[error("the JWKS from {source_name} is not a JSON key set (`{{\"keys\": [...]}}`): {problem}")]
    NotAKeySet {
        source_name: String,
        problem: String,
    },
}

enum KeySource {
    File(PathBuf),
    Url(String),
}

impl KeySource {
    fn name(&self) -> String {
        match self {
            KeySource::File(path) => path.display().to_string(),
            KeySource::Url(url) => url.clone(),
        }
    }
}

pub(crate) struct OidcVerifier {
    issuer: String,
    audience: String,
    roles_claim: Vec<String>,
    grants: BTreeMap<String, Grant>,
    leeway: u64,
    source: KeySource,
    http: reqwest::Client,
    keys: RwLock<Vec<Jwk>>,
    last_load: Mutex<Instant>,
    refreshing: tokio::sync::Mutex<()>,
    min_refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcSetupError {
    #[error(transparent)]
    Config(#[from] AuthConfigError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// The client fetching a `jwks_url`: the system's trust store, plus `ca_file`'s certificates.
fn jwks_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, JwksError> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(path) = ca_file {
        let unusable = |problem: String| JwksError::CaFile {
            path: path.to_owned(),
            problem,
        };
        let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(e.to_string()))?;
        if certificates.is_empty() {
            return Err(unusable("it holds no certificate".into()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(JwksError::Client)
}

impl OidcVerifier {
    /// Loads the provider's keys once; a provider unreachable at start is an error.
    pub(crate) async fn new(config: &OidcConfig) -> Result<Self, OidcSetupError> {
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(path), None) => KeySource::File(path.clone()),
            (None, Some(url)) => KeySource::Url(url.clone()),
            _ => return Err(AuthConfigError::JwksSource.into()),
        };
        let verifier = OidcVerifier {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            roles_claim: config.roles_claim.split('.').map(str::to_owned).collect(),
            grants: config.role_grants()?,
            leeway: config.leeway_seconds,
            source,
            http: jwks_client(config.jwks_ca_file.as_deref())?,
            keys: RwLock::default(),
            last_load: Mutex::new(Instant::now()),
            refreshing: tokio::sync::Mutex::new(()),
            min_refresh: MIN_REFRESH,
        };
        let keys = verifier.load().await?;
        *verifier.keys.write().expect("not poisoned") = keys;
        Ok(verifier)
    }

    #[cfg(test)]
    fn with_min_refresh(mut self, min_refresh: Duration) -> Self {
        self.min_refresh = min_refresh;
        self
    }

    async fn load(&self) -> Result<Vec<Jwk>, JwksError> {
        let source_name = self.source.name();
        let document: Value = match &self.source {
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|source| JwksError::Read {
                        path: path.clone(),
                        source,
                    })?;
                serde_json::from_slice(&bytes).map_err(|e| JwksError::NotAKeySet {
                    source_name: source_name.clone(),
                    problem: e.to_string(),
                })?
            }
            KeySource::Url(url) => {
                let fetch = |source| JwksError::Fetch {
                    url: url.clone(),
                    source,
                };
                self.http
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(fetch)?
                    .json()
                    .await
                    .map_err(fetch)?
            }
        };
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JwksError::NotAKeySet {
                source_name,
                problem: "it has no `keys` array".into(),
            });
        };
        // Keys Retrace cannot use (encryption keys, other algorithms) are skipped, not fatal.
        let keys: Vec<Jwk> = entries
            .iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
            .filter(|jwk| usable_algorithm(jwk).is_some())
            .collect();
        JwksLoaded {
            source: &source_name,
            keys: keys.len(),
        }
        .emit();
        Ok(keys)
    }

    /// Reloads the keys unless they were loaded less than `min_refresh` ago.
    async fn refresh(&self) -> Result<bool, AuthError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.last_load.lock().expect("not poisoned").elapsed() < self.min_refresh {
            return Ok(false);
        }
        *self.last_load.lock().expect("not poisoned") = Instant::now();
        match self.load().await {
            Ok(keys) => {
                *self.keys.write().expect("not poisoned") = keys;
                Ok(true)
            }
            Err(error) => {
                JwksLoadFailed { error: &error }.emit();
                Err(AuthError::KeysUnavailable(error.to_string()))
            }
        }
    }

    fn find_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
        self.keys
            .read()
            .expect("not poisoned")
            .iter()
            .filter(|jwk| usable_algorithm(jwk) == Some(alg))
            .find(|jwk| kid.is_none() || jwk.common.key_id.as_deref() == kid)
            .cloned()
    }

    pub(crate) async fn verify(&self, token: &str, origin: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed {
            reason: format!("the bearer token is not an API token (rtk_…) nor a JWT ({e})"),
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Malformed {
                reason: format!(
                    "the bearer token is signed with {:?}; only RS256 and ES256 are accepted",
                    header.alg
                ),
            });
        }
        let kid = header.kid.as_deref();
        let jwk = match self.find_key(kid, header.alg) {
            Some(jwk) => jwk,
            None => {
                self.refresh().await?;
                self.find_key(kid, header.alg)
                    .ok_or_else(|| AuthError::Unknown {
                        credential: match kid {
                            Some(kid) => {
                                format!("the bearer token's signing key {kid:?} ({:?})", header.alg)
                            }
                            None => format!("a {:?} signing key", header.alg),
                        },
                    })?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| {
            AuthError::KeysUnavailable(format!("key {kid:?} of the provider is unusable: {e}"))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|error| self.claim_error(error.kind()))?
            .claims;
        let actor = ["preferred_username", "sub"]
            .into_iter()
            .find_map(|name| claims.get(name).and_then(Value::as_str))
            .filter(|actor| !actor.is_empty())
            .ok_or_else(|| AuthError::Malformed {
                reason: "the bearer token has neither `preferred_username` nor `sub`".into(),
            })?
            .to_owned();
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut roles: Vec<Role> = Vec::new();
        let mut extra = Vec::new();
        for name in self.provider_roles(&claims) {
            match self.grants.get(&name) {
                Some(Grant::Role(role)) => roles.push(*role),
                Some(Grant::Permission(permission)) => extra.push(*permission),
                None => {}
            }
        }
        let Some(role) = roles.iter().copied().max() else {
            return Err(AuthError::NoRole {
                actor,
                claim: self.roles_claim.join("."),
            });
        };
        // The highest role wins; what the others grant beyond it is kept as extra.
        for other in roles {
            for permission in crate::Permission::ALL {
                if other.grants(permission) && !role.grants(permission) {
                    extra.push(permission);
                }
            }
        }
        extra.sort();
        extra.dedup();
        Ok(Caller {
            actor,
            actor_id: subject,
            role,
            extra,
            topics: None,
            origin: origin.to_owned(),
            credential: CredentialKind::Jwt,
        })
    }

    fn claim_error(&self, kind: &ErrorKind) -> AuthError {
        match kind {
            ErrorKind::ExpiredSignature => AuthError::Expired {
                credential: "the bearer token".into(),
            },
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer {
                expected: self.issuer.clone(),
            },
            ErrorKind::InvalidAudience => AuthError::WrongAudience {
                expected: self.audience.clone(),
            },
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::MissingRequiredClaim(claim) => AuthError::Malformed {
                reason: format!("the bearer token has no `{claim}` claim"),
            },
            other => AuthError::Malformed {
                reason: format!("the bearer token cannot be verified ({other:?})"),
            },
        }
    }

    /// The strings at the roles claim's dotted path: an array of strings, or one string.
    fn provider_roles(&self, claims: &Value) -> Vec<String> {
        let mut at = claims;
        for step in &self.roles_claim {
            match at.get(step) {
                Some(next) => at = next,
                None => return Vec::new(),
            }
        }
        match at {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The one algorithm Retrace verifies with this key: RS256 for RSA keys, ES256 for P-256
/// keys; `None` for anything else (HMAC secrets in particular are never accepted).
fn usable_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm;
    let (algorithm, family_ok) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, true),
        AlgorithmParameters::EllipticCurve(ec) => {
            (Algorithm::ES256, ec.curve == EllipticCurve::P256)
        }
        _ => return None,
    };
    let declared_ok = match declared {
        None => true,
        Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(_) => false,
    };
    (family_ok && declared_ok).then_some(algorithm)
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
