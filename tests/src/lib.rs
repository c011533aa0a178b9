//! The harness for Retrace's end-to-end tests: real Kafka brokers, started by the test, and
//! a way to wait for a condition without sleeping blindly.
//!
//! Every scenario runs twice (see [`on_every_broker!`]): on librdkafka's in-process mock
//! cluster, and on Apache Kafka: one KRaft node started through `tests/kafka/kafka-local`
//! and shared by the tests of one binary, or the Kafka named by `RETRACE_TEST_KAFKA=host:port`.

mod archive;
mod archived;
mod disk;
mod gateway;
mod jobs;
mod kafka;
mod kill;
mod outage;
mod topic;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaErrorCode;

pub use archive::{RunningArchive, start_archive};
pub use archived::{
    archived_copy, check_exactly_once, in_archive, metric_sum, wait_until_archived,
};
pub use disk::SmallFilesystem;
pub use gateway::{Answer, RunningGateway, spawn_gateway, start_gateway, start_gateway_on};
pub use jobs::{
    FAST_BACKOFF, RunningWorker, WebhookTarget, closed_gate, job, serve, webhook_config,
    webhook_queue,
};
pub use kafka::{KafkaCluster, launcher as kafka_launcher};
pub use kill::{
    Generator, RESTARTED_SESSION_TIMEOUT, Resumes, ServiceProcess, Stop, next_kill_at,
    restarted_consumer_env, service_binary, spawn_gateway_process,
};
pub use topic::{committed_offsets, messages_on, read_topic};

/// How long a scenario waits for what it expects before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A Kafka broker for one test.
pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// Apache Kafka started by the harness: the binary's shared node, or a test's own.
    Kafka {
        cluster: Arc<KafkaCluster>,
        /// Whether this test alone uses it, and so may stop its nodes.
        private: bool,
    },
    External(String),
}

impl Broker {
    /// librdkafka's mock cluster, three brokers, in this process.
    pub fn mock() -> Self {
        Broker::Mock(MockCluster::new(outage::MOCK_BROKERS).expect("the mock cluster starts"))
    }

    /// `RETRACE_TEST_KAFKA` if set, else the Apache Kafka node this test binary shares.
    pub fn real() -> Self {
        Self::external().unwrap_or_else(|| Broker::Kafka {
            cluster: KafkaCluster::shared(),
            private: false,
        })
    }

    /// `RETRACE_TEST_KAFKA` if set, else an Apache Kafka node of this test's own, which it may
    /// stop and start (see [`Broker::take_down`]).
    pub fn real_private() -> Self {
        Self::external().unwrap_or_else(|| Broker::Kafka {
            cluster: Arc::new(KafkaCluster::start(1)),
            private: true,
        })
    }

    fn external() -> Option<Self> {
        match std::env::var("RETRACE_TEST_KAFKA") {
            Ok(bootstrap) if !bootstrap.is_empty() => Some(Broker::External(bootstrap)),
            _ => None,
        }
    }

    /// `mock`, `kafka` or `external`, for what a test prints.
    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Kafka { .. } => "kafka",
            Broker::External(_) => "external",
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::Kafka { cluster, .. } => cluster.bootstrap().to_owned(),
            Broker::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// Creates `topic` unless it exists, with the cluster's default replication.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            // The mock has no admin API.
            Broker::Mock(cluster) => match cluster.create_topic(topic, partitions, 1) {
                Ok(())
                | Err(rdkafka::error::KafkaError::MockCluster(
                    RDKafkaErrorCode::TopicAlreadyExists,
                )) => {}
                Err(error) => panic!("the mock cannot create topic {topic}: {error}"),
            },
            _ => {
                let admin: AdminClient<DefaultClientContext> =
                    self.client_config().create().unwrap();
                // -1: the broker's default.replication.factor (KIP-464).
                let topics = [NewTopic::new(
                    topic,
                    partitions,
                    TopicReplication::Fixed(-1),
                )];
                let results = admin
                    .create_topics(&topics, &AdminOptions::new())
                    .await
                    .expect("the broker answers CreateTopics");
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => panic!("creating topic {topic} failed: {code}"),
                    }
                }
            }
        }
    }

    /// Deletes `topic` and waits until the broker's metadata no longer lists it, so that
    /// creating it again makes a new topic. Apache Kafka only: the mock has no admin API.
    pub async fn delete_topic(&self, topic: &str) {
        assert!(
            !matches!(self, Broker::Mock(_)),
            "the mock cluster cannot delete topics"
        );
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        for result in admin
            .delete_topics(&[topic], &AdminOptions::new())
            .await
            .expect("the broker answers DeleteTopics")
        {
            result.unwrap_or_else(|(topic, code)| panic!("deleting topic {topic} failed: {code}"));
        }
        // A producer's metadata request creates a missing topic unless told not to.
        let producer: BaseProducer = self
            .client_config()
            .set("allow.auto.create.topics", "false")
            .create()
            .unwrap();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            wait_for("the topic's deletion to show in metadata", PATIENCE, || {
                let metadata = producer
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .ok()?;
                let gone = metadata
                    .topics()
                    .iter()
                    .all(|t| t.name() != topic || t.error().is_some());
                gone.then_some(())
            })
        })
        .await
        .unwrap();
    }

    /// Kafka settings for a Retrace client in a test on this broker.
    pub fn settings(&self) -> retrace_sdk::KafkaSettings {
        retrace_sdk::KafkaSettings::new(self.bootstrap())
    }

    /// A service's common flags for a test on this broker: `file` as its configuration,
    /// checked for changes every 50 ms, and this broker.
    pub fn config_args(&self, file: &std::path::Path) -> retrace_config::CommonArgs {
        retrace_config::CommonArgs {
            config: Some(file.to_owned()),
            config_poll_ms: Some(50),
            kafka_bootstrap: Some(self.bootstrap()),
            signing_keys: Some(TEST_SIGNING_KEY.to_owned()),
            ..retrace_config::CommonArgs::default()
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Waits until the broker answers metadata requests.
    pub fn wait_until_serving(&self) {
        let producer: BaseProducer = self.client_config().create().unwrap();
        wait_for(
            "the broker to serve metadata",
            Duration::from_secs(30),
            || {
                producer
                    .client()
                    .fetch_metadata(None, Duration::from_millis(500))
                    .ok()
            },
        );
    }
}

/// Generates one test per broker for each scenario `async fn name(broker: Broker)`. The
/// scenarios listed after `; private:` get an Apache Kafka node of their own, which they may
/// stop and start; the others share the test binary's node.
#[macro_export]
macro_rules! on_every_broker {
    ($($scenario:ident),* $(,)? $(; private: $($private:ident),* $(,)?)?) => {
        mod mock {
            $($crate::on_every_broker!(@test $scenario, $crate::Broker::mock);)*
            $($($crate::on_every_broker!(@test $private, $crate::Broker::mock);)*)?
        }
        mod real {
            $($crate::on_every_broker!(@test $scenario, $crate::Broker::real);)*
            $($($crate::on_every_broker!(@test $private, $crate::Broker::real_private);)*)?
        }
    };
    (@test $scenario:ident, $broker:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            super::$scenario($broker()).await
        }
    };
}

/// A topic name no other test of this run uses, so tests sharing a broker or a metrics
/// recorder do not see each other's records.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Polls `probe` until it returns `Some`, failing the test with `what` after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The async twin of [`wait_for`], for probes that await.
pub async fn eventually<T, F>(what: &str, deadline: Duration, probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    eventually_explained(deadline, probe, || format!("waiting for {what}")).await
}

/// [`eventually`], failing with what `explain` says once the deadline has passed: a test
/// can list then what it was still waiting for.
pub async fn eventually_explained<T, F>(
    deadline: Duration,
    mut probe: impl FnMut() -> F,
    explain: impl FnOnce() -> String,
) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} {}", explain());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls any of the services (`GET` or `POST`, with a bearer `token` and a JSON `body` when
/// given); answers the status and the body (JSON, else the text).
pub async fn request_json(
    method: &str,
    url: String,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => panic!("no {other} in this API"),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Partition positions reported by an archive's `/v1/positions`.
pub use retrace_archive::api::PositionView as Position;

/// How many records of `topic` the archive at `http` has stored (offsets start at 0), asked
/// with `token` when its API needs one.
pub async fn archived_count(http: &str, token: Option<&str>, topic: &str) -> Option<i64> {
    let mut request = reqwest::Client::new().get(format!("http://{http}/v1/positions"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let positions: Vec<Position> = request.send().await.ok()?.json().await.ok()?;
    Some(
        positions
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| p.next_offset)
            .sum(),
    )
}

/// The signing key every service the harness starts shares (`[auth] signing_keys`), so
/// token records and audit events one writes, another applies and chains. Tests that write
/// Retrace's own topics behind the services' backs do so without it.
pub const TEST_SIGNING_KEY: &str =
    "7e3a5c0f9b1d24e68a0c3f5b7d9e1a2c4b6d8f0a1c3e5a7b9d0f2a4c6e8b0d1f";

/// `[auth]` with [`TEST_SIGNING_KEY`] and the rest of `config`.
pub fn with_test_key(config: retrace_auth::AuthConfig) -> retrace_auth::AuthConfig {
    retrace_auth::AuthConfig {
        signing_keys: vec![TEST_SIGNING_KEY.to_owned()],
        ..config
    }
}

/// Authentication switched off (every caller is an anonymous admin), for scenarios about
/// something else: the guard and audit sender a service's router takes, and the task that
/// forwards audit events until `shutdown`.
pub async fn auth_off(
    bootstrap: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> (
    retrace_auth::Guard,
    retrace_auth::AuditSender,
    tokio::task::JoinHandle<()>,
) {
    let config = with_test_key(retrace_auth::AuthConfig {
        enabled: false,
        ..retrace_auth::AuthConfig::default()
    });
    let settings = retrace_sdk::KafkaSettings::new(bootstrap);
    let auth = retrace_auth::ServiceAuth::start(&config, &settings, "test", shutdown)
        .await
        .expect("authentication switched off starts");
    let (guard, audit) = (auth.guard.clone(), auth.audit());
    (guard, audit, tokio::spawn(auth.run()))
}
