//! The HTTP gateway end to end: what a client sends is on the topic exactly as the answer
//! says, a repeat is not published twice, bad input publishes nothing and names its field,
//! and a Kafka that does not acknowledge is reported, never hidden.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_tests::{
    Broker, eventually, free_port, messages_on, metric_sum, on_every_broker, read_topic,
    start_gateway, start_gateway_on, unique_topic,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

fn headers_of(message: &OwnedMessage) -> TraceHeaders {
    let headers = message.headers().expect("the message has headers");
    TraceHeaders::parse(headers.iter().map(|h| (h.key, h.value)))
        .unwrap()
        .expect("the message has Retrace headers")
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name} in {value}"))
}

/// Finds the message the gateway said it put at `result`'s partition and offset, and checks
/// it carries the ids the answer named, in the envelope, the key and the headers.
fn message_at<'a>(messages: &'a [OwnedMessage], result: &Value) -> (&'a OwnedMessage, Envelope) {
    let partition = result["partition"].as_i64().unwrap() as i32;
    let offset = result["offset"].as_i64().unwrap();
    let message = messages
        .iter()
        .find(|m| m.partition() == partition && m.offset() == offset)
        .unwrap_or_else(|| panic!("no message at {partition}/{offset} for {result}"));
    let envelope = Envelope::decode(message.payload().unwrap()).unwrap();
    assert_eq!(envelope.event_id, field(result, "event_id"));
    assert_eq!(envelope.transaction_id, field(result, "transaction_id"));
    assert_eq!(message.key(), Some(envelope.transaction_id.as_bytes()));
    assert_eq!(headers_of(message), TraceHeaders::of(&envelope));
    envelope.validate().unwrap();
    (message, envelope)
}

async fn json_batches_and_protobuf_are_published_as_answered(broker: Broker) {
    let topic = unique_topic("registrations");
    broker.create_topic(&topic, 3).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;

    let single = gateway
        .events(
            &topic,
            &json!({
                "type": "registration.submitted.v1",
                "source": "intake",
                "subject_ids": ["beneficiary:42", "birth-registration:BR-1"],
                "attributes": {"region": "north"},
                "payload": {"child": "Ada", "weight_kg": 3.2},
                "occurred_at": "2026-01-31T10:30:00+01:00",
            }),
        )
        .await;
    assert_eq!(single.status, 202, "{}", single.body);
    assert_eq!(field(&single.body, "topic"), topic);
    let root_id = field(&single.body, "event_id").to_owned();
    let transaction = field(&single.body, "transaction_id").to_owned();

    let chosen_id = retrace_proto::new_event_id();
    let batch = gateway
        .events(
            &topic,
            &json!([
                {"type": "registration.checked.v1", "source": "validation",
                 "transaction_id": transaction, "causation_id": root_id,
                 "subject_ids": ["beneficiary:42"]},
                {"type": "registration.noted.v1", "source": "validation",
                 "event_id": chosen_id, "transaction_id": "tx-chosen", "payload": [1, 2]},
                {"type": "registration.noted.v1", "source": "validation"},
            ]),
        )
        .await;
    assert_eq!(batch.status, 202, "{}", batch.body);
    let results = batch.body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(field(&results[0], "transaction_id"), transaction);
    assert_eq!(field(&results[1], "event_id"), chosen_id);
    assert_eq!(field(&results[1], "transaction_id"), "tx-chosen");
    let new_transaction = field(&results[2], "transaction_id");
    assert!(![transaction.as_str(), "tx-chosen"].contains(&new_transaction));

    let sent = Envelope::root("intake", "intake.received.v1")
        .with_subject("beneficiary:7")
        .with_payload("application/xml", b"<received/>".to_vec());
    let protobuf = gateway
        .post(
            &format!("/v1/topics/{topic}/events"),
            Some("application/x-protobuf"),
            sent.encode_to_vec(),
        )
        .await;
    assert_eq!(protobuf.status, 202, "{}", protobuf.body);
    assert_eq!(field(&protobuf.body, "event_id"), sent.event_id);

    let messages = read_topic(&broker, &topic, 3, 5).await;
    let (_, root) = message_at(&messages, &single.body);
    assert_eq!(root.r#type, "registration.submitted.v1");
    assert_eq!(root.source, "intake");
    assert_eq!(
        root.subject_ids,
        ["beneficiary:42", "birth-registration:BR-1"]
    );
    assert_eq!(
        root.attributes.get("region").map(String::as_str),
        Some("north")
    );
    assert_eq!(root.content_type, "application/json");
    let payload: Value = serde_json::from_slice(&root.payload).unwrap();
    assert_eq!(payload, json!({"child": "Ada", "weight_kg": 3.2}));
    let at = root.occurred_at.unwrap();
    assert_eq!(at, "2026-01-31T09:30:00Z".parse().unwrap());

    let (_, checked) = message_at(&messages, &results[0]);
    assert_eq!(checked.causation_id, root_id);
    assert_eq!(checked.subject_ids, ["beneficiary:42"]);
    assert!(checked.payload.is_empty());
    let (_, noted) = message_at(&messages, &results[1]);
    assert_eq!(noted.payload, b"[1,2]");
    message_at(&messages, &results[2]);
    let (_, received) = message_at(&messages, &protobuf.body);
    assert_eq!(received, sent);

    let metrics = gateway.metrics().await;
    let published = format!(r#"retrace_gateway_events_published_total{{topic="{topic}"}} 5"#);
    assert!(metrics.contains(&published), "{metrics}");
    gateway.stop().await;
}

async fn a_repeated_request_or_event_is_published_once(broker: Broker) {
    let topic = unique_topic("payments");
    broker.create_topic(&topic, 2).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let event = json!({"type": "payment.requested.v1", "source": "payments",
                       "subject_ids": ["beneficiary:9"]});
    let key = [("Idempotency-Key", "payment-9-2026-01")];

    // Two at once: one publishes, the other waits for its result.
    let (first, second) = tokio::join!(
        gateway.events_with(&topic, &event, &key),
        gateway.events_with(&topic, &event, &key),
    );
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(second.status, 202, "{}", second.body);
    assert_eq!(first.body, second.body);
    let replays = [&first, &second]
        .iter()
        .filter(|a| a.headers.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replays, 1);
    let third = gateway.events_with(&topic, &event, &key).await;
    assert_eq!(third.body, first.body);

    let other = json!({"type": "payment.cancelled.v1", "source": "payments"});
    let reused = gateway.events_with(&topic, &other, &key).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.body["field"], "Idempotency-Key");

    // The same event id twice, without a key: the first result again, marked as a replay.
    let event_id = retrace_proto::new_event_id();
    let with_id = json!({"type": "payment.approved.v1", "source": "payments",
                         "event_id": event_id});
    let published = gateway.events(&topic, &with_id).await;
    assert_eq!(published.status, 202, "{}", published.body);
    let repeated = gateway.events(&topic, &with_id).await;
    assert_eq!(repeated.status, 202, "{}", repeated.body);
    assert_eq!(repeated.body["offset"], published.body["offset"]);
    assert_eq!(repeated.body["partition"], published.body["partition"]);
    assert_eq!(repeated.body["replayed"], true);

    // In a batch, only the new event is published.
    let batch = gateway
        .events(
            &topic,
            &json!([with_id, {"type": "payment.approved.v1", "source": "payments"}]),
        )
        .await;
    assert_eq!(batch.status, 202, "{}", batch.body);
    assert_eq!(batch.body["results"][0]["offset"], published.body["offset"]);
    assert_eq!(batch.body["results"][0]["replayed"], true);
    assert!(batch.body["results"][1].get("replayed").is_none());

    assert_eq!(messages_on(&broker, &topic, 2).await, 3);
    let messages = read_topic(&broker, &topic, 2, 3).await;
    message_at(&messages, &first.body);
    message_at(&messages, &published.body);
    message_at(&messages, &batch.body["results"][1]);
    // Registered at zero from the start: each kind of repeat must have counted.
    let metrics = gateway.metrics().await;
    for by in ["idempotency_key", "event_id"] {
        let replays = metric_sum(
            &metrics,
            "retrace_gateway_idempotent_replays_total",
            &format!("by=\"{by}\""),
        );
        assert!(replays > 0.0, "{metrics}");
    }
    gateway.stop().await;
}

/// (path, content type, body, status expected, field the answer names)
type BadRequest = (
    String,
    Option<&'static str>,
    Vec<u8>,
    u16,
    Option<&'static str>,
);

async fn bad_input_names_its_field_and_publishes_nothing(broker: Broker) {
    let topic = unique_topic("intake");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(OUTCOMES_TOPIC, 1).await;
    let gateway = start_gateway_on(&broker, |config| config.max_body_bytes = 16 * 1024).await;
    let events = format!("/v1/topics/{topic}/events");
    let json = Some("application/json");
    let protobuf = Some("application/x-protobuf");
    let ok = || json!({"type": "intake.received.v1", "source": "intake"});
    let with = |name: &str, value: Value| {
        let mut event = ok();
        event[name] = value;
        event
    };
    let body = |value: Value| serde_json::to_vec(&value).unwrap();
    let mut no_type = Envelope::root("intake", "intake.received.v1");
    no_type.r#type.clear();
    let big = json!({"type": "t.v1", "source": "s", "payload": "x".repeat(20 * 1024)});
    let outcome = |status: &str| {
        json!({"event_id": retrace_proto::new_event_id(), "transaction_id": "tx",
               "consumer": "validation", "status": status})
    };

    let cases: Vec<BadRequest> = vec![
        (events.clone(), json, b"{\"type\": ".to_vec(), 400, None),
        (events.clone(), json, b"".to_vec(), 400, None),
        (events.clone(), json, b"\"text\"".to_vec(), 400, None),
        (events.clone(), json, b"[]".to_vec(), 400, None),
        (
            events.clone(),
            json,
            body(with("type", json!(3))),
            400,
            Some("type"),
        ),
        (
            events.clone(),
            json,
            body(with("source", Value::Null)),
            400,
            Some("source"),
        ),
        (
            events.clone(),
            json,
            body(with("event_id", json!("42"))),
            400,
            Some("event_id"),
        ),
        (
            events.clone(),
            json,
            body(with("causation_id", json!("not-a-uuid"))),
            400,
            Some("causation_id"),
        ),
        (
            events.clone(),
            json,
            body(with("transaction_id", json!("tx\u{7}"))),
            400,
            Some("transaction_id"),
        ),
        (
            events.clone(),
            json,
            body(with("transaction_id", json!("t".repeat(600)))),
            400,
            Some("transaction_id"),
        ),
        (
            events.clone(),
            json,
            body(with("subject_ids", json!(["beneficiary:1", 2]))),
            400,
            Some("subject_ids[1]"),
        ),
        (
            events.clone(),
            json,
            body(with("subject_ids", json!("beneficiary:1"))),
            400,
            Some("subject_ids"),
        ),
        (
            events.clone(),
            json,
            body(with("attributes", json!({"region": 4}))),
            400,
            Some("attributes.region"),
        ),
        (
            events.clone(),
            json,
            body(with("occurred_at", json!("last tuesday"))),
            400,
            Some("occurred_at"),
        ),
        (
            events.clone(),
            json,
            body(with("transactionId", json!("x"))),
            400,
            Some("transactionId"),
        ),
        // One bad item refuses the whole batch.
        (
            events.clone(),
            json,
            body(json!([ok(), ok(), with("transaction_id", json!(7))])),
            400,
            Some("[2].transaction_id"),
        ),
        (
            events.clone(),
            json,
            body(json!([ok(), 5])),
            400,
            Some("[1]"),
        ),
        (
            events.clone(),
            protobuf,
            b"\xff\xff\xff".to_vec(),
            400,
            None,
        ),
        (
            events.clone(),
            protobuf,
            no_type.encode_to_vec(),
            400,
            Some("type"),
        ),
        (
            "/v1/topics/bad%20topic/events".into(),
            json,
            body(ok()),
            400,
            Some("topic"),
        ),
        (
            "/v1/topics/__consumer_offsets/events".into(),
            json,
            body(ok()),
            400,
            Some("topic"),
        ),
        (
            format!("/v1/topics/{OUTCOMES_TOPIC}/events"),
            json,
            body(ok()),
            403,
            None,
        ),
        (
            events.clone(),
            Some("text/plain"),
            body(ok()),
            415,
            Some("Content-Type"),
        ),
        (events.clone(), None, body(ok()), 415, Some("Content-Type")),
        (events.clone(), json, body(big), 413, None),
        (
            "/v1/outcomes".into(),
            json,
            body(outcome("done")),
            400,
            Some("status"),
        ),
        (
            "/v1/outcomes".into(),
            json,
            body(
                json!({"event_id": "x", "transaction_id": "tx", "consumer": "c",
                        "status": "failed"}),
            ),
            400,
            Some("event_id"),
        ),
        (
            "/v1/outcomes".into(),
            json,
            body(
                json!({"event_id": retrace_proto::new_event_id(), "transaction_id": "tx",
                        "consumer": "validation", "status": "failed",
                        "error_code": "register timeout"}),
            ),
            400,
            Some("error_code"),
        ),
        (
            "/v1/outcomes".into(),
            protobuf,
            body(outcome("failed")),
            415,
            Some("Content-Type"),
        ),
    ];
    for (path, content_type, request, status, named) in cases {
        let shown = String::from_utf8_lossy(&request[..request.len().min(120)]).into_owned();
        let answer = gateway.post(&path, content_type, request).await;
        assert_eq!(answer.status, status, "{path} {shown}: {}", answer.body);
        assert_eq!(
            answer.body["field"].as_str(),
            named,
            "{path} {shown}: {}",
            answer.body
        );
        assert!(
            !field(&answer.body, "error").is_empty(),
            "{path} {shown}: {}",
            answer.body
        );
    }
    let empty_key = gateway
        .events_with(&topic, &ok(), &[("Idempotency-Key", "")])
        .await;
    assert_eq!(empty_key.status, 400, "{}", empty_key.body);
    assert_eq!(empty_key.body["field"], "Idempotency-Key");

    assert_eq!(messages_on(&broker, &topic, 1).await, 0);
    assert_eq!(messages_on(&broker, OUTCOMES_TOPIC, 1).await, 0);
    let metrics = gateway.metrics().await;
    let invalid = metric_sum(
        &metrics,
        "retrace_gateway_requests_rejected_total",
        r#"reason="invalid""#,
    );
    assert!(invalid > 0.0, "{metrics}");
    gateway.stop().await;
}

async fn a_batch_answers_which_events_went_through(broker: Broker) {
    let topic = unique_topic("documents");
    broker.create_topic(&topic, 1).await;
    // Kafka takes messages up to 10 kB here; the gateway takes bodies up to 1 MiB.
    let properties = ["message.max.bytes=10000"];
    let gateway = start_gateway(&broker.bootstrap(), &properties, |_| {}).await;
    let small = json!({"type": "document.scanned.v1", "source": "scanner"});
    let large = json!({"type": "document.scanned.v1", "source": "scanner",
                       "payload": "x".repeat(20_000)});
    let answer = gateway.events(&topic, &json!([small, large, small])).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    let results = answer.body["results"].as_array().unwrap();
    assert!(results[0]["offset"].is_i64(), "{}", answer.body);
    assert!(results[1]["offset"].is_null(), "{}", answer.body);
    assert!(!field(&results[1], "error").is_empty());
    assert!(results[2]["offset"].is_i64(), "{}", answer.body);
    assert!(
        field(&answer.body, "error").contains("1 of 3"),
        "{}",
        answer.body
    );

    assert_eq!(messages_on(&broker, &topic, 1).await, 2);
    let messages = read_topic(&broker, &topic, 1, 2).await;
    message_at(&messages, &results[0]);
    message_at(&messages, &results[2]);
    gateway.stop().await;
}

async fn outcomes_are_published_on_the_outcomes_topic(broker: Broker) {
    broker.create_topic(OUTCOMES_TOPIC, 2).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let event_id = retrace_proto::new_event_id();
    let answer = gateway
        .post(
            "/v1/outcomes",
            Some("application/json"),
            serde_json::to_vec(&json!({
                "event_id": event_id, "transaction_id": "tx-outcome",
                "consumer": "validation", "status": "retrying",
                "error": "registry timeout", "error_code": "registry_timeout", "attempt": 2,
            }))
            .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["topic"], OUTCOMES_TOPIC);
    let messages = read_topic(&broker, OUTCOMES_TOPIC, 2, 1).await;
    let message = &messages[0];
    assert_eq!(
        Some(message.partition() as i64),
        answer.body["partition"].as_i64()
    );
    assert_eq!(Some(message.offset()), answer.body["offset"].as_i64());
    let outcome = Outcome::decode(message.payload().unwrap()).unwrap();
    assert_eq!(outcome.event_id, event_id);
    assert_eq!(outcome.transaction_id, "tx-outcome");
    assert_eq!(outcome.consumer, "validation");
    assert_eq!(outcome.status(), OutcomeStatus::Retrying);
    assert_eq!(outcome.error, "registry timeout");
    assert_eq!(outcome.error_code, "registry_timeout");
    assert_eq!(outcome.attempt, 2);
    assert!(outcome.at.is_some());
    let headers = headers_of(message);
    assert_eq!(headers.transaction_id, "tx-outcome");
    assert_eq!(headers.causation_id, event_id);
    assert_eq!(headers.event_type, retrace_proto::OUTCOME_TYPE);
    gateway.stop().await;
}

async fn jobs_are_enqueued_on_the_lane_of_their_priority(broker: Broker) {
    let queue = unique_topic("certificates");
    let lanes = retrace_sdk::QueueTopics::of(&queue);
    for lane in lanes.all() {
        broker.create_topic(lane, 1).await;
    }
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let jobs = |priority: &str| {
        json!([
            {"type": "certificate.requested.v1", "source": "php-registry",
             "subject_ids": ["beneficiary:9"],
             "job": {"kind": "certificate.render", "priority": priority,
                     "deadline": "2099-01-01T00:00:00Z", "max_attempts": 4},
             "payload": {"registration": "BR-9"}},
            {"type": "certificate.requested.v1", "source": "php-registry",
             "job": {"kind": "certificate.render", "priority": priority}},
        ])
    };
    let path = format!("/v1/queues/{queue}/jobs");
    let post = |body: Value| {
        gateway.post(
            &path,
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
        )
    };
    let answer = post(jobs("urgent")).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let results = answer.body["results"].as_array().unwrap().clone();
    assert!(results.iter().all(|r| r["topic"] == lanes.urgent.as_str()));
    let messages = read_topic(&broker, &lanes.urgent, 1, 2).await;
    let (_, envelope) = message_at(&messages, &results[0]);
    let job = envelope.job.unwrap();
    assert_eq!(job.kind, "certificate.render");
    assert_eq!(job.priority(), retrace_proto::JobPriority::Urgent);
    assert_eq!(job.max_attempts, 4);
    assert!(job.deadline.is_some());

    let bulk = post(jobs("bulk")).await;
    assert_eq!(bulk.body["results"][0]["topic"], lanes.bulk.as_str());
    let mut mixed = jobs("bulk");
    mixed[1]["job"]["priority"] = json!("urgent");
    let refused = post(mixed).await;
    assert_eq!(
        (refused.status, refused.body["field"].as_str()),
        (400, Some("[1].job.priority"))
    );
    let not_a_job = post(json!({"type": "x.v1", "source": "s"})).await;
    assert_eq!(
        (not_a_job.status, not_a_job.body["field"].as_str()),
        (400, Some("job"))
    );
    let no_kind = post(json!({"type": "x.v1", "source": "s", "job": {"priority": "bulk"}})).await;
    assert_eq!(no_kind.body["field"], "job.kind");
    assert_eq!(messages_on(&broker, &lanes.normal, 1).await, 0);
    gateway.stop().await;
}

async fn callers_need_a_token_and_a_topic_on_its_list(broker: Broker) {
    let allowed = unique_topic("registrations");
    let other = unique_topic("payments");
    for topic in [
        &allowed,
        &other,
        &retrace_auth::DEFAULT_TOKENS_TOPIC.to_owned(),
    ] {
        broker.create_topic(topic, 1).await;
    }
    broker.create_topic(retrace_proto::AUDIT_TOPIC, 1).await;
    let tokens = Tokens::start(&broker).await;
    let publisher = tokens
        .make(retrace_auth::Role::Publisher, Some(vec![allowed.clone()]))
        .await;
    let analyst = tokens.make(retrace_auth::Role::Analyst, None).await;
    let gateway = start_gateway_on(&broker, |config| config.auth.enabled = true).await;
    let event = json!({"type": "registration.submitted.v1", "source": "php-registry"});
    let send = |topic: &str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let path = format!("/v1/topics/{topic}/events");
        let gateway = &gateway;
        let body = serde_json::to_vec(&event).unwrap();
        async move {
            let mut request = gateway
                .client
                .post(format!("{}{path}", gateway.url))
                .header("content-type", "application/json")
                .body(body);
            if let Some(bearer) = bearer {
                request = request.header("authorization", bearer);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    // The registry of the gateway catches up with the tokens made above.
    eventually("the gateway to know the tokens", PATIENCE, || async {
        (send(&allowed, Some(&publisher)).await == 202).then_some(())
    })
    .await;
    assert_eq!(send(&allowed, None).await, 401);
    assert_eq!(send(&allowed, Some("rtk_000000000000_00")).await, 401);
    assert_eq!(send(&other, Some(&publisher)).await, 403, "not on its list");
    assert_eq!(
        send(&allowed, Some(&analyst)).await,
        403,
        "analysts do not publish"
    );
    assert_eq!(messages_on(&broker, &other, 1).await, 0);
    let audited = gateway_denials(&broker, 4).await;
    assert!(audited.iter().any(|e| e.target.contains(&other)));
    gateway.stop().await;
    tokens.stop().await;
}

/// The first `count` audit events on the audit topic, each a denial by the gateway.
async fn gateway_denials(broker: &Broker, count: usize) -> Vec<retrace_proto::AuditEvent> {
    let audited: Vec<retrace_proto::AuditEvent> =
        read_topic(broker, retrace_proto::AUDIT_TOPIC, 1, count)
            .await
            .iter()
            .map(|m| retrace_proto::AuditEvent::decode(m.payload().unwrap()).unwrap())
            .collect();
    assert!(
        audited
            .iter()
            .all(|e| e.action == "denied" && e.service == "gateway"),
        "{audited:?}"
    );
    audited
}

/// API tokens made straight in the registry, as the archive's `POST /v1/tokens` does.
struct Tokens {
    registry: retrace_auth::TokenRegistry,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Tokens {
    async fn start(broker: &Broker) -> Tokens {
        let stop = CancellationToken::new();
        let (registry, task) = retrace_auth::TokenRegistry::start(
            &broker.settings(),
            retrace_auth::DEFAULT_TOKENS_TOPIC,
            retrace_tests::with_test_key(retrace_auth::AuthConfig::default())
                .signing_keys()
                .unwrap(),
            stop.clone(),
        )
        .await
        .unwrap();
        Tokens {
            registry,
            task,
            stop,
        }
    }

    /// A new token of `role`, publishing to `topics` (any when `None`).
    async fn make(&self, role: retrace_auth::Role, topics: Option<Vec<String>>) -> String {
        let spec = retrace_auth::NewToken {
            name: unique_topic("token"),
            role,
            extra: vec![],
            topics,
            expires_in: None,
        };
        self.registry.create(spec, "test").await.unwrap().0
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Retrace's own topics are refused to every caller, whatever its role and its token's list:
/// JSON, and protobuf crafted to decode as an audit event, each answered 403 naming the route
/// to use instead, nothing written, each refusal audited. On Apache Kafka (a node of its own:
/// it reads the audit topic from its start); on the mock cluster it stalled under load
/// waiting for the audit records, not explained yet (docs/testing.md).
async fn retraces_own_topics_are_refused_to_every_caller(broker: Broker) {
    let queue = unique_topic("q");
    let internal = [
        retrace_auth::DEFAULT_TOKENS_TOPIC.to_owned(),
        retrace_proto::AUDIT_TOPIC.to_owned(),
        OUTCOMES_TOPIC.to_owned(),
        format!("retrace.jobs.{queue}"),
        format!("retrace.jobs.{queue}.urgent"),
        format!("retrace.jobs.{queue}.retry"),
        format!("retrace.jobs.{queue}.dlq"),
        format!("retrace.{}", unique_topic("other")),
    ];
    for topic in &internal {
        broker.create_topic(topic, 1).await;
    }
    let allowed = unique_topic("registrations");
    broker.create_topic(&allowed, 1).await;
    let tokens = Tokens::start(&broker).await;
    let listing_all = tokens
        .make(retrace_auth::Role::Publisher, Some(internal.to_vec()))
        .await;
    let admin = tokens.make(retrace_auth::Role::Admin, None).await;
    let analyst = tokens.make(retrace_auth::Role::Analyst, None).await;
    let gateway = start_gateway_on(&broker, |config| config.auth.enabled = true).await;
    let event = json!({"type": "registration.submitted.v1", "source": "php-registry"});
    let as_audit_event = retrace_proto::AuditEvent {
        actor: "t-admin".into(),
        role: "admin".into(),
        origin: "10.9.9.9".into(),
        action: "1.erase".into(),
        ..retrace_proto::AuditEvent::default()
    }
    .encode_to_vec();
    let bodies = [
        ("application/json", serde_json::to_vec(&event).unwrap()),
        ("application/x-protobuf", as_audit_event),
    ];
    let post = |topic: &str, token: &str, (content_type, body): &(&str, Vec<u8>)| {
        gateway
            .client
            .post(format!("{}/v1/topics/{topic}/events", gateway.url))
            .header("content-type", *content_type)
            .header("authorization", format!("Bearer {token}"))
            .body(body.clone())
            .send()
    };
    eventually("the gateway to know the tokens", PATIENCE, || async {
        let response = post(&allowed, &admin, &bodies[0]).await.unwrap();
        (response.status().as_u16() == 202).then_some(())
    })
    .await;
    let mut refused = 0;
    for token in [&listing_all, &admin] {
        for topic in &internal {
            for body in &bodies {
                let response = post(topic, token, body).await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                assert_eq!(status, 403, "{topic} ({}): {text}", body.0);
                assert!(text.contains("Retrace's own topic"), "{text}");
                refused += 1;
            }
        }
    }
    let by_analyst = post(&internal[1], &analyst, &bodies[0]).await.unwrap();
    assert_eq!(by_analyst.status().as_u16(), 403, "analysts do not publish");
    for topic in &internal[2..] {
        assert_eq!(messages_on(&broker, topic, 1).await, 0, "{topic}");
    }
    // Every refusal is on the audit topic (with, at most, a refused token from the wait for
    // the gateway to know the tokens).
    let on_audit_topic = eventually("the refusals audited", PATIENCE, || async {
        let audited = messages_on(&broker, retrace_proto::AUDIT_TOPIC, 1).await;
        (audited > refused as i64).then_some(audited)
    })
    .await;
    let audited = gateway_denials(&broker, on_audit_topic as usize).await;
    for topic in &internal {
        let about = audited
            .iter()
            .filter(|e| e.target == format!("POST /v1/topics/{topic}/events"))
            .count();
        assert!(about >= 4, "{topic}: {about} refusals audited");
    }
    gateway.stop().await;
    tokens.stop().await;
}

// The private ones read Retrace's own topics (tokens, outcomes, audit) from their start,
// which other tests sharing a node would write to.
on_every_broker!(
    jobs_are_enqueued_on_the_lane_of_their_priority,
    json_batches_and_protobuf_are_published_as_answered,
    a_repeated_request_or_event_is_published_once,
    bad_input_names_its_field_and_publishes_nothing,
    a_batch_answers_which_events_went_through;
    private: callers_need_a_token_and_a_topic_on_its_list,
    outcomes_are_published_on_the_outcomes_topic,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraces_own_topics_are_refused_to_every_caller_on_apache_kafka() {
    retraces_own_topics_are_refused_to_every_caller(Broker::real_private()).await;
}

/// No broker listens: once the gateway has given up waiting for Kafka at start (its
/// start-up deadline, a second here, a minute by default), it serves anyway, and every
/// request is answered 503 with `Retry-After` once the producer's `message.timeout.ms`
/// expires, saying which events were not published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kafka_is_answered_503_with_retry_after() {
    let nowhere = format!("127.0.0.1:{}", free_port());
    let gateway = start_gateway(&nowhere, &["message.timeout.ms=1000"], |config| {
        config.kafka.startup_deadline = Duration::from_secs(1);
    })
    .await;
    let topic = unique_topic("unreachable");
    let event = json!({"type": "t.v1", "source": "s"});

    let single = gateway.events(&topic, &event).await;
    assert_eq!(single.status, 503, "{}", single.body);
    assert_eq!(single.headers["retry-after"], "5");
    let result = &single.body["results"][0];
    assert!(result["offset"].is_null());
    assert!(
        field(&single.body, "error").contains(field(result, "event_id")),
        "{}",
        single.body
    );

    let batch = gateway.events(&topic, &json!([event, event])).await;
    assert_eq!(batch.status, 503, "{}", batch.body);
    assert!(batch.headers.contains_key("retry-after"));
    let results = batch.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["error"].is_string() && r["offset"].is_null())
    );

    // A retry with the same key uses the ids the first attempt generated.
    let key = [("Idempotency-Key", "retry-me")];
    let first = gateway.events_with(&topic, &event, &key).await;
    let again = gateway.events_with(&topic, &event, &key).await;
    assert_eq!(first.status, 503);
    assert_eq!(again.status, 503);
    assert_eq!(
        first.body["results"][0]["event_id"],
        again.body["results"][0]["event_id"]
    );

    let outcome = gateway
        .post(
            "/v1/outcomes",
            Some("application/json"),
            serde_json::to_vec(&json!({
                "event_id": retrace_proto::new_event_id(), "transaction_id": "tx",
                "consumer": "c", "status": "processed",
            }))
            .unwrap(),
        )
        .await;
    assert_eq!(outcome.status, 503, "{}", outcome.body);
    assert!(outcome.headers.contains_key("retry-after"));
    let _: HashMap<String, Value> = serde_json::from_value(outcome.body).unwrap();
    gateway.stop().await;
}
