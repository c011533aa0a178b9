//! The harness for Retrace's end-to-end tests: real Kafka-protocol brokers, started by the
//! test, and a way to wait for a condition without sleeping blindly.
//!
//! Every scenario runs twice (see [`on_every_broker!`]): on librdkafka's in-process mock
//! cluster, and on a real broker: tansu, started by the test on a free loopback port, or the
//! Kafka named by `RETRACE_TEST_KAFKA=host:port`.

mod archive;
mod disk;
mod gateway;
mod jobs;
mod kill;
mod outage;
mod topic;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaErrorCode;

pub use archive::{RunningArchive, start_archive};
pub use disk::SmallFilesystem;
pub use gateway::{Answer, RunningGateway, start_gateway, start_gateway_on};
pub use jobs::{closed_gate, job, serve};
pub use kill::{FAST_SESSION, Generator, ServiceProcess, Stop, next_kill_at, service_binary};
pub use topic::{messages_on, read_topic};

/// How long a scenario waits for what it expects before it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A Kafka-protocol broker for one test.
pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu {
        process: Child,
        bootstrap: String,
        /// What clients connect through, so a scenario can cut them off.
        relay: outage::Relay,
    },
    External(String),
}

impl Broker {
    /// librdkafka's mock cluster, three brokers, in this process.
    pub fn mock() -> Self {
        Broker::Mock(MockCluster::new(outage::MOCK_BROKERS).expect("the mock cluster starts"))
    }

    /// `RETRACE_TEST_KAFKA` if set, else a tansu broker started for this test.
    pub fn real() -> Self {
        match std::env::var("RETRACE_TEST_KAFKA") {
            Ok(bootstrap) if !bootstrap.is_empty() => Broker::External(bootstrap),
            _ => Broker::tansu(),
        }
    }

    /// tansu on a free port, advertising its relay's port (see [`outage`]).
    fn tansu() -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let relay_listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let relay_address = relay_listener.local_addr().expect("a bound address");
        let advertised = format!("tcp://{relay_address}");
        let process = Command::new(
            std::env::var("RETRACE_TANSU").unwrap_or_else(|_| "tansu".into()),
        )
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/", "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "tansu is not installed: `cargo install tansu@0.6.0 --locked --no-default-features \
                 --features dynostore` (or set RETRACE_TEST_KAFKA=host:port to use your own Kafka)",
        );
        let broker = Broker::Tansu {
            process,
            bootstrap: relay_address.to_string(),
            relay: outage::Relay::start(relay_listener, ([127, 0, 0, 1], port).into()),
        };
        broker.wait_until_serving();
        broker
    }

    /// `mock`, `tansu` or `external`, for what a test prints.
    pub fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Tansu { .. } => "tansu",
            Broker::External(_) => "external",
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(cluster) => cluster.bootstrap_servers(),
            Broker::Tansu { bootstrap, .. } | Broker::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// Creates `topic` unless it exists.
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
                let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
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

    /// Producer properties a test must use on this broker. tansu 0.6.0 answers a fetch from
    /// an offset inside a record batch with the batches after it, so a consumer resuming
    /// mid-batch would skip the rest of that batch; one record per batch makes every offset
    /// a batch start. (Kafka and the mock cluster return the batch that holds the offset.)
    pub fn producer_properties(&self) -> &'static [&'static str] {
        match self {
            Broker::Tansu { .. } => &["batch.num.messages=1"],
            Broker::Mock(_) | Broker::External(_) => &[],
        }
    }

    /// Kafka settings for a Retrace client in a test on this broker.
    pub fn settings(&self) -> retrace_sdk::KafkaSettings {
        retrace_sdk::KafkaSettings::new(self.bootstrap())
            .with_properties(self.producer_properties().iter().copied())
            .expect("the broker's properties are name=value")
    }

    /// A service's common flags for a test on this broker: `file` as its configuration,
    /// checked for changes every 50 ms, and this broker with its producer properties.
    pub fn config_args(&self, file: &std::path::Path) -> retrace_config::CommonArgs {
        retrace_config::CommonArgs {
            config: Some(file.to_owned()),
            config_poll_ms: Some(50),
            kafka_bootstrap: Some(self.bootstrap()),
            kafka_properties: self
                .producer_properties()
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            ..retrace_config::CommonArgs::default()
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    fn wait_until_serving(&self) {
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

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { process, .. } = self {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// Generates one test per broker for each scenario `async fn name(broker: Broker)`.
#[macro_export]
macro_rules! on_every_broker {
    ($($scenario:ident),* $(,)?) => {
        mod mock {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Broker::mock()).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::Broker::real()).await
                }
            )*
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

/// Partition positions reported by an archive's `/v1/positions`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

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
    let config = retrace_auth::AuthConfig {
        enabled: false,
        ..retrace_auth::AuthConfig::default()
    };
    let settings = retrace_sdk::KafkaSettings::new(bootstrap);
    let auth = retrace_auth::ServiceAuth::start(&config, &settings, "test", shutdown)
        .await
        .expect("authentication switched off starts");
    let (guard, audit) = (auth.guard.clone(), auth.audit());
    (guard, audit, tokio::spawn(auth.run()))
}
