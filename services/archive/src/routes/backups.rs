//! `POST /v1/admin/backups`: a backup of the running archive, into the caller's directory.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use retrace_api::{BackupManifest, BackupRequest, ErrorBody};
use retrace_auth::Caller;
use retrace_http::json_body;

use super::Api;
use super::plumbing::answer_audited;
use crate::audit::Audit;
use crate::backup;

#[utoipa::path(
    post,
    path = "/v1/admin/backups",
    operation_id = "create_backup",
    tag = "backups",
    summary = "Write a consistent backup of the running archive into a new or empty directory on the archive's host",
    description = "One snapshot of every keyspace, taken while ingestion goes on: the store in `DIR/archive`, then `DIR/manifest.json`. Restore it offline with `retrace restore --from DIR --data-dir D`.",
    request_body = BackupRequest,
    responses(
        (status = 201, description = "Written; the backup's manifest", body = BackupManifest),
        (status = 400, description = "The request is invalid (no directory, a relative one, not JSON); `field` names what", body = ErrorBody),
        (status = 409, description = "The directory is not empty", body = ErrorBody),
    ),
)]
pub(super) async fn create(State(api): State<Api>, caller: Caller, body: Bytes) -> Response {
    let store = api.store().clone();
    let mut audit = Audit::new(&caller, "archive.backup", "");
    let request = json_body::<BackupRequest>(&body, "request");
    if let Ok(request) = &request {
        audit.target = request.directory.clone();
    }
    answer_audited(&api, "backup", audit, move |_| {
        let manifest = backup::backup_on_request(&store, &request?.directory)?;
        Ok((StatusCode::CREATED, manifest))
    })
    .await
}
