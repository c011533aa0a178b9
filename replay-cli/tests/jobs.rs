//! `retrace jobs` against a worker running in the test on librdkafka's mock cluster: the
//! status table, a job that dead-letters, its redrive (plan, refusal without a terminal,
//! dry run, redrive), the backlog of a closed queue, and every way of failing with its exit
//! code.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{assert_exit, retrace};
use retrace_api::QueueStatus;
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_tests::{
    Broker, Flaky, PATIENCE, auth_off, closed_gate, eventually, free_port, job, on_every_broker,
    serve, unique_topic,
};
use retrace_worker::{Backoff, Handlers, QueueConfig, QueueTopics, Worker, WorkerConfig, enqueue};
use tokio_util::sync::CancellationToken;

/// The cells of `queue`'s row in the status table (the reason, last, split too).
fn row(table: &str, queue: &str) -> Vec<String> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(queue))
        .unwrap_or_else(|| panic!("no row for {queue} in\n{table}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

const DONE: usize = 4;
const DEAD_LETTERED: usize = 6;

/// The worker's status of `queue`, once `ready` holds for it.
async fn status_when(
    server: &str,
    queue: &str,
    what: &str,
    ready: impl Fn(&QueueStatus) -> bool,
) -> QueueStatus {
    let url = format!("{server}/v1/jobs/queues");
    eventually(what, PATIENCE, || async {
        let statuses: Vec<QueueStatus> = reqwest::get(&url).await.ok()?.json().await.ok()?;
        statuses.into_iter().find(|s| s.queue == queue && ready(s))
    })
    .await
}

async fn status_dead_letter_and_redrive(broker: Broker) {
    let queue = unique_topic("certificates");
    let closed = unique_topic("statistics");
    broker.create_queue(&queue).await;
    broker.create_queue(&closed).await;
    let settings = KafkaSettings::new(broker.bootstrap());
    let mut config = WorkerConfig::new(broker.bootstrap());
    config.kafka = settings.clone();
    let fast = Backoff {
        base_ms: 20,
        factor: 2.0,
        max_ms: 100,
    };
    config.queues.insert(
        queue.clone(),
        QueueConfig {
            max_attempts: 2,
            backoff: fast,
            ..QueueConfig::default()
        },
    );
    config.queues.insert(
        closed.clone(),
        QueueConfig {
            gate: closed_gate(),
            ..QueueConfig::default()
        },
    );
    let failing = Arc::new(AtomicBool::new(true));
    let flaky = || Flaky {
        failing: Arc::clone(&failing),
    };
    let handlers = Handlers::new()
        .queue(&queue, flaky())
        .queue(&closed, flaky());
    let worker = Worker::new(&config, handlers).unwrap();
    let shutdown = CancellationToken::new();
    let (guard, audit, auditing) = auth_off(&broker.bootstrap(), shutdown.clone()).await;
    let (server, http) = serve(worker.router(&guard, audit)).await;
    let running = tokio::spawn(worker.run(shutdown.clone()));

    // Both queues, their gates and why.
    let status = retrace(&server, &["jobs", "status"]).await;
    assert_exit(&status, 0);
    println!("$ retrace jobs status\n{}", status.stdout);
    assert!(status.stdout.starts_with("QUEUE "), "{}", status.stdout);
    assert_eq!(row(&status.stdout, &queue)[1], "open");
    let closed_row = row(&status.stdout, &closed);
    assert_eq!(closed_row[1], "closed");
    assert!(
        closed_row.join(" ").contains("outside window until"),
        "{closed_row:?}"
    );

    // The closed queue's jobs wait in Kafka: its backlog.
    let publisher = Publisher::new(&settings).unwrap();
    for _ in 0..3 {
        enqueue(&publisher, &closed, job("jobs-test", "certificate.render"))
            .await
            .unwrap();
    }
    status_when(&server, &closed, "three jobs pending", |s| {
        s.pending == Some(3)
    })
    .await;

    // A job that fails twice dead-letters.
    let dead = job("jobs-test", "certificate.render");
    let id = dead.event_id.clone();
    enqueue(&publisher, &queue, dead).await.unwrap();
    status_when(&server, &queue, "the job dead-lettered", |s| {
        s.dead_lettered == 1
    })
    .await;
    let status = retrace(&server, &["jobs", "status"]).await;
    assert_exit(&status, 0);
    println!("$ retrace jobs status\n{}", status.stdout);
    let cells = row(&status.stdout, &queue);
    assert_eq!((&*cells[DEAD_LETTERED], &*cells[DONE]), ("1", "0"));
    assert_eq!(row(&status.stdout, &closed)[2], "3", "pending");

    // The plan, and no redrive without a terminal or --yes.
    let redrive = [
        "jobs",
        "redrive",
        &queue,
        "--all",
        "--reason",
        "renderer back",
    ];
    let unasked = retrace(&server, &redrive).await;
    assert_exit(&unasked, 2);
    assert!(
        unasked.stdout.starts_with(&format!(
            "Redrive plan: 1 dead-lettered job of queue {queue}\n"
        )),
        "{}",
        unasked.stdout
    );
    assert!(unasked.stdout.contains(&id));
    assert!(unasked.stderr.contains("pass --yes"), "{}", unasked.stderr);
    let dry = retrace(&server, &[&redrive[..], &["--dry-run"]].concat()).await;
    assert_exit(&dry, 0);
    assert!(dry.stdout.ends_with("dry run: nothing was redriven\n"));

    // Redrive: the job runs again, and is done.
    failing.store(false, Ordering::SeqCst);
    let redriven = retrace(
        &server,
        &[&redrive[..], &["--yes", "--rate", "50"]].concat(),
    )
    .await;
    assert_exit(&redriven, 0);
    println!("$ retrace {} --yes\n{}", redrive.join(" "), redriven.stdout);
    assert!(
        redriven.stdout.contains(&format!(
            "redriven: 1 job of queue {queue}, back on its lane\n  job {id}  → {}\n",
            QueueTopics::of(&queue).normal
        )),
        "{}",
        redriven.stdout
    );
    status_when(&server, &queue, "the redriven job done", |s| s.done == 1).await;
    let status = retrace(&server, &["jobs", "status"]).await;
    assert_exit(&status, 0);
    println!("$ retrace jobs status\n{}", status.stdout);
    assert_eq!(row(&status.stdout, &queue)[DONE], "1");
    let json = retrace(&server, &["jobs", "status", "--json"]).await;
    assert_exit(&json, 0);
    let statuses: Vec<QueueStatus> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(statuses.len(), 2);
    // Offsets are committed every second: the backlog drains to nothing.
    status_when(&server, &queue, "nothing pending", |s| s.pending == Some(0)).await;

    // Usage errors exit 2; an unknown queue, or nothing to redrive, exits 1.
    for args in [
        &["jobs", "redrive", &queue, "--all"][..],
        &["jobs", "redrive", &queue, "--reason", "x"],
        &[
            "jobs", "redrive", &queue, "--all", "--job", "j", "--reason", "x",
        ],
        &[
            "jobs", "redrive", &queue, "--all", "--reason", "  ", "--yes",
        ],
    ] {
        assert_exit(&retrace(&server, args).await, 2);
    }
    let unknown = retrace(
        &server,
        &["jobs", "redrive", "no-such-queue", "--all", "--reason", "x"],
    )
    .await;
    assert_exit(&unknown, 1);
    assert!(
        unknown.stderr.contains("has no queue \"no-such-queue\""),
        "{}",
        unknown.stderr
    );
    let missing = [
        "jobs",
        "redrive",
        &queue,
        "--job",
        "no-such-job",
        "--reason",
        "x",
    ];
    let missing = retrace(&server, &missing).await;
    assert_exit(&missing, 1);
    assert!(
        missing
            .stdout
            .contains("not dead-lettered (not found): no-such-job")
    );

    // The API itself: 404 for an unknown queue, 400 naming the field.
    let http_client = reqwest::Client::new();
    let post = |queue: &str, body: serde_json::Value| {
        http_client
            .post(format!("{server}/v1/jobs/queues/{queue}/redrive"))
            .json(&body)
            .send()
    };
    let answer = post(
        "no-such-queue",
        serde_json::json!({"all": true, "reason": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 404);
    let answer = post(&queue, serde_json::json!({"all": true}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let refusal: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(refusal["field"], "reason");

    shutdown.cancel();
    running.await.unwrap().unwrap();
    auditing.await.unwrap();
    http.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_a_worker_is_named() {
    let (other, http) = serve(axum::Router::new()).await;
    let run = retrace(&other, &["jobs", "status"]).await;
    assert_exit(&run, 1);
    assert!(
        run.stderr
            .contains("point --server at the worker (default port 7072)"),
        "{}",
        run.stderr
    );
    http.abort();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    assert_exit(&retrace(&nowhere, &["jobs", "status"]).await, 3);
    let help = retrace(&nowhere, &["jobs", "redrive", "--help"]).await;
    assert_exit(&help, 0);
    assert!(help.stdout.contains("port 7072"), "{}", help.stdout);
}

on_every_broker!(status_dead_letter_and_redrive);
