//! `GET /v1/config`, the same on every service: which configuration runs (version, when it
//! was loaded, from which file) and its effective settings with secrets redacted. Needs
//! `config:read` (admins); every answer is audited first.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use retrace_auth::{AuditSender, Caller, Guard, Permission};

use retrace_api::ConfigDocument;

/// The audit action of a configuration read.
pub const CONFIG_READ: &str = "config.read";

/// The route, behind `config:read`. `audit` records the read (durably, for the archive)
/// before the answer; it runs on the blocking pool, and its error is answered 503.
pub fn router(
    guard: &Guard,
    document: impl Fn() -> ConfigDocument + Clone + Send + Sync + 'static,
    audit: impl Fn(&Caller) -> Result<(), String> + Clone + Send + Sync + 'static,
) -> Router {
    let handler = move |caller: Caller| async move {
        let recorded = tokio::task::spawn_blocking(move || audit(&caller)).await;
        match recorded {
            Ok(Ok(())) => Json(document()).into_response(),
            Ok(Err(problem)) => unaudited(&problem),
            Err(stopped) => unaudited(&stopped.to_string()),
        }
    };
    Router::new()
        .route("/v1/config", get(handler))
        .route_layer(guard.require(Permission::ConfigRead))
}

/// Records configuration reads on a service's audit stream (`retrace.audit`).
pub fn audit_to(
    sender: AuditSender,
) -> impl Fn(&Caller) -> Result<(), String> + Clone + Send + Sync + 'static {
    move |caller| {
        sender.record(caller, CONFIG_READ, "/v1/config", "", "ok");
        Ok(())
    }
}

fn unaudited(problem: &str) -> Response {
    retrace_http::ApiError::unavailable(format!(
        "the read could not be recorded in the audit trail ({problem}); try again later"
    ))
    .into_response()
}
