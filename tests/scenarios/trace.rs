//! Tracing and replaying end to end: what services publish (with the SDK, or with nothing but
//! `retrace-*` headers) is traced with its causation tree and outcomes; a replay re-publishes
//! the failed step to Kafka with replay headers, and the trace shows it and its resolution.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_api::{
    EventView, Page, RecordRole, ReplayResponse, ReplayView, Trace, TraceEvent, TransactionStatus,
    TransactionSummary,
};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, Flaky, PATIENCE, RunningArchive, eventually, job, messages_on, on_every_broker,
    start_archive, unique_topic,
};
use retrace_worker::{Backoff, QueueTopics, enqueue};
use serde_json::{Value, json};

struct Flow {
    submitted: Envelope,
    validated: Envelope,
    notified_event_id: String,
}

async fn get(archive: &RunningArchive, path: &str) -> (u16, Value) {
    let response = reqwest::get(archive.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn post(archive: &RunningArchive, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(archive.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn trace_when(
    archive: &RunningArchive,
    transaction: &str,
    what: &str,
    ready: impl Fn(&Trace) -> bool,
) -> Trace {
    eventually(what, PATIENCE, || async {
        let (status, body) = get(archive, &format!("/v1/transactions/{transaction}")).await;
        let trace: Trace = (status == 200).then(|| serde_json::from_value(body).unwrap())?;
        ready(&trace).then_some(trace)
    })
    .await
}

/// registration → validation (SDK), then a legacy service that only sets `retrace-*`
/// headers; the certificate service reports a failure for the validated event.
async fn publish_flow(broker: &Broker, publisher: &Publisher) -> Flow {
    let submitted = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject("beneficiary:42")
        .with_payload("application/json", br#"{"child":"Amina"}"#.to_vec());
    let validated =
        Envelope::caused_by(&submitted, "validation", "birth.registration.validated.v1");
    publisher
        .publish("registrations", &submitted)
        .await
        .unwrap();
    publisher.publish("validations", &validated).await.unwrap();
    let notified_event_id = retrace_proto::new_event_id();
    publish_without_envelope(
        broker,
        "notifications",
        b"SMS queued for +000",
        &[
            ("retrace-event-id", notified_event_id.as_str()),
            ("retrace-transaction-id", &submitted.transaction_id),
            ("retrace-causation-id", &validated.event_id),
            ("retrace-subject", "beneficiary:42"),
            ("retrace-source", "legacy-sms"),
            ("retrace-type", "notification.sms.queued.v1"),
        ],
    )
    .await;
    for (event, consumer, status) in [
        (&submitted, "validation", OutcomeStatus::Processed),
        (&validated, "certificates", OutcomeStatus::Failed),
    ] {
        let error = (status == OutcomeStatus::Failed).then(|| "renderer down: HTTP 503".into());
        publisher
            .publish_outcome(&Outcome::of(event, consumer, status, error, 1))
            .await
            .unwrap();
    }
    Flow {
        submitted,
        validated,
        notified_event_id,
    }
}

/// What a service in another language (or `kcat -H`) publishes: a value of its own, keyed by
/// the transaction id, with the ids in `retrace-*` headers.
async fn publish_without_envelope(
    broker: &Broker,
    topic: &str,
    value: &[u8],
    headers: &[(&str, &str)],
) {
    let producer: FutureProducer = broker.client_config().create().unwrap();
    let transaction = headers
        .iter()
        .find(|(name, _)| *name == "retrace-transaction-id")
        .map(|(_, id)| *id)
        .unwrap_or_default();
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(*value),
            })
        });
    producer
        .send(
            FutureRecord::to(topic)
                .key(transaction)
                .payload(value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
}

async fn a_failed_transaction_is_traced_replayed_and_resolved(broker: Broker) {
    for topic in [
        "registrations",
        "validations",
        "notifications",
        OUTCOMES_TOPIC,
    ] {
        broker.create_topic(topic, 2).await;
    }
    let archive = start_archive(&broker).await;
    let settings = broker.settings();
    let publisher = Publisher::new(&settings).unwrap();
    let flow = publish_flow(&broker, &publisher).await;
    let transaction = flow.submitted.transaction_id.clone();

    let trace = trace_when(&archive, &transaction, "the failed trace", |t| {
        t.events.len() == 3 && t.failure.is_some()
    })
    .await;
    assert_eq!(trace.status, TransactionStatus::Failed);
    let types: Vec<&str> = trace
        .events
        .iter()
        .map(|e| e.message.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "birth.registration.submitted.v1",
            "birth.registration.validated.v1",
            "notification.sms.queued.v1"
        ]
    );
    assert_eq!(trace.events[2].message.kind, "headers_only");
    assert_eq!(
        trace.events[2].message.problem, None,
        "text beside retrace-* headers is how other languages publish, not a problem"
    );
    let failure = trace.failure.clone().unwrap();
    assert_eq!(failure.event_id, flow.validated.event_id);
    assert_eq!(failure.consumer, "certificates");
    assert_eq!(failure.error, "renderer down: HTTP 503");
    assert_eq!(
        trace.events[0].outcomes().next().map(|o| o.status.as_str()),
        Some("processed")
    );
    // submitted → validated → notified
    let root = &trace.tree[0];
    assert_eq!(trace.tree.len(), 1);
    assert_eq!(root.event_id, flow.submitted.event_id);
    assert_eq!(root.children[0].event_id, flow.validated.event_id);
    assert_eq!(
        root.children[0].children[0].event_id,
        flow.notified_event_id
    );

    let (_, failed) = get(&archive, "/v1/transactions?status=failed&since=1h").await;
    let failed: Page<TransactionSummary> = serde_json::from_value(failed).unwrap();
    assert!(failed.items.iter().any(|t| t.transaction_id == transaction));
    let (_, subject) = get(&archive, "/v1/subjects/beneficiary:42/transactions").await;
    let subject: Page<TransactionSummary> = serde_json::from_value(subject).unwrap();
    assert_eq!(subject.items[0].transaction_id, transaction);
    assert_eq!(subject.items[0].status, TransactionStatus::Failed);
    let (_, event) = get(&archive, &format!("/v1/events/{}", flow.validated.event_id)).await;
    let event: EventView = serde_json::from_value(event).unwrap();
    assert_eq!(event.copies.len(), 1);
    assert_eq!(event.outcomes[0].status, "failed");
    let (_, by_header) = get(
        &archive,
        "/v1/messages?topic=notifications&from_offset=0&header=retrace-source:legacy-sms&payload=true",
    )
    .await;
    assert_eq!(
        by_header["items"][0]["payload"]["text"],
        "SMS queued for +000"
    );

    // Dry run: exactly the failed step, nothing published.
    let replay_path = format!("/v1/transactions/{transaction}/replay");
    let (status, dry) = post(
        &archive,
        &replay_path,
        json!({"reason": "renderer is back", "only_failed": true, "dry_run": true}),
    )
    .await;
    assert_eq!(status, 200, "{dry}");
    let dry: ReplayResponse = serde_json::from_value(dry).unwrap();
    assert_eq!(dry.replay, None);
    let planned: Vec<&str> = dry
        .plan
        .messages
        .iter()
        .map(|m| m.event_id.as_str())
        .collect();
    assert_eq!(planned, [flow.validated.event_id.as_str()]);
    assert_eq!(dry.plan.messages[0].target_topic, "validations");

    let (status, started) = post(
        &archive,
        &replay_path,
        json!({"reason": "renderer is back", "only_failed": true, "requested_by": "ana"}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let started: ReplayResponse = serde_json::from_value(started).unwrap();
    let replay_id = started.replay.unwrap().replay_id;
    let done: ReplayView = eventually("the replay to finish", PATIENCE, || async {
        let (_, body) = get(&archive, &format!("/v1/replays/{replay_id}")).await;
        let view: ReplayView = serde_json::from_value(body).unwrap();
        (view.state != "running").then_some(view)
    })
    .await;
    assert_eq!(
        (done.state.as_str(), done.published),
        ("done", 1),
        "{done:?}"
    );

    // The copy on Kafka: same key and event, replay headers, the envelope says why.
    let copy = replayed_copy(&broker, "validations", &replay_id).await;
    assert_eq!(copy.0.as_deref(), Some(transaction.as_bytes()));
    let envelope = Envelope::decode(copy.1.as_slice()).unwrap();
    assert_eq!(envelope.event_id, flow.validated.event_id);
    let replay = envelope.replay.unwrap();
    assert_eq!(
        (replay.reason.as_str(), replay.requested_by.as_str()),
        ("renderer is back", "ana")
    );
    assert_eq!(copy.2, flow.validated.event_id, "retrace-replay-of");

    let replayed = trace_when(
        &archive,
        &transaction,
        "the replayed copy in the trace",
        |t| {
            let records = t.events.iter().flat_map(|e| &e.records);
            records.filter(|r| r.replay_id.is_some()).count() == 1
        },
    )
    .await;
    assert_eq!(replayed.status, TransactionStatus::Replayed);
    assert_eq!(replayed.replays[0].reason, "renderer is back");
    assert_eq!(replayed.events.len(), 3, "a replayed copy is not an event");
    let validated = replayed
        .events
        .iter()
        .find(|e| e.message.event_id == flow.validated.event_id)
        .unwrap();
    let roles: Vec<_> = validated.records.iter().map(|r| r.role).collect();
    assert_eq!(roles, [RecordRole::Published, RecordRole::Replayed]);
    assert_eq!(
        validated.records[1].replay_id.as_deref(),
        Some(replay_id.as_str())
    );

    // The certificate service handles the copy: the failure is resolved.
    publisher
        .publish_outcome(&Outcome::of(
            &flow.validated,
            "certificates",
            OutcomeStatus::Processed,
            None,
            2,
        ))
        .await
        .unwrap();
    let resolved = trace_when(&archive, &transaction, "the resolved trace", |t| {
        t.status == TransactionStatus::Ok
    })
    .await;
    assert_eq!(resolved.failure, None);
    let (status, nothing) = post(
        &archive,
        &replay_path,
        json!({"reason": "again", "only_failed": true}),
    )
    .await;
    assert_eq!(status, 409, "nothing failed any more: {nothing}");
    let (store, _dir) = archive.stop().await;
    assert!(store.check_consistency().unwrap().problems.is_empty());
}

/// How long the worker waits before a job's second and third attempts, before jitter: long
/// enough to stand out from the time an attempt takes, short enough for a test.
const BACKOFF: Backoff = Backoff {
    base_ms: 400,
    factor: 2.0,
    max_ms: 5_000,
};

/// How much later than the moment the worker computed a retry's due time the retry copy's
/// Kafka timestamp may be: librdkafka stamps it (`CreateTime`) when the worker hands the copy
/// over, right after; 250 ms covers a busy 2-core machine's scheduling in between.
const STAMPED_WITHIN_MS: i64 = 250;

fn ms(time: &str) -> i64 {
    time.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// A certificate job caused by a registration fails three times on the worker: retried twice,
/// then dead-lettered. Its trace is two events, the job one step with its records in the order
/// written, each attempt's outcome under it and the retry delays the worker's backoff; a
/// replay publishes it once, to its queue, and its success resolves the transaction.
async fn a_dead_lettered_job_is_one_step_with_its_attempts_and_replays_once(broker: Broker) {
    let queue = unique_topic("certificates");
    broker.create_queue(&queue).await;
    // The job's lane: a normal-priority job is published there.
    let lane = QueueTopics::of(&queue).normal;
    for topic in ["registrations", OUTCOMES_TOPIC] {
        broker.create_topic(topic, 2).await;
    }
    let archive = start_archive(&broker).await;
    let (worker, failing) = Flaky::worker(&broker, &queue, 3, BACKOFF).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    // Not the subject of `a_failed_transaction_is_traced_replayed_and_resolved`, which
    // expects its transaction newest among the subject's on the node both tests share.
    let registered = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject("beneficiary:43");
    publisher
        .publish("registrations", &registered)
        .await
        .unwrap();
    let mut certificate =
        Envelope::caused_by(&registered, "registration", "certificate.requested.v1");
    certificate.job = job("registration", "certificate.render").job;
    enqueue(&publisher, &queue, certificate.clone())
        .await
        .unwrap();
    let transaction = registered.transaction_id.clone();
    let step_of = |trace: &Trace| -> Option<TraceEvent> {
        let id = &certificate.event_id;
        trace
            .events
            .iter()
            .find(|e| e.message.event_id == *id)
            .cloned()
    };

    let dead = trace_when(&archive, &transaction, "the dead-lettered job", |t| {
        step_of(t).is_some_and(|step| {
            let last = step.records.last();
            step.outcomes().any(|o| o.status == "dead_lettered")
                && last.is_some_and(|r| r.role == RecordRole::DeadLettered)
        })
    })
    .await;
    assert_eq!(dead.events.len(), 2, "two events published: {dead:#?}");
    assert_eq!(dead.status, TransactionStatus::Failed);
    let step = step_of(&dead).unwrap();
    assert_eq!(step.message.topic, lane, "placed at its publication");
    let records: Vec<_> = step
        .records
        .iter()
        .map(|r| {
            let reported = r.outcomes.iter().map(|o| (o.attempt, o.status.as_str()));
            (r.role, r.attempt, reported.collect::<Vec<_>>())
        })
        .collect();
    use RecordRole::*;
    assert_eq!(
        records,
        [
            (Published, 1, vec![(1, "retrying")]),
            (Retry, 2, vec![(2, "retrying")]),
            (Retry, 3, vec![(3, "dead_lettered")]),
            (DeadLettered, 3, vec![]),
        ],
        "each attempt's outcome under the record it ran from"
    );
    let written: Vec<i64> = step.records.iter().map(|r| ms(&r.time)).collect();
    assert!(written.is_sorted(), "in the order written: {written:?}");
    for retry in step.records.iter().filter(|r| r.role == Retry) {
        let due = ms(retry.due_at.as_deref().unwrap());
        let delay = due - ms(&retry.time);
        let full = BACKOFF.base_ms as f64 * BACKOFF.factor.powi(retry.attempt as i32 - 2);
        assert!(
            delay <= full as i64 && delay >= (full / 2.0) as i64 - STAMPED_WITHIN_MS,
            "attempt {}: due {delay} ms after the retry was written, the backoff being \
             between {} and {full} ms",
            retry.attempt,
            full / 2.0
        );
        let ran = ms(&retry.outcomes[0].time);
        assert!(
            ran >= due,
            "attempt {} ran before it was due",
            retry.attempt
        );
    }
    assert_eq!(
        (ms(&step.last_at), step.duration_ms),
        (
            ms(&step.records[2].outcomes[0].time).max(ms(&step.records[3].time)),
            ms(&step.last_at) - ms(&step.message.time)
        ),
        "the step runs to its last attempt"
    );
    let (_, listed) = get(&archive, "/v1/transactions?status=failed&since=1h").await;
    let listed: Page<TransactionSummary> = serde_json::from_value(listed).unwrap();
    let summary = listed
        .items
        .iter()
        .find(|t| t.transaction_id == transaction);
    assert_eq!(summary.map(|t| t.events), Some(2), "distinct events listed");

    failing.store(false, Ordering::SeqCst);
    let replay_path = format!("/v1/transactions/{transaction}/replay");
    let (status, started) = post(
        &archive,
        &replay_path,
        json!({"reason": "renderer back", "only_failed": true}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let started: ReplayResponse = serde_json::from_value(started).unwrap();
    let planned: Vec<_> = started
        .plan
        .messages
        .iter()
        .map(|m| &m.target_topic)
        .collect();
    assert_eq!(planned, [&lane], "the job once, to its lane");
    let resolved = trace_when(&archive, &transaction, "the replayed job processed", |t| {
        t.status == TransactionStatus::Ok
    })
    .await;
    let step = step_of(&resolved).unwrap();
    let replayed: Vec<_> = step.records.iter().filter(|r| r.role == Replayed).collect();
    assert_eq!(replayed.len(), 1, "{step:#?}");
    assert_eq!(replayed[0].topic, lane);
    let statuses: Vec<_> = replayed[0].outcomes.iter().map(|o| &o.status).collect();
    assert_eq!(statuses, ["processed"]);
    assert_eq!(resolved.events.len(), 2);
    assert_eq!(
        messages_on(&broker, &lane, 2).await,
        2,
        "the lane holds the job and its one replayed copy"
    );
    worker.stop().await;
    archive.stop().await;
}

/// The message on `topic` that replay `replay_id` published: (key, value, replay-of).
async fn replayed_copy(
    broker: &Broker,
    topic: &str,
    replay_id: &str,
) -> (Option<Vec<u8>>, Vec<u8>, String) {
    let consumer: StreamConsumer = broker
        .client_config()
        .set("group.id", format!("check-{replay_id}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let header = |message: &rdkafka::message::BorrowedMessage<'_>, name: &str| {
        message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    eventually("the replayed copy on Kafka", PATIENCE, || async {
        let message = consumer.recv().await.ok()?;
        (header(&message, "retrace-replay-id").as_deref() == Some(replay_id)).then(|| {
            (
                message.key().map(<[u8]>::to_vec),
                message.payload().unwrap_or_default().to_vec(),
                header(&message, "retrace-replay-of").unwrap_or_default(),
            )
        })
    })
    .await
}

/// A Node.js service publishes JSON with `retrace-*` headers, as proto/README.md documents:
/// the trace shows its JSON and no warning. A value that says it is protobuf and is not an
/// envelope keeps its warning.
async fn json_from_another_language_is_shown_as_json_without_a_warning(broker: Broker) {
    let topic = unique_topic("node-registrations");
    broker.create_topic(&topic, 1).await;
    let archive = start_archive(&broker).await;
    let transaction = retrace_proto::new_event_id();
    let json_event = retrace_proto::new_event_id();
    let damaged_event = retrace_proto::new_event_id();
    let sent = json!({"child": {"given_name": "Amina"}, "channel": "sms"});
    let cases = [
        (&json_event, sent.to_string().into_bytes(), None),
        // The first bytes of an envelope, cut short, said to be protobuf.
        (
            &damaged_event,
            vec![0x0a, 0x24, b'0', b'1'],
            Some(("content-type", "application/x-protobuf")),
        ),
    ];
    for (event_id, value, content_type) in cases {
        let mut headers = vec![
            ("retrace-event-id", event_id.as_str()),
            ("retrace-transaction-id", transaction.as_str()),
            ("retrace-source", "node-registry"),
            ("retrace-type", "registration.received.v1"),
        ];
        headers.extend(content_type);
        publish_without_envelope(&broker, &topic, &value, &headers).await;
    }

    let answer: Trace = eventually("both events in the trace", PATIENCE, || async {
        let (status, body) = get(
            &archive,
            &format!("/v1/transactions/{transaction}?payload=true"),
        )
        .await;
        let trace: Trace = (status == 200).then(|| serde_json::from_value(body).unwrap())?;
        (trace.events.len() == 2).then_some(trace)
    })
    .await;
    let shown = |event_id: &str| {
        answer
            .events
            .iter()
            .map(|e| &e.message)
            .find(|m| m.event_id == event_id)
            .unwrap_or_else(|| panic!("{event_id} in {answer:?}"))
            .clone()
    };
    let json_shown = shown(&json_event);
    assert_eq!(
        (json_shown.kind.as_str(), json_shown.problem.as_deref()),
        ("headers_only", None)
    );
    assert_eq!(json_shown.source, "node-registry");
    assert_eq!(json_shown.payload.unwrap().json, Some(sent.clone()));
    let damaged = shown(&damaged_event);
    let warning = damaged.problem.unwrap_or_default();
    assert!(
        warning.starts_with("value is not a protobuf envelope"),
        "{warning:?}"
    );

    let (_, event) = get(&archive, &format!("/v1/events/{json_event}?payload=true")).await;
    let event: EventView = serde_json::from_value(event).unwrap();
    assert_eq!(event.copies[0].problem, None);
    assert_eq!(event.copies[0].payload.as_ref().unwrap().json, Some(sent));
    archive.stop().await;
}

async fn bad_requests_get_clear_errors_naming_the_parameter(broker: Broker) {
    broker.create_topic(OUTCOMES_TOPIC, 1).await;
    let archive = start_archive(&broker).await;
    let cases = [
        ("/v1/transactions/no-such-txn", 404, None),
        ("/v1/events/no-such-event", 404, None),
        ("/v1/replays/no-such-replay", 404, None),
        ("/v1/transactions?status=broken", 400, Some("status")),
        ("/v1/transactions?limit=0", 400, Some("limit")),
        ("/v1/transactions?since=yesterday", 400, Some("since")),
        ("/v1/transactions?cursor=zz", 400, Some("cursor")),
        ("/v1/transactions?sort=asc", 400, Some("sort")),
        (
            "/v1/subjects/beneficiary:1/transactions?until=soon",
            400,
            Some("until"),
        ),
        ("/v1/messages", 400, Some("topic")),
        ("/v1/messages?topic=t&partition=x", 400, Some("partition")),
        ("/v1/messages?topic=t&header=nocolon", 400, Some("header")),
        ("/v1/transactions/t/x?payload=maybe", 404, None),
    ];
    for (path, expected, field) in cases {
        let response = reqwest::get(archive.url(path)).await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{path}");
        if let Some(field) = field {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["field"], field, "{path}: {body}");
            assert!(!body["error"].as_str().unwrap().is_empty());
        }
    }
    let posts = [
        ("/v1/transactions/t/replay", json!({}), 400, "reason"),
        (
            "/v1/transactions/t/replay",
            json!({"reason": " "}),
            400,
            "reason",
        ),
        (
            "/v1/transactions/t/replay",
            json!({"reason": "x", "dryrun": true}),
            400,
            "dryrun",
        ),
        (
            "/v1/transactions/t/replay",
            json!({"reason": "x", "target_topic": "a b"}),
            400,
            "target_topic",
        ),
        (
            "/v1/replays",
            json!({"reason": "x", "rate": 0}),
            400,
            "rate",
        ),
        (
            "/v1/replays",
            json!({"reason": "x", "since": "whenever"}),
            400,
            "since",
        ),
    ];
    for (path, body, expected, field) in posts {
        let (status, answer) = post(&archive, path, body.clone()).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (expected, Some(field)),
            "{body}: {answer}"
        );
    }
    let (status, unknown) = post(
        &archive,
        "/v1/transactions/no-such-txn/replay",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(status, 404, "{unknown}");
    // Narrowed to a topic nobody publishes to: on a shared broker another test's failures
    // are in this archive too, and must not be replayed from here.
    let (status, none) = post(
        &archive,
        "/v1/replays",
        json!({"reason": "x", "since": "1h", "topic": unique_topic("nothing-failed")}),
    )
    .await;
    assert_eq!(status, 409, "no failed transaction to replay: {none}");
    let (status, openapi) = get(&archive, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/v1/transactions/{id}",
        "/v1/transactions/{id}/replay",
        "/v1/replays",
        "/v1/messages",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} documented");
    }
    archive.stop().await;
}

on_every_broker!(
    a_failed_transaction_is_traced_replayed_and_resolved,
    a_dead_lettered_job_is_one_step_with_its_attempts_and_replays_once,
    json_from_another_language_is_shown_as_json_without_a_warning,
    bad_requests_get_clear_errors_naming_the_parameter,
);
