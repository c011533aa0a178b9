//! `retrace dev --demo`, the README's first command, run as a newcomer would: it comes up,
//! says where it is, has failed transactions to show, and stops cleanly on SIGTERM; on its
//! mock cluster, on Apache Kafka it is given, and on Apache Kafka it starts itself.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::DevServer;
use retrace_api::{Page, PositionView, TransactionStatus, TransactionSummary};
use retrace_tests::{KafkaCluster, PATIENCE, wait_for};

fn get_json<T: serde::de::DeserializeOwned>(url: &str, token: &str) -> Option<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let response = client.get(url).bearer_auth(token).send().await.ok()?;
        response.error_for_status().ok()?.json().await.ok()
    })
}

/// The first failed transaction of the demo, once there is one.
fn first_failed_transaction(dev: &DevServer) -> TransactionSummary {
    let url = format!("{}/v1/transactions?status=failed", dev.http());
    let failed: Page<TransactionSummary> = wait_for(
        "the demo to produce a failed transaction",
        Duration::from_secs(120),
        || {
            let page: Page<TransactionSummary> = get_json(&url, dev.token())?;
            (!page.items.is_empty()).then_some(page)
        },
    );
    failed.items.into_iter().next().unwrap()
}

/// SIGTERM, then the clean exit dev mode makes of it, having removed its dev.json.
fn stop(dev: &mut DevServer, data_dir: &Path) {
    let pid = dev.child.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    let status = wait_for("dev mode to stop after SIGTERM", PATIENCE, || {
        dev.child.try_wait().unwrap()
    });
    assert!(status.success(), "dev mode exited with {status}");
    assert!(
        !data_dir.join("dev.json").exists(),
        "a stopped dev server leaves no dev.json for the CLI to find"
    );
}

/// `retrace failed --since 1h` with `env` (and neither RETRACE_SERVER nor RETRACE_TOKEN
/// unless given there).
fn retrace_failed(env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_retrace"))
        .args(["failed", "--since", "1h"])
        .env_remove("RETRACE_SERVER")
        .env_remove("RETRACE_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn dev_mode_on_its_in_process_kafka_comes_up_with_failed_transactions_and_stops_cleanly() {
    dev_mode_comes_up_with_failed_demo_transactions_and_stops_cleanly(None, "mock-archive");
}

#[test]
fn dev_mode_on_apache_kafka_comes_up_with_failed_transactions_and_stops_cleanly() {
    let kafka = KafkaCluster::shared();
    dev_mode_comes_up_with_failed_demo_transactions_and_stops_cleanly(
        Some(kafka.bootstrap()),
        "archive",
    );
}

/// `retrace dev --kafka local` starts Apache Kafka itself, its data in the data directory:
/// it comes up on it, Kafka stops with it on SIGTERM, and a second start on the same data
/// directory resumes that Kafka (its records, its ports) and the archive (what it had).
#[test]
fn dev_mode_on_apache_kafka_it_starts_itself_stops_it_and_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = DevServer::start(dir.path(), 20, Some("local"));
    assert_eq!(dev.info["kafka"], "local", "{}", dev.info);
    let bootstrap = dev.info["kafka_bootstrap"].as_str().unwrap().to_owned();
    assert!(bootstrap.starts_with("127.0.0.1:"), "{}", dev.info);
    let failed = first_failed_transaction(&dev);
    let archived = archived_registrations(&dev);
    assert!(archived > 0, "the archive holds the demo's registrations");
    stop(&mut dev, dir.path());
    assert!(
        TcpStream::connect(&bootstrap).is_err(),
        "Apache Kafka still serves on {bootstrap} after dev mode stopped"
    );
    assert!(
        !dir.path().join("kafka/node-1/pid").exists(),
        "the launcher removes a node's pid file once the node has exited"
    );

    let dev = DevServer::start(dir.path(), 20, Some("local"));
    assert_eq!(
        dev.info["kafka_bootstrap"], bootstrap,
        "the same cluster, on its ports"
    );
    assert!(
        registrations_in_kafka(&bootstrap) >= archived,
        "Kafka kept the registrations of the first run"
    );
    let trace = format!("{}/v1/transactions/{}", dev.http(), failed.transaction_id);
    let kept: serde_json::Value = wait_for(
        "the archive to serve the first run's failed transaction",
        PATIENCE,
        || get_json(&trace, dev.token()),
    );
    assert_eq!(kept["status"], "failed", "{kept}");
    assert!(
        archived_registrations(&dev) >= archived,
        "the archive resumes where it stopped rather than starting afresh"
    );
}

/// The registrations the archive of `dev` has stored (the sum of its next offsets).
fn archived_registrations(dev: &DevServer) -> i64 {
    let url = format!("{}/v1/positions", dev.http());
    let positions: Vec<PositionView> = wait_for("the archive's positions", PATIENCE, || {
        get_json(&url, dev.token())
    });
    positions
        .iter()
        .filter(|p| p.topic == "registrations")
        .map(|p| p.next_offset)
        .sum()
}

/// The registrations Kafka at `bootstrap` holds (the sum of its high watermarks).
fn registrations_in_kafka(bootstrap: &str) -> i64 {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some("registrations"), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks("registrations", p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// `retrace dev --demo` on `kafka` (or its own mock cluster), keeping its archive in
/// `archive_dir` under the data directory.
fn dev_mode_comes_up_with_failed_demo_transactions_and_stops_cleanly(
    kafka: Option<&str>,
    archive_dir: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = DevServer::start(dir.path(), 20, kafka);

    let http = dev.http().to_owned();
    assert_eq!(http, format!("http://127.0.0.1:{}", dev.port));
    let bootstrap = dev.info["kafka_bootstrap"].as_str().unwrap();
    match kafka {
        Some(kafka) => assert_eq!(bootstrap, kafka),
        None => assert!(!bootstrap.is_empty()),
    }
    let token = dev.token().to_owned();
    assert!(token.starts_with("rtk_"), "an API token: {token}");
    let kind = if kafka.is_some() { "external" } else { "mock" };
    assert_eq!(dev.info["kafka"], kind, "{}", dev.info);

    let first = first_failed_transaction(&dev);
    assert_eq!(first.status, TransactionStatus::Failed);
    let failure = first.failure.as_ref().unwrap();
    assert!(
        ["validation", "certificates"].contains(&failure.consumer.as_str()),
        "{failure:?}"
    );

    // dev.json holds the admin token: its owner alone may read it.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("dev.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "dev.json's mode is {mode:o}");

    // The CLI finds the dev server in its dev.json, on its port (not the default 7070), with
    // its token: no --server, no --token.
    let data_dir = dir.path().to_str().unwrap();
    let listed = retrace_failed(&[("RETRACE_DATA_DIR", data_dir)]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains(&first.transaction_id), "{stdout}");
    // A server given explicitly wins over dev.json's.
    let elsewhere = format!("http://127.0.0.1:{}", retrace_tests::free_port());
    let refused = retrace_failed(&[
        ("RETRACE_DATA_DIR", data_dir),
        ("RETRACE_SERVER", &elsewhere),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&elsewhere), "{stderr}");

    stop(&mut dev, dir.path());
    assert!(
        dir.path().join(archive_dir).is_dir(),
        "the archive is kept in the data directory"
    );
}

/// On a cluster of three, dev mode's topics take the cluster's default replication (three,
/// `kafka-local --nodes 3`), Retrace's own included: one lost disk loses no audit record.
#[test]
fn dev_mode_on_three_nodes_replicates_retraces_own_topics() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    let kafka = KafkaCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let _dev = DevServer::start(dir.path(), 5, Some(kafka.bootstrap()));
    let client: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    let metadata = client
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    for own in [
        retrace_proto::AUDIT_TOPIC,
        retrace_proto::OUTCOMES_TOPIC,
        retrace_auth::DEFAULT_TOKENS_TOPIC,
    ] {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == own)
            .unwrap_or_else(|| panic!("dev mode created {own}"));
        for partition in topic.partitions() {
            assert_eq!(
                partition.replicas().len(),
                3,
                "{own}/{} has replicas {:?}",
                partition.id(),
                partition.replicas()
            );
        }
    }
}

/// Dev mode started the moment a fresh three-node cluster serves, when Retrace's topics are
/// created and their leaders not yet known to every broker, starts every time: its start-up
/// retries what Kafka answers meanwhile (`NotLeaderForPartition`, an unknown topic) instead of
/// exiting. Ten rounds, each on a new cluster (`RETRACE_TEST_FRESH_STARTS` sets how many).
#[test]
fn dev_mode_starts_on_a_cluster_that_has_just_come_up() {
    let rounds: usize = std::env::var("RETRACE_TEST_FRESH_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    for round in 1..=rounds {
        let kafka = KafkaCluster::start(3);
        let dir = tempfile::tempdir().unwrap();
        let mut dev = DevServer::start(dir.path(), 5, Some(kafka.bootstrap()));
        assert!(
            dev.child.try_wait().unwrap().is_none(),
            "round {round}: dev mode exited after writing dev.json"
        );
        let positions =
            get_json::<serde_json::Value>(&format!("{}/v1/positions", dev.http()), dev.token());
        assert!(
            positions.is_some(),
            "round {round}: the archive's API does not answer"
        );
        eprintln!("round {round} of {rounds}: dev mode up on a fresh three-node cluster");
    }
}
