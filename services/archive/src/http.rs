//! The archive's HTTP surface: health, metrics, and where each partition stands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use retrace_log_store::LogStore;
use serde::Serialize;

#[derive(Clone)]
pub(crate) struct HttpState {
    pub store: LogStore,
    /// Set once the consumer has subscribed.
    pub ready: Arc<AtomicBool>,
}

pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/positions", get(positions))
        .with_state(state)
        .merge(retrace_telemetry::metrics_router())
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

#[derive(Serialize)]
struct PositionView {
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// The next offset the archive will store, per partition: compare with Kafka's high
/// watermarks to see how far behind it is.
async fn positions(State(state): State<HttpState>) -> Response {
    let store = state.store.clone();
    let positions = tokio::task::spawn_blocking(move || store.positions())
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    match positions {
        Ok(positions) => Json(
            positions
                .into_iter()
                .map(|p| PositionView {
                    topic: p.topic,
                    partition: p.partition,
                    next_offset: p.next_offset,
                })
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
