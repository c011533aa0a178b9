//! The `retrace` binary against a running archive on librdkafka's mock cluster: a
//! transaction whose second event failed is traced, listed, exported and replayed, and every
//! way of failing exits with the code it promises.

mod common;

use common::{assert_exit, retrace};
use retrace_api::{Trace, TransactionStatus};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_tests::{
    Broker, PATIENCE, eventually, free_port, on_every_broker, start_archive, unique_topic,
};

/// Waits until the archive's trace of `transaction` satisfies `done`.
async fn trace_when(server: &str, transaction: &str, done: impl Fn(&Trace) -> bool) -> Trace {
    let url = format!("{server}/v1/transactions/{transaction}");
    eventually(
        &format!("the archive to trace {transaction}"),
        PATIENCE,
        || {
            let url = url.clone();
            let done = &done;
            async move {
                let trace: Trace = reqwest::get(&url).await.ok()?.json().await.ok()?;
                done(&trace).then_some(trace)
            }
        },
    )
    .await
}

async fn trace_list_export_and_replay_a_failed_transaction(broker: Broker) {
    let topic = unique_topic("registrations");
    broker.create_topic(&topic, 3).await;
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let archive = start_archive(&broker).await;
    let server = archive.url("");

    let subject = format!("beneficiary:{}", std::process::id());
    let publisher = Publisher::new(&KafkaSettings::new(broker.bootstrap())).unwrap();
    let submitted = Envelope::root("registration", "registration.submitted.v1")
        .with_subject(subject.clone())
        .with_payload("application/json", br#"{"child":"Ada"}"#.to_vec());
    let checked = Envelope::caused_by(&submitted, "validation", "registration.checked.v1");
    publisher.publish(&topic, &submitted).await.unwrap();
    publisher.publish(&topic, &checked).await.unwrap();
    for (event, status, error) in [
        (&submitted, OutcomeStatus::Processed, None),
        (
            &checked,
            OutcomeStatus::Failed,
            Some("birth date is in the future".to_owned()),
        ),
    ] {
        let outcome = Outcome::of(event, "validation", status, error, 1);
        publisher.publish_outcome(&outcome).await.unwrap();
    }
    let txn = submitted.transaction_id.as_str();
    trace_when(&server, txn, |t| {
        t.events.len() == 2
            && t.failure.is_some()
            && t.events.iter().all(|e| e.outcomes().next().is_some())
    })
    .await;

    // trace: the timeline, the outcomes, the failure and the tree.
    let traced = retrace(&server, &["trace", txn]).await;
    assert_exit(&traced, 0);
    println!("$ retrace trace {txn}\n{}", traced.stdout);
    for expected in [
        format!("Transaction {txn}: FAILED"),
        "registration.submitted.v1".to_owned(),
        "from registration".to_owned(),
        "validation: processed".to_owned(),
        "validation: failed (birth date is in the future)".to_owned(),
        format!("Failed at {topic} / registration.checked.v1 / validation"),
        format!(
            "  registration.submitted.v1 on {topic}  {}",
            submitted.event_id
        ),
        format!(
            "  └─ registration.checked.v1 on {topic}  {}",
            checked.event_id
        ),
    ] {
        assert!(
            traced.stdout.contains(&expected),
            "no {expected:?} in\n{}",
            traced.stdout
        );
    }
    let with_payload = retrace(&server, &["trace", txn, "--payload"]).await;
    assert!(
        with_payload.stdout.contains("\"child\": \"Ada\""),
        "{}",
        with_payload.stdout
    );

    // trace --json: the server's document.
    let json = retrace(&server, &["trace", txn, "--json"]).await;
    assert_exit(&json, 0);
    let document: Trace = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(document.transaction_id, txn);
    assert_eq!(document.status, TransactionStatus::Failed);

    // failed and subject list it.
    let failed = retrace(&server, &["failed", "--since", "1h"]).await;
    assert_exit(&failed, 0);
    println!("$ retrace failed --since 1h\n{}", failed.stdout);
    assert!(
        failed.stdout.starts_with("TRANSACTION"),
        "{}",
        failed.stdout
    );
    let row = failed.stdout.lines().find(|l| l.starts_with(txn)).unwrap();
    assert!(row.contains(&format!("{topic} / registration.checked.v1 / validation")));
    assert!(row.ends_with("birth date is in the future"));
    let none = retrace(&server, &["failed", "--topic", "no-such-topic"]).await;
    assert_exit(&none, 0);
    assert_eq!(
        none.stdout,
        "no failed transactions since 24h ago with topic no-such-topic\n"
    );
    let touched = retrace(&server, &["subject", &subject]).await;
    assert_exit(&touched, 0);
    assert!(touched.stdout.contains(txn) && touched.stdout.contains("failed"));

    // export: CSV with a header and the row; JSON as an array.
    let csv = retrace(&server, &["export", "--failed", "--format", "csv"]).await;
    assert_exit(&csv, 0);
    let mut lines = csv.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(
            "transaction_id,status,started_at,last_at,events,topics,subject_ids,failed_step,error"
        )
    );
    let row = lines.find(|l| l.starts_with(txn)).unwrap();
    assert!(row.ends_with(&format!(
        ",2,{topic},{subject},{topic}/registration.checked.v1/validation,birth date is in the future"
    )));
    let exported = retrace(
        &server,
        &["export", "--subject", &subject, "--format", "json"],
    )
    .await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&exported.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["transaction_id"], txn);

    // replay: the plan; a refusal without a terminal or --yes; then the replay itself.
    let replay = [
        "replay",
        txn,
        "--only-failed",
        "--reason",
        "date check fixed",
    ];
    let dry = retrace(&server, &[&replay[..], &["--dry-run"]].concat()).await;
    assert_exit(&dry, 0);
    assert!(
        dry.stdout
            .starts_with("Replay plan: 1 message of 1 transaction\n")
    );
    assert!(dry.stdout.contains(&checked.event_id));
    let unasked = retrace(&server, &replay).await;
    assert_exit(&unasked, 2);
    assert!(unasked.stderr.contains("pass --yes"), "{}", unasked.stderr);
    let replayed = retrace(&server, &[&replay[..], &["--yes"]].concat()).await;
    assert_exit(&replayed, 0);
    println!("$ retrace {} --yes\n{}", replay.join(" "), replayed.stdout);
    let replay_id = replayed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay id: "))
        .unwrap()
        .to_owned();
    assert!(
        replayed
            .stdout
            .contains("state: done, 1 of 1 message published")
    );
    trace_when(&server, txn, |t| {
        let copies = t.events.iter().flat_map(|e| &e.records);
        copies.filter(|r| r.replay_id.is_some()).count() == 1
    })
    .await;
    let after = retrace(&server, &["trace", txn]).await;
    assert_exit(&after, 0);
    println!("$ retrace trace {txn}\n{}", after.stdout);
    assert!(
        after
            .stdout
            .contains(&format!("Transaction {txn}: replayed"))
    );
    let copy_lines: Vec<&str> = after
        .stdout
        .lines()
        .skip_while(|l| !l.contains(&format!("(replay {replay_id})")))
        .take(2)
        .collect();
    assert!(
        copy_lines
            .first()
            .is_some_and(|l| l.contains("↻ replayed to ")),
        "the replayed copy under its event: {}",
        after.stdout
    );
    assert!(
        copy_lines.get(1).is_none_or(|l| !l.contains("failed")),
        "the original's failure is not the copy's: {}",
        after.stdout
    );
    // Authentication is off in this archive: the caller is anonymous.
    assert!(after.stdout.contains(&format!(
        "Replays\n  {replay_id}  done, 1 of 1 message published, by anonymous"
    )));
    let again = retrace(
        &server,
        &[
            "replay",
            txn,
            "--from",
            "not-an-event",
            "--reason",
            "x",
            "--yes",
        ],
    )
    .await;
    assert_exit(&again, 2);
    assert!(
        again.stderr.contains("the server refused from_event_id"),
        "{}",
        again.stderr
    );

    // Not found, and nothing to do: exit 1.
    let unknown = retrace(&server, &["trace", "no-such-transaction"]).await;
    assert_exit(&unknown, 1);
    assert_eq!(
        unknown.stderr,
        "retrace: no archived message belongs to transaction \"no-such-transaction\"\n"
    );
    let nothing = retrace(
        &server,
        &[
            "replay",
            "--failed",
            "--topic",
            "no-such-topic",
            "--reason",
            "x",
            "--yes",
        ],
    )
    .await;
    assert_exit(&nothing, 1);
    assert!(
        nothing.stderr.contains("nothing to replay"),
        "{}",
        nothing.stderr
    );

    archive.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_an_unreachable_server_exits_3() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["replay", "some-transaction"][..],
        &["replay", "--reason", "x"],
        &["replay", "t", "--failed", "--reason", "x"],
        &["replay", "t", "--reason", "   ", "--yes"],
        &["export", "--format", "csv"],
        &["failed", "--limit", "0"],
        // The query's filters belong to --failed alone; --rate and --max to a bulk replay.
        &["replay", "t", "--topic", "x", "--reason", "x"],
        &["replay", "t", "--rate", "5", "--reason", "x"],
        &["replay", "--incident", "i", "--failed", "--reason", "x"],
        &["replay", "--incident=i", "--since=1h", "--reason=x"],
        &["export", "--subject", "s", "--topic", "x"],
        &["export", "--incident", "i", "--since", "1h"],
        &["incidents", "--status", "broken"],
        &["incidents", "show", "i", "--limit", "501"],
    ] {
        let run = retrace(&nowhere, args).await;
        assert_exit(&run, 2);
    }
    let run = retrace(&nowhere, &["trace", "t"]).await;
    assert_exit(&run, 3);
    assert_eq!(
        run.stderr,
        format!(
            "retrace: cannot reach the Retrace server at {nowhere} (connection refused): is \
             `retrace dev` or the archive running? Set --server or RETRACE_SERVER\n"
        )
    );
    let run = retrace("localhost:7070", &["failed"]).await;
    assert_exit(&run, 2);
}

on_every_broker!(trace_list_export_and_replay_a_failed_transaction);

/// `retrace kafka acls --print`: each principal's ACLs under what they are for; an
/// application given one of Retrace's topics is a usage error. (`--apply` is tested on Apache
/// Kafka with an authorizer in tests/scenarios/acls.rs.)
#[tokio::test]
async fn kafka_acls_print_the_principals_and_refuse_retraces_topics_for_applications() {
    let printed = retrace(
        "http://127.0.0.1:9",
        &[
            "kafka",
            "acls",
            "--print",
            "--topic",
            "registrations",
            "--producer",
            "User:civil-registry=registrations,births.*",
        ],
    )
    .await;
    assert_exit(&printed, 0);
    for line in [
        "# archive User:retrace-archive: ",
        "ALLOW  User:retrace-archive     WRITE    TOPIC LITERAL  retrace.tokens",
        "ALLOW  User:retrace-gateway     WRITE    TOPIC LITERAL  retrace.audit",
        "ALLOW  User:civil-registry      WRITE    TOPIC PREFIXED births.",
    ] {
        assert!(
            printed.stdout.contains(line),
            "{line:?} in {}",
            printed.stdout
        );
    }
    assert!(
        !printed
            .stdout
            .contains("User:civil-registry      WRITE    TOPIC LITERAL  retrace.")
    );
    let refused = retrace(
        "http://127.0.0.1:9",
        &[
            "kafka",
            "acls",
            "--print",
            "--producer",
            "User:x=retrace.tokens",
        ],
    )
    .await;
    assert_exit(&refused, 2);
    assert!(
        refused.stderr.contains("retrace.tokens"),
        "{}",
        refused.stderr
    );
}
