//! Erasure, backups, the audit trail, tokens and the caller: the administrative routes' documents.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::PositionView;

/// `POST /v1/subjects/{id}/erase`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Required: why (the request's reference), for the audit trail.
    #[schema(pattern = r"\S")]
    pub reason: String,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Erasure)]
pub struct ErasureView {
    pub subject_id: String,
    #[schema(format = DateTime)]
    pub erased_at: String,
    /// Transactions that touched the subject.
    pub transactions: usize,
    /// Records whose payload this erasure removed.
    pub records: usize,
    /// Records an earlier erasure had already emptied.
    pub already_erased: usize,
    /// Outcomes of the subject's transactions whose error text this erasure removed (a
    /// consumer may have named the person there).
    #[serde(default)]
    pub outcomes: usize,
    /// What still holds the bytes, and what removes them.
    pub note: String,
}

/// `POST /v1/admin/backups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Where to write the backup, on the archive's host: a new or empty directory.
    pub directory: String,
}

/// A backup's `manifest.json`, also the answer to `POST /v1/admin/backups` and what
/// `retrace restore` checks and prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BackupManifest {
    /// The store format the backup was written in.
    pub format_version: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Records in the backup.
    pub records: u64,
    /// Where a restored archive resumes reading each partition.
    pub positions: Vec<PositionView>,
}

/// One record of the audit trail (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditRecord)]
pub struct AuditView {
    /// Its number in the chain, from 1.
    pub seq: u64,
    #[schema(format = DateTime)]
    pub at: String,
    pub actor: String,
    /// Which credential: the API token's id (`retrace token list` shows it) or the OIDC
    /// token's `sub`, so two tokens given the same name are told apart; absent when none is
    /// known (the bootstrap admin, a refused credential, records written before it existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor_id: String,
    pub role: String,
    /// The caller's address.
    pub origin: String,
    /// `transaction.read`, `replay.start`, `subject.erase`, `token.create`, `denied`, ...
    pub action: String,
    /// The transaction, subject, query, token or request it was done to.
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// `ok`, or why it failed or was refused.
    pub result: String,
    /// SHA-256 of the record and its predecessor's hash, hex.
    pub hash: String,
}

/// The audit trail's hash chain, walked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditChain)]
pub struct AuditVerificationView {
    pub records: u64,
    /// No record altered, removed or moved.
    pub intact: bool,
    /// Each break in the chain, naming the record.
    pub problems: Vec<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// 1-64 letters, digits, `-`, `_`, `.` or `@`, unique among live tokens:
    /// `billing-service`, `ci-replays`.
    #[schema(pattern = "^[A-Za-z0-9@._-]{1,64}$")]
    pub name: String,
    /// `publisher`, `support`, `analyst` or `admin`.
    #[schema(schema_with = crate::schema::role)]
    pub role: String,
    /// Permissions beyond the role, e.g. `payload:read`.
    #[serde(default)]
    #[schema(schema_with = crate::schema::permissions)]
    pub extra: Vec<String>,
    /// Topics a publisher may publish to; absent means any.
    #[serde(default)]
    #[schema(schema_with = crate::schema::topics)]
    pub topics: Option<Vec<String>>,
    /// Absent: the token never expires (revoke it instead).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// An API token as kept: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Token)]
pub struct TokenView {
    /// The 12 hex digits after `rtk_` in the token's text.
    pub id: String,
    pub name: String,
    pub role: String,
    /// Permissions beyond the role.
    pub extra: Vec<String>,
    /// Topics a publisher may publish to; null means any.
    pub topics: Option<Vec<String>>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// The answer to `POST /v1/tokens`: the token text, shown this once, and its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// `rtk_<id>_<secret>`: shown this once.
    pub token: String,
    pub record: TokenView,
}

/// What `GET /v1/config` answers, the same on every service: which configuration runs and
/// its effective settings, secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigDocument {
    /// `archive`, `gateway` or `worker`.
    pub service: String,
    /// The first 12 hex digits of the SHA-256 of the effective configuration; also the
    /// `version` label of `retrace_config_info`. New at each reload that changes something.
    pub version: String,
    /// When this version was resolved.
    #[schema(format = DateTime)]
    pub loaded_at: String,
    /// The configuration file (`--config`, `RETRACE_CONFIG`), null when there is none.
    #[schema(required = true)]
    pub file: Option<String>,
    /// The effective configuration (defaults, file, `RETRACE_*` environment, flags), each
    /// secret (passwords, secrets, the bootstrap admin hash) replaced by `"***"`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// `GET /v1/whoami`: the authenticated caller, so a client shows only what it may do (the
/// server checks every request anyway).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The name audit records give the caller: the token's name, or the person's username.
    pub actor: String,
    /// `publisher`, `analyst`, `support` or `admin`.
    pub role: String,
    /// `api_token`, `jwt`, or `anonymous` (authentication disabled).
    pub credential: String,
    /// Every permission the caller holds, through its role or granted beyond it, e.g.
    /// `trace:read`, `payload:read`, `replay`.
    pub permissions: Vec<String>,
}

/// `GET /v1/audit/verify`: the hash chain, as [`AuditVerificationView`] says it, and
/// separately the records of the audit topic that were never chained because their
/// signature is missing or wrong (docs/security.md, "Signed records").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditVerification)]
pub struct AuditReport {
    /// The chain: `records`, `intact`, `problems` (breaks only).
    #[serde(flatten)]
    pub chain: AuditVerificationView,
    /// Records on the audit topic without a signature: not chained.
    #[serde(default)]
    pub unsigned: Vec<UnchainedAuditView>,
    /// Records on the audit topic whose signature no configured key made: not chained.
    #[serde(default)]
    pub badly_signed: Vec<UnchainedAuditView>,
    /// More unsigned or badly signed records exist than the first
    /// 1,000 of each listed here.
    #[serde(default)]
    pub truncated: bool,
}

impl AuditReport {
    /// Nothing wrong: the chain intact and no unsigned or badly signed audit record.
    pub fn clean(&self) -> bool {
        self.chain.intact
            && self.chain.problems.is_empty()
            && self.unsigned.is_empty()
            && self.badly_signed.is_empty()
    }
}

/// One record of the audit topic that was not chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = UnchainedAudit)]
pub struct UnchainedAuditView {
    /// `topic/partition@offset` (with the epoch after a log reset).
    pub record: String,
    #[schema(format = DateTime)]
    pub archived_at: String,
    /// The Kafka message key, as text: who the record claims acted.
    #[serde(default)]
    pub key: Option<String>,
    /// Why it was not chained.
    pub problem: String,
}
