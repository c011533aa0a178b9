//! The shared test vectors in `proto/testdata/` (format: `proto/testdata/README.md`): fixed
//! envelopes, jobs and outcomes with the exact bytes, key and headers the Rust SDK publishes
//! for them, and the partition the Rust SDK's partitioner (librdkafka `murmur2_random`, the
//! Java client's murmur2) picks for 10,000 transaction ids. The SDKs in other languages
//! (`sdks/*`) decode and re-encode every vector, and place every id, the same way.
//!
//! The files are generated here and checked in. This test fails when they differ from what
//! the code produces; `RETRACE_WRITE_VECTORS=1 cargo test -p retrace-proto --test vectors`
//! writes them again (an intended change of the contract: every SDK's tests must follow).
//!
//! The headers of an envelope are `TraceHeaders::of(envelope).pairs()`, exactly what
//! `retrace_sdk::Publisher::publish` sends (`enqueue` publishes the same way, on the job's
//! lane); those of an outcome are built as `Publisher::publish_outcome` builds them
//! (services/sdk/src/publisher.rs). `tests/scenarios/sdk_python.rs` publishes every vector
//! with the Rust SDK on Apache Kafka and checks the records against these files, so a change
//! in the publisher cannot drift from them unnoticed.

use std::fmt::Write as _;
use std::path::PathBuf;

use prost::Message;
use prost_types::Timestamp;
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{
    Envelope, Job, JobPriority, OUTCOME_TYPE, OUTCOMES_TOPIC, Outcome, OutcomeStatus, Replay,
};

// ---------------------------------------------------------------------------------------
// The vectors.

const ROOT_EVENT: &str = "0195f3a0-7c00-7000-8000-000000000001";
const ROOT_TX: &str = "0195f3a0-7c00-7000-8000-0000000000aa";
const SUBJECTS_EVENT: &str = "0195f3a0-7c00-7001-8000-000000000002";
const SUBJECTS_TX: &str = "0195f3a0-7c00-7001-8000-0000000000bb";
const CAUSED_EVENT: &str = "0195f3a0-7c3e-7002-8000-000000000003";
const JOB_URGENT_EVENT: &str = "0195f3a0-7d00-7003-8000-000000000004";
const JOB_BULK_EVENT: &str = "0195f3a0-7d00-7004-8000-000000000005";
const JOB_NORMAL_EVENT: &str = "0195f3a0-7d00-7005-8000-000000000006";
const REPLAY_EVENT: &str = "0195f3a0-8000-7006-8000-000000000007";

/// 2026-03-01T09:30:00Z
const T0: i64 = 1_772_357_400;

fn at(offset_seconds: i64, nanos: i32) -> Timestamp {
    Timestamp {
        seconds: T0 + offset_seconds,
        nanos,
    }
}

/// How the Rust SDK publishes a vector.
enum Published {
    /// `Publisher::publish(topic, envelope)`.
    Publish { topic: &'static str },
    /// `retrace_sdk::enqueue(publisher, queue, job)`: on the lane of the job's priority.
    Enqueue {
        queue: &'static str,
        lane: &'static str,
    },
    /// `Publisher::publish_outcome(outcome)`, on `retrace.outcomes`.
    Outcome,
}

enum Body {
    Envelope(Box<Envelope>),
    Outcome(Outcome),
}

struct Vector {
    name: &'static str,
    about: &'static str,
    published: Published,
    body: Body,
}

fn root() -> Envelope {
    Envelope {
        event_id: ROOT_EVENT.into(),
        transaction_id: ROOT_TX.into(),
        source: "registration".into(),
        r#type: "registration.submitted.v1".into(),
        occurred_at: Some(at(0, 0)),
        ..Envelope::default()
    }
}

fn with_subjects() -> Envelope {
    let mut attributes = std::collections::HashMap::new();
    // One entry only: prost encodes a map in hash order, so two entries have no fixed bytes.
    attributes.insert("tenant".to_owned(), "ng-lagos".to_owned());
    Envelope {
        event_id: SUBJECTS_EVENT.into(),
        transaction_id: SUBJECTS_TX.into(),
        subject_ids: vec![
            "beneficiary:42".into(),
            "birth-registration:BR-2026-0001".into(),
            "village:Kɔfi-Abɛna".into(),
        ],
        source: "registration".into(),
        r#type: "registration.submitted.v1".into(),
        occurred_at: Some(at(1, 123_456_789)),
        content_type: "application/json".into(),
        payload: r#"{"child":{"name":"Zoë","weightKg":3.2},"registeredAt":"2026-03-01"}"#.into(),
        attributes,
        ..Envelope::default()
    }
}

fn caused_by() -> Envelope {
    let parent = with_subjects();
    Envelope {
        event_id: CAUSED_EVENT.into(),
        transaction_id: parent.transaction_id.clone(),
        causation_id: parent.event_id.clone(),
        subject_ids: parent.subject_ids.clone(),
        source: "validation".into(),
        r#type: "registration.validated.v1".into(),
        occurred_at: Some(at(62, 500_000_000)),
        content_type: "application/json".into(),
        payload: r#"{"valid":true}"#.into(),
        ..Envelope::default()
    }
}

fn job(event_id: &str, priority: JobPriority, with_times: bool, max_attempts: u32) -> Envelope {
    let parent = caused_by();
    Envelope {
        event_id: event_id.into(),
        transaction_id: parent.transaction_id.clone(),
        causation_id: parent.event_id.clone(),
        subject_ids: vec!["birth-registration:BR-2026-0001".into()],
        source: "registration".into(),
        r#type: "certificate.requested.v1".into(),
        occurred_at: Some(at(120, 0)),
        content_type: "application/json".into(),
        payload: r#"{"certificate":"BR-2026-0001","copies":2}"#.into(),
        job: Some(Job {
            kind: "certificate.render".into(),
            priority: priority as i32,
            // 22:00 the same day, and 06:00 the next morning.
            not_before: with_times.then(|| at(45_000, 0)),
            deadline: with_times.then(|| at(73_800, 0)),
            max_attempts,
        }),
        ..Envelope::default()
    }
}

fn replayed() -> Envelope {
    let original = caused_by();
    Envelope {
        event_id: REPLAY_EVENT.into(),
        replay: Some(Replay {
            replay_id: "rp-0195f3a0-8000".into(),
            original_event_id: original.event_id.clone(),
            original_topic: "registrations".into(),
            original_partition: 7,
            original_offset: 1_234_567_890_123,
            requested_by: "support:amina".into(),
            reason: "registry was down".into(),
            requested_at: Some(at(3_600, 250_000_000)),
        }),
        ..original
    }
}

fn outcome(status: OutcomeStatus, error: &str, attempt: u32, seconds: i64) -> Outcome {
    let event = caused_by();
    Outcome {
        event_id: event.event_id.clone(),
        transaction_id: event.transaction_id.clone(),
        consumer: "certificates".into(),
        status: status as i32,
        error: error.into(),
        attempt,
        at: Some(at(seconds, 42_000)),
        ..Outcome::default()
    }
}

fn vectors() -> Vec<Vector> {
    let envelope = |e: Envelope| Body::Envelope(Box::new(e));
    vec![
        Vector {
            name: "root",
            about: "a root event: no causation, subjects or payload",
            published: Published::Publish {
                topic: "registrations",
            },
            body: envelope(root()),
        },
        Vector {
            name: "root_with_subjects_and_payload",
            about: "a root event with three subjects (one not ASCII), a JSON payload and one attribute",
            published: Published::Publish {
                topic: "registrations",
            },
            body: envelope(with_subjects()),
        },
        Vector {
            name: "caused_by",
            about: "caused by root_with_subjects_and_payload: its transaction and subjects, its event id as causation",
            published: Published::Publish {
                topic: "validations",
            },
            body: envelope(caused_by()),
        },
        Vector {
            name: "job_urgent",
            about: "a job with priority URGENT, not_before, deadline and max_attempts, enqueued on queue `certificates`",
            published: Published::Enqueue {
                queue: "certificates",
                lane: "retrace.jobs.certificates.urgent",
            },
            body: envelope(job(JOB_URGENT_EVENT, JobPriority::Urgent, true, 5)),
        },
        Vector {
            name: "job_bulk",
            about: "a job with priority BULK and no times, enqueued on queue `certificates`",
            published: Published::Enqueue {
                queue: "certificates",
                lane: "retrace.jobs.certificates.bulk",
            },
            body: envelope(job(JOB_BULK_EVENT, JobPriority::Bulk, false, 0)),
        },
        Vector {
            name: "job_unspecified_priority",
            about: "a job without a priority (treated as NORMAL): the queue's base lane",
            published: Published::Enqueue {
                queue: "certificates",
                lane: "retrace.jobs.certificates",
            },
            body: envelope(job(JOB_NORMAL_EVENT, JobPriority::Unspecified, true, 3)),
        },
        Vector {
            name: "replayed",
            about: "caused_by re-published by a replay: retrace-replay-id and retrace-replay-of headers",
            published: Published::Publish {
                topic: "validations",
            },
            body: envelope(replayed()),
        },
        Vector {
            name: "outcome_processed",
            about: "consumer `certificates` processed caused_by",
            published: Published::Outcome,
            body: Body::Outcome(outcome(OutcomeStatus::Processed, "", 1, 63)),
        },
        Vector {
            name: "outcome_failed",
            about: "consumer `certificates` failed caused_by, with the error text",
            published: Published::Outcome,
            body: Body::Outcome(outcome(
                OutcomeStatus::Failed,
                "registry timeout: beneficiary:42 not found after 5 s",
                1,
                64,
            )),
        },
        Vector {
            name: "outcome_retrying",
            about: "consumer `certificates` will retry caused_by (attempt 2)",
            published: Published::Outcome,
            body: Body::Outcome(outcome(
                OutcomeStatus::Retrying,
                "HTTP 503 from the certificate renderer",
                2,
                70,
            )),
        },
        Vector {
            name: "outcome_failed_with_code",
            about: "consumer `certificates` failed caused_by, with the error text and an error code (which groups failures into incidents)",
            published: Published::Outcome,
            body: Body::Outcome(
                outcome(
                    OutcomeStatus::Failed,
                    "population register did not answer within 2 s",
                    1,
                    65,
                )
                .with_error_code("population_register_timeout"),
            ),
        },
    ]
}

/// The headers `Publisher::publish_outcome` sends with `outcome` (services/sdk/src/publisher.rs).
fn outcome_headers(outcome: &Outcome) -> TraceHeaders {
    TraceHeaders {
        transaction_id: outcome.transaction_id.clone(),
        causation_id: outcome.event_id.clone(),
        source: outcome.consumer.clone(),
        event_type: OUTCOME_TYPE.to_owned(),
        ..TraceHeaders::default()
    }
}

// ---------------------------------------------------------------------------------------
// Kafka's murmur2, as the Java client's `Utils.murmur2` and librdkafka's `murmur2_random`.

fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions`: `toPositive(murmur2(key)) % partitions`.
fn partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_the_java_clients_test_cases() {
    // From Apache Kafka's UtilsTest.testMurmur2.
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, expected) in cases {
        assert_eq!(
            murmur2(key),
            expected,
            "murmur2({:?})",
            String::from_utf8_lossy(key)
        );
    }
}

const PARTITION_COUNTS: [i32; 3] = [1, 3, 12];
const TRANSACTIONS: usize = 10_000;

/// splitmix64: a fixed sequence from a seed, the same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// 10,000 transaction ids of every length modulo 4 (murmur2 hashes 4 bytes at a time, then
/// a tail of 0 to 3): UUIDv7-shaped ids, `tx-N`, business keys, and random text with
/// characters beyond ASCII (bytes ≥ 0x80, which Java reads as negative).
fn transaction_ids() -> Vec<String> {
    let mut random = SplitMix(0x5245_5452_4143_4531); // "RETRACE1"
    let alphabet: Vec<char> =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-éɔɛ日本ß"
            .chars()
            .collect();
    (0..TRANSACTIONS)
        .map(|i| match i % 4 {
            0 => {
                let millis = 1_772_357_400_000u64 + i as u64 * 37;
                let a = random.next();
                let b = random.next();
                format!(
                    "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
                    millis >> 16,
                    millis & 0xffff,
                    a & 0xfff,
                    0x8000 | ((a >> 12) & 0x3fff),
                    b & 0xffff_ffff_ffff
                )
            }
            1 => format!("tx-{i}"),
            2 => format!("birth-registration:BR-2026-{:0w$}", i, w = 1 + i % 7),
            _ => {
                let len = 1 + (random.next() % 40) as usize;
                (0..len)
                    .map(|_| alphabet[(random.next() % alphabet.len() as u64) as usize])
                    .collect()
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// A small JSON writer: the files are compared byte for byte, so their layout is fixed here.

enum Json {
    Str(String),
    Int(i64),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::Obj(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn s(value: impl Into<String>) -> Json {
    Json::Str(value.into())
}

impl Json {
    fn scalar(&self) -> bool {
        matches!(self, Json::Str(_) | Json::Int(_))
    }

    /// Objects one member a line; an array of scalars on one line; other arrays one element
    /// a line.
    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Json::Str(text) => write_str(out, text),
            Json::Int(n) => write!(out, "{n}").unwrap(),
            Json::Arr(items) if items.iter().all(Json::scalar) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, indent);
                }
                out.push(']');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, indent + 2);
                    item.write(out, indent + 2);
                }
                out.push('\n');
                pad(out, indent);
                out.push(']');
            }
            Json::Obj(members) if members.is_empty() => out.push_str("{}"),
            Json::Obj(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    out.push_str(if i > 0 { ",\n" } else { "\n" });
                    pad(out, indent + 2);
                    write_str(out, name);
                    out.push_str(": ");
                    value.write(out, indent + 2);
                }
                out.push('\n');
                pad(out, indent);
                out.push('}');
            }
        }
    }

    fn document(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// UTF-8 as is; `"`, `\` and control characters escaped.
fn write_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        write!(out, "{b:02x}").unwrap();
        out
    })
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 3339 in UTC, as protobuf's JSON mapping writes a Timestamp (0, 3, 6 or 9 digits).
fn rfc3339(t: &Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let nanos = t.nanos;
    if nanos != 0 {
        if nanos % 1_000_000 == 0 {
            write!(out, ".{:03}", nanos / 1_000_000).unwrap();
        } else if nanos % 1_000 == 0 {
            write!(out, ".{:06}", nanos / 1_000).unwrap();
        } else {
            write!(out, ".{nanos:09}").unwrap();
        }
    }
    out.push('Z');
    out
}

/// Members of protobuf's canonical JSON mapping, defaults left out (as `MessageToDict` and
/// `toJson` do).
struct Fields(Vec<(String, Json)>);

impl Fields {
    fn text(mut self, name: &'static str, value: &str) -> Self {
        if !value.is_empty() {
            self.0.push((name.into(), s(value)));
        }
        self
    }
    fn number(mut self, name: &'static str, value: i64) -> Self {
        if value != 0 {
            self.0.push((name.into(), Json::Int(value)));
        }
        self
    }
    /// An int64: a string in protobuf's JSON mapping.
    fn long(mut self, name: &'static str, value: i64) -> Self {
        if value != 0 {
            self.0.push((name.into(), s(value.to_string())));
        }
        self
    }
    fn time(mut self, name: &'static str, value: Option<&Timestamp>) -> Self {
        if let Some(t) = value {
            self.0.push((name.into(), s(rfc3339(t))));
        }
        self
    }
    fn push(mut self, name: &'static str, value: Json) -> Self {
        self.0.push((name.into(), value));
        self
    }
    fn done(self) -> Json {
        Json::Obj(self.0)
    }
}

fn envelope_fields(e: &Envelope) -> Json {
    let mut fields = Fields(vec![])
        .text("eventId", &e.event_id)
        .text("transactionId", &e.transaction_id)
        .text("causationId", &e.causation_id);
    if !e.subject_ids.is_empty() {
        fields = fields.push(
            "subjectIds",
            Json::Arr(e.subject_ids.iter().map(s).collect()),
        );
    }
    fields = fields
        .text("source", &e.source)
        .text("type", &e.r#type)
        .time("occurredAt", e.occurred_at.as_ref())
        .text("contentType", &e.content_type)
        .text("payload", &base64(&e.payload));
    if !e.attributes.is_empty() {
        let mut attributes: Vec<_> = e.attributes.iter().collect();
        attributes.sort();
        let members = attributes
            .into_iter()
            .map(|(k, v)| (k.clone(), s(v.clone())))
            .collect();
        fields = fields.push("attributes", Json::Obj(members));
    }
    if let Some(r) = &e.replay {
        let replay = Fields(vec![])
            .text("replayId", &r.replay_id)
            .text("originalEventId", &r.original_event_id)
            .text("originalTopic", &r.original_topic)
            .number("originalPartition", r.original_partition.into())
            .long("originalOffset", r.original_offset)
            .text("requestedBy", &r.requested_by)
            .text("reason", &r.reason)
            .time("requestedAt", r.requested_at.as_ref())
            .done();
        fields = fields.push("replay", replay);
    }
    if let Some(j) = &e.job {
        let mut job = Fields(vec![]).text("kind", &j.kind);
        if j.priority != 0 {
            job = job.push("priority", s(j.priority().as_str_name()));
        }
        let job = job
            .time("notBefore", j.not_before.as_ref())
            .time("deadline", j.deadline.as_ref())
            .number("maxAttempts", j.max_attempts.into())
            .done();
        fields = fields.push("job", job);
    }
    fields.done()
}

fn outcome_fields(o: &Outcome) -> Json {
    let mut fields = Fields(vec![])
        .text("eventId", &o.event_id)
        .text("transactionId", &o.transaction_id)
        .text("consumer", &o.consumer);
    if o.status != 0 {
        fields = fields.push("status", s(o.status().as_str_name()));
    }
    fields
        .text("error", &o.error)
        .text("errorCode", &o.error_code)
        .number("attempt", o.attempt.into())
        .time("at", o.at.as_ref())
        .done()
}

// ---------------------------------------------------------------------------------------
// The files.

fn vectors_document() -> String {
    let vectors = vectors()
        .into_iter()
        .map(|v| {
            let (message, value, key, headers, fields) = match &v.body {
                Body::Envelope(e) => {
                    e.validate().expect("every envelope vector is valid");
                    (
                        "retrace.v1.Envelope",
                        e.encode_to_vec(),
                        e.transaction_id.clone(),
                        TraceHeaders::of(e),
                        envelope_fields(e),
                    )
                }
                Body::Outcome(o) => {
                    o.validate().expect("every outcome vector is valid");
                    (
                        "retrace.v1.Outcome",
                        o.encode_to_vec(),
                        o.transaction_id.clone(),
                        outcome_headers(o),
                        outcome_fields(o),
                    )
                }
            };
            let mut members = vec![
                ("name", s(v.name)),
                ("about", s(v.about)),
                ("message", s(message)),
            ];
            match v.published {
                Published::Publish { topic } => {
                    members.push(("published_with", s("publish")));
                    members.push(("topic", s(topic)));
                }
                Published::Enqueue { queue, lane } => {
                    members.push(("published_with", s("enqueue")));
                    members.push(("queue", s(queue)));
                    members.push(("topic", s(lane)));
                }
                Published::Outcome => {
                    members.push(("published_with", s("publish_outcome")));
                    members.push(("topic", s(OUTCOMES_TOPIC)));
                }
            }
            members.extend([
                ("key", s(key)),
                ("value_hex", s(hex(&value))),
                (
                    "headers",
                    Json::Arr(
                        headers
                            .pairs()
                            .into_iter()
                            .map(|(name, value)| Json::Arr(vec![s(name), s(value)]))
                            .collect(),
                    ),
                ),
                ("fields", fields),
            ]);
            obj(members)
        })
        .collect();
    obj(vec![
        ("format", s("retrace-test-vectors/1")),
        (
            "about",
            s("Generated by proto/tests/vectors.rs; see proto/testdata/README.md"),
        ),
        ("vectors", Json::Arr(vectors)),
    ])
    .document()
}

fn partitions_document() -> String {
    let rows = transaction_ids()
        .into_iter()
        .map(|id| {
            let mut row = vec![s(id.clone())];
            row.extend(
                PARTITION_COUNTS
                    .iter()
                    .map(|&n| Json::Int(partition(id.as_bytes(), n).into())),
            );
            Json::Arr(row)
        })
        .collect();
    obj(vec![
        ("format", s("retrace-partitions/1")),
        (
            "about",
            s("Generated by proto/tests/vectors.rs; see proto/testdata/README.md"),
        ),
        (
            "partitioner",
            s("toPositive(murmur2(UTF-8 key)) % partitions, as Java's default partitioner and librdkafka's murmur2_random"),
        ),
        (
            "partition_counts",
            Json::Arr(PARTITION_COUNTS.iter().map(|&n| Json::Int(n.into())).collect()),
        ),
        ("transactions", Json::Arr(rows)),
    ])
    .document()
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Writes `name` when asked to, else checks that the checked-in file is `expected`.
fn check_or_write(name: &str, expected: &str) {
    let path = testdata().join(name);
    if std::env::var_os("RETRACE_WRITE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(testdata()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let Ok(found) = std::fs::read_to_string(&path) else {
        panic!(
            "{} is missing: generate it with `RETRACE_WRITE_VECTORS=1 cargo test -p \
             retrace-proto --test vectors` and commit it",
            path.display()
        );
    };
    if found != expected {
        let line = found
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| found.lines().count().min(expected.lines().count()));
        panic!(
            "{} differs from what the code produces (first at line {}): the wire contract or \
             the Rust SDK's headers changed, or the file was edited. If the change is \
             intended, regenerate with `RETRACE_WRITE_VECTORS=1 cargo test -p retrace-proto \
             --test vectors`, commit the files, and make every SDK's tests (sdks/*) pass \
             against them.\n  file: {:?}\n  code: {:?}",
            path.display(),
            line + 1,
            found.lines().nth(line).unwrap_or("<end of file>"),
            expected.lines().nth(line).unwrap_or("<end of output>"),
        );
    }
}

#[test]
fn test_vectors_match_the_code() {
    check_or_write("vectors.json", &vectors_document());
}

#[test]
fn partitions_match_the_code() {
    check_or_write("partitions.json", &partitions_document());
}

#[test]
fn every_vector_decodes_to_itself() {
    for v in vectors() {
        match v.body {
            Body::Envelope(e) => {
                assert_eq!(
                    Envelope::decode(&*e.encode_to_vec()).unwrap(),
                    *e,
                    "{}",
                    v.name
                )
            }
            Body::Outcome(o) => {
                assert_eq!(
                    Outcome::decode(&*o.encode_to_vec()).unwrap(),
                    o,
                    "{}",
                    v.name
                )
            }
        }
    }
}

#[test]
fn the_json_helpers_write_what_the_mapping_says() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
    assert_eq!(rfc3339(&at(0, 0)), "2026-03-01T09:30:00Z");
    assert_eq!(
        rfc3339(&at(1, 123_456_789)),
        "2026-03-01T09:30:01.123456789Z"
    );
    assert_eq!(
        rfc3339(&at(73_800, 500_000_000)),
        "2026-03-02T06:00:00.500Z"
    );
    assert_eq!(
        rfc3339(&Timestamp {
            seconds: 951_782_400,
            nanos: 42_000
        }),
        "2000-02-29T00:00:00.000042Z"
    );
}
