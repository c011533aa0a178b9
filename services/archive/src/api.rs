//! The JSON documents of the trace and replay API, shared by the server and its clients (the
//! `retrace` CLI). Times are RFC 3339 in UTC; durations are milliseconds.

use serde::{Deserialize, Serialize};

/// What happened to a transaction, as far as the archive knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub transaction_id: String,
    pub status: TransactionStatus,
    pub started_at: String,
    pub last_at: String,
    pub duration_ms: i64,
    /// Every archived message of the transaction except outcomes (which are attached to the
    /// event they are about), in time order.
    pub events: Vec<TraceEvent>,
    /// Causation: each root event with the events it caused, recursively.
    pub tree: Vec<TreeNode>,
    pub replays: Vec<ReplayView>,
    /// The failure that makes the status `failed` or `replayed`, the newest if several.
    pub failure: Option<FailedStep>,
    /// Partitions the archive is behind on: events of the transaction may be on Kafka and
    /// not archived yet. Absent when it keeps up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
}

/// A partition the archive is behind on: a record Kafka held at the previous lag check
/// (`[archive] lag_check_ms`) is still not archived. Answers that read the archive carry the
/// partitions behind when they answer, since what they lack may be there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behind {
    pub topic: String,
    pub partition: i32,
    /// Records on Kafka not archived yet.
    pub lag: i64,
    /// When the oldest of them was first seen on Kafka.
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    #[serde(flatten)]
    pub message: MessageView,
    /// Time since the previous event of the trace.
    pub since_previous_ms: i64,
    /// How many records of this event the topic holds, this one the first: more than 1 when
    /// a publish was retried after its answer was lost and both were written. They are one
    /// event (each is in `GET /v1/events/{id}`'s `copies`); a replayed copy is a step of its
    /// own.
    #[serde(default = "one")]
    pub copies: usize,
    /// Each consumer's outcomes for this event, oldest first.
    pub outcomes: Vec<OutcomeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub topic: String,
    pub children: Vec<TreeNode>,
}

/// One archived Kafka message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `envelope`, `headers_only`, `outcome`, `untraceable` or `malformed`. `headers_only`:
    /// traced from its `retrace-*` headers, its value (JSON, text, anything) not an envelope.
    pub kind: String,
    /// Why the message is flagged or could not be fully read. For `headers_only`, only when
    /// its value claims to be an envelope (binary, or a protobuf `content-type` header) and is
    /// not one: JSON or text beside the headers is how other languages publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
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
    pub erased_at: Option<String>,
}

/// A message's payload: JSON when it is JSON, else text when it is UTF-8, else base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeView {
    pub consumer: String,
    /// `processed`, `failed`, `retrying`, `dead_lettered` or `skipped`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Who reported it through the gateway (`POST /v1/outcomes`); absent for outcomes a
    /// service published on Kafka itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reported_by: String,
    pub attempt: u32,
    pub time: String,
}

/// Where a transaction failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionSummary {
    pub transaction_id: String,
    pub status: TransactionStatus,
    pub started_at: String,
    pub last_at: String,
    pub events: usize,
    pub topics: Vec<String>,
    pub subject_ids: Vec<String>,
    pub failure: Option<FailedStep>,
}

/// A page of a listing; pass `next_cursor` as `cursor` to get the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    /// As in [`Trace::behind`]: the listing may miss what these partitions hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
}

/// `GET /v1/events/{event_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub event_id: String,
    /// Every archived copy: more than one when it was published twice or replayed.
    pub copies: Vec<MessageView>,
    pub outcomes: Vec<OutcomeView>,
    /// As in [`Trace::behind`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
}

/// `POST /v1/transactions/{id}/replay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Required: why the transaction is replayed, for whoever reads the audit later.
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
    /// Refused when authentication is on: the replay is recorded under the authenticated
    /// caller. Recorded as given only when `auth.enabled = false` (development).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// `POST /v1/replays`: replay every transaction a query selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkReplayRequest {
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
    /// Replay only failed events of each transaction (default true).
    #[serde(default = "yes")]
    pub only_failed: bool,
    #[serde(default)]
    pub target_topic: Option<String>,
    /// Messages re-published per second.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Refuse, rather than start, a replay of more messages than this.
    #[serde(default = "default_max")]
    pub max: usize,
    /// As in [`ReplayRequest::requested_by`].
    #[serde(default)]
    pub requested_by: Option<String>,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

fn default_rate() -> u32 {
    100
}

fn default_max() -> usize {
    1000
}

/// What a replay re-publishes, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayPlan {
    pub transactions: usize,
    pub messages: Vec<PlannedMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub dry_run: bool,
    pub plan: ReplayPlan,
    pub replay: Option<ReplayView>,
}

/// `GET /v1/replays/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayView {
    pub replay_id: String,
    pub requested_by: String,
    pub reason: String,
    pub requested_at: String,
    /// `running`, `done` or `failed`.
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

/// `POST /v1/subjects/{id}/erase`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Required: why (the request's reference), for the audit trail.
    pub reason: String,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureView {
    pub subject_id: String,
    pub erased_at: String,
    /// Transactions that touched the subject.
    pub transactions: usize,
    /// Records whose payload this erasure removed.
    pub records: usize,
    /// Records an earlier erasure had already emptied.
    pub already_erased: usize,
    /// Outcomes of the subject's transactions whose error text this erasure removed.
    #[serde(default)]
    pub outcomes: usize,
    /// What still holds the bytes, and what removes them.
    pub note: String,
}

/// `POST /v1/admin/backups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Where to write the backup, on the archive's host: a new or empty directory.
    pub directory: String,
}

/// A backup's `manifest.json`, also the answer to `POST /v1/admin/backups` and what
/// `retrace restore` checks and prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// The store format the backup was written in.
    pub format_version: u32,
    pub created_at: String,
    /// Records in the backup.
    pub records: u64,
    /// Where a restored archive resumes reading each partition.
    pub positions: Vec<PositionView>,
}

/// The next offset the archive stores in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub behind_since: Option<String>,
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

/// One record of the audit trail (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    /// Its number in the chain, from 1.
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub role: String,
    /// The caller's address.
    pub origin: String,
    /// `transaction.read`, `replay.start`, `subject.erase`, `token.create`, `denied`, ...
    pub action: String,
    /// The transaction, subject, query, token or request it was done to.
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// `ok`, or why it failed or was refused.
    pub result: String,
    /// SHA-256 of the record and its predecessor's hash, hex.
    pub hash: String,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerificationView {
    pub records: u64,
    /// No record altered, removed or moved.
    pub intact: bool,
    /// Each break in the chain, naming the record.
    pub problems: Vec<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Unique among live tokens: `billing-service`, `ci-replays`.
    pub name: String,
    /// `publisher`, `support`, `analyst` or `admin`.
    pub role: String,
    /// Permissions beyond the role, e.g. `payload:read`.
    #[serde(default)]
    pub extra: Vec<String>,
    /// Topics a publisher may publish to; absent means any.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Absent: the token never expires (revoke it instead).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// An API token as kept: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub extra: Vec<String>,
    pub topics: Option<Vec<String>>,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// The answer to `POST /v1/tokens`: the token text, shown this once, and its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub record: TokenView,
}

/// `GET /v1/whoami`: the authenticated caller, so a client shows only what it may do (the
/// server checks every request anyway).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The name audit records give the caller: the token's name, or the person's username.
    pub actor: String,
    /// `publisher`, `analyst`, `support` or `admin`.
    pub role: String,
    /// `api_token`, `jwt`, or `anonymous` (authentication disabled).
    pub credential: String,
    /// Every permission the caller holds, through its role or granted beyond it, e.g.
    /// `trace:read`, `payload:read`, `replay`.
    pub permissions: Vec<String>,
}

/// Every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The request field or parameter at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a 404 of a transaction or event: the partitions the archive is behind on, where it
    /// may still be (see [`Behind`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
}
