//! `/v1/positions`: where each partition stands in the archive, and how far behind Kafka.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use retrace_api::PositionView;
use retrace_http::ApiError;

use super::Api;
use crate::reads;

#[utoipa::path(
    get,
    path = "/v1/positions",
    operation_id = "get_positions",
    tag = "positions",
    summary = "The next offset the archive will store per partition, Kafka's log end and how far behind the archive is",
    responses(
        (status = 200, description = "Every partition the archive has stored from", body = Vec<PositionView>),
    ),
)]
pub(super) async fn positions(State(api): State<Api>) -> Response {
    let (store, lag) = (api.store().clone(), api.lag.clone());
    let positions = tokio::task::spawn_blocking(move || reads::positions(&store, &lag))
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    match positions {
        Ok(positions) => Json(positions).into_response(),
        Err(error) => ApiError::internal(error).into_response(),
    }
}
