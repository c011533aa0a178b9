//! `retrace dev --demo`, the README's first command, run as a newcomer would: it comes up,
//! says where it is, has failed transactions to show, and stops cleanly on SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::DevServer;
use retrace_archive::api::{Page, TransactionStatus, TransactionSummary};
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

    let failed: Page<TransactionSummary> = wait_for(
        "the demo to produce a failed transaction",
        Duration::from_secs(120),
        || {
            let page: Page<TransactionSummary> =
                get_json(&format!("{http}/v1/transactions?status=failed"), &token)?;
            (!page.items.is_empty()).then_some(page)
        },
    );
    let first = &failed.items[0];
    assert_eq!(first.status, TransactionStatus::Failed);
    let failure = first.failure.as_ref().unwrap();
    assert!(
        ["validation", "certificates"].contains(&failure.consumer.as_str()),
        "{failure:?}"
    );

    // The CLI finds the dev server's token in its dev.json: no --token needed.
    let listed = Command::new(env!("CARGO_BIN_EXE_retrace"))
        .args(["failed", "--since", "1h"])
        .env("RETRACE_SERVER", &http)
        .env("RETRACE_DATA_DIR", dir.path())
        .env_remove("RETRACE_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains(&first.transaction_id), "{stdout}");

    let pid = dev.child.id().to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    let status = wait_for("dev mode to stop after SIGTERM", PATIENCE, || {
        dev.child.try_wait().unwrap()
    });
    assert!(status.success(), "dev mode exited with {status}");
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
/// exiting. Three rounds here (each starts a cluster); `RETRACE_TEST_FRESH_STARTS=10` for more.
#[test]
fn dev_mode_starts_on_a_cluster_that_has_just_come_up() {
    let rounds: usize = std::env::var("RETRACE_TEST_FRESH_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
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
