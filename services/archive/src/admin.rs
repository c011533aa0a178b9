//! The routes that change or reveal who did what: erasing a subject's payloads
//! (`/v1/subjects/{id}/erase`), the audit trail (`/v1/audit`, `/v1/audit/verify`) and API
//! tokens (`/v1/tokens`). Each is audited like the trace routes.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use retrace_auth::{
    Caller, NewToken, Permission, RegistryError, Role, TokenFormatError, TokenRecord,
};
use retrace_log_store::{AuditFilter, AuditRecord};
use retrace_proto::AUDIT_TOPIC;
use serde::{Deserialize, Serialize};

use crate::api::{
    AuditVerificationView, AuditView, CreateTokenRequest, CreatedToken, EraseRequest, ErasureView,
    Page, TokenView,
};
use crate::audit::Audit;
use crate::classify::SignatureFault;
use crate::replay::now_ms;
use crate::routes::{Answer, Api, ApiError, Params, answer_audited, describe_query, json_body};
use crate::trace::rfc3339;

/// What still holds an erased subject's bytes, said with every erasure.
pub const ERASURE_NOTE: &str = "the payloads are gone from every API answer now; their bytes \
     leave the archive's disk at the next offline compaction (stop the archive, run \
     `retrace-archive compact --data-dir DIR`), and Kafka keeps its own copies until the \
     topics' retention removes them";

/// What an erasure leaves of an outcome's error text, where a consumer may have named the
/// person.
pub const ERASED_ERROR: &str = "[erased at the subject's request]";

/// An outcome without its error text (status, consumer, attempt and time stay, so the trace
/// still says what failed where); `None` when it has none left to remove.
fn without_error_text(value: &[u8]) -> Option<Vec<u8>> {
    let mut outcome = <retrace_proto::Outcome as prost::Message>::decode(value).ok()?;
    if outcome.error.is_empty() || outcome.error == ERASED_ERROR {
        return None;
    }
    outcome.error = ERASED_ERROR.to_owned();
    Some(prost::Message::encode_to_vec(&outcome))
}

pub(crate) async fn erase_subject(
    State(api): State<Api>,
    caller: Caller,
    Path(subject): Path<String>,
    body: Bytes,
) -> Response {
    let store = api.store().clone();
    let audit = Audit::new(&caller, "subject.erase", &subject);
    answer_audited(&api, "erase", audit, move |audit| {
        let request: EraseRequest = json_body(&body)?;
        audit.reason = request.reason.trim().to_owned();
        if audit.reason.is_empty() {
            return Err(ApiError::bad(
                "reason",
                "reason is required: say why (the request's reference), for the audit trail",
            ));
        }
        let at_ms = now_ms();
        let summary = store.erase_subject(&subject, at_ms, without_error_text)?;
        if summary.transactions == 0 {
            return Err(ApiError::not_found(format!(
                "no archived message names subject {subject:?}; nothing was erased"
            )));
        }
        Ok((
            StatusCode::OK,
            ErasureView {
                subject_id: subject,
                erased_at: rfc3339(at_ms),
                transactions: summary.transactions,
                records: summary.records,
                already_erased: summary.already_erased,
                outcomes: summary.outcomes,
                note: ERASURE_NOTE.to_owned(),
            },
        ))
    })
    .await
}

pub(crate) async fn audit_trail(
    State(api): State<Api>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let store = api.store().clone();
    let audit = Audit::new(&caller, "audit.read", describe_query(&raw));
    answer_audited(&api, "audit", audit, move |_| {
        let params = Params::new(raw, &["since", "actor", "target", "limit", "cursor"])?;
        let filter = AuditFilter {
            since_ms: params.time("since")?,
            actor: params.text("actor").map(str::to_owned),
            target: params.text("target").map(str::to_owned),
        };
        let page = store.audit(&filter, params.limit()?, params.text("cursor"))?;
        Ok((
            StatusCode::OK,
            Page {
                items: page.items.iter().map(audit_view).collect(),
                next_cursor: page.next_cursor,
                behind: Vec::new(),
            },
        ))
    })
    .await
}

/// `GET /v1/audit/verify`: the hash chain, as [`AuditVerificationView`] says it, and
/// separately the records of the audit topic that were never chained because their
/// signature is missing or wrong (docs/security.md, "Signed records").
///
/// (It belongs in `api.rs` with the other documents; kept here while that file is being
/// changed for other work.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// [`UNCHAINED_LISTED`] of each listed here.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnchainedAuditView {
    /// `topic/partition@offset` (with the epoch after a log reset).
    pub record: String,
    pub archived_at: String,
    /// The Kafka message key, as text: who the record claims acted.
    #[serde(default)]
    pub key: Option<String>,
    /// Why it was not chained.
    pub problem: String,
}

/// How many unsigned, and how many badly signed, records `/v1/audit/verify` lists at most.
pub const UNCHAINED_LISTED: usize = 1000;

pub(crate) async fn verify_audit(State(api): State<Api>, caller: Caller) -> Response {
    let store = api.store().clone();
    let audit = Audit::new(&caller, "audit.verify", "audit trail");
    answer_audited(&api, "audit_verify", audit, move |_| {
        let report = store.verify_audit()?;
        let mut answer = AuditReport {
            chain: AuditVerificationView {
                records: report.records,
                intact: report.problems.is_empty(),
                problems: report.problems,
            },
            unsigned: Vec::new(),
            badly_signed: Vec::new(),
            truncated: false,
        };
        let mut cursor: Option<String> = None;
        loop {
            let page = store.flagged_in(AUDIT_TOPIC, 500, cursor.as_deref())?;
            for record in page.items {
                let problem = record.problem.clone().unwrap_or_default();
                let list = match SignatureFault::of(&problem) {
                    Some(SignatureFault::Unsigned) => &mut answer.unsigned,
                    Some(SignatureFault::BadlySigned) => &mut answer.badly_signed,
                    None => continue,
                };
                if list.len() == UNCHAINED_LISTED {
                    answer.truncated = true;
                    continue;
                }
                list.push(UnchainedAuditView {
                    record: record.key.to_string(),
                    archived_at: rfc3339(record.archived_at_ms),
                    key: record
                        .message_key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    problem,
                });
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok((StatusCode::OK, answer))
    })
    .await
}

fn audit_view(record: &AuditRecord) -> AuditView {
    AuditView {
        seq: record.seq,
        at: rfc3339(record.at_ms),
        actor: record.actor.clone(),
        role: record.role.clone(),
        origin: record.origin.clone(),
        action: record.action.clone(),
        target: record.target.clone(),
        reason: record.reason.clone(),
        result: record.result.clone(),
        hash: hex(&record.hash),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn list_tokens(State(api): State<Api>, caller: Caller) -> Response {
    let answered: Answer<Vec<TokenView>> = registry(&api).map(|registry| {
        (
            StatusCode::OK,
            registry.list().iter().map(token_view).collect(),
        )
    });
    let audit = Audit::new(&caller, "tokens.list", "API tokens");
    answer_audited(&api, "tokens", audit, move |_| answered).await
}

pub(crate) async fn create_token(State(api): State<Api>, caller: Caller, body: Bytes) -> Response {
    let mut audit = Audit::new(&caller, "token.create", "");
    let answered = create(&api, &caller, &body, &mut audit).await;
    answer_audited(&api, "token_create", audit, move |_| answered).await
}

async fn create(
    api: &Api,
    caller: &Caller,
    body: &[u8],
    audit: &mut Audit,
) -> Answer<CreatedToken> {
    let request: CreateTokenRequest = json_body(body)?;
    audit.target = format!("token {} (role {})", request.name, request.role);
    // Audit records name callers: a token must not pass for the bootstrap admin or for a
    // caller with no credential.
    let name = request.name.trim();
    if [retrace_auth::BOOTSTRAP_ACTOR, retrace_auth::ANONYMOUS_ACTOR]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
    {
        return Err(ApiError::bad(
            "name",
            format!(
                "the name {name:?} is reserved: audit records use it for Retrace's own \
                 callers; choose another"
            ),
        ));
    }
    let role: Role = request
        .role
        .parse()
        .map_err(|e: retrace_auth::GrantError| ApiError::bad("role", e.to_string()))?;
    let extra = request
        .extra
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad("extra", e.to_string()))?;
    if let Some(topics) = &request.topics {
        for topic in topics {
            retrace_sdk::check_topic_name(topic)
                .map_err(|problem| ApiError::bad("topics", format!("topic {topic:?} {problem}")))?;
        }
    }
    let spec = NewToken {
        name: request.name,
        role,
        extra,
        topics: request.topics,
        expires_in: request.expires_in_s.map(Duration::from_secs),
    };
    let (token, record) = registry(api)?
        .create(spec, &caller.actor)
        .await
        .map_err(registry_error)?;
    audit.target = format!(
        "token {} ({}, role {})",
        record.id, record.name, record.role
    );
    Ok((
        StatusCode::CREATED,
        CreatedToken {
            token,
            record: token_view(&record),
        },
    ))
}

pub(crate) async fn revoke_token(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let mut audit = Audit::new(&caller, "token.revoke", format!("token {id}"));
    let answered = match registry(&api) {
        Ok(registry) => registry
            .revoke(&id, &caller.actor)
            .await
            .map(|record| {
                audit.target = format!("token {} ({})", record.id, record.name);
                (StatusCode::OK, token_view(&record))
            })
            .map_err(registry_error),
        Err(error) => Err(error),
    };
    answer_audited(&api, "token_revoke", audit, move |_| answered).await
}

fn registry(api: &Api) -> Result<&retrace_auth::TokenRegistry, ApiError> {
    api.registry.as_ref().ok_or_else(|| {
        ApiError::nothing_to_do(
            "API tokens are not available: authentication is disabled on this archive \
             (auth.enabled = false); enable it to create and revoke tokens",
        )
    })
}

fn registry_error(error: RegistryError) -> ApiError {
    match &error {
        RegistryError::NameTaken(_) => ApiError {
            status: StatusCode::CONFLICT,
            ..ApiError::bad("name", error.to_string())
        },
        RegistryError::Format(TokenFormatError::BadName(_)) => {
            ApiError::bad("name", error.to_string())
        }
        RegistryError::Format(TokenFormatError::BadExpiry(_)) => {
            ApiError::bad("expires_in_s", error.to_string())
        }
        RegistryError::NotFound(_) => ApiError::not_found(error.to_string()),
        RegistryError::AlreadyRevoked { .. } | RegistryError::Detached => {
            ApiError::nothing_to_do(error.to_string())
        }
        RegistryError::Format(_)
        | RegistryError::Publish(_)
        | RegistryError::Read { .. }
        | RegistryError::NoTopic { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{error}; retry once Kafka answers"),
        ),
    }
}

fn token_view(record: &TokenRecord) -> TokenView {
    TokenView {
        id: record.id.clone(),
        name: record.name.clone(),
        role: record.role.as_str().to_owned(),
        extra: record.extra.iter().map(|p| p.as_str().to_owned()).collect(),
        topics: record.topics.clone(),
        created_at: record.created_at.to_string(),
        created_by: record.created_by.clone(),
        expires_at: record.expires_at.map(|t| t.to_string()),
        revoked_at: record.revoked_at.map(|t| t.to_string()),
        revoked_by: record.revoked_by.clone(),
    }
}
