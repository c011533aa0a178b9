//! What every handler shares: answering on the blocking pool (and audited), checked query
//! parameters, and a query as an audit target.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use retrace_api::{EventView, IncidentDetail, Page, Trace};
use retrace_auth::Caller;
use retrace_http::ApiError;
use retrace_log_store::StoreError;
use retrace_telemetry::InternalEvent;
use serde::Serialize;

use super::Api;
use crate::audit::Audit;
use crate::events::QueryServed;
use crate::reads::{Reader, parse_time};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// The paging parameters every listing takes after its own (read by [`Params::limit`] and
/// [`Params::text`], declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Paging {
    /// Items per page, 1-500 (default 50).
    #[param(required = false, minimum = 1, maximum = 500)]
    limit: u32,
    /// `next_cursor` of the previous page.
    #[param(required = false)]
    cursor: String,
}

/// A handler's answer: the status and document of a success, or the refusal.
pub(crate) type Answer<T> = Result<(StatusCode, T), ApiError>;

/// Nothing is answered that the audit trail cannot account for.
fn unaudited(error: StoreError) -> ApiError {
    ApiError::internal(format!(
        "the request could not be recorded in the audit trail ({error}), so it is not \
         answered; retry, and tell an operator if it persists"
    ))
}

/// Runs `read` on the blocking pool and answers with its JSON, recording the request.
pub(crate) async fn answer<T: Serialize + Send + 'static>(
    endpoint: &'static str,
    read: impl FnOnce() -> Answer<T> + Send + 'static,
) -> Response {
    let started = Instant::now();
    let response = match tokio::task::spawn_blocking(read).await {
        Ok(Ok((status, body))) => (status, Json(body)).into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(panic) => {
            ApiError::internal(format!("the query failed unexpectedly: {panic}")).into_response()
        }
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

/// A read of the archive: who asks, and the query's parameters, not checked yet (each route
/// takes its own, [`ReadRequest::answer`] checks them).
pub(crate) struct ReadRequest {
    api: Api,
    pub caller: Caller,
    /// The caller's `Authorization`, which a shard shows the other shards it asks.
    credential: Option<HeaderValue>,
    raw: HashMap<String, String>,
}

impl FromRequestParts<Api> for ReadRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Response> {
        let caller = Caller::from_request_parts(parts, api).await?;
        let Query(raw) = Query::from_request_parts(parts, api)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(ReadRequest {
            api: api.clone(),
            caller,
            credential: parts.headers.get(AUTHORIZATION).cloned(),
            raw,
        })
    }
}

impl ReadRequest {
    /// The query, as an audit record's target ([`describe_query`]).
    pub fn query(&self) -> String {
        describe_query(&self.raw)
    }

    /// Answers the read as the caller reads the archive, audited like [`answer_audited`]:
    /// the parameters are checked against `known`, then `read` reads what is answered (200).
    pub async fn answer<T: Serialize + Send + 'static>(
        self,
        endpoint: &'static str,
        audit: Audit,
        known: &'static [&'static str],
        read: impl FnOnce(Reader, Params) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        self.answer_with(endpoint, audit, known, |_| StatusCode::OK, read)
            .await
    }

    /// Answers like [`ReadRequest::answer`], with a 206 when the answer lacks what some
    /// shards hold.
    pub async fn answer_partial<T: Partial + Serialize + Send + 'static>(
        self,
        endpoint: &'static str,
        audit: Audit,
        known: &'static [&'static str],
        read: impl FnOnce(Reader, Params) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        let status = |answer: &T| match answer.incomplete() {
            [] => StatusCode::OK,
            _ => StatusCode::PARTIAL_CONTENT,
        };
        self.answer_with(endpoint, audit, known, status, read).await
    }

    async fn answer_with<T: Serialize + Send + 'static>(
        self,
        endpoint: &'static str,
        audit: Audit,
        known: &'static [&'static str],
        status: impl FnOnce(&T) -> StatusCode + Send + 'static,
        read: impl FnOnce(Reader, Params) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        let reader = self.api.reader(&self.caller, self.credential);
        let raw = self.raw;
        answer_audited(&self.api, endpoint, audit, move |_| {
            let params = Params::new(raw, known)?;
            let answer = read(reader, params)?;
            Ok((status(&answer), answer))
        })
        .await
    }
}

/// An answer that may lack what some shards hold.
pub(crate) trait Partial {
    /// The shards that did not answer.
    fn incomplete(&self) -> &[String];
}

impl Partial for Trace {
    fn incomplete(&self) -> &[String] {
        &self.incomplete
    }
}

impl Partial for EventView {
    fn incomplete(&self) -> &[String] {
        &self.incomplete
    }
}

impl Partial for IncidentDetail {
    fn incomplete(&self) -> &[String] {
        &self.incomplete
    }
}

impl<T> Partial for Page<T> {
    fn incomplete(&self) -> &[String] {
        &self.incomplete
    }
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
            return Err(ApiError::invalid(
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

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    pub(crate) fn number<N: std::str::FromStr>(&self, name: &str) -> Result<Option<N>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::invalid(name, format!("{v:?} is not a valid number")))
            })
            .transpose()
    }

    /// A `name:value` pair.
    pub(crate) fn pair(&self, name: &str) -> Result<Option<(&str, &str)>, ApiError> {
        self.text(name)
            .map(|v| {
                v.split_once(':').ok_or_else(|| {
                    ApiError::invalid(name, format!("{v:?} is not of the form name:value"))
                })
            })
            .transpose()
    }

    pub(crate) fn limit(&self) -> Result<usize, ApiError> {
        match self.number::<usize>("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::invalid(
                "limit",
                format!("limit {n} is out of range: use 1 to {MAX_LIMIT}"),
            )),
        }
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.text(name)
            .map(|v| parse_time(v).map_err(|e| ApiError::invalid(name, e)))
            .transpose()
    }

    pub(crate) fn window(&self, since: &str, until: &str) -> Result<(i64, i64), ApiError> {
        let from = self.time(since)?.unwrap_or(i64::MIN);
        let to = self.time(until)?.unwrap_or(i64::MAX);
        if from > to {
            return Err(ApiError::invalid(
                until,
                format!("{until} is before {since}"),
            ));
        }
        Ok((from, to))
    }
}

#[cfg(test)]
#[path = "plumbing_tests.rs"]
mod tests;
