//! The attempts of issue 24, replayed: Retrace's own topics written through the gateway by
//! every role, in JSON and in protobuf; a token record keyed with an existing token's id, and
//! audit events (one an envelope crafted to decode as an audit event), written straight to
//! Kafka without Retrace's signing key. None is published, applied or chained; each refusal
//! is in the audit trail and each flag in the metrics and in `/v1/audit/verify`.
//! docs/security.md, "What is tested", lists the matrix.

use std::time::Duration;

use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_api::AuditReport;
use retrace_api::{AuditView, CreatedToken, Page};
use retrace_auth::{AuthConfig, SIGNATURE_HEADER, SigningKeys, TokenRecord, TokenRegistry};
use retrace_proto::{AUDIT_TOPIC, AuditEvent, Envelope, OUTCOMES_TOPIC};
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, TEST_SIGNING_KEY, eventually, on_every_broker, unique_topic,
    with_test_key,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKENS_TOPIC: &str = retrace_auth::DEFAULT_TOKENS_TOPIC;

fn secured(bootstrap_admin_sha256: String) -> AuthConfig {
    with_test_key(AuthConfig {
        enabled: true,
        bootstrap_admin_sha256: Some(bootstrap_admin_sha256),
        ..AuthConfig::default()
    })
}

/// An archive with authentication on, its harness requests made with the bootstrap admin.
async fn start_secured(broker: &Broker) -> RunningArchive {
    broker.create_topic(AUDIT_TOPIC, 1).await;
    broker.create_topic(OUTCOMES_TOPIC, 1).await;
    if let Broker::Mock(_) = broker {
        // The mock cluster has no admin API; elsewhere the archive creates the topic.
        broker.create_topic(TOKENS_TOPIC, 1).await;
    }
    let (bootstrap, digest) = retrace_auth::generate();
    let mut archive =
        RunningArchive::start_with(broker, |config| config.auth = secured(digest)).await;
    archive.token = Some(bootstrap);
    archive
}

async fn call(
    archive: &RunningArchive,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let request = match method {
        "GET" => client.get(archive.url(path)),
        _ => client.post(archive.url(path)),
    };
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create_token(
    archive: &RunningArchive,
    role: &str,
    topics: Option<Vec<String>>,
) -> CreatedToken {
    let admin = archive.token.clone().unwrap();
    let body = json!({"name": unique_topic(role), "role": role, "topics": topics});
    let (status, created) = call(archive, "POST", "/v1/tokens", &admin, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    serde_json::from_value(created).unwrap()
}

/// The sum of `name`'s samples whose labels include `label`, in a Prometheus text page.
fn metric(page: &str, name: &str, label: &str) -> f64 {
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn producer(broker: &Broker) -> FutureProducer {
    broker.client_config().create().unwrap()
}

/// Writes a record straight to Kafka, as anything holding a Kafka client could.
async fn write(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    value: Option<&[u8]>,
    signature: Option<String>,
) {
    let mut headers = OwnedHeaders::new();
    if let Some(signature) = &signature {
        headers = headers.insert(Header {
            key: SIGNATURE_HEADER,
            value: Some(signature.as_bytes()),
        });
    }
    let mut record = FutureRecord::to(topic).key(key).headers(headers);
    if let Some(value) = value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

fn test_keys() -> SigningKeys {
    SigningKeys::from_hex(&[TEST_SIGNING_KEY], "in the test").unwrap()
}

fn another_key() -> SigningKeys {
    SigningKeys::from_hex(&[SigningKeys::generate_hex()], "in the test").unwrap()
}

/// A token record keyed with an existing token's id, written straight to Kafka: unsigned,
/// signed with a key Retrace does not hold, and a tombstone. None is applied, by the running
/// archive or by a registry started afterwards (a restart): the token still works, the forged
/// credential does not, and each is counted.
async fn a_token_record_written_without_the_signing_key_is_never_applied(broker: Broker) {
    let archive = start_secured(&broker).await;
    let genuine = create_token(&archive, "analyst", None).await;
    let id = genuine.record.id.clone();
    let (status, _) = call(&archive, "GET", "/v1/whoami", &genuine.token, None).await;
    assert_eq!(status, 200);
    let rejected = |page: String, reason: &str| {
        metric(
            &page,
            "retrace_auth_token_records_rejected_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let before = archive.metrics().await;

    // Mallory's admin token with the genuine token's id, and a revocation of the genuine one.
    let forged_secret = "f".repeat(64);
    let forged: TokenRecord = serde_json::from_value(json!({
        "id": id, "name": "mallory", "role": "admin",
        "secret_sha256": retrace_auth::sha256_hex(forged_secret.as_bytes()),
        "created_at": "2026-01-01T00:00:00Z", "created_by": "mallory"
    }))
    .unwrap();
    let forged = serde_json::to_vec(&forged).unwrap();
    let revoked = serde_json::to_vec(&json!({
        "id": id, "name": genuine.record.name, "role": "analyst",
        "secret_sha256": "0".repeat(64),
        "created_at": "2026-01-01T00:00:00Z", "created_by": "mallory",
        "revoked_at": "2026-01-01T00:00:00Z", "revoked_by": "mallory"
    }))
    .unwrap();
    let producer = producer(&broker);
    write(&producer, TOKENS_TOPIC, id.as_bytes(), Some(&forged), None).await;
    let foreign = another_key().sign(TOKENS_TOPIC, Some(id.as_bytes()), Some(&forged));
    write(
        &producer,
        TOKENS_TOPIC,
        id.as_bytes(),
        Some(&forged),
        foreign,
    )
    .await;
    write(&producer, TOKENS_TOPIC, id.as_bytes(), Some(&revoked), None).await;
    write(&producer, TOKENS_TOPIC, id.as_bytes(), None, None).await;

    eventually(
        "the archive's registry to flag the forged records",
        PATIENCE,
        || async {
            let now = archive.metrics().await;
            (rejected(now.clone(), "unsigned") - rejected(before.clone(), "unsigned") >= 3.0
                && rejected(now.clone(), "bad_signature")
                    - rejected(before.clone(), "bad_signature")
                    >= 1.0)
                .then_some(())
        },
    )
    .await;
    let (status, whoami) = call(&archive, "GET", "/v1/whoami", &genuine.token, None).await;
    assert_eq!(status, 200, "the genuine token still works: {whoami}");
    assert_eq!(whoami["role"], "analyst");
    let mallory = format!("rtk_{id}_{forged_secret}");
    let (status, _) = call(&archive, "GET", "/v1/whoami", &mallory, None).await;
    assert_eq!(status, 401, "the forged credential is refused");

    // A registry read from the beginning, as at a restart, keeps the genuine record only.
    let shutdown = CancellationToken::new();
    let (registry, task) = TokenRegistry::start(
        &broker.settings(),
        TOKENS_TOPIC,
        test_keys(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    eventually("the new registry to catch up", PATIENCE, || {
        let caught_up = registry.caught_up();
        async move { caught_up.then_some(()) }
    })
    .await;
    let record = registry.get(&id).expect("the genuine token is known");
    assert_eq!(record.name, genuine.record.name);
    assert_eq!(record.revoked_at, None);
    assert!(record.secret_matches(genuine.token.rsplit('_').next().unwrap()));
    shutdown.cancel();
    task.await.unwrap();
}

/// Audit events written straight to `retrace.audit`: a well-formed one unsigned, one signed
/// with another key, and an envelope crafted to decode as one. None is chained; each is
/// flagged, counted and listed apart from the chain by `/v1/audit/verify`. The same event
/// signed with Retrace's key is chained, so the test can tell.
async fn an_audit_event_written_without_the_signing_key_is_flagged_and_never_chained(
    broker: Broker,
) {
    let archive = start_secured(&broker).await;
    let admin = archive.token.clone().unwrap();
    let mallory = unique_topic("mallory");
    let event = AuditEvent {
        at: Some(std::time::SystemTime::now().into()),
        actor: mallory.clone(),
        role: "admin".into(),
        origin: "10.0.0.66".into(),
        action: "token.create".into(),
        target: "everything".into(),
        reason: String::new(),
        result: "ok".into(),
        service: "archive".into(),
        ..AuditEvent::default()
    }
    .encode_to_vec();
    let crafted = Envelope {
        transaction_id: mallory.clone(),
        causation_id: "admin".into(),
        source: "token.create".into(),
        r#type: "everything".into(),
        occurred_at: None,
        ..Envelope::root("x", "y")
    }
    .encode_to_vec();
    let rejected = |page: &str, reason: &str| {
        metric(
            page,
            "retrace_archive_audit_events_rejected_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let before = archive.metrics().await;
    let producer = producer(&broker);
    let key = mallory.as_bytes();
    write(&producer, AUDIT_TOPIC, key, Some(&event), None).await;
    write(&producer, AUDIT_TOPIC, key, Some(&crafted), None).await;
    let foreign = another_key().sign(AUDIT_TOPIC, Some(key), Some(&event));
    write(&producer, AUDIT_TOPIC, key, Some(&event), foreign).await;
    // The control: signed as Retrace's services sign.
    let genuine = test_keys().sign(AUDIT_TOPIC, Some(key), Some(&event));
    write(&producer, AUDIT_TOPIC, key, Some(&event), genuine).await;

    let report: AuditReport = eventually("the forged audit events flagged", PATIENCE, || async {
        let (status, report) = call(&archive, "GET", "/v1/audit/verify", &admin, None).await;
        assert_eq!(status, 200, "{report}");
        let report: AuditReport = serde_json::from_value(report).unwrap();
        let ours = |list: &[retrace_api::UnchainedAuditView]| {
            list.iter()
                .filter(|r| r.key.as_deref() == Some(mallory.as_str()))
                .count()
        };
        (ours(&report.unsigned) == 2 && ours(&report.badly_signed) == 1).then_some(report)
    })
    .await;
    assert!(
        report.chain.intact && report.chain.problems.is_empty(),
        "{report:?}"
    );
    assert!(!report.clean());
    for record in report.unsigned.iter().chain(&report.badly_signed) {
        assert!(record.record.starts_with(AUDIT_TOPIC), "{record:?}");
        assert!(
            record.problem.starts_with("audit event not chained"),
            "{record:?}"
        );
    }
    // Only the signed copy is in the trail.
    let chained: Vec<AuditView> = eventually("the signed copy chained", PATIENCE, || async {
        let (_, page) = call(
            &archive,
            "GET",
            &format!("/v1/audit?actor={mallory}"),
            &admin,
            None,
        )
        .await;
        let page: Page<AuditView> = serde_json::from_value(page).unwrap();
        (!page.items.is_empty()).then_some(page.items)
    })
    .await;
    assert_eq!(chained.len(), 1, "{chained:?}");
    // The archive's own actions keep their names in every replica's trail.
    assert_eq!(chained[0].action, "token.create");
    let after = archive.metrics().await;
    assert!(
        rejected(&after, "unsigned") - rejected(&before, "unsigned") >= 2.0,
        "{after}"
    );
    assert!(
        rejected(&after, "bad_signature") - rejected(&before, "bad_signature") >= 1.0,
        "{after}"
    );
}

on_every_broker!(
    a_token_record_written_without_the_signing_key_is_never_applied,
    an_audit_event_written_without_the_signing_key_is_flagged_and_never_chained,
);
