//! `/v1/audit` and `/v1/audit/verify`: the audit trail, and whether its chain is intact.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use retrace_api::AuditReport;
use retrace_auth::Caller;
use retrace_log_store::AuditFilter;

use super::Api;
use super::plumbing::{Paging, ReadRequest, answer_audited};
use super::responses::InvalidParameter;
use crate::admin;
use crate::audit::Audit;

/// What `/v1/audit` takes.
pub(super) const TRAIL_PARAMETERS: &[&str] = &["since", "actor", "target", "limit", "cursor"];

/// The parameters of `/v1/audit` (read by [`Params`], declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Trail {
    /// RFC 3339 time, or a duration back from now (90s, 15m, 2h, 7d).
    #[param(required = false)]
    since: String,
    /// Only this actor (token name, person).
    #[param(required = false)]
    actor: String,
    /// Only this target (transaction, subject, query, token, ...).
    #[param(required = false)]
    target: String,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "get_audit_trail",
    tag = "audit",
    summary = "The audit trail, oldest first: who read, replayed, erased or was refused what, when, from where, why",
    params(Trail, Paging),
    responses(
        (status = 200, description = "A page of audit records", body = ref("#/components/schemas/AuditPage")),
        InvalidParameter,
    ),
)]
pub(super) async fn trail(request: ReadRequest) -> Response {
    let audit = Audit::new(&request.caller, "audit.read", request.query());
    request
        .answer("audit", audit, TRAIL_PARAMETERS, move |reader, params| {
            let filter = AuditFilter {
                since_ms: params.time("since")?,
                actor: params.text("actor").map(str::to_owned),
                target: params.text("target").map(str::to_owned),
            };
            admin::audit_trail(
                &reader.store,
                &filter,
                params.limit()?,
                params.text("cursor"),
            )
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    operation_id = "verify_audit",
    tag = "audit",
    summary = "Walk the hash chain: every altered, removed or reordered audit record, named; and the audit topic's records never chained (unsigned, or badly signed)",
    responses(
        (status = 200, description = "The verification", body = AuditReport),
    ),
)]
pub(super) async fn verify(State(api): State<Api>, caller: Caller) -> Response {
    let store = api.store().clone();
    let audit = Audit::new(&caller, "audit.verify", "audit trail");
    answer_audited(&api, "audit_verify", audit, move |_| {
        Ok((StatusCode::OK, admin::verify_audit(&store)?))
    })
    .await
}
