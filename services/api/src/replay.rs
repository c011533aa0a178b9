//! Replays: what `/v1/transactions/{id}/replay` and `/v1/replays` take and answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::TransactionStatus;

/// `POST /v1/transactions/{id}/replay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Required: why the transaction is replayed, for whoever reads the audit later.
    #[schema(pattern = r"\S")]
    pub reason: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Replay this event and everything after it.
    #[serde(default)]
    pub from_event_id: Option<String>,
    /// Replay only the events whose last outcome is a failure.
    #[serde(default)]
    pub only_failed: bool,
    /// Publish every message here instead of to the topic it came from.
    #[serde(default)]
    pub target_topic: Option<String>,
    /// Refused (400) when authentication is on: the replay is recorded under the
    /// authenticated caller. Recorded as given only when `auth.enabled = false` (development).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// `POST /v1/replays`: replay every transaction a query selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayRequest {
    /// Required: why, for whoever reads the audit later.
    #[schema(pattern = r"\S")]
    pub reason: String,
    #[serde(default)]
    pub dry_run: bool,
    /// Default `failed`.
    #[serde(default)]
    pub status: Option<TransactionStatus>,
    /// RFC 3339 time, or a duration back from now such as `2h`.
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(rename = "type", default)]
    pub event_type: Option<String>,
    /// Replay the transactions of this incident that still fail with its cause, and of
    /// each only the events whose step fails with it; the time, topic and type filters
    /// must then be absent.
    #[serde(default)]
    pub incident: Option<String>,
    /// Replay only failed events of each transaction (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub only_failed: bool,
    #[serde(default)]
    pub target_topic: Option<String>,
    /// Messages re-published per second.
    #[serde(default = "default_rate")]
    #[schema(default = 100)]
    pub rate: u32,
    /// Refuse, rather than start, a replay of more messages than this.
    #[serde(default = "default_max")]
    #[schema(default = 1000)]
    pub max: usize,
    /// As in [`ReplayRequest::requested_by`].
    #[serde(default)]
    pub requested_by: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_rate() -> u32 {
    100
}

fn default_max() -> usize {
    1000
}

/// What a replay re-publishes, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayPlan {
    pub transactions: usize,
    pub messages: Vec<PlannedMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlannedMessage {
    pub transaction_id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub target_topic: String,
}

/// The answer to a replay request: the plan, and the replay started (absent on a dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplayResponse {
    pub dry_run: bool,
    pub plan: ReplayPlan,
    pub replay: Option<ReplayView>,
}

/// `GET /v1/replays/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Replay)]
pub struct ReplayView {
    pub replay_id: String,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: String,
    /// `running`, `done` or `failed`.
    #[schema(schema_with = crate::schema::replay_state)]
    pub state: String,
    pub selection: String,
    pub transactions: usize,
    pub planned: u64,
    pub published: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_topic: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}
