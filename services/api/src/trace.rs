//! Traces, listings, events and the archive's positions: what `/v1/transactions`,
//! `/v1/subjects/{id}/transactions`, `/v1/events/{id}`, `/v1/messages` and `/v1/positions` answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ReplayView;

/// What happened to a transaction, as far as the archive knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Status)]
pub enum TransactionStatus {
    /// Every consumer that reported on its events processed (or skipped) them.
    Ok,
    /// A consumer's last word on one of its events is a failure.
    Failed,
    /// A consumer is retrying one of its events.
    InProgress,
    /// It failed, and a replay was requested after the failure; waiting for the replayed
    /// events' outcomes.
    Replayed,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Ok => "ok",
            TransactionStatus::Failed => "failed",
            TransactionStatus::InProgress => "in_progress",
            TransactionStatus::Replayed => "replayed",
        }
    }
}

impl std::str::FromStr for TransactionStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ok" => Ok(TransactionStatus::Ok),
            "failed" => Ok(TransactionStatus::Failed),
            "in_progress" => Ok(TransactionStatus::InProgress),
            "replayed" => Ok(TransactionStatus::Replayed),
            other => Err(format!(
                "unknown status {other:?}: expected ok, failed, in_progress or replayed"
            )),
        }
    }
}

/// `GET /v1/transactions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Trace {
    pub transaction_id: String,
    pub status: TransactionStatus,
    pub started_at: String,
    pub last_at: String,
    pub duration_ms: i64,
    /// Each event of the transaction once, at the time it was first published, in time
    /// order; the records that carry it again and the outcomes about it are under it.
    /// Outcomes are not events: each is under the record it reports on.
    pub events: Vec<TraceEvent>,
    /// Causation: each root event with the events it caused, recursively.
    pub tree: Vec<TreeNode>,
    /// Replays of the transaction, oldest first.
    pub replays: Vec<ReplayView>,
    /// The failure that makes the status `failed` or `replayed`, the newest if several.
    pub failure: Option<FailedStep>,
    /// Partitions the archive is behind on: events of the transaction may be on Kafka and
    /// not archived yet. Absent when it keeps up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
    /// The shards of a sharded archive that did not answer (`2/4`): what they hold is
    /// missing, and the answer is a 206. Absent when the whole archive answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// A partition the archive is behind on: a record Kafka held at the previous lag check
/// (`[archive] lag_check_ms`) is still not archived. Answers that read the archive carry the
/// partitions behind when they answer, since what they lack may be there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Behind {
    pub topic: String,
    pub partition: i32,
    /// Records on Kafka not archived yet.
    pub lag: i64,
    /// When the oldest of them was first seen on Kafka.
    #[schema(format = DateTime)]
    pub since: String,
}

/// One event of a trace, once, however many Kafka records carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TraceEvent {
    /// The event as first published.
    #[serde(flatten)]
    pub message: MessageView,
    /// Time since the previous event of the trace.
    pub since_previous_ms: i64,
    /// When the last record that carries the event, or the last outcome about it, was
    /// written.
    #[schema(format = DateTime)]
    pub last_at: String,
    /// From its first publication to `last_at`: how long it took, retries included.
    pub duration_ms: i64,
    /// Every Kafka record that carries the event, in the order written, each with the
    /// outcomes that report on it: its publication, a publish retried after its answer was
    /// lost, the worker's retry, deferral and dead-letter copies, a redrive, a replay's
    /// copies. Their number is how many records the archive holds of the event.
    pub records: Vec<EventRecord>,
}

impl TraceEvent {
    /// Every outcome reported on the event, in the order of its records.
    pub fn outcomes(&self) -> impl Iterator<Item = &OutcomeView> {
        self.records.iter().flat_map(|record| &record.outcomes)
    }
}

/// One Kafka record that carries an event, and what the consumers said about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventRecord {
    pub role: RecordRole,
    /// The delivery attempt the record is for: 1 for a publication, a redrive or a replay's
    /// copy; the worker's retry copy carries the number of the attempt it will be, a
    /// dead-letter copy the number of the last attempt.
    pub attempt: u32,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// When the record was written: its Kafka timestamp (the producer's clock under
    /// `CreateTime`, the broker's under `LogAppendTime`).
    #[schema(format = DateTime)]
    pub time: String,
    /// For a retry or deferral copy: when the worker was to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub due_at: Option<String>,
    /// For a replay's copy: the replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
    /// For a redrive: who moved the job back from the dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redriven_by: Option<String>,
    /// The outcomes that report on this record's delivery, oldest first.
    pub outcomes: Vec<OutcomeView>,
}

/// Why a record that carries an event was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordRole {
    /// The event's publication: its first record.
    Published,
    /// Written again by a publish retried after its answer was lost: the same event.
    Republished,
    /// The worker's copy on the retry topic after a failed attempt, due after the backoff.
    Retry,
    /// The worker's copy on the retry topic of a job not due yet (`not_before`).
    Deferred,
    /// The worker's copy on the dead-letter topic after the last attempt failed.
    DeadLettered,
    /// A dead-lettered job moved back to its queue (`retrace redrive`).
    Redriven,
    /// Re-published by a replay.
    Replayed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TreeNode {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub topic: String,
    /// The events this one caused.
    #[schema(no_recursion)]
    pub children: Vec<TreeNode>,
}

/// One archived Kafka message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `envelope`, `headers_only`, `outcome`, `untraceable`, `malformed`, `audit` or `change`.
    /// `headers_only`: traced from its `retrace-*` headers, its value (JSON, text, anything)
    /// not an envelope.
    #[schema(schema_with = crate::schema::message_kind)]
    pub kind: String,
    /// Why the message is flagged or could not be fully read. For `headers_only`, only when
    /// its value claims to be an envelope (binary, or a protobuf `content-type` header) and is
    /// not one: JSON or text beside the headers is how other languages publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When Kafka says it was written (its timestamp).
    #[schema(format = DateTime)]
    pub time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transaction_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub causation_id: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_ids: Vec<String>,
    /// Set on a copy re-published by a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_id: Option<String>,
    /// Only when asked for (`?payload=true`). Callers without `payload:read` see configured
    /// JSON paths, text and binary payloads, and non-Retrace header values as `"***"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// When the payload was erased at the subject's request: the ids, times and outcomes
    /// remain, the payload and non-Retrace headers are gone, and it cannot be replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub erased_at: Option<String>,
}

/// A message's payload: JSON when it is JSON, else text when it is UTF-8, else base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payload {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The message's Kafka headers, values as text.
    pub headers: Vec<(String, Option<String>)>,
}

/// What a consumer reported doing with an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Outcome)]
pub struct OutcomeView {
    pub consumer: String,
    /// `processed`, `failed`, `retrying`, `dead_lettered` or `skipped`.
    #[schema(schema_with = crate::schema::outcome_status)]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The consumer's code for the cause, when it gave one (docs/incidents.md).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    /// Who reported it through the gateway (`POST /v1/outcomes`); absent for outcomes a
    /// service published on Kafka itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reported_by: String,
    pub attempt: u32,
    #[schema(format = DateTime)]
    pub time: String,
}

/// Where a transaction failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailedStep {
    pub event_id: String,
    pub topic: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub consumer: String,
    pub error: String,
    pub time: String,
}

/// One line of a transaction listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransactionSummary {
    pub transaction_id: String,
    pub status: TransactionStatus,
    pub started_at: String,
    pub last_at: String,
    /// Distinct events: an event carried by several records (retried, replayed) counts once.
    pub events: usize,
    pub topics: Vec<String>,
    pub subject_ids: Vec<String>,
    pub failure: Option<FailedStep>,
}

/// A page of a listing; pass `next_cursor` as `cursor` to get the next one. Its schema
/// refers to the item's ([`crate::schema`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Null on the last page.
    pub next_cursor: Option<String>,
    /// As in [`Trace::behind`]: the listing may miss what these partitions hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
    /// As in [`Trace::incomplete`]: the listing misses what these shards hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// `GET /v1/events/{event_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    pub event_id: String,
    /// Every archived record that carries it, in the order written: more than one when it
    /// was published twice, retried or dead-lettered by the worker, redriven or replayed
    /// (the trace's [`TraceEvent::records`] says which is which).
    pub copies: Vec<MessageView>,
    pub outcomes: Vec<OutcomeView>,
    /// As in [`Trace::behind`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
    /// As in [`Trace::incomplete`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

/// The next offset the archive stores in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Position)]
pub struct PositionView {
    pub topic: String,
    pub partition: i32,
    /// Which log of the partition `next_offset` is in: 0 until the archive found the log
    /// replaced by a shorter one (topic recreated, log cut back, another cluster); the
    /// records of earlier epochs stay archived.
    #[serde(default)]
    pub epoch: u32,
    pub next_offset: i64,
    /// When the current epoch's first record was archived; absent in epoch 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub reset_at: Option<String>,
    /// Where the archive stood in the previous epoch's log; absent in epoch 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_next_offset: Option<i64>,
    /// Kafka's log end at the last lag check; absent until one answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<i64>,
    /// Records Kafka holds that the archive does not yet, at the last lag check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// When the partition fell behind (see [`Behind`]); absent while it keeps up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub behind_since: Option<String>,
}

/// "shard 2/4 did not answer: what it holds is missing from this trace", for answers that
/// name shards in `incomplete`; `None` when the whole archive answered.
pub fn describe_incomplete(incomplete: &[String], answer: &str) -> Option<String> {
    let (last, others) = incomplete.split_last()?;
    Some(match others {
        [] => format!("shard {last} did not answer: what it holds is missing from this {answer}"),
        _ => format!(
            "shards {} and {last} did not answer: what they hold is missing from this {answer}",
            others.join(", ")
        ),
    })
}

/// "the archive is 1,204 messages behind on registrations/2 (since …)", for answers that
/// carry [`Behind`] partitions; `None` when there are none.
pub fn describe_behind(behind: &[Behind]) -> Option<String> {
    let first = behind.first()?;
    let total: i64 = behind.iter().map(|b| b.lag).sum();
    let since = behind
        .iter()
        .map(|b| b.since.as_str())
        .min()
        .unwrap_or(&first.since);
    let messages = if total == 1 { "message" } else { "messages" };
    let place = match behind.len() {
        1 => format!("{}/{}", first.topic, first.partition),
        n => format!(
            "{}/{} and {} other partition{}",
            first.topic,
            first.partition,
            n - 1,
            if n == 2 { "" } else { "s" }
        ),
    };
    Some(format!(
        "the archive is {} {messages} behind on {place} (since {since})",
        thousands(total)
    ))
}

/// 1204 → "1,204".
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}
