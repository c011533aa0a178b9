//! `/v1/positions`: where each partition stands in the archive.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use retrace_log_store::LogStore;

use crate::api::PositionView;

pub(crate) fn router(store: LogStore) -> Router {
    Router::new()
        .route("/v1/positions", get(positions))
        .with_state(store)
}

/// The next offset the archive will store, per partition: compare with Kafka's high
/// watermarks to see how far behind it is.
async fn positions(State(store): State<LogStore>) -> Response {
    let positions = tokio::task::spawn_blocking(move || store.positions())
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    match positions {
        Ok(positions) => Json(
            positions
                .into_iter()
                .map(PositionView::from)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response(),
    }
}
