//! Topic provisioning on a real broker: what a starting service creates, what it leaves
//! alone, and `retrace topics check` (the real binary) reporting the drift.

mod common;

use std::collections::BTreeSet;

use common::{assert_exit, retrace};
use retrace_sdk::{Drift, ensure_topics};
use retrace_service::CommonArgs;
use retrace_tests::{Broker, on_every_broker, unique_topic};
use retrace_worker::WorkerArgs;

/// No server is involved; the address only satisfies the runner.
const NO_SERVER: &str = "http://127.0.0.1:9";

async fn missing_topics_are_created_and_a_different_existing_one_is_left_and_reported(
    broker: Broker,
) {
    let queue = unique_topic("provisioned");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.toml");
    std::fs::write(
        &file,
        format!(
            "[kafka]\nbootstrap = \"{}\"\n\n[topics]\npartitions = 2\n\n[queues.{queue}]\n\
             webhook = \"http://127.0.0.1:9/jobs\"\n",
            broker.bootstrap()
        ),
    )
    .unwrap();
    let config = WorkerArgs {
        common: CommonArgs {
            config: Some(file.clone()),
            ..CommonArgs::default()
        },
        ..WorkerArgs::default()
    }
    .resolve()
    .unwrap();
    // Someone created the bulk lane by hand, with 1 partition where the file says 2.
    let bulk = format!("retrace.jobs.{queue}.bulk");
    broker.create_topic(&bulk, 1).await;

    let needed = config.topics_needed();
    let provisioned = ensure_topics(&config.kafka, &config.provisioning, &needed, "test")
        .await
        .unwrap();

    let partition_drift = Drift::Partitions {
        topic: bulk.clone(),
        expected: 2,
        actual: 1,
    };
    assert_eq!(provisioned.drift, std::slice::from_ref(&partition_drift));
    let missing: BTreeSet<String> = needed
        .iter()
        .map(|spec| spec.name.clone())
        .filter(|name| *name != bulk)
        .collect();
    assert!(
        missing.contains(&format!("retrace.jobs.{queue}.dlq")),
        "{missing:?}"
    );
    let created: BTreeSet<String> = provisioned.created.iter().cloned().collect();
    let failed: BTreeSet<String> = provisioned.failed.iter().map(|(t, _)| t.clone()).collect();
    let check = retrace(
        NO_SERVER,
        &[
            "topics",
            "check",
            "--service",
            "worker",
            "--config",
            &file.display().to_string(),
        ],
    )
    .await;
    assert_exit(&check, 1);
    assert!(
        check
            .stdout
            .contains(&format!("{bulk}: 1 partitions, configured 2")),
        "{check:#?}"
    );
    match broker {
        // librdkafka's mock cluster has no CreateTopics API: every missing topic is reported
        // as not created, and the check lists each as missing.
        Broker::Mock(_) => {
            assert_eq!(created, BTreeSet::new());
            assert_eq!(failed, missing);
            for topic in &missing {
                assert!(
                    check.stdout.contains(&format!("{topic}: missing")),
                    "{check:#?}"
                );
            }
        }
        _ => {
            assert_eq!(created, missing);
            assert_eq!(failed, BTreeSet::new());
            assert!(!check.stdout.contains("missing"), "{check:#?}");
            // A second start finds everything there and creates nothing.
            let again = ensure_topics(&config.kafka, &config.provisioning, &needed, "test")
                .await
                .unwrap();
            assert_eq!(again.created, Vec::<String>::new());
            assert_eq!(again.drift, [partition_drift]);
        }
    }
}

on_every_broker!(missing_topics_are_created_and_a_different_existing_one_is_left_and_reported);
