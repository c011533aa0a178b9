//! Incidents: failed steps grouped by where and why they failed, what `/v1/incidents`,
//! `/v1/incidents/{id}` and `/v1/incidents/{id}/subjects` answer. The grouping rule is in
//! docs/incidents.md.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether any of an incident's transactions still fails at its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// At least one of its transactions still fails with this cause.
    Open,
    /// None does: each was processed on a later attempt or after a replay.
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

impl std::str::FromStr for IncidentStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "open" => Ok(IncidentStatus::Open),
            "resolved" => Ok(IncidentStatus::Resolved),
            other => Err(format!(
                "unknown incident status {other:?}: expected open or resolved"
            )),
        }
    }
}

/// How an incident's cause was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    /// The consumer's `error_code`.
    Code,
    /// The consumer's error text with its variable parts normalised.
    Text,
}

/// Failures in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MinuteCount {
    /// The minute's start.
    #[schema(format = DateTime)]
    pub minute: String,
    pub failures: u64,
}

/// One line of `GET /v1/incidents`: an incident and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Incident)]
pub struct IncidentView {
    /// The fingerprint's id: stable across restarts, rebuilds and releases of one rule.
    pub incident_id: String,
    pub status: IncidentStatus,
    /// The step that failed: the topic its event was published on (not a retry or
    /// dead-letter lane), the event's type and the consumer that reported the failure.
    pub topic: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub consumer: String,
    pub cause_kind: CauseKind,
    /// The error code, or the normalised error text (`***` for a caller who may not read
    /// payloads, as error texts are in traces).
    pub cause: String,
    /// The newest failure's error text as the consumer wrote it (masked like `cause`).
    pub example_error: String,
    #[schema(format = DateTime)]
    pub first_seen: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    /// When it last opened: its first failure, or the failure that reopened it.
    #[schema(format = DateTime)]
    pub opened_at: String,
    /// When its last failing transaction stopped failing; absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    /// How many times it reopened after being resolved.
    pub reopened: u32,
    /// Transactions that failed with this cause, ever.
    pub transactions: u64,
    /// Of those, the ones still failing with it.
    pub failing: u64,
    /// Failure outcomes with this cause (a transaction that failed again counts again).
    pub failures: u64,
    /// Failures per minute over the hour up to `last_seen`, oldest first, minutes without a
    /// failure included as zero: the listing's sparkline.
    pub recent: Vec<MinuteCount>,
}

/// A transaction of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentTransaction {
    pub transaction_id: String,
    /// It still fails with the incident's cause.
    pub failing: bool,
    /// The events whose step still fails with the incident's cause: what a replay of the
    /// incident re-publishes for this transaction.
    pub failing_event_ids: Vec<String>,
    #[schema(format = DateTime)]
    pub first_failed_at: String,
    #[schema(format = DateTime)]
    pub last_failed_at: String,
    pub failures: u64,
    /// When it stopped failing; absent while it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub recovered_at: Option<String>,
    pub subject_ids: Vec<String>,
}

/// `GET /v1/incidents/{id}`: the incident, its failures per minute from the first to the
/// last, and a page of its transactions: those still failing first, each group in
/// transaction id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: IncidentView,
    /// Every minute with a failure, oldest first (minutes without one are left out).
    pub minutes: Vec<MinuteCount>,
    pub transactions: Vec<IncidentTransaction>,
    /// Pass as `cursor` for the next page of transactions; null on the last.
    pub next_cursor: Option<String>,
    /// Distinct subjects its transactions touched.
    pub subjects: u64,
    /// As in [`crate::Trace::incomplete`]: a sharded archive's incidents are each shard's
    /// own, so these shards' failures are not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// One line of `GET /v1/incidents/{id}/subjects`: a subject the incident touched and the
/// transactions of the incident that carry it. The export of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentSubject {
    pub subject_id: String,
    pub transaction_ids: Vec<String>,
    /// Whether any of those transactions still fails with the incident's cause.
    pub failing: bool,
}
