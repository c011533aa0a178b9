//! The harness for Retrace's end-to-end tests: the services started in-process or as
//! processes, on the real Kafka brokers of `retrace-fixtures` (re-exported here), and ways to
//! wait for a condition without sleeping blindly.
//!
//! Every scenario runs twice (see [`on_every_broker!`]): on librdkafka's in-process mock
//! cluster, and on Apache Kafka: one KRaft node started through `tests/kafka/kafka-local`
//! and shared by the tests of one binary, or the Kafka named by `RETRACE_TEST_KAFKA=host:port`.

mod archive;
mod archived;
mod disk;
mod gateway;
pub mod helm;
mod jobs;
mod kill;
pub mod prometheus;
mod topic;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use archive::{RunningArchive, create_archive_topics, start_archive};
pub use archived::{
    archived_copy, check_exactly_once, in_archive, metric_sum, wait_until_archived,
};
pub use disk::SmallFilesystem;
pub use gateway::{Answer, RunningGateway, spawn_gateway, start_gateway, start_gateway_on};
pub use jobs::{
    FAST_BACKOFF, Flaky, RunningWorker, WebhookTarget, closed_gate, job, serve, webhook_config,
    webhook_queue,
};
pub use kill::{
    Generator, RESTARTED_SESSION_TIMEOUT, Resumes, ServiceProcess, Stop, archive_process,
    next_kill_at, restarted_consumer_env, service_binary, spawn_gateway_process,
};
pub use retrace_fixtures::{
    Broker, KafkaCluster, PATIENCE, eventually, eventually_explained, free_port, kafka_launcher,
    wait_for,
};
pub use topic::{committed_offsets, messages_on, read_topic};

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

/// The repository's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// Fails if git tracks a file under `paths` (in the repository), naming them: `what` they
/// are. Passes where git cannot tell (no git, or no checkout).
pub fn assert_not_checked_in(paths: &[&str], what: &str) {
    let listed = Command::new("git")
        .arg("ls-files")
        .args(paths)
        .current_dir(repo())
        .output();
    if let Ok(listed) = listed
        && listed.status.success()
    {
        assert!(
            listed.stdout.is_empty(),
            "{what} are checked in: {}",
            String::from_utf8_lossy(&listed.stdout)
        );
    }
}

/// The JSON answer to `request`, which must be sent and answered with a `T`.
pub async fn json_answer<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
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
pub use retrace_api::PositionView as Position;

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

/// A service's common flags for a test on `broker`: `file` as its configuration, checked for
/// changes every 50 ms, and that broker.
pub fn config_args(broker: &Broker, file: &std::path::Path) -> retrace_service::CommonArgs {
    retrace_service::CommonArgs {
        config: Some(file.to_owned()),
        config_poll_ms: Some(50),
        kafka_bootstrap: Some(broker.bootstrap()),
        signing_keys: Some(TEST_SIGNING_KEY.to_owned()),
        ..retrace_service::CommonArgs::default()
    }
}

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
