//! The worker's documents: what `/v1/jobs/queues` and a dead-letter redrive take and answer.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The answer of a redrive, and of `POST /v1/jobs/queues/{queue}/redrive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedriveReport {
    /// Job ids redriven (or that would be, in a dry run), with the lane each went to.
    pub redriven: BTreeMap<String, String>,
    /// Selected job ids not found in the dead-letter topic.
    pub not_found: Vec<String>,
    pub dry_run: bool,
}

/// The body of `POST /v1/jobs/queues/{queue}/redrive`: `jobs` or `all`, and a `reason`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    /// These job ids (event ids)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<String>>,
    /// ... or every dead-lettered job of the queue.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Jobs published per second at most; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Find and report, move nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Why, for the audit trail and the redriven copies' headers (required). Who asks is
    /// the authenticated caller.
    #[serde(default)]
    pub reason: String,
}

/// One queue in `GET /v1/jobs/queues`. Fields are only ever added; the ones added after the
/// first version default when absent, so a newer client reads an older worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStatus {
    pub queue: String,
    pub gate_open: bool,
    pub gate_reason: String,
    /// Jobs waiting in Kafka for this queue's consumer group (every process sharing the
    /// queue): on its three lanes and its retry topic, from the group's committed offset (or
    /// the start, when nothing is committed) to the end. Includes jobs running now and those
    /// held by the gate; offsets are committed every second, and a reading is reused for a
    /// second, so it trails by up to two.
    /// `None` when Kafka did not answer in time (`pending_error` says why).
    #[serde(default)]
    pub pending: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_error: Option<String>,
    pub running: u64,
    pub done: u64,
    pub retrying: u64,
    /// Failed permanently, and dead-lettered at once.
    pub failed: u64,
    /// Out of attempts, and dead-lettered.
    pub dead_lettered: u64,
    /// Moved to the retry topic to wait for their `not_before`.
    pub deferred: u64,
    /// Attempts finished (done, retrying, failed or dead-lettered) per second in this
    /// process, over the last minute (since it started, when younger).
    #[serde(default)]
    pub rate_per_s: f64,
}
