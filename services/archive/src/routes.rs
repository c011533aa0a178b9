//! The trace and replay API: `/v1/transactions`, `/v1/subjects`, `/v1/events`,
//! `/v1/messages`, `/v1/replays`, `/v1/whoami` (what the caller may do, for clients such as
//! the web console), and the OpenAPI document that describes them; the erasure, audit and
//! token routes are in `admin.rs`.
//!
//! Every route but the OpenAPI document is behind a permission (deny by default); every
//! read and replay is answered only once its audit record is durable. Every handler reads
//! the store on the blocking pool; every error is JSON naming the parameter at fault; every
//! listing pages with an opaque cursor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use retrace_auth::{Caller, Guard, Permission, TokenRegistry};
use retrace_log_store::{ArchivedRecord, LogStore, Mark, RecordKind, ReplayRecord, StoreError};
use retrace_telemetry::InternalEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::admin;
use crate::api::{
    Behind, BulkReplayRequest, ErrorBody, EventView, Page, ReplayPlan, ReplayRequest,
    ReplayResponse, TransactionStatus, TransactionSummary, WhoAmI, describe_behind,
};
use crate::audit::{Audit, Auditor};
use crate::events::QueryServed;
use crate::lag::Lag;
use crate::live::Live;
use crate::masking::{Masking, is_retrace_header};
use crate::replay::{Planned, Replayer, Selection, now_ms, plan};
use crate::trace::{message_view, outcome_view, replay_view, rfc3339, summary, trace};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// A listing looks at this many candidates at most before returning what it has (and a
/// cursor), so one request never scans the whole archive.
const MAX_SCAN: usize = 5_000;
/// A bulk replay considers this many transactions at most.
const MAX_BULK_TRANSACTIONS: usize = 100_000;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Api {
    pub replayer: Replayer,
    pub guard: Guard,
    pub auditor: Auditor,
    /// Masking rules and the bulk replay threshold, as last reloaded.
    pub live: watch::Receiver<Arc<Live>>,
    /// Absent when authentication is disabled.
    pub registry: Option<TokenRegistry>,
    /// How far behind Kafka the archive is, as of the last check.
    pub lag: Lag,
}

impl Api {
    pub fn store(&self) -> &LogStore {
        self.replayer.store()
    }

    /// The masking to apply for `caller`: none if it may read payloads.
    fn masking_for(&self, caller: &Caller) -> Option<Arc<Masking>> {
        (!caller.can(Permission::PayloadRead)).then(|| self.live.borrow().masking.clone())
    }
}

/// Every route of the API, each behind the permission it needs (see the table in docs/api.md).
pub(crate) fn router(api: Api) -> Router {
    let guard = api.guard.clone();
    let read = Router::new()
        .route("/v1/transactions", get(list_transactions))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/subjects/{id}/transactions", get(subject_transactions))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/messages", get(messages))
        .route("/v1/replays/{id}", get(get_replay))
        .route_layer(guard.require(Permission::TraceRead));
    // Bulk replays above the threshold also need `replay:bulk`, checked once planned.
    let export = Router::new()
        .route("/v1/exports/transactions", get(export_transactions))
        .route(
            "/v1/exports/subjects/{id}/transactions",
            get(export_subject_transactions),
        )
        .route_layer(guard.require(Permission::Export));
    let replay = Router::new()
        .route("/v1/transactions/{id}/replay", post(replay_transaction))
        .route("/v1/replays", post(bulk_replay))
        .route_layer(guard.require(Permission::Replay));
    let erase = Router::new()
        .route("/v1/subjects/{id}/erase", post(admin::erase_subject))
        .route_layer(guard.require(Permission::Erase));
    let audit = Router::new()
        .route("/v1/audit", get(admin::audit_trail))
        .route("/v1/audit/verify", get(admin::verify_audit))
        .route_layer(guard.require(Permission::AuditRead));
    let tokens = Router::new()
        .route(
            "/v1/tokens",
            get(admin::list_tokens).post(admin::create_token),
        )
        .route("/v1/tokens/{id}/revoke", post(admin::revoke_token))
        .route_layer(guard.require(Permission::TokenAdmin));
    let backups = Router::new()
        .route("/v1/admin/backups", post(crate::backup::create_backup))
        .route_layer(guard.require(Permission::Backup));
    // Any authenticated caller may ask what it may do.
    let me = Router::new()
        .route("/v1/whoami", get(whoami))
        .route_layer(guard.authenticated());
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .merge(me)
        .merge(read)
        .merge(export)
        .merge(replay)
        .merge(erase)
        .merge(audit)
        .merge(tokens)
        .merge(backups)
        .with_state(api)
}

/// A refusal: HTTP status, what is wrong, and which parameter.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                field: None,
                behind: Vec::new(),
            },
        }
    }

    pub(crate) fn bad(field: &str, error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                error: error.into(),
                field: Some(field.to_owned()),
                behind: Vec::new(),
            },
        }
    }

    pub(crate) fn not_found(error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: ErrorBody {
                error: error.into(),
                field: None,
                behind: Vec::new(),
            },
        }
    }

    /// This "not found" with the partitions the archive is behind on, where the thing may
    /// still be: said in the message too, so no one reads "no archived message" as "it did
    /// not happen" while the archive catches up.
    pub(crate) fn unless_behind(mut self, behind: Vec<Behind>) -> Self {
        if let Some(caveat) = describe_behind(&behind) {
            self.body.error = format!(
                "{}; {caveat}, so it may be on Kafka and not archived yet: ask again once \
                 the archive caught up (GET /v1/positions)",
                self.body.error
            );
        }
        self.body.behind = behind;
        self
    }

    pub(crate) fn nothing_to_do(error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            body: ErrorBody {
                error: error.into(),
                field: None,
                behind: Vec::new(),
            },
        }
    }
}

/// Nothing is answered that the audit trail cannot account for.
fn unaudited(error: StoreError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "the request could not be recorded in the audit trail ({error}), so it is not \
             answered; retry, and tell an operator if it persists"
        ),
    )
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::BadCursor(_) => ApiError::bad("cursor", error.to_string()),
            StoreError::InvalidId { field, .. } => ApiError::bad(field, error.to_string()),
            other => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                body: ErrorBody {
                    error: other.to_string(),
                    field: None,
                    behind: Vec::new(),
                },
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub(crate) type Answer<T> = Result<(StatusCode, T), ApiError>;

/// Runs `read` on the blocking pool and answers with its JSON, recording the request.
async fn answer<T: Serialize + Send + 'static>(
    endpoint: &'static str,
    read: impl FnOnce() -> Answer<T> + Send + 'static,
) -> Response {
    let started = Instant::now();
    let response = match tokio::task::spawn_blocking(read).await {
        Ok(Ok((status, body))) => (status, Json(body)).into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(panic) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: ErrorBody {
                error: format!("the query failed unexpectedly: {panic}"),
                field: None,
                behind: Vec::new(),
            },
        }
        .into_response(),
    };
    QueryServed {
        endpoint,
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

/// Runs `read` like [`answer`], then appends `audit` with the result (`ok`, or the error)
/// before answering; `read` may complete the record (the action, the reason). A 403 is left
/// out: the guard's denial sink has recorded it.
pub(crate) async fn answer_audited<T: Serialize + Send + 'static>(
    api: &Api,
    endpoint: &'static str,
    mut audit: Audit,
    read: impl FnOnce(&mut Audit) -> Answer<T> + Send + 'static,
) -> Response {
    let auditor = api.auditor.clone();
    answer(endpoint, move || {
        let answered = read(&mut audit);
        let result = match &answered {
            Ok(_) => "ok".to_owned(),
            Err(error) if error.status == StatusCode::FORBIDDEN => return answered,
            Err(error) => error.body.error.clone(),
        };
        auditor.record(&audit, &result).map_err(unaudited)?;
        answered
    })
    .await
}

/// A query, as an audit record's target: `status=failed since=1h`, keys sorted.
pub(crate) fn describe_query(raw: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = raw.iter().collect();
    let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "(everything)".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Query parameters, checked: unknown ones are refused, so a typo is not silently ignored.
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn new(raw: HashMap<String, String>, known: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = raw.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad(
                unknown,
                format!(
                    "unknown parameter {unknown:?}; this endpoint takes {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Params(raw))
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad(
                name,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    fn number<N: std::str::FromStr>(&self, name: &str) -> Result<Option<N>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad(name, format!("{v:?} is not a valid number")))
            })
            .transpose()
    }

    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.number::<usize>("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad(
                "limit",
                format!("limit {n} is out of range: use 1 to {MAX_LIMIT}"),
            )),
        }
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| parse_time(v).map_err(|e| ApiError::bad(name, e)))
            .transpose()
    }

    fn window(&self, since: &str, until: &str) -> Result<(i64, i64), ApiError> {
        let from = self.time(since)?.unwrap_or(i64::MIN);
        let to = self.time(until)?.unwrap_or(i64::MAX);
        if from > to {
            return Err(ApiError::bad(until, format!("{until} is before {since}")));
        }
        Ok((from, to))
    }
}

/// An RFC 3339 time (`2026-11-23T08:00:00Z`), or a duration back from now (`90s`, `15m`,
/// `2h`, `7d`), as milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time.as_millisecond());
    }
    let back = match text.strip_suffix('d').map(str::parse::<i64>) {
        // Checked: `since=99999999999999999d` is a typo to refuse, not an overflow.
        Some(Ok(days)) => days
            .checked_mul(86_400)
            .map(jiff::SignedDuration::from_secs)
            .ok_or(()),
        _ => text.parse::<jiff::SignedDuration>().map_err(drop),
    };
    match back {
        Ok(back) if !back.is_negative() => i64::try_from(back.as_millis())
            .ok()
            .and_then(|back_ms| now_ms().checked_sub(back_ms))
            .ok_or_else(|| format!("{text:?} reaches back further than any time: use a shorter duration, or an RFC 3339 time")),
        _ => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-23T08:00:00Z) nor a duration back \
             from now (90s, 15m, 2h, 7d)"
        )),
    }
}

pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        // serde names the field in its message: "missing field `reason`".
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("body");
        ApiError::bad(
            field,
            format!("the request body is not a valid request: {message}"),
        )
    })
}

async fn get_transaction(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let store = api.store().clone();
    let masking = api.masking_for(&caller);
    let lag = api.lag.clone();
    let audit = Audit::new(&caller, "transaction.read", &id);
    answer_audited(&api, "transaction", audit, move |_| {
        let params = Params::new(raw, &["payload"])?;
        let records = store.transaction(&id)?;
        let replays = store.transaction_replays(&id)?;
        let found = trace(&id, &records, &replays, params.flag("payload")?);
        let behind = lag.behind(None);
        let Some(mut trace) = found else {
            return Err(ApiError::not_found(format!(
                "no archived message belongs to transaction {id:?}"
            ))
            .unless_behind(behind));
        };
        trace.behind = behind;
        if let Some(masking) = masking {
            masking.trace(&mut trace);
        }
        Ok((StatusCode::OK, trace))
    })
    .await
}

/// Not audited: it reads nothing from the archive, only the caller's own credential.
async fn whoami(caller: Caller) -> Response {
    answer("whoami", move || {
        let permissions = Permission::ALL
            .into_iter()
            .filter(|p| caller.can(*p))
            .map(|p| p.as_str().to_owned())
            .collect();
        Ok((
            StatusCode::OK,
            WhoAmI {
                actor: caller.actor,
                role: caller.role.as_str().to_owned(),
                credential: caller.credential.as_str().to_owned(),
                permissions,
            },
        ))
    })
    .await
}

async fn list_transactions(
    State(api): State<Api>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    transactions(api, caller, raw, "transactions.list").await
}

/// The listing, for an export: the `export` permission, and audited as one.
async fn export_transactions(
    State(api): State<Api>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    transactions(api, caller, raw, "transactions.export").await
}

async fn transactions(
    api: Api,
    caller: Caller,
    raw: HashMap<String, String>,
    action: &'static str,
) -> Response {
    let store = api.store().clone();
    let lag = api.lag.clone();
    let masking = api.masking_for(&caller);
    let audit = Audit::new(&caller, action, describe_query(&raw));
    answer_audited(&api, "transactions", audit, move |_| {
        let params = Params::new(
            raw,
            &[
                "status", "since", "until", "topic", "type", "service", "limit", "cursor",
            ],
        )?;
        let filter = Filter {
            status: params
                .text("status")
                .map(|s| s.parse().map_err(|e: String| ApiError::bad("status", e)))
                .transpose()?,
            window: params.window("since", "until")?,
            topic: params.text("topic").map(str::to_owned),
            event_type: params.text("type").map(str::to_owned),
            service: params.text("service").map(str::to_owned),
        };
        let mut page = select_transactions(
            &store,
            &filter,
            params.limit()?,
            MAX_SCAN,
            params.text("cursor"),
        )?;
        page.behind = lag.behind(filter.topic.as_deref());
        if let Some(masking) = masking {
            page.items.iter_mut().for_each(|item| masking.summary(item));
        }
        Ok((StatusCode::OK, page))
    })
    .await
}

/// What a transaction listing or a bulk replay selects.
struct Filter {
    status: Option<TransactionStatus>,
    window: (i64, i64),
    topic: Option<String>,
    event_type: Option<String>,
    /// A service that published one of the transaction's events or reported an outcome on
    /// one: where a transaction failed is a consumer, which may have published nothing.
    service: Option<String>,
}

impl Filter {
    fn describe(&self) -> String {
        let mut parts = vec![format!(
            "status={}",
            self.status.map_or("any", TransactionStatus::as_str)
        )];
        if self.window.0 != i64::MIN {
            parts.push(format!("since={}", crate::trace::rfc3339(self.window.0)));
        }
        if self.window.1 != i64::MAX {
            parts.push(format!("until={}", crate::trace::rfc3339(self.window.1)));
        }
        parts.extend(self.topic.iter().map(|t| format!("topic={t}")));
        parts.extend(self.event_type.iter().map(|t| format!("type={t}")));
        parts.extend(self.service.iter().map(|s| format!("service={s}")));
        parts.join(" ")
    }
}

/// Transactions that match `filter`, newest first. Failed and replayed transactions are
/// found through their failures, others through their start, so the time window applies to
/// when they failed or started.
fn select_transactions(
    store: &LogStore,
    filter: &Filter,
    limit: usize,
    max_scan: usize,
    cursor: Option<&str>,
) -> Result<Page<TransactionSummary>, ApiError> {
    let mark = match filter.status {
        Some(TransactionStatus::Failed | TransactionStatus::Replayed) => Mark::Failure,
        _ => Mark::Start,
    };
    let (from, until) = filter.window;
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut last_cursor = None;
    for (scanned, marked) in store
        .transaction_marks(mark, from, until, cursor)?
        .enumerate()
    {
        if items.len() == limit || scanned == max_scan {
            return Ok(Page {
                items,
                next_cursor: last_cursor,
                behind: Vec::new(),
            });
        }
        let marked = marked?;
        last_cursor = Some(marked.cursor);
        if !seen.insert(marked.transaction_id.clone()) {
            continue;
        }
        let records = store.transaction(&marked.transaction_id)?;
        // A transaction has several marks when it failed (or started) more than once; it is
        // listed at its newest failure, or its first start.
        if mark_time(mark, &records) != Some(marked.time_ms) {
            continue;
        }
        let replays = store.transaction_replays(&marked.transaction_id)?;
        let Some(found) = trace(&marked.transaction_id, &records, &replays, false) else {
            continue;
        };
        let matches = filter.status.is_none_or(|s| s == found.status)
            && filter
                .topic
                .as_ref()
                .is_none_or(|t| found.events.iter().any(|e| e.message.topic == *t))
            && filter
                .event_type
                .as_ref()
                .is_none_or(|t| found.events.iter().any(|e| e.message.event_type == *t))
            && filter.service.as_ref().is_none_or(|s| {
                found
                    .events
                    .iter()
                    .any(|e| e.message.source == *s || e.outcomes.iter().any(|o| o.consumer == *s))
            });
        if matches {
            items.push(summary(found));
        }
    }
    Ok(Page {
        items,
        next_cursor: None,
        behind: Vec::new(),
    })
}

/// The time at which a transaction is listed: its newest failure, or its first start.
fn mark_time(mark: Mark, records: &[ArchivedRecord]) -> Option<i64> {
    match mark {
        Mark::Failure => records
            .iter()
            .filter(|r| r.outcome.as_ref().is_some_and(|o| o.failed))
            .map(|r| r.time_ms)
            .max(),
        Mark::Start => records
            .iter()
            .filter(|r| {
                r.outcome.is_none()
                    && matches!(r.kind, RecordKind::Envelope | RecordKind::HeadersOnly)
                    && r.ids
                        .as_ref()
                        .is_some_and(|ids| ids.causation_id.is_empty())
            })
            .map(|r| r.time_ms)
            .min(),
    }
}

async fn subject_transactions(
    State(api): State<Api>,
    caller: Caller,
    Path(subject): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    subject_listing(api, caller, subject, raw, "subject.read").await
}

/// The subject's transactions, for an export: the `export` permission, and audited as one.
async fn export_subject_transactions(
    State(api): State<Api>,
    caller: Caller,
    Path(subject): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    subject_listing(api, caller, subject, raw, "subject.export").await
}

async fn subject_listing(
    api: Api,
    caller: Caller,
    subject: String,
    raw: HashMap<String, String>,
    action: &'static str,
) -> Response {
    let store = api.store().clone();
    let lag = api.lag.clone();
    let masking = api.masking_for(&caller);
    let audit = Audit::new(&caller, action, &subject);
    answer_audited(&api, "subject", audit, move |_| {
        let params = Params::new(raw, &["since", "until", "limit", "cursor"])?;
        let page = store.subject_transactions(
            &subject,
            params.window("since", "until")?,
            params.limit()?,
            params.text("cursor"),
        )?;
        let mut items = Vec::with_capacity(page.items.len());
        for found in page.items {
            let records = store.transaction(&found.transaction_id)?;
            let replays = store.transaction_replays(&found.transaction_id)?;
            items.extend(trace(&found.transaction_id, &records, &replays, false).map(summary));
        }
        if let Some(masking) = masking {
            items.iter_mut().for_each(|item| masking.summary(item));
        }
        Ok((
            StatusCode::OK,
            Page {
                items,
                next_cursor: page.next_cursor,
                behind: lag.behind(None),
            },
        ))
    })
    .await
}

async fn get_event(
    State(api): State<Api>,
    caller: Caller,
    Path(event_id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let store = api.store().clone();
    let masking = api.masking_for(&caller);
    let lag = api.lag.clone();
    let audit = Audit::new(&caller, "event.read", &event_id);
    answer_audited(&api, "event", audit, move |_| {
        let params = Params::new(raw, &["payload"])?;
        let with_payload = params.flag("payload")?;
        let copies = store.event(&event_id)?;
        let behind = lag.behind(None);
        if copies.is_empty() {
            return Err(ApiError::not_found(format!(
                "no archived message has event id {event_id:?}"
            ))
            .unless_behind(behind));
        }
        let mut outcomes: Vec<_> = store
            .outcomes(&event_id)?
            .iter()
            .filter_map(|record| {
                let value = record.value.as_deref()?;
                let outcome = <retrace_proto::Outcome as prost::Message>::decode(value).ok()?;
                Some(outcome_view(&outcome, record.time_ms))
            })
            .collect();
        if let Some(masking) = &masking {
            masking.outcomes(&mut outcomes);
        }
        Ok((
            StatusCode::OK,
            EventView {
                event_id,
                copies: copies
                    .iter()
                    .map(|r| masked_view(r, with_payload, masking.as_deref()))
                    .collect(),
                outcomes,
                behind,
            },
        ))
    })
    .await
}

/// What `/v1/messages` takes.
const MESSAGES_PARAMETERS: &[&str] = &[
    "topic",
    "partition",
    "from_offset",
    "from_time",
    "until_time",
    "header",
    "limit",
    "cursor",
    "payload",
];

async fn messages(
    State(api): State<Api>,
    caller: Caller,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let store = api.store().clone();
    let masking = api.masking_for(&caller);
    let lag = api.lag.clone();
    let guard = api.guard.clone();
    let audit = Audit::new(&caller, "messages.read", describe_query(&raw));
    answer_audited(&api, "messages", audit, move |_| {
        let params = Params::new(raw, MESSAGES_PARAMETERS)?;
        let topic = params
            .text("topic")
            .ok_or_else(|| ApiError::bad("topic", "topic is required"))?;
        let internal = retrace_sdk::internal_topic(topic);
        if let Some(kind) = internal
            && !(caller.can(Permission::AuditRead) && caller.can(Permission::TokenAdmin))
        {
            let message = format!(
                "{} (role {}) may not read {topic}: it is Retrace's own topic of {}, readable \
                 by admins only",
                caller.actor,
                caller.role,
                kind.carries()
            );
            guard.forbid(&caller, "GET", "/v1/messages", message.clone());
            return Err(ApiError::new(StatusCode::FORBIDDEN, message));
        }
        let partition = params.number::<i32>("partition")?;
        let from_offset = params.number::<i64>("from_offset")?;
        let (from, until) = params.window("from_time", "until_time")?;
        let header = params
            .text("header")
            .map(|h| {
                h.split_once(':').ok_or_else(|| {
                    ApiError::bad("header", format!("{h:?} is not of the form name:value"))
                })
            })
            .transpose()?;
        // A filter on a value the caller sees masked would tell it the value: a guess
        // answered by a match.
        if let Some((name, _)) = header
            && masking.is_some()
            && !is_retrace_header(name)
        {
            let message = format!(
                "{} (role {}) may not filter on header {name:?}: its values are masked for \
                 callers without `{}`, and a filter would reveal them; filter on a retrace-* \
                 header, or ask for `{}`",
                caller.actor,
                caller.role,
                Permission::PayloadRead,
                Permission::PayloadRead
            );
            guard.forbid(&caller, "GET", "/v1/messages", message.clone());
            let mut refused = ApiError::new(StatusCode::FORBIDDEN, message);
            refused.body.field = Some("header".to_owned());
            return Err(refused);
        }
        let limit = params.limit()?;
        let cursor = params.text("cursor");
        let by_offset = partition.is_some() || from_offset.is_some();
        let page = if by_offset {
            store.records(topic, partition, from_offset.unwrap_or(0), limit, cursor)?
        } else {
            store.records_by_time(topic, from, until, limit, cursor)?
        };
        // Token records hold each token's secret hash: no one reads it, admins included.
        let with_payload =
            params.flag("payload")? && internal != Some(retrace_sdk::InternalTopic::Tokens);
        let items = page
            .items
            .iter()
            .filter(|r| !by_offset || (from..until).contains(&r.time_ms))
            .filter(|r| {
                header.is_none_or(|(name, value)| {
                    r.headers
                        .iter()
                        .any(|h| h.name == name && h.value.as_deref() == Some(value.as_bytes()))
                })
            })
            .map(|r| masked_view(r, with_payload, masking.as_deref()))
            .collect();
        let behind = lag
            .behind(Some(topic))
            .into_iter()
            .filter(|b| partition.is_none_or(|p| p == b.partition))
            .collect();
        Ok((
            StatusCode::OK,
            Page {
                items,
                next_cursor: page.next_cursor,
                behind,
            },
        ))
    })
    .await
}

/// A message as `caller` may see it.
fn masked_view(
    record: &ArchivedRecord,
    with_payload: bool,
    masking: Option<&Masking>,
) -> crate::api::MessageView {
    let mut view = message_view(record, with_payload);
    if let Some(masking) = masking {
        masking.message(&mut view);
    }
    view
}

async fn get_replay(State(api): State<Api>, caller: Caller, Path(id): Path<String>) -> Response {
    let store = api.store().clone();
    let audit = Audit::new(&caller, "replay.read", &id);
    answer_audited(&api, "replay", audit, move |_| {
        let replay = store
            .replay(&id)?
            .ok_or_else(|| ApiError::not_found(format!("no replay has id {id:?}")))?;
        Ok((StatusCode::OK, replay_view(&replay)))
    })
    .await
}

async fn replay_transaction(
    State(api): State<Api>,
    caller: Caller,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_key = idempotency_key(&headers);
    let replayer = api.replayer.clone();
    let auth_enabled = api.guard.authenticator().enabled();
    let audit = Audit::new(&caller, "replay.start", &transaction_id);
    answer_audited(&api, "replay_transaction", audit, move |audit| {
        let request: ReplayRequest = json_body(&body)?;
        let request_key = request_key.map(|key| {
            IdempotencyKey::new(&caller, key, &["transaction", &transaction_id], &request)
        });
        if request.dry_run {
            audit.action = "replay.plan";
        }
        audit.reason = request.reason.trim().to_owned();
        let reason = required_reason(&request.reason)?;
        let requested_by = requested_by(&caller, auth_enabled, request.requested_by)?;
        if let Some(topic) = &request.target_topic {
            audit.target = format!("{transaction_id} to {topic}");
            check_target_topic(topic)?;
        }
        let store = replayer.store();
        let records = store.transaction(&transaction_id)?;
        if records.is_empty() {
            return Err(ApiError::not_found(format!(
                "no archived message belongs to transaction {transaction_id:?}"
            )));
        }
        let selection = Selection {
            from_event_id: request.from_event_id.clone(),
            only_failed: request.only_failed,
            target_topic: request.target_topic.clone(),
        };
        let planned = plan(&records, &selection)
            .map_err(|e| ApiError::bad("from_event_id", e.to_string()))?;
        refuse_erased(&planned)?;
        refuse_internal_sources(&planned)?;
        if planned.is_empty() {
            return Err(ApiError::nothing_to_do(format!(
                "nothing to replay: transaction {transaction_id} has no {}",
                if request.only_failed {
                    "failed event"
                } else {
                    "event"
                }
            )));
        }
        let describe = [
            request
                .from_event_id
                .as_ref()
                .map(|e| format!("from_event_id={e}")),
            request.only_failed.then(|| "only_failed".to_owned()),
        ];
        let selection_text = describe.into_iter().flatten().collect::<Vec<_>>();
        respond_with_replay(
            &replayer,
            ReplayOrder {
                planned,
                transactions: vec![transaction_id],
                selection: if selection_text.is_empty() {
                    "whole transaction".to_owned()
                } else {
                    selection_text.join(" ")
                },
                reason,
                requested_by,
                target_topic: request.target_topic,
                request_key,
                dry_run: request.dry_run,
                rate: None,
            },
        )
    })
    .await
}

async fn bulk_replay(
    State(api): State<Api>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_key = idempotency_key(&headers);
    let replayer = api.replayer.clone();
    let guard = api.guard.clone();
    let bulk_admin_above = api.live.borrow().bulk_admin_above;
    let audit = Audit::new(&caller, "replay.start", "");
    answer_audited(&api, "bulk_replay", audit, move |audit| {
        let request: BulkReplayRequest = json_body(&body)?;
        let request_key =
            request_key.map(|key| IdempotencyKey::new(&caller, key, &["bulk"], &request));
        if request.dry_run {
            audit.action = "replay.plan";
        }
        audit.reason = request.reason.trim().to_owned();
        let reason = required_reason(&request.reason)?;
        let requested_by = requested_by(
            &caller,
            guard.authenticator().enabled(),
            request.requested_by.clone(),
        )?;
        if let Some(topic) = &request.target_topic {
            audit.target = format!("query to {topic}");
            check_target_topic(topic)?;
        }
        if !(1..=100_000).contains(&request.rate) {
            return Err(ApiError::bad(
                "rate",
                "rate must be 1 to 100000 messages a second",
            ));
        }
        let window = (
            request
                .since
                .as_deref()
                .map(parse_time)
                .transpose()
                .map_err(|e| ApiError::bad("since", e))?,
            request
                .until
                .as_deref()
                .map(parse_time)
                .transpose()
                .map_err(|e| ApiError::bad("until", e))?,
        );
        let filter = Filter {
            status: Some(request.status.unwrap_or(TransactionStatus::Failed)),
            window: (window.0.unwrap_or(i64::MIN), window.1.unwrap_or(i64::MAX)),
            topic: request.topic.clone(),
            event_type: request.event_type.clone(),
            service: None,
        };
        audit.target = match &request.target_topic {
            Some(topic) => format!("query {} to {topic}", filter.describe()),
            None => format!("query {}", filter.describe()),
        };
        let store = replayer.store();
        let selected = select_transactions(
            store,
            &filter,
            MAX_BULK_TRANSACTIONS,
            MAX_BULK_TRANSACTIONS,
            None,
        )?;
        let selection = Selection {
            from_event_id: None,
            only_failed: request.only_failed,
            target_topic: request.target_topic.clone(),
        };
        let mut planned = Vec::new();
        let mut transactions = Vec::new();
        for found in &selected.items {
            let records = store.transaction(&found.transaction_id)?;
            let messages = plan(&records, &selection).unwrap_or_default();
            if !messages.is_empty() {
                transactions.push(found.transaction_id.clone());
                planned.extend(messages);
            }
            if planned.len() > request.max {
                return Err(ApiError::bad(
                    "max",
                    format!(
                        "the query selects more than {} messages to replay: narrow it (since, \
                         until, topic, type) or raise max",
                        request.max
                    ),
                ));
            }
        }
        if planned.is_empty() {
            return Err(ApiError::nothing_to_do(format!(
                "nothing to replay: no transaction matches {}",
                filter.describe()
            )));
        }
        if planned.len() > bulk_admin_above && !caller.can(Permission::BulkReplay) {
            let message = format!(
                "{} (role {}) may not replay {} messages at once: a bulk replay of more than \
                 {bulk_admin_above} needs the `{}` permission (an admin); narrow the query \
                 (since, until, topic, type) or ask an admin",
                caller.actor,
                caller.role,
                planned.len(),
                Permission::BulkReplay,
            );
            guard.forbid(&caller, "POST", "/v1/replays", message.clone());
            return Err(ApiError::new(StatusCode::FORBIDDEN, message));
        }
        refuse_erased(&planned)?;
        refuse_internal_sources(&planned)?;
        respond_with_replay(
            &replayer,
            ReplayOrder {
                planned,
                transactions,
                selection: format!(
                    "query {}{}",
                    filter.describe(),
                    if request.only_failed {
                        " only_failed"
                    } else {
                        ""
                    }
                ),
                reason,
                requested_by,
                target_topic: request.target_topic,
                request_key,
                dry_run: request.dry_run,
                rate: Some(request.rate),
            },
        )
    })
    .await
}

/// A replay ready to be shown (dry run) or started.
struct ReplayOrder {
    planned: Vec<Planned>,
    transactions: Vec<String>,
    selection: String,
    reason: String,
    requested_by: String,
    target_topic: Option<String>,
    request_key: Option<IdempotencyKey>,
    dry_run: bool,
    rate: Option<u32>,
}

/// An `Idempotency-Key` as the store keeps it: scoped to the caller who sent it, with the
/// fingerprint of the request it came with. The same caller sending the same key with the
/// same request gets the first replay back; another caller's key never meets it; the same
/// key with another request (transaction, target, selection) is refused.
struct IdempotencyKey {
    /// What the caller sent.
    given: String,
    /// The caller's credential kind and name, then the key.
    scoped: String,
    fingerprint: String,
}

impl IdempotencyKey {
    fn new(caller: &Caller, given: String, route: &[&str], request: &impl Serialize) -> Self {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        for part in route {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(serde_json::to_vec(request).expect("requests serialise to JSON"));
        IdempotencyKey {
            scoped: format!(
                "{}\u{1f}{}\u{1f}{given}",
                caller.credential.as_str(),
                caller.actor
            ),
            given,
            fingerprint: format!("{:x}", hash.finalize()),
        }
    }
}

fn respond_with_replay(replayer: &Replayer, order: ReplayOrder) -> Answer<ReplayResponse> {
    let plan_view = ReplayPlan {
        transactions: order.transactions.len(),
        messages: order.planned.iter().map(Planned::view).collect(),
    };
    if order.dry_run {
        return Ok((
            StatusCode::OK,
            ReplayResponse {
                dry_run: true,
                plan: plan_view,
                replay: None,
            },
        ));
    }
    if let Some(key) = &order.request_key
        && let Some(earlier) = replayer.store().replay_for_request(&key.scoped)?
    {
        if earlier.request_fingerprint != key.fingerprint {
            return Err(ApiError::nothing_to_do(format!(
                "Idempotency-Key {:?} was already used for replay {} with another request \
                 (transaction, target topic or selection); send a new key for a new request",
                key.given, earlier.replay_id
            )));
        }
        return Ok((
            StatusCode::OK,
            ReplayResponse {
                dry_run: false,
                plan: plan_view,
                replay: Some(replay_view(&earlier)),
            },
        ));
    }
    let replay = ReplayRecord {
        replay_id: uuid::Uuid::now_v7().to_string(),
        requested_by: order.requested_by,
        reason: order.reason,
        requested_at_ms: now_ms(),
        transaction_ids: order.transactions,
        selection: order.selection,
        target_topic: order.target_topic.unwrap_or_default(),
        request_fingerprint: order
            .request_key
            .as_ref()
            .map(|key| key.fingerprint.clone())
            .unwrap_or_default(),
        request_key: order.request_key.map(|key| key.scoped).unwrap_or_default(),
        ..ReplayRecord::default()
    };
    let started = replayer.start(replay, order.planned, order.rate)?;
    Ok((
        StatusCode::ACCEPTED,
        ReplayResponse {
            dry_run: false,
            plan: plan_view,
            replay: Some(replay_view(&started)),
        },
    ))
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Who a replay is recorded under: the authenticated caller. A `requested_by` in the body is
/// refused, unless authentication is disabled (development), where it is all there is.
fn requested_by(
    caller: &Caller,
    auth_enabled: bool,
    given: Option<String>,
) -> Result<String, ApiError> {
    match given.filter(|g| !g.trim().is_empty()) {
        Some(_) if auth_enabled => Err(ApiError::bad(
            "requested_by",
            format!(
                "requested_by is not accepted: the replay is recorded under the authenticated \
                 caller ({}); remove the field",
                caller.actor
            ),
        )),
        Some(given) => Ok(given.trim().to_owned()),
        None => Ok(caller.actor.clone()),
    }
}

/// A replay must not bring back what a subject had erased.
fn refuse_erased(planned: &[Planned]) -> Result<(), ApiError> {
    let Some((record, at)) = planned
        .iter()
        .find_map(|p| Some((&p.original, p.original.erased_at_ms?)))
    else {
        return Ok(());
    };
    let event = record
        .ids
        .as_ref()
        .map(|ids| ids.event_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| record.key.to_string());
    Err(ApiError::nothing_to_do(format!(
        "event {event} was erased on {} at the subject's request; it cannot be replayed",
        rfc3339(at)
    )))
}

pub(crate) fn required_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad(
            "reason",
            "reason is required: say why these messages are replayed, for the audit trail",
        ));
    }
    Ok(reason.to_owned())
}

/// A replay's `target_topic`: a valid name, and never one of Retrace's own topics, which
/// hold what Retrace's services alone write (audit events, token records, outcomes, jobs).
fn check_target_topic(topic: &str) -> Result<(), ApiError> {
    retrace_sdk::check_topic_name(topic)
        .map_err(|problem| ApiError::bad("target_topic", format!("topic {topic:?} {problem}")))?;
    match retrace_sdk::internal_topic(topic) {
        Some(kind) => Err(ApiError::bad(
            "target_topic",
            format!(
                "target_topic {topic:?} is Retrace's own topic of {}: a replay never writes \
                 Retrace's internal topics; replay to the topic the events came from, or to \
                 an application topic",
                kind.carries()
            ),
        )),
        None => Ok(()),
    }
}

/// A replay re-publishes to the topics its messages came from: never to the topics of
/// Retrace's security records (tokens, audit) or outcomes, whatever records got there. Jobs
/// go back to their queue.
fn refuse_internal_sources(planned: &[Planned]) -> Result<(), ApiError> {
    let Some((topic, kind)) = planned.iter().find_map(|p| {
        let kind = retrace_sdk::internal_topic(&p.target_topic)?;
        (kind != retrace_sdk::InternalTopic::Jobs).then_some((&p.target_topic, kind))
    }) else {
        return Ok(());
    };
    Err(ApiError::bad(
        "target_topic",
        format!(
            "the replay would publish to {topic}, Retrace's own topic of {}, which a replay \
             never writes; replay the transaction's application events only",
            kind.carries()
        ),
    ))
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "routes_fuzz_tests.rs"]
mod fuzz_tests;
