//! Everything retrace-auth reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together. Denials are `category="security"`, token
//! changes `category="audit"`. [`register_metrics`] registers every series at zero.

use std::time::Duration;

use metrics::counter;
use retrace_telemetry::InternalEvent;
use tracing::{debug, error, info, warn};

use crate::caller::{Caller, CredentialKind};
use crate::flood::BootstrapWarning;
use crate::token::TokenRecord;

/// A request was refused: no valid credential (401), or not allowed (403).
pub(crate) struct RequestDenied<'a> {
    pub caller: Option<&'a Caller>,
    pub actor: Option<&'a str>,
    pub origin: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// Short and fixed, for the metric label: `missing`, `expired`, `forbidden`, ...
    pub reason: &'static str,
    pub detail: &'a str,
}

impl InternalEvent for RequestDenied<'_> {
    fn emit(self) {
        warn!(
            category = "security",
            actor = self.actor,
            credential = self.caller.map(|c| c.credential.as_str()),
            origin = self.origin,
            method = self.method,
            path = self.path,
            reason = self.reason,
            detail = self.detail,
            "request denied"
        );
        counter!("retrace_auth_denied_total", "reason" => self.reason).increment(1);
    }
}

pub(crate) struct Authenticated<'a> {
    pub caller: &'a Caller,
}

impl InternalEvent for Authenticated<'_> {
    fn emit(self) {
        debug!(
            actor = self.caller.actor,
            role = self.caller.role.as_str(),
            origin = self.caller.origin,
            credential = self.caller.credential.as_str(),
            "caller authenticated"
        );
        counter!(
            "retrace_auth_requests_total",
            "credential" => self.caller.credential.as_str(),
        )
        .increment(1);
    }
}

/// A request authenticated with the bootstrap admin token: counted every time, logged as
/// [`BootstrapWarnings`](crate::flood::BootstrapWarnings) decides.
pub(crate) struct BootstrapAdminUsed<'a> {
    pub origin: &'a str,
    pub warning: BootstrapWarning,
}

impl InternalEvent for BootstrapAdminUsed<'_> {
    fn emit(self) {
        counter!("retrace_auth_bootstrap_admin_uses_total").increment(1);
        match self.warning {
            BootstrapWarning::First => warn!(
                category = "security",
                origin = self.origin,
                "the bootstrap admin token was used; create named tokens and remove \
                 auth.bootstrap_admin_sha256 (further uses are logged once a minute, all \
                 counted in retrace_auth_bootstrap_admin_uses_total)"
            ),
            BootstrapWarning::Again { left_out, since } => warn!(
                category = "security",
                origin = self.origin,
                left_out,
                "the bootstrap admin token was used again, and {left_out} more times in the \
                 {} s since the last warning; create named tokens and remove \
                 auth.bootstrap_admin_sha256",
                since.as_secs()
            ),
            BootstrapWarning::Quiet => {}
        }
    }
}

pub(crate) struct AuthDisabled;

impl InternalEvent for AuthDisabled {
    fn emit(self) {
        error!(
            category = "security",
            "AUTHENTICATION IS DISABLED (auth.enabled = false): every caller is an anonymous \
             admin. Use this only for development and tests"
        );
        metrics::gauge!("retrace_auth_disabled").set(1.0);
    }
}

pub(crate) struct TokenChanged<'a> {
    pub change: &'static str,
    pub record: &'a TokenRecord,
    pub by: &'a str,
}

impl InternalEvent for TokenChanged<'_> {
    fn emit(self) {
        info!(
            category = "audit",
            change = self.change,
            token_id = self.record.id,
            token_name = self.record.name,
            role = self.record.role.as_str(),
            by = self.by,
            expires_at = self.record.expires_at.map(|t| t.to_string()),
            "API token {}",
            self.change
        );
        counter!("retrace_auth_token_changes_total", "change" => self.change).increment(1);
    }
}

pub(crate) struct RegistryCaughtUp {
    pub tokens: usize,
    pub elapsed: Duration,
}

impl InternalEvent for RegistryCaughtUp {
    fn emit(self) {
        info!(
            tokens = self.tokens,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "token registry caught up; API tokens are accepted"
        );
        metrics::gauge!("retrace_auth_registry_caught_up").set(1.0);
    }
}

pub(crate) struct RegistryRecordSkipped<'a> {
    pub partition: i32,
    pub offset: i64,
    pub problem: &'a dyn std::fmt::Display,
}

impl InternalEvent for RegistryRecordSkipped<'_> {
    fn emit(self) {
        warn!(
            partition = self.partition,
            offset = self.offset,
            problem = %self.problem,
            "token record skipped: not a token record"
        );
        counter!("retrace_auth_registry_skipped_total").increment(1);
    }
}

/// A record on the token topic without a valid signature: written by something that holds
/// no signing key. Never applied; alerted on (`RetraceUnsignedSecurityRecords`).
pub(crate) struct TokenRecordRejected<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The message key: the token id the record claims to be about.
    pub key: Option<&'a str>,
    pub verdict: &'a crate::signing::Verdict,
}

impl InternalEvent for TokenRecordRejected<'_> {
    fn emit(self) {
        error!(
            category = "security",
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            token_id = self.key,
            reason = self.verdict.reason(),
            problem = %self.verdict,
            "token record NOT applied, {}: something wrote the token topic without \
             Retrace's signing key (docs/security.md, \"Signed records\")",
            self.verdict
        );
        counter!(
            "retrace_auth_token_records_rejected_total",
            "reason" => self.verdict.reason(),
        )
        .increment(1);
    }
}

/// The signing keys a service started with; none is a loud warning, since every reader will
/// flag what this service writes, and it applies no token record it reads.
pub(crate) struct SigningKeysLoaded<'a> {
    pub service: &'a str,
    pub keys: &'a crate::signing::SigningKeys,
}

impl InternalEvent for SigningKeysLoaded<'_> {
    fn emit(self) {
        let ids = self.keys.ids();
        if ids.is_empty() {
            error!(
                category = "security",
                service = self.service,
                "no signing key (auth.signing_keys, RETRACE_SIGNING_KEYS, \
                 auth.signing_key_file): the token records and audit events this service \
                 writes are unsigned, so other services will flag them, and it applies no \
                 token record it reads. Give every Retrace service the same key, e.g. from \
                 `openssl rand -hex 32`"
            );
        } else {
            info!(
                service = self.service,
                signing_key = ids[0],
                verifying_keys = ids.join(","),
                "signing keys loaded"
            );
        }
        metrics::gauge!("retrace_auth_signing_keys").set(ids.len() as f64);
    }
}

pub(crate) struct RegistryKafkaProblem<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for RegistryKafkaProblem<'_> {
    fn emit(self) {
        warn!(error = %self.error, "token registry: Kafka problem; continuing");
        counter!("retrace_auth_registry_errors_total").increment(1);
    }
}

pub(crate) struct JwksLoaded<'a> {
    pub source: &'a str,
    pub keys: usize,
}

impl InternalEvent for JwksLoaded<'_> {
    fn emit(self) {
        info!(
            source = self.source,
            keys = self.keys,
            "OIDC signing keys loaded"
        );
        counter!("retrace_auth_jwks_loads_total", "result" => "ok").increment(1);
    }
}

pub(crate) struct JwksLoadFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for JwksLoadFailed<'_> {
    fn emit(self) {
        warn!(error = %self.error, "OIDC signing keys could not be refreshed; keeping the old ones");
        counter!("retrace_auth_jwks_loads_total", "result" => "failed").increment(1);
    }
}

/// The audit queue was full: the event is lost to the audit trail (still in this log).
pub(crate) struct AuditEventDropped<'a> {
    pub service: &'a str,
}

impl InternalEvent for AuditEventDropped<'_> {
    fn emit(self) {
        error!(
            category = "security",
            service = self.service,
            "audit event dropped: the queue to Kafka is full"
        );
        counter!("retrace_auth_audit_dropped_total").increment(1);
    }
}

pub(crate) struct AuditEventNotPublished<'a> {
    pub action: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for AuditEventNotPublished<'_> {
    fn emit(self) {
        error!(
            category = "security",
            action = self.action,
            error = %self.error,
            "audit event not published to the audit topic"
        );
        counter!("retrace_auth_audit_unpublished_total").increment(1);
    }
}

/// Registers retrace-auth's series at zero (every service authenticates): each credential,
/// each reason a request is refused for (the guard's, and `extra_denials` a service refuses
/// for itself, e.g. the gateway's `internal_topic`), each token change and signature verdict.
pub fn register_metrics(extra_denials: &[&str]) {
    use retrace_telemetry::register;
    let credentials = [
        CredentialKind::ApiToken,
        CredentialKind::Jwt,
        CredentialKind::Anonymous,
    ]
    .map(CredentialKind::as_str);
    register(
        "retrace_auth_requests_total",
        &[("credential", &credentials)],
    );
    let mut denials = crate::authenticator::AuthError::reasons().to_vec();
    denials.push(crate::middleware::FORBIDDEN);
    denials.extend_from_slice(extra_denials);
    register("retrace_auth_denied_total", &[("reason", &denials)]);
    register(
        "retrace_auth_token_changes_total",
        &[("change", &[TOKEN_CREATED, TOKEN_REVOKED])],
    );
    register(
        "retrace_auth_token_records_rejected_total",
        &[("reason", &crate::signing::Verdict::REJECTIONS)],
    );
    register(
        "retrace_auth_jwks_loads_total",
        &[("result", &["ok", "failed"])],
    );
    for plain in [
        "retrace_auth_disabled",
        "retrace_auth_registry_caught_up",
        "retrace_auth_registry_skipped_total",
        "retrace_auth_signing_keys",
        "retrace_auth_registry_errors_total",
        "retrace_auth_audit_dropped_total",
        "retrace_auth_audit_unpublished_total",
        "retrace_auth_bootstrap_admin_uses_total",
    ] {
        register(plain, &[]);
    }
}

/// The `change` of [`TokenChanged`].
pub(crate) const TOKEN_CREATED: &str = "created";
pub(crate) const TOKEN_REVOKED: &str = "revoked";
