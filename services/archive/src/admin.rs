//! What changes or reveals who did what: erasing a subject's payloads, reading and verifying
//! the audit trail, and listing, creating and revoking API tokens. The routes that ask for
//! them are `routes/erasure.rs`, `routes/audit.rs` and `routes/tokens.rs`.

use std::time::Duration;

use retrace_api::{
    AuditReport, AuditVerificationView, AuditView, CreateTokenRequest, CreatedToken, EraseRequest,
    ErasureView, Page, TokenView, UnchainedAuditView,
};
use retrace_auth::{
    Caller, NewToken, Permission, RegistryError, Role, TokenFormatError, TokenRecord, TokenRegistry,
};
use retrace_http::ApiError;
use retrace_log_store::{AuditFilter, AuditRecord, Change, Erasure, LogStore, Watermark};
use retrace_proto::AUDIT_TOPIC;

use crate::audit::Audit;
use crate::changes::ChangeLog;
use crate::classify::SignatureFault;
use crate::reads::store_error;
use crate::replay::now_ms;
use crate::shards::fanout::Fanout;
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
pub(crate) fn without_error_text(value: &[u8]) -> Option<Vec<u8>> {
    let mut outcome = <retrace_proto::Outcome as prost::Message>::decode(value).ok()?;
    if outcome.error.is_empty() || outcome.error == ERASED_ERROR {
        return None;
    }
    outcome.error = ERASED_ERROR.to_owned();
    Some(prost::Message::encode_to_vec(&outcome))
}

/// Erases `subject`'s payloads and the error texts of outcomes on its events, on every
/// replica of every shard: published on the change log, bounded by what this replica (and
/// each other shard, in the partitions it holds) has archived, and answered once applied
/// here. `audit` gets the request's reason. Blocks: call it on the blocking pool.
pub(crate) fn erase(
    store: &LogStore,
    changes: &ChangeLog,
    fanout: Option<&Fanout>,
    subject: String,
    request: EraseRequest,
    audit: &mut Audit,
) -> Result<ErasureView, ApiError> {
    audit.reason = request.reason.trim().to_owned();
    if audit.reason.is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "reason is required: say why (the request's reference), for the audit trail",
        ));
    }
    let bound = erasure_bound(store, fanout)?;
    let known_elsewhere = || {
        fanout.is_some_and(|fanout| {
            let gathered = fanout.subject_seen(&subject);
            gathered.parts.iter().any(|(_, seen)| !seen.is_empty())
        })
    };
    if !store.knows_subject(&subject).map_err(store_error)? && !known_elsewhere() {
        return Err(ApiError::not_found(format!(
            "no archived message names subject {subject:?}; nothing was erased"
        )));
    }
    let erasure = Erasure {
        erasure_id: uuid::Uuid::now_v7().to_string(),
        subject_id: subject.clone(),
        erased_at_ms: now_ms(),
        bound,
    };
    tokio::runtime::Handle::current()
        .block_on(changes.publish_applied(&subject, Change::Erasure(erasure.clone())))
        .map_err(|error| ApiError::unavailable(error.to_string()))?;
    let summary = store
        .erasure_summary(&erasure.erasure_id)
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::internal(format!(
                "erasure {} was published on the archive's change log, but this archive \
                 refused the record (it is listed among the flagged records): every replica \
                 must share the `[auth]` signing keys",
                erasure.erasure_id
            ))
        })?;
    Ok(ErasureView {
        subject_id: subject,
        erased_at: rfc3339(erasure.erased_at_ms),
        transactions: summary.transactions as usize,
        records: summary.records as usize,
        already_erased: summary.already_erased as usize,
        outcomes: summary.outcomes as usize,
        note: ERASURE_NOTE.to_owned(),
    })
}

/// Where an erasure stops: this store's positions and, for a shard, every other shard's in
/// the partitions it owns, so each shard erases what it had archived when asked. The topics
/// every shard reads whole are bounded by this shard's own positions: another's may be
/// ahead of them. No erasure without every shard's: one left unbounded would erase nothing
/// there.
fn erasure_bound(store: &LogStore, fanout: Option<&Fanout>) -> Result<Vec<Watermark>, ApiError> {
    let mut bound = store.erasure_bound();
    let Some(fanout) = fanout else {
        return Ok(bound);
    };
    let gathered = fanout.positions();
    if !gathered.incomplete.is_empty() {
        return Err(ApiError::unavailable(format!(
            "shard {} did not answer, so the erasure cannot say how far it reaches there; \
             nothing was erased: ask again once it is back",
            gathered.incomplete.join(", ")
        )));
    }
    let own = fanout.shard();
    for (_, positions) in gathered.parts {
        for position in positions {
            if !own.owns(&position.topic, position.partition) {
                bound.push(Watermark {
                    topic: position.topic,
                    partition: position.partition,
                    epoch: position.epoch,
                    next_offset: position.next_offset,
                });
            }
        }
    }
    Ok(bound)
}

/// The audit trail's records `filter` selects, a page at a time.
pub(crate) fn audit_trail(
    store: &LogStore,
    filter: &AuditFilter,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<AuditView>, ApiError> {
    let page = store.audit(filter, limit, cursor).map_err(store_error)?;
    Ok(Page {
        items: page.items.iter().map(audit_view).collect(),
        next_cursor: page.next_cursor,
        behind: Vec::new(),
        incomplete: Vec::new(),
    })
}

/// How many unsigned, and how many badly signed, records `/v1/audit/verify` lists at most.
pub const UNCHAINED_LISTED: usize = 1000;

/// Checks the audit trail's hash chain, and lists the audit events left out of it (unsigned
/// or badly signed), [`UNCHAINED_LISTED`] of each at most.
pub(crate) fn verify_audit(store: &LogStore) -> Result<AuditReport, ApiError> {
    let report = store.verify_audit().map_err(store_error)?;
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
        let page = store
            .flagged_in(AUDIT_TOPIC, 500, cursor.as_deref())
            .map_err(store_error)?;
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
    Ok(answer)
}

fn audit_view(record: &AuditRecord) -> AuditView {
    AuditView {
        seq: record.seq,
        at: rfc3339(record.at_ms),
        actor: record.actor.clone(),
        actor_id: record.actor_id.clone(),
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

/// Every API token, revoked and expired ones too.
pub(crate) fn list_tokens(registry: Option<&TokenRegistry>) -> Result<Vec<TokenView>, ApiError> {
    Ok(registry_of(registry)?
        .list()
        .iter()
        .map(token_view)
        .collect())
}

/// Creates the token `request` describes, in `caller`'s name; `audit` names it.
pub(crate) async fn create_token(
    registry: Option<&TokenRegistry>,
    caller: &Caller,
    request: CreateTokenRequest,
    audit: &mut Audit,
) -> Result<CreatedToken, ApiError> {
    audit.target = format!("token {} (role {})", request.name, request.role);
    // Audit records name callers: a token must not pass for the bootstrap admin or for a
    // caller with no credential.
    let name = request.name.trim();
    if [retrace_auth::BOOTSTRAP_ACTOR, retrace_auth::ANONYMOUS_ACTOR]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
    {
        return Err(ApiError::invalid(
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
        .map_err(|e: retrace_auth::GrantError| ApiError::invalid("role", e.to_string()))?;
    let extra = request
        .extra
        .iter()
        .map(|p| p.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::invalid("extra", e.to_string()))?;
    if let Some(topics) = &request.topics {
        for topic in topics {
            retrace_sdk::check_topic_name(topic).map_err(|problem| {
                ApiError::invalid("topics", format!("topic {topic:?} {problem}"))
            })?;
        }
    }
    let spec = NewToken {
        name: request.name,
        role,
        extra,
        topics: request.topics,
        expires_in: request.expires_in_s.map(Duration::from_secs),
    };
    let (token, record) = registry_of(registry)?
        .create(spec, &caller.actor)
        .await
        .map_err(registry_error)?;
    audit.target = format!(
        "token {} ({}, role {})",
        record.id, record.name, record.role
    );
    Ok(CreatedToken {
        token,
        record: token_view(&record),
    })
}

/// Revokes token `id` in `caller`'s name; `audit` names it.
pub(crate) async fn revoke_token(
    registry: Option<&TokenRegistry>,
    caller: &Caller,
    id: &str,
    audit: &mut Audit,
) -> Result<TokenView, ApiError> {
    let record = registry_of(registry)?
        .revoke(id, &caller.actor)
        .await
        .map_err(registry_error)?;
    audit.target = format!("token {} ({})", record.id, record.name);
    Ok(token_view(&record))
}

fn registry_of(registry: Option<&TokenRegistry>) -> Result<&TokenRegistry, ApiError> {
    registry.ok_or_else(|| {
        ApiError::conflict(
            "API tokens are not available: authentication is disabled on this archive \
             (auth.enabled = false); enable it to create and revoke tokens",
        )
    })
}

fn registry_error(error: RegistryError) -> ApiError {
    match &error {
        RegistryError::NameTaken(_) => ApiError::conflict(error.to_string()).with_field("name"),
        RegistryError::Format(TokenFormatError::BadName(_)) => {
            ApiError::invalid("name", error.to_string())
        }
        RegistryError::Format(TokenFormatError::BadExpiry(_)) => {
            ApiError::invalid("expires_in_s", error.to_string())
        }
        RegistryError::NotFound(_) => ApiError::not_found(error.to_string()),
        RegistryError::AlreadyRevoked { .. } | RegistryError::Detached => {
            ApiError::conflict(error.to_string())
        }
        RegistryError::Format(_)
        | RegistryError::Publish(_)
        | RegistryError::Read { .. }
        | RegistryError::NoTopic { .. } => {
            ApiError::unavailable(format!("{error}; retry once Kafka answers"))
        }
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
