//! Kafka ACLs for a real deployment (issue 24, item 3), on Apache Kafka with SASL/SCRAM and
//! the `StandardAuthorizer` (`kafka-local start --sasl`): the ACL set of `retrace kafka acls`
//! (`retrace_sdk::acls`), applied through the admin API as the super user; then the archive,
//! the gateway and the worker, each under its own principal, do what they do (create their
//! topics, the token service, publishing, outcomes, tracing, audit, replay, a job run), while
//! an application producer's principal is refused Retrace's own topics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use retrace_auth::AuthConfig;
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC, OUTCOMES_TOPIC};
use retrace_sdk::acls::{AclPlan, create_acls};
use retrace_sdk::{KafkaSettings, QueueTopics};
use retrace_tests::{
    Broker, KafkaCluster, PATIENCE, RunningArchive, eventually, free_port, request_json, serve,
    start_gateway,
};
use retrace_worker::{QueueConfig, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKENS_TOPIC: &str = retrace_auth::DEFAULT_TOKENS_TOPIC;
const TOPIC: &str = "registrations";
const QUEUE: &str = "certificates";
const ARCHIVE: (&str, &str) = ("retrace-archive", "archive-secret");
const GATEWAY: (&str, &str) = ("retrace-gateway", "gateway-secret");
const WORKER: (&str, &str) = ("retrace-worker", "worker-secret");
const REGISTRY: (&str, &str) = ("civil-registry", "registry-secret");

fn secured(bootstrap_admin_sha256: String) -> AuthConfig {
    AuthConfig {
        enabled: true,
        bootstrap_admin_sha256: Some(bootstrap_admin_sha256),
        ..AuthConfig::default()
    }
}

fn properties(settings: &KafkaSettings) -> Vec<String> {
    settings
        .properties
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// Publishes one record to `topic` as the principal of `settings` (an idempotent producer,
/// as the SDK's); answers Kafka's error code if it refused.
async fn write_as(settings: &KafkaSettings, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let producer: FutureProducer = settings
        .client_config(&[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "20000"),
            ("allow.auto.create.topics", "false"),
        ])
        .create()
        .unwrap();
    let record = FutureRecord::to(topic).key("forged").payload("forged");
    match producer.send(record, Duration::from_secs(20)).await {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((other, _)) => panic!("publishing to {topic}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_work_under_their_own_principals_and_applications_cannot_write_retraces_topics() {
    let cluster = Arc::new(KafkaCluster::start_sasl(&[
        ARCHIVE, GATEWAY, WORKER, REGISTRY,
    ]));
    let user = |(name, password): (&str, &str)| cluster.user_settings(name, password);
    let admin = cluster.admin_settings();

    // The ACLs, as `retrace kafka acls --apply --topic registrations --queue certificates
    // --producer User:civil-registry=registrations` creates them.
    let plan = AclPlan::new(TOKENS_TOPIC)
        .with_topics(TOPIC)
        .unwrap()
        .with_queues(QUEUE)
        .unwrap()
        .with_producer(&format!("User:{}={TOPIC}", REGISTRY.0))
        .unwrap();
    plan.check().unwrap();
    let acls = plan.acls();
    assert_eq!(create_acls(&admin, &acls).await.unwrap(), acls.len());
    // Applying them again changes nothing and is no error.
    assert_eq!(create_acls(&admin, &acls).await.unwrap(), acls.len());
    // Only a principal allowed to alter the cluster may create ACLs.
    let refused = create_acls(&user(REGISTRY), &acls).await.unwrap_err();
    assert!(
        refused.to_string().contains("ClusterAuthorizationFailed"),
        "{refused}"
    );

    // The application topic is the operator's to create; Retrace's own, the services create.
    let operator: AdminClient<DefaultClientContext> = admin.client_config(&[]).create().unwrap();
    for result in operator
        .create_topics(
            &[NewTopic::new(TOPIC, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        result.unwrap();
    }

    // The archive, under its principal: creates Retrace's topics, consumes everything, is the
    // token service.
    let broker = Broker::Kafka {
        cluster: Arc::clone(&cluster),
        private: true,
    };
    let (bootstrap_token, digest) = retrace_auth::generate();
    let mut archive = RunningArchive::start_with(&broker, |config| {
        config.kafka = user(ARCHIVE);
        config.group_id = "retrace-archive".into();
        config.auth = secured(digest.clone());
    })
    .await;
    archive.token = Some(bootstrap_token.clone());
    let admin_token = Some(bootstrap_token.as_str());
    let (status, created) = request_json(
        "POST",
        archive.url("/v1/tokens"),
        admin_token,
        Some(&json!({"name": "registry", "role": "publisher", "expires_in_s": 3600})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["token"].is_string(), "{created}");

    // The gateway, under its principal: reads the tokens topic the archive wrote to.
    let gateway_properties = properties(&user(GATEWAY));
    let gateway_properties: Vec<&str> = gateway_properties.iter().map(String::as_str).collect();
    let gateway = start_gateway(cluster.bootstrap(), &gateway_properties, |config| {
        config.auth = secured(digest.clone());
    })
    .await;

    // The worker, under its principal: creates its queue's topics, runs jobs through a webhook.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let target = axum::Router::new().route(
        "/jobs",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let (target_url, target_server) = serve(target).await;
    let mut worker_config = WorkerConfig::new(cluster.bootstrap());
    worker_config.kafka = user(WORKER);
    worker_config.auth = secured(digest);
    let worker_port = free_port();
    worker_config.http = ([127, 0, 0, 1], worker_port).into();
    worker_config.queues.insert(
        QUEUE.to_owned(),
        QueueConfig {
            webhook: Some(format!("{target_url}/jobs")),
            ..QueueConfig::default()
        },
    );
    let stop_worker = CancellationToken::new();
    // A failing test stops the worker too, so its blocking token reader ends with it.
    let _stop_worker_on_drop = stop_worker.clone().drop_guard();
    let worker = tokio::spawn(retrace_worker::run(worker_config, stop_worker.clone()));
    eventually("the worker to serve /healthz", PATIENCE, || async {
        assert!(!worker.is_finished(), "the worker stopped while starting");
        let health = reqwest::get(format!("http://127.0.0.1:{worker_port}/healthz")).await;
        health.ok()?.status().is_success().then_some(())
    })
    .await;

    // Publishing through the gateway (as the bootstrap admin, whose token all three services
    // know from their configuration, not from the tokens topic).
    let bearer = format!("Bearer {bootstrap_token}");
    let event = json!({"type": "birth.registration.submitted.v1", "source": "registry",
                       "subject_ids": ["beneficiary:7"]});
    let published = gateway
        .events_with(TOPIC, &event, &[("authorization", &bearer)])
        .await;
    assert_eq!(published.status, 202, "{}", published.body);
    let event_id = published.body["event_id"].as_str().unwrap().to_owned();
    let transaction = published.body["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A consumer's failure, reported through the gateway, on retrace.outcomes.
    let failure = json!({"event_id": event_id, "transaction_id": transaction,
                         "consumer": "certificates", "status": "failed",
                         "error": "renderer down", "attempt": 1});
    let reported = gateway
        .post_with(
            "/v1/outcomes",
            Some("application/json"),
            serde_json::to_vec(&failure).unwrap(),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reported.status, 202, "{}", reported.body);

    // The archive traces it, and replays it to the application topic.
    let trace_path = format!("/v1/transactions/{transaction}");
    let trace = |ready: fn(&Value) -> bool| {
        let url = archive.url(&trace_path);
        async move {
            eventually(&format!("{url} to be traced"), PATIENCE, || async {
                let (status, body) = request_json("GET", url.clone(), admin_token, None).await;
                (status == 200 && ready(&body)).then_some(body)
            })
            .await
        }
    };
    trace(|t| t["status"] == "failed").await;
    let (status, started) = request_json(
        "POST",
        archive.url(&format!("{trace_path}/replay")),
        admin_token,
        Some(&json!({"reason": "renderer back", "only_failed": true})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let replayed = trace(|t| {
        t["events"][0]["records"]
            .as_array()
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    assert_eq!(replayed["replays"].as_array().map(Vec::len), Some(1));

    // A job enqueued through the gateway runs on the worker, whose outcome the archive traces.
    let job = json!({"type": "certificate.requested.v1", "source": "registry",
                     "job": {"kind": "certificate.render"}});
    let enqueued = gateway
        .post_with(
            &format!("/v1/queues/{QUEUE}/jobs"),
            Some("application/json"),
            serde_json::to_vec(&job).unwrap(),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(enqueued.status, 202, "{}", enqueued.body);
    let job_transaction = enqueued.body["transaction_id"].as_str().unwrap().to_owned();
    let job_path = archive.url(&format!("/v1/transactions/{job_transaction}"));
    eventually("the job's outcome to be traced", PATIENCE, || async {
        let (status, body) = request_json("GET", job_path.clone(), admin_token, None).await;
        let processed = body["events"][0]["records"][0]["outcomes"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["status"] == "processed"));
        (status == 200 && processed && body["status"] == "ok").then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A denial at the gateway is audited: its audit event reaches the archive's trail.
    let audited_before = archive.archived_count(AUDIT_TOPIC).await.unwrap_or(0);
    let denied = gateway
        .events_with(TOPIC, &event, &[("authorization", "Bearer rtk_nope_nope")])
        .await;
    assert_eq!(denied.status, 401, "{}", denied.body);
    archive
        .wait_for_records(AUDIT_TOPIC, audited_before + 1)
        .await;

    // The application producer's principal: its own topic, nothing of Retrace's.
    assert_eq!(write_as(&user(REGISTRY), TOPIC).await, Ok(()));
    let queue = QueueTopics::of(QUEUE);
    for topic in [
        TOKENS_TOPIC,
        AUDIT_TOPIC,
        ARCHIVE_CHANGES_TOPIC,
        OUTCOMES_TOPIC,
        &queue.normal,
        &queue.retry,
        &queue.dead_letter,
    ] {
        assert_eq!(
            write_as(&user(REGISTRY), topic).await,
            Err(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{} writing {topic}",
            REGISTRY.0
        );
    }
    // Each service writes only what it must: the gateway cannot write tokens nor the
    // archive's change log (whose records every archive replica applies), the worker cannot
    // write the change log either. The archive writes the audit topic: its replicas read
    // each other's audit records from there.
    for (service, topic) in [
        (GATEWAY, TOKENS_TOPIC),
        (GATEWAY, ARCHIVE_CHANGES_TOPIC),
        (WORKER, ARCHIVE_CHANGES_TOPIC),
    ] {
        assert_eq!(
            write_as(&user(service), topic).await,
            Err(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{} writing {topic}",
            service.0
        );
    }

    stop_worker.cancel();
    worker.await.unwrap().unwrap();
    target_server.abort();
    gateway.stop().await;
    archive.shut_down().await;
}
