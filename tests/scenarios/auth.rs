//! Who may see and replay what, end to end: the archive authenticates every API call (API
//! tokens created through its own `/v1/tokens`, from the bootstrap admin token), answers each
//! role as the role matrix says, masks payloads for callers without `payload:read`, records
//! every read, replay and denial in its hash-chained audit trail, and erases a subject's
//! payloads so that, after the offline compaction, no byte of them is left on disk.

use std::path::Path;

use futures::StreamExt as _;

use retrace_api::{AuditVerificationView, AuditView, Page, Trace};
use retrace_archive::MASK;
use retrace_auth::{AuthConfig, ServiceAuth};
use retrace_gateway::{Gateway, GatewayConfig};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::Publisher;
use retrace_service::Reloader;
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, eventually, on_every_broker, request_json, serve,
    unique_topic,
};
use retrace_worker::{Handlers, QueueConfig, Worker, WorkerConfig};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKENS_TOPIC: &str = retrace_auth::DEFAULT_TOKENS_TOPIC;
const ROLES: [&str; 4] = ["publisher", "analyst", "support", "admin"];

/// An archive with authentication on, whose harness requests use the bootstrap admin token,
/// over `topic` and the outcomes topic, created first.
async fn start_secured(broker: &Broker, topic: &str) -> RunningArchive {
    for name in [topic, OUTCOMES_TOPIC] {
        broker.create_topic(name, 2).await;
    }
    if let Broker::Mock(_) = broker {
        // The mock cluster has no admin API; elsewhere the archive creates the topic.
        broker.create_topic(TOKENS_TOPIC, 1).await;
    }
    let (bootstrap, digest) = retrace_auth::generate();
    let mut archive = RunningArchive::start_with(broker, |config| {
        config.auth = secured(digest);
        config.masking.json_paths = vec!["child.given_name".into(), "*.phone".into()];
        config.replay_bulk_admin_above = 0;
    })
    .await;
    archive.token = Some(bootstrap);
    archive
}

/// Authentication on, with `bootstrap_admin_sha256` the digest of the bootstrap admin token.
fn secured(bootstrap_admin_sha256: String) -> AuthConfig {
    retrace_tests::with_test_key(AuthConfig {
        enabled: true,
        bootstrap_admin_sha256: Some(bootstrap_admin_sha256),
        ..AuthConfig::default()
    })
}

/// The gateway's and the worker's APIs on one address (as `retrace dev` serves them), with
/// authentication on: their guard knows the tokens the archive made, through the tokens
/// topic. Answers the base URL, the server's task, and the task forwarding audit events
/// until `shutdown`.
async fn serve_gateway_and_worker(
    broker: &Broker,
    queue: &str,
    shutdown: CancellationToken,
) -> (String, JoinHandle<()>, JoinHandle<()>) {
    let settings = broker.settings();
    // The archive's bootstrap admin is not needed here: its tokens were made through the API.
    let (_, digest) = retrace_auth::generate();
    let auth_config = secured(digest);
    let auth = ServiceAuth::start(&auth_config, &settings, "matrix", shutdown)
        .await
        .unwrap();
    let mut gateway = GatewayConfig::new(broker.bootstrap());
    gateway.kafka = settings.clone();
    gateway.auth = auth_config;
    let gateway = Gateway::new(&gateway, auth.guard.clone()).unwrap();
    let mut worker = WorkerConfig::new(broker.bootstrap());
    worker.kafka = settings;
    // The worker is not run: its API is what is tested, so the webhook is never called.
    let queue_config = QueueConfig {
        webhook: Some("http://127.0.0.1:9/never-called".into()),
        ..QueueConfig::default()
    };
    worker.queues.insert(queue.to_owned(), queue_config);
    let config = Reloader::fixed("worker", worker.clone());
    let worker = Worker::new(&worker, Handlers::new()).unwrap();
    let router = gateway
        .router()
        .merge(worker.router(&auth.guard, auth.audit()))
        .merge(retrace_service::http::router(
            &auth.guard,
            config.documents(),
            retrace_service::http::audit_to(auth.audit()),
        ));
    let (url, server) = serve(router).await;
    let ready = auth.ready();
    eventually(
        "the tokens to reach the gateway and worker",
        PATIENCE,
        || {
            let caught_up = ready.load(Ordering::Acquire);
            async move { caught_up.then_some(()) }
        },
    )
    .await;
    (url, server, tokio::spawn(auth.run()))
}

async fn call(
    archive: &RunningArchive,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    request_json(method, archive.url(path), token, body).await
}

/// Creates a token through the API as the bootstrap admin; returns its text.
async fn create_token(archive: &RunningArchive, name: &str, role: &str, extra: &[&str]) -> String {
    let body = json!({"name": name, "role": role, "extra": extra, "expires_in_s": 3600});
    let (status, created) = call(
        archive,
        "POST",
        "/v1/tokens",
        archive.token.as_deref(),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["record"]["name"], name);
    assert!(
        created["record"].get("secret_sha256").is_none(),
        "{created}"
    );
    created["token"].as_str().unwrap().to_owned()
}

/// A birth registration whose certificate step failed with `error`, with personal data in
/// its payload.
async fn publish_failed_registration(
    broker: &Broker,
    topic: &str,
    subject: &str,
    payload: &Value,
    error: &str,
) -> Envelope {
    let settings = broker.settings();
    let publisher = Publisher::new(&settings).unwrap();
    let submitted = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject(subject)
        .with_payload("application/json", serde_json::to_vec(payload).unwrap());
    publisher.publish(topic, &submitted).await.unwrap();
    publisher
        .publish_outcome(&Outcome::of(
            &submitted,
            "certificates",
            OutcomeStatus::Failed,
            Some(error.into()),
            1,
        ))
        .await
        .unwrap();
    submitted
}

async fn trace_when(
    archive: &RunningArchive,
    path: &str,
    token: Option<&str>,
    ready: impl Fn(&Trace) -> bool,
) -> Trace {
    eventually(&format!("{path} to be traced"), PATIENCE, || async {
        let (status, body) = call(archive, "GET", path, token, None).await;
        let trace: Trace = (status == 200).then(|| serde_json::from_value(body).unwrap())?;
        ready(&trace).then_some(trace)
    })
    .await
}

async fn every_endpoint_answers_each_role_as_the_matrix_says(broker: Broker) {
    let topic = unique_topic("births");
    let archive = start_secured(&broker, &topic).await;
    let payload = json!({
        "child": {"given_name": "Amina", "sex": "F"},
        "mother": {"phone": "+254700000001", "town": "Kisumu"},
    });
    let event =
        publish_failed_registration(&broker, &topic, "beneficiary:7", &payload, "renderer down")
            .await;
    let transaction = event.transaction_id.clone();
    let admin_token = archive.token.clone();
    trace_when(
        &archive,
        &format!("/v1/transactions/{transaction}"),
        admin_token.as_deref(),
        |t| t.failure.is_some() && t.events.len() == 1,
    )
    .await;

    let mut tokens: Vec<(&str, Option<String>)> = Vec::new();
    for role in ROLES {
        tokens.push((role, Some(create_token(&archive, role, role, &[]).await)));
    }
    tokens.push(("none", None));
    let queue = unique_topic("matrix-queue");
    broker.create_queue(&queue).await;
    let stop_services = CancellationToken::new();
    let (services, server, audit_forwarder) =
        serve_gateway_and_worker(&broker, &queue, stop_services.clone()).await;

    let replay = json!({"reason": "renderer back", "only_failed": true, "dry_run": true});
    let replay_to_audit = json!({"reason": "x", "dry_run": true, "target_topic": "retrace.audit"});
    let bulk = json!({"reason": "renderer back", "since": "1h", "dry_run": true});
    let erase = json!({"reason": "request #1"});
    let new_token = json!({"name": "made-in-matrix", "role": "publisher"});
    let new_event = json!({"type": "birth.registration.submitted.v1", "source": "matrix"});
    let new_job = json!({"type": "certificate.requested.v1", "source": "matrix",
                         "job": {"kind": "certificate.render"}});
    let new_outcome = json!({"event_id": event.event_id, "transaction_id": transaction,
                             "consumer": "matrix", "status": "processed"});
    let redrive = json!({"reason": "renderer back", "all": true, "dry_run": true});
    let backups = tempfile::tempdir().unwrap();
    let backup = json!({"directory": backups.path().join("backup")});
    let archive_endpoints: Vec<(&str, String, Option<&Value>)> = vec![
        ("GET", format!("/v1/transactions/{transaction}"), None),
        ("GET", "/v1/transactions?since=1h".into(), None),
        (
            "GET",
            "/v1/subjects/beneficiary:7/transactions".into(),
            None,
        ),
        ("GET", format!("/v1/events/{}", event.event_id), None),
        (
            "GET",
            format!("/v1/messages?topic={topic}&from_offset=0"),
            None,
        ),
        ("GET", "/v1/positions".into(), None),
        ("GET", "/v1/exports/transactions?since=1h".into(), None),
        (
            "GET",
            "/v1/exports/subjects/beneficiary:7/transactions".into(),
            None,
        ),
        (
            "GET",
            "/v1/messages?topic=retrace.tokens&from_offset=0&payload=true".into(),
            None,
        ),
        (
            "GET",
            "/v1/messages?topic=retrace.audit&from_offset=0".into(),
            None,
        ),
        (
            "GET",
            format!("/v1/messages?topic={topic}&from_offset=0&header=x-national-id:NIN-12345"),
            None,
        ),
        (
            "POST",
            format!("/v1/transactions/{transaction}/replay"),
            Some(&replay_to_audit),
        ),
        ("GET", "/v1/replays/no-such-replay".into(), None),
        (
            "POST",
            format!("/v1/transactions/{transaction}/replay"),
            Some(&replay),
        ),
        ("POST", "/v1/replays".into(), Some(&bulk)),
        (
            "POST",
            "/v1/subjects/beneficiary:nobody/erase".into(),
            Some(&erase),
        ),
        ("GET", "/v1/audit?limit=5".into(), None),
        ("GET", "/v1/audit/verify".into(), None),
        ("GET", "/v1/tokens".into(), None),
        ("POST", "/v1/tokens".into(), Some(&new_token)),
        ("POST", "/v1/tokens/000000000000/revoke".into(), None),
        ("POST", "/v1/admin/backups".into(), Some(&backup)),
        ("GET", "/v1/whoami".into(), None),
        ("GET", "/v1/config".into(), None),
        ("GET", "/v1/openapi.json".into(), None),
        ("GET", "/healthz".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/ui/".into(), None),
    ];
    let service_endpoints: Vec<(&str, String, Option<&Value>)> = vec![
        (
            "POST",
            format!("/v1/topics/{topic}/events"),
            Some(&new_event),
        ),
        ("POST", format!("/v1/queues/{queue}/jobs"), Some(&new_job)),
        ("POST", "/v1/outcomes".into(), Some(&new_outcome)),
        ("GET", "/v1/jobs/queues".into(), None),
        (
            "POST",
            "/v1/jobs/queues/no-such-queue/redrive".into(),
            Some(&redrive),
        ),
        ("GET", "/v1/config".into(), None),
    ];
    let archive_routes = archive_endpoints.len();
    let endpoints: Vec<(&str, String, Option<&Value>)> = archive_endpoints
        .into_iter()
        .map(|(method, path, body)| (method, archive.url(&path), body))
        .chain(
            service_endpoints
                .into_iter()
                .map(|(method, path, body)| (method, format!("{services}{path}"), body)),
        )
        .collect();
    // Columns: publisher, analyst, support, admin, no token. A bulk replay above the
    // threshold (0 here) needs `replay:bulk`: admins only. The erase, revoke and redrive
    // targets do not exist: a caller allowed to act on them gets 404. Only admins back up
    // (into a new directory: 201). The console's files hold no data: open to all. Only admins
    // read a service's configuration. Exports need `export` (analysts and admins); Retrace's
    // own topics are read by admins only; a header filter on a value the caller sees masked
    // is refused; no replay writes Retrace's own topics.
    let expected: [[u16; 5]; 34] = [
        [403, 200, 200, 200, 401],
        [403, 200, 200, 200, 401],
        [403, 200, 200, 200, 401],
        [403, 200, 200, 200, 401],
        [403, 200, 200, 200, 401],
        [403, 200, 200, 200, 401],
        [403, 200, 403, 200, 401],
        [403, 200, 403, 200, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 200, 200, 401],
        [403, 403, 400, 400, 401],
        [403, 404, 404, 404, 401],
        [403, 403, 200, 200, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 403, 404, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 403, 200, 401],
        [403, 403, 403, 201, 401],
        [403, 403, 403, 404, 401],
        [403, 403, 403, 201, 401],
        [200, 200, 200, 200, 401],
        [403, 403, 403, 200, 401],
        [200, 200, 200, 200, 200],
        [200, 200, 200, 200, 200],
        [200, 200, 200, 200, 200],
        [200, 200, 200, 200, 200],
        [202, 403, 403, 202, 401],
        [202, 403, 403, 202, 401],
        [202, 403, 403, 202, 401],
        [403, 200, 200, 200, 401],
        [403, 403, 404, 404, 401],
        [403, 403, 403, 200, 401],
    ];
    let mut actual = Vec::new();
    for (method, url, body) in &endpoints {
        let mut row = [0u16; 5];
        for (column, (_, token)) in tokens.iter().enumerate() {
            row[column] = request_json(method, url.clone(), token.as_deref(), *body)
                .await
                .0;
        }
        actual.push(row);
    }
    stop_services.cancel();
    server.abort();
    audit_forwarder.await.unwrap();
    // The archive audits its own denials; those of the services are not counted here.
    let guarded_routes = expected[..archive_routes]
        .iter()
        .filter(|row| row[4] == 401)
        .count();
    let table = |rows: &[[u16; 5]]| {
        endpoints
            .iter()
            .zip(rows)
            .map(|((method, url, _), row)| format!("{method} {url}: {row:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        actual,
        expected,
        "role matrix (publisher, analyst, support, admin, none)\nactual:\n{}\nexpected:\n{}",
        table(&actual),
        table(&expected)
    );

    // Masking: the analyst sees "***" at the configured paths, support the values, and an
    // analyst granted payload:read the values too.
    let path = format!("/v1/transactions/{transaction}?payload=true");
    let token_of = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let analyst = token_of("analyst");
    let support = token_of("support");
    // What a client (the console) asks to know what to show.
    let (_, me) = call(&archive, "GET", "/v1/whoami", analyst.as_deref(), None).await;
    assert_eq!(
        me,
        json!({"actor": "analyst", "role": "analyst", "credential": "api_token",
               "permissions": ["trace:read", "export"]})
    );
    let payload_of = |trace: &Trace| {
        trace.events[0]
            .message
            .payload
            .clone()
            .unwrap()
            .json
            .unwrap()
    };
    let masked = trace_when(&archive, &path, analyst.as_deref(), |_| true).await;
    let seen = payload_of(&masked);
    assert_eq!(seen["child"]["given_name"], MASK, "{seen}");
    assert_eq!(seen["mother"]["phone"], MASK, "{seen}");
    assert_eq!(seen["child"]["sex"], "F", "{seen}");
    assert_eq!(seen["mother"]["town"], "Kisumu", "{seen}");
    let (status, event_view) = call(
        &archive,
        "GET",
        &format!("/v1/events/{}?payload=true", event.event_id),
        analyst.as_deref(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        event_view["copies"][0]["payload"]["json"]["child"]["given_name"],
        MASK
    );
    let plain = trace_when(&archive, &path, support.as_deref(), |_| true).await;
    assert_eq!(payload_of(&plain), payload);
    let pii = create_token(&archive, "analyst-pii", "analyst", &["payload:read"]).await;
    let granted = trace_when(&archive, &path, Some(&pii), |_| true).await;
    assert_eq!(payload_of(&granted), payload);

    // The caller, not the body, says who replays.
    let (status, refused) = call(
        &archive,
        "POST",
        &format!("/v1/transactions/{transaction}/replay"),
        support.as_deref(),
        Some(&json!({"reason": "x", "requested_by": "someone-else"})),
    )
    .await;
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("requested_by"))
    );
    let (status, started) = call(
        &archive,
        "POST",
        &format!("/v1/transactions/{transaction}/replay"),
        support.as_deref(),
        Some(&json!({"reason": "renderer back", "only_failed": true})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["replay"]["requested_by"], "support");

    // The audit trail: reads, plans, replays and denials, with actor and action.
    let audit = |query: &str| {
        let query = query.to_owned();
        let archive = &archive;
        let admin = admin_token.clone();
        async move {
            let (status, body) = call(
                archive,
                "GET",
                &format!("/v1/audit?{query}"),
                admin.as_deref(),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_value::<Page<AuditView>>(body)
                .unwrap()
                .items
        }
    };
    let by_support = audit("actor=support&limit=500").await;
    let actions: Vec<&str> = by_support.iter().map(|r| r.action.as_str()).collect();
    for action in [
        "transaction.read",
        "transactions.list",
        "subject.read",
        "event.read",
        "messages.read",
        "replay.plan",
        "replay.start",
        "denied",
    ] {
        assert!(
            actions.contains(&action),
            "{action} by support in {actions:?}"
        );
    }
    // Each record names the token by its id as well, which a second token of the same name
    // would not share: `rtk_<id>_<secret>`.
    let support_id = support
        .as_deref()
        .and_then(|text| text.split('_').nth(1))
        .unwrap();
    assert!(
        by_support
            .iter()
            .filter(|r| r.action != "denied" || r.result.starts_with("403"))
            .all(|r| r.actor_id == support_id),
        "every record of support's token carries its id {support_id}: {by_support:?}"
    );
    let started_record = by_support
        .iter()
        .find(|r| r.action == "replay.start" && r.result == "ok")
        .unwrap();
    assert_eq!(
        (
            started_record.target.as_str(),
            started_record.reason.as_str(),
            started_record.role.as_str()
        ),
        (transaction.as_str(), "renderer back", "support")
    );
    assert!(
        started_record.origin.starts_with("127.0.0.1:"),
        "{started_record:?}"
    );
    let bulk_denied = by_support
        .iter()
        .find(|r| r.action == "denied" && r.target == "POST /v1/replays")
        .unwrap();
    assert!(
        bulk_denied.result.contains("replay:bulk"),
        "{bulk_denied:?}"
    );
    let anonymous = audit("actor=unauthenticated&limit=500").await;
    assert!(
        anonymous
            .iter()
            .all(|r| r.action == "denied" && r.result.starts_with("401 missing")),
        "{anonymous:?}"
    );
    // The calls without a token came from one address for one reason: one record of them
    // a minute, however many routes they tried (the statuses above say each was refused).
    assert!(guarded_routes > 1);
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    let backups = audit("actor=admin&limit=500").await;
    assert!(
        backups.iter().any(|r| r.action == "archive.backup"
            && r.result == "ok"
            && r.target.ends_with("backup")),
        "{backups:?}"
    );
    let by_target = audit(&format!("actor=analyst&target={transaction}")).await;
    assert!(
        by_target
            .iter()
            .any(|r| r.action == "transaction.read" && r.actor == "analyst")
    );
    let tokens_made = audit("actor=bootstrap-admin&limit=500").await;
    assert!(
        tokens_made
            .iter()
            .any(|r| r.action == "token.create" && r.target.contains("analyst-pii"))
    );

    let (status, verified) = call(
        &archive,
        "GET",
        "/v1/audit/verify",
        admin_token.as_deref(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let verified: AuditVerificationView = serde_json::from_value(verified).unwrap();
    assert!(
        verified.intact && verified.problems.is_empty(),
        "{verified:?}"
    );
    assert!(verified.records >= 60, "{verified:?}");

    // A revoked token is refused at once.
    let (status, listed) = call(&archive, "GET", "/v1/tokens", admin_token.as_deref(), None).await;
    assert_eq!(status, 200);
    let analyst_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "analyst")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, revoked) = call(
        &archive,
        "POST",
        &format!("/v1/tokens/{analyst_id}/revoke"),
        admin_token.as_deref(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked_by"], "bootstrap-admin");
    let (status, answer) = call(&archive, "GET", &path, analyst.as_deref(), None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    archive.stop().await;
}

/// The attempts a role's token could make beyond its grant (issue 29), each refused or
/// harmless: a replay into the audit trail, reading token records, a header filter that
/// guesses masked values, another caller's idempotency key, error text naming a person, a
/// token posing as the bootstrap admin.
async fn a_role_does_only_what_it_is_granted(broker: Broker) {
    let topic = unique_topic("births");
    let archive = start_secured(&broker, &topic).await;
    // Token names are unique on the tokens topic, which the scenarios of a broker share.
    let name = |role: &str| format!("{role}-{topic}");
    let admin = create_token(&archive, &name("admin"), "admin", &[]).await;
    let support = create_token(&archive, &name("support"), "support", &[]).await;
    let analyst = create_token(&archive, &name("analyst"), "analyst", &[]).await;
    let payload = json!({"child": {"given_name": "Amina"}});
    let failed = |subject: &'static str| {
        let (broker, topic, payload) = (&broker, &topic, &payload);
        async move {
            publish_failed_registration(broker, topic, subject, payload, "mother_id NID-99887766")
                .await
        }
    };
    let (first, second) = (failed("beneficiary:1").await, failed("beneficiary:2").await);
    for event in [&first, &second] {
        trace_when(
            &archive,
            &format!("/v1/transactions/{}", event.transaction_id),
            Some(&admin),
            |t| t.failure.is_some(),
        )
        .await;
    }

    // A replay into the audit trail is refused, and the refusal is audited with its target.
    let (status, refused) = call(
        &archive,
        "POST",
        &format!("/v1/transactions/{}/replay", first.transaction_id),
        Some(&support),
        Some(&json!({"reason": "forge", "target_topic": "retrace.audit"})),
    )
    .await;
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("target_topic"))
    );
    let (_, trail) = call(
        &archive,
        "GET",
        &format!("/v1/audit?actor={}&limit=100", name("support")),
        Some(&admin),
        None,
    )
    .await;
    let trail: Page<AuditView> = serde_json::from_value(trail).unwrap();
    assert!(
        trail.items.iter().any(|r| r.action == "replay.start"
            && r.target == format!("{} to retrace.audit", first.transaction_id)
            && r.result.contains("Retrace's own topic")),
        "{:?}",
        trail.items
    );
    let (_, verified) = call(&archive, "GET", "/v1/audit/verify", Some(&admin), None).await;
    assert_eq!(verified["intact"], true, "{verified}");

    // Token records: never with their hash, admins included.
    let (status, records) = call(
        &archive,
        "GET",
        &format!("/v1/messages?topic={TOKENS_TOPIC}&from_offset=0&payload=true"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{records}");
    let items = records["items"].as_array().unwrap();
    assert!(!items.is_empty(), "the admin lists the token records");
    assert!(
        items.iter().all(|m| m.get("payload").is_none()),
        "{records}"
    );
    assert!(!records.to_string().contains("secret_sha256"), "{records}");

    // Idempotency keys belong to their caller and their request.
    let replay_with_key = |token: &str, transaction: &str, key: &str| {
        let url = archive.url(&format!("/v1/transactions/{transaction}/replay"));
        let (token, key) = (token.to_owned(), key.to_owned());
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"reason": "renderer back", "only_failed": true}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, by_support) = replay_with_key(&support, &first.transaction_id, "K").await;
    assert_eq!(status, 202, "{by_support}");
    let (status, again) = replay_with_key(&support, &first.transaction_id, "K").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["replay"]["replay_id"],
        by_support["replay"]["replay_id"]
    );
    let (status, by_admin) = replay_with_key(&admin, &second.transaction_id, "K").await;
    assert_eq!(status, 202, "another caller's key is its own: {by_admin}");
    assert_ne!(
        by_admin["replay"]["replay_id"],
        by_support["replay"]["replay_id"]
    );
    assert_eq!(by_admin["replay"]["requested_by"], name("admin"));
    let (status, reused) = replay_with_key(&support, &second.transaction_id, "K").await;
    assert_eq!(status, 409, "{reused}");
    let reuse = reused["error"].as_str().unwrap();
    let first_replay = by_support["replay"]["replay_id"].as_str().unwrap();
    assert!(reuse.contains(first_replay), "{reuse}");

    // Reading a replay is audited.
    let (status, _) = call(
        &archive,
        "GET",
        &format!("/v1/replays/{first_replay}"),
        Some(&analyst),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, read) = call(
        &archive,
        "GET",
        &format!("/v1/audit?actor={}&target={first_replay}", name("analyst")),
        Some(&admin),
        None,
    )
    .await;
    let read: Page<AuditView> = serde_json::from_value(read).unwrap();
    assert!(
        read.items.iter().any(|r| r.action == "replay.read"),
        "{:?}",
        read.items
    );

    // Error text is free text: masked without payload:read, like a text payload.
    let path = format!("/v1/transactions/{}", first.transaction_id);
    let masked = trace_when(&archive, &path, Some(&analyst), |_| true).await;
    assert_eq!(masked.failure.unwrap().error, MASK);
    assert!(
        masked.events[0]
            .outcomes()
            .all(|o| o.error.is_empty() || o.error == MASK)
    );
    let (_, listed) = call(
        &archive,
        "GET",
        "/v1/transactions?status=failed&since=1h",
        Some(&analyst),
        None,
    )
    .await;
    assert!(!listed.to_string().contains("NID-99887766"), "{listed}");
    let shown = trace_when(&archive, &path, Some(&support), |_| true).await;
    assert_eq!(shown.failure.unwrap().error, "mother_id NID-99887766");

    // Anyone can fail to authenticate: 10,000 attempts count in the metric, and add one
    // record to the audit trail.
    let denied = || async {
        let (_, metrics) = call(&archive, "GET", "/metrics", Some(&admin), None).await;
        metrics
            .as_str()
            .unwrap()
            .lines()
            .filter(|line| line.starts_with("retrace_auth_denied_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = denied().await;
    let client = reqwest::Client::new();
    let url = archive.url("/v1/transactions");
    futures::stream::iter(0..10_000)
        .for_each_concurrent(64, |n| {
            let request = client
                .get(&url)
                .bearer_auth(format!("rtk_guess{n}_wrong"))
                .send();
            async move {
                assert_eq!(request.await.unwrap().status().as_u16(), 401);
            }
        })
        .await;
    assert!(denied().await - before >= 10_000.0, "every attempt counted");
    let (_, flood) = call(
        &archive,
        "GET",
        "/v1/audit?actor=unauthenticated&limit=500",
        Some(&admin),
        None,
    )
    .await;
    let flood: Page<AuditView> = serde_json::from_value(flood).unwrap();
    assert_eq!(flood.items.len(), 1, "{:?}", flood.items);

    // No token passes for the bootstrap admin in the audit trail.
    let (status, refused) = call(
        &archive,
        "POST",
        "/v1/tokens",
        Some(&admin),
        Some(&json!({"name": "bootstrap-admin", "role": "admin"})),
    )
    .await;
    assert_eq!(
        (status, refused["field"].as_str()),
        (400, Some("name")),
        "{refused}"
    );
    archive.stop().await;
}

/// An outcome reported through the gateway carries who reported it, and a reporter limited
/// to some topics speaks only for events of those: a publisher allowed `orders` cannot fail
/// a registration.
async fn an_outcome_speaks_only_for_the_reporters_topics(broker: Broker) {
    let topic = unique_topic("births");
    let orders = unique_topic("orders");
    broker.create_topic(&orders, 1).await;
    let archive = start_secured(&broker, &topic).await;
    let admin = archive.token.clone();
    let payload = json!({"child": {"given_name": "Amina"}});
    let submitted = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject("beneficiary:9")
        .with_payload("application/json", serde_json::to_vec(&payload).unwrap());
    Publisher::new(&broker.settings())
        .unwrap()
        .publish(&topic, &submitted)
        .await
        .unwrap();
    let path = format!("/v1/transactions/{}", submitted.transaction_id);
    trace_when(&archive, &path, admin.as_deref(), |_| true).await;
    let body = json!({"name": format!("orders-{orders}"), "role": "publisher",
                      "topics": [orders], "expires_in_s": 3600});
    let (status, created) = call(
        &archive,
        "POST",
        "/v1/tokens",
        admin.as_deref(),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let restricted = created["token"].as_str().unwrap().to_owned();
    let reporter = create_token(&archive, &format!("validation-{topic}"), "publisher", &[]).await;
    let queue = unique_topic("outcome-queue");
    broker.create_queue(&queue).await;
    let stop_services = CancellationToken::new();
    let (services, server, audit_forwarder) =
        serve_gateway_and_worker(&broker, &queue, stop_services.clone()).await;
    let report = |token: String, extra: Value| {
        let mut outcome = json!({"event_id": submitted.event_id,
                                 "transaction_id": submitted.transaction_id,
                                 "consumer": "validation", "status": "failed",
                                 "error": "forged by the orders service"});
        outcome
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let url = format!("{services}/v1/outcomes");
        async move { request_json("POST", url, Some(&token), Some(&outcome)).await }
    };

    let (status, missing) = report(restricted.clone(), json!({})).await;
    assert_eq!(
        (status, missing["field"].as_str()),
        (400, Some("topic")),
        "{missing}"
    );
    let (status, refused) = report(restricted.clone(), json!({"topic": topic})).await;
    assert_eq!(status, 403, "{refused}");
    // Named as one of its own topics, the outcome is published, and the archive, which
    // knows the event's topic, leaves it out.
    let (status, lied) = report(restricted.clone(), json!({"topic": orders})).await;
    assert_eq!(status, 202, "{lied}");
    let (status, genuine) = report(reporter, json!({"error": "register down"})).await;
    assert_eq!(status, 202, "{genuine}");
    let trace = trace_when(&archive, &path, admin.as_deref(), |t| {
        t.events[0].outcomes().any(|o| o.error == "register down")
    })
    .await;
    let outcomes: Vec<_> = trace.events[0].outcomes().collect();
    assert!(
        outcomes
            .iter()
            .all(|o| o.error != "forged by the orders service"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].reported_by, format!("validation-{topic}"));
    assert_eq!(trace.failure.unwrap().error, "register down");
    stop_services.cancel();
    server.abort();
    audit_forwarder.await.unwrap();
    archive.stop().await;
}

/// On Apache Kafka only: on librdkafka's mock cluster this scenario passes alone (about 20 s)
/// but stalled past ten minutes when run beside this binary's other mock scenarios, a stall not
/// yet explained (see docs/testing.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_speaks_only_for_the_reporters_topics_on_apache_kafka() {
    an_outcome_speaks_only_for_the_reporters_topics(Broker::real()).await;
}

/// Every occurrence of `marker` in any file under `dir`.
fn occurrences(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(occurrences(&path, marker));
        } else {
            // A running archive's engine may remove a file between listing and reading.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let hits = bytes.windows(marker.len()).filter(|w| *w == marker).count();
            if hits > 0 {
                found.push(format!("{} ({hits})", path.display()));
            }
        }
    }
    found
}

async fn an_erased_subject_is_gone_from_answers_replays_and_disk(broker: Broker) {
    let topic = unique_topic("births");
    let archive = start_secured(&broker, &topic).await;
    let admin = archive.token.clone();
    let marker = format!("ERASE-ME-{}", retrace_proto::new_event_id());
    let subject = format!("beneficiary:{}", retrace_proto::new_event_id());
    let payload = json!({"child": {"given_name": marker}, "note": "born at home"});
    // The consumer named the child in its error text too.
    let error = format!("renderer down rendering the certificate of {marker}");
    let event = publish_failed_registration(&broker, &topic, &subject, &payload, &error).await;
    let trace_path = format!("/v1/transactions/{}?payload=true", event.transaction_id);
    let before = trace_when(&archive, &trace_path, admin.as_deref(), |t| {
        t.failure.is_some() && t.events.len() == 1
    })
    .await;
    assert_eq!(before.events[0].message.erased_at, None);
    assert!(
        !occurrences(archive.data_dir(), marker.as_bytes()).is_empty(),
        "the marker is on disk before the erasure (the search can find it)"
    );

    let (status, missing) = call(
        &archive,
        "POST",
        &format!("/v1/subjects/{subject}/erase"),
        admin.as_deref(),
        Some(&json!({"reason": " "})),
    )
    .await;
    assert_eq!((status, missing["field"].as_str()), (400, Some("reason")));
    let (status, erased) = call(
        &archive,
        "POST",
        &format!("/v1/subjects/{subject}/erase"),
        admin.as_deref(),
        Some(&json!({"reason": "subject request #77"})),
    )
    .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["records"], 1, "{erased}");
    assert!(
        erased["note"].as_str().unwrap().contains("compact"),
        "{erased}"
    );

    let after = trace_when(&archive, &trace_path, admin.as_deref(), |_| true).await;
    let message = &after.events[0].message;
    assert!(message.erased_at.is_some(), "{message:?}");
    assert_eq!(message.event_id, event.event_id, "ids stay");
    let shown = message.payload.clone().unwrap();
    assert_eq!((shown.json, shown.text, shown.base64), (None, None, None));
    assert_eq!(
        after.failure.unwrap().error,
        retrace_archive::ERASED_ERROR,
        "the failure stays, without the text that named the person"
    );
    assert_eq!(erased["outcomes"], 1, "{erased}");
    let (status, refused) = call(
        &archive,
        "POST",
        &format!("/v1/transactions/{}/replay", event.transaction_id),
        admin.as_deref(),
        Some(&json!({"reason": "try again"})),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    let refusal = refused["error"].as_str().unwrap();
    assert!(
        refusal.contains(&event.event_id) && refusal.contains("erased on"),
        "{refusal}"
    );
    let (_, trail) = call(
        &archive,
        "GET",
        &format!("/v1/audit?target={subject}"),
        admin.as_deref(),
        None,
    )
    .await;
    let trail: Page<AuditView> = serde_json::from_value(trail).unwrap();
    let erasure = trail
        .items
        .iter()
        .find(|r| r.action == "subject.erase" && r.result == "ok");
    assert_eq!(erasure.unwrap().reason, "subject request #77");

    let dir = archive.shut_down().await;
    let summary =
        retrace_log_store::compact(dir.path(), &retrace_log_store::StoreOptions::default())
            .unwrap();
    assert!(summary.entries > 0, "{summary:?}");
    let left = occurrences(dir.path(), marker.as_bytes());
    assert!(left.is_empty(), "erased bytes still on disk in {left:?}");
}

on_every_broker!(
    every_endpoint_answers_each_role_as_the_matrix_says,
    a_role_does_only_what_it_is_granted,
    an_erased_subject_is_gone_from_answers_replays_and_disk,
);
