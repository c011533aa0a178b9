//! `/v1/positions`: where each partition stands in the archive, and how far behind Kafka.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use retrace_log_store::LogStore;

use crate::api::PositionView;
use crate::lag::Lag;
use crate::trace::rfc3339;

pub(crate) fn router(store: LogStore, lag: Lag) -> Router {
    Router::new()
        .route("/v1/positions", get(positions))
        .with_state((store, lag))
}

/// The next offset the archive will store, per partition, with Kafka's log end and the lag
/// at the last check. A partition Kafka holds and the archive has not stored a record of
/// yet is listed at offset 0.
async fn positions(State((store, lag)): State<(LogStore, Lag)>) -> Response {
    let positions = tokio::task::spawn_blocking(move || store.positions())
        .await
        .map_err(|e| e.to_string())
        .and_then(|read| read.map_err(|e| e.to_string()));
    let positions = match positions {
        Ok(positions) => positions,
        Err(error) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": error })),
            )
                .into_response();
        }
    };
    let mut checked = lag.partitions();
    let mut views: Vec<PositionView> = positions
        .into_iter()
        .map(|position| {
            let lag = checked.remove(&(position.topic.clone(), position.partition));
            with_lag(PositionView::from(position), lag.as_ref())
        })
        .collect();
    views.extend(checked.into_iter().map(|((topic, partition), lag)| {
        let never_archived = PositionView {
            topic,
            partition,
            epoch: 0,
            next_offset: 0,
            reset_at: None,
            previous_next_offset: None,
            high_watermark: None,
            lag: None,
            behind_since: None,
        };
        with_lag(never_archived, Some(&lag))
    }));
    views.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Json(views).into_response()
}

fn with_lag(mut view: PositionView, lag: Option<&crate::lag::PartitionLag>) -> PositionView {
    if let Some(lag) = lag {
        view.high_watermark = Some(lag.high_watermark);
        view.lag = Some(lag.lag);
        view.behind_since = lag.behind_since_ms.map(rfc3339);
    }
    view
}
