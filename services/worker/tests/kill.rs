//! The worker binary loses no job: SIGKILLed while a job runs, or at random moments again
//! and again while jobs are enqueued, it runs every job at least once once restarted, each
//! ending processed or dead-lettered as its outcomes report; restarted with SIGTERM (a
//! rolling restart), it drains and runs each job exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use retrace_proto::{OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, Generator, PATIENCE, RESTARTED_SESSION_TIMEOUT, Resumes, ServiceProcess, Stop,
    eventually, eventually_explained, free_port, job, next_kill_at, on_every_broker,
    restarted_consumer_env, serve, service_binary, unique_topic,
};
use retrace_worker::{WebhookBody, enqueue};
use tempfile::TempDir;
use tokio::task::JoinHandle;

fn spawn_worker(broker: &Broker, config: &std::path::Path) -> ServiceProcess {
    ServiceProcess::spawn(
        Command::new(service_binary(
            "retrace-worker",
            env!("CARGO_BIN_EXE_retrace-worker"),
        ))
        .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
        // A static member: the next process takes the killed one's partitions at once.
        .env("RETRACE_WORKER_INSTANCE_ID", "kill-test-worker")
        .envs(restarted_consumer_env(broker))
        .env("RETRACE_CONFIG", config)
        // The test creates the topics it uses; librdkafka's mock cluster has no CreateTopics
        // API, and each start would wait for it to time out.
        .env("RETRACE_TOPICS_CREATE", "false")
        .env("RETRACE_HTTP", format!("127.0.0.1:{}", free_port()))
        .env("RETRACE_LOG", "warn"),
    )
}

/// Blocks calls while `blocking`; records the jobs completed after.
#[derive(Clone, Default)]
struct Blocking {
    blocking: Arc<AtomicBool>,
    started: Arc<Mutex<Vec<String>>>,
    completed: Arc<Mutex<BTreeSet<String>>>,
    release: Arc<tokio::sync::Notify>,
}

async fn blocking_answer(
    State(target): State<Blocking>,
    Json(body): Json<WebhookBody>,
) -> StatusCode {
    if target.blocking.load(Ordering::SeqCst) {
        let released = target.release.notified();
        target.started.lock().unwrap().push(body.job_id);
        released.await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    target.completed.lock().unwrap().insert(body.job_id);
    StatusCode::OK
}

/// A new queue, a webhook answering its jobs with `jobs`, and a worker config that sends the
/// queue's jobs there with quick retries.
struct Setup {
    queue: String,
    config: PathBuf,
    server: JoinHandle<()>,
    _dir: TempDir,
}

async fn set_up(
    broker: &Broker,
    prefix: &str,
    jobs: axum::routing::MethodRouter,
    worker_settings: &str,
    queue_settings: &str,
) -> Setup {
    let queue = unique_topic(prefix);
    broker.create_queue(&queue).await;
    let (url, server) = serve(axum::Router::new().route("/jobs", jobs)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        // Authentication is about who may call the worker's API, not what this test is about.
        format!(
            "[auth]\nenabled = false\n\n[worker]\n{worker_settings}\n\n\
             [queues.{queue}]\nwebhook = \"{url}/jobs\"\n{queue_settings}\n\
             backoff = {{ base_ms = 50, factor = 2.0, max_ms = 200 }}\n"
        ),
    )
    .unwrap();
    Setup {
        queue,
        config,
        server,
        _dir: dir,
    }
}

async fn sigkilled_worker_loses_no_job(broker: Broker) {
    const JOBS: usize = 20;
    let target = Blocking::default();
    target.blocking.store(true, Ordering::SeqCst);
    let jobs = axum::routing::post(blocking_answer).with_state(target.clone());
    let Setup {
        queue,
        config,
        server,
        _dir,
    } = set_up(&broker, "kill", jobs, "", "concurrency = 2").await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..JOBS {
        let job = job("kill-test", "certificate.render");
        ids.insert(job.event_id.clone());
        enqueue(&publisher, &queue, job).await.unwrap();
    }
    let worker = spawn_worker(&broker, &config);
    eventually("a job blocked mid-run", PATIENCE, || async {
        (!target.started.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    worker.stop(Stop::Kill);
    target.blocking.store(false, Ordering::SeqCst);
    target.release.notify_waiters();

    let worker = spawn_worker(&broker, &config);
    eventually("every job completed", PATIENCE, || async {
        (*target.completed.lock().unwrap() == ids).then_some(())
    })
    .await;
    worker.stop(Stop::Kill);
    server.abort();
}

/// The kind of job the loop's webhook refuses for good (422), so it is dead-lettered.
const DOOMED: &str = "doomed.render";
const KILLS: usize = 50;
const RESTARTS: usize = 15;
/// Stops land after 1 to this many new webhook calls.
const STOP_SPREAD: i64 = 30;

/// Counts every call, and the successful runs of each job.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicI64>,
    runs: Arc<Mutex<BTreeMap<String, usize>>>,
}

async fn counting_answer(
    State(target): State<Counting>,
    Json(body): Json<WebhookBody>,
) -> StatusCode {
    target.calls.fetch_add(1, Ordering::SeqCst);
    if body.kind == DOOMED {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    *target.runs.lock().unwrap().entry(body.job_id).or_default() += 1;
    StatusCode::OK
}

/// Every job's last outcome from `consumer`, read from the outcomes topic as they come.
fn follow_outcomes(
    broker: &Broker,
    consumer: String,
) -> (
    Arc<Mutex<BTreeMap<String, OutcomeStatus>>>,
    tokio::task::JoinHandle<()>,
) {
    let outcomes = Arc::new(Mutex::new(BTreeMap::new()));
    let reader: StreamConsumer = broker
        .client_config()
        .set("group.id", unique_topic("outcome-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[OUTCOMES_TOPIC]).unwrap();
    let task = tokio::spawn({
        let outcomes = Arc::clone(&outcomes);
        async move {
            let mut stream = reader.stream();
            while let Some(message) = stream.next().await {
                let Ok(message) = message else { continue };
                let Ok(outcome) = Outcome::decode(message.payload().unwrap_or_default()) else {
                    continue;
                };
                if outcome.consumer == consumer {
                    let status = outcome.status();
                    outcomes.lock().unwrap().insert(outcome.event_id, status);
                }
            }
        }
    });
    (outcomes, task)
}

/// Stops the worker `stops` times the way `stop` says while jobs are enqueued; then every
/// acknowledged job must end processed, or failed for good (a 422) and so dead-lettered, as
/// its last outcome says; and with SIGTERM no job may run twice.
async fn worker_stopped_in_a_loop(broker: Broker, stop: Stop, stops: usize) {
    let target = Counting::default();
    let jobs = axum::routing::post(counting_answer).with_state(target.clone());
    let Setup {
        queue,
        config,
        server,
        _dir,
    } = set_up(
        &broker,
        "kill-loop",
        jobs,
        "shutdown_grace_ms = 10000",
        "concurrency = 8\nmax_attempts = 2",
    )
    .await;
    let (outcomes, reader) = follow_outcomes(&broker, format!("worker:{queue}"));
    let publisher = Arc::new(Publisher::new(&broker.settings()).unwrap());
    // At most ~50 jobs/s: a worker restarted fifty times, each restart waiting out the killed
    // member's session, still drains the backlog within the final wait.
    let generator = Generator::start(1, Duration::from_millis(20), {
        let queue = queue.clone();
        move |n| {
            let (publisher, queue) = (Arc::clone(&publisher), queue.clone());
            async move {
                let kind = if n % 10 == 0 {
                    DOOMED
                } else {
                    "certificate.render"
                };
                let job = job("kill-loop", kind);
                let id = job.event_id.clone();
                enqueue(&publisher, &queue, job).await.ok().map(|_| id)
            }
        }
    });

    // From each restart's spawn to the first webhook call of the new process (the first
    // process joins a new group: not a restart).
    let mut resumes = Resumes::new(&broker);
    for restart in 0..stops {
        // The previous process is gone: every call from now on comes from this one.
        let before = target.calls.load(Ordering::SeqCst);
        let stop_at = next_kill_at(before, STOP_SPREAD);
        let spawned = Instant::now();
        let worker = spawn_worker(&broker, &config);
        // Patient beyond the session timeout, so that a restart waiting for the dead
        // member's eviction fails on what it took, not on this wait.
        eventually(
            "the new process's first webhook call",
            2 * RESTARTED_SESSION_TIMEOUT,
            || {
                let count = target.calls.load(Ordering::SeqCst);
                async move { (count > before).then_some(()) }
            },
        )
        .await;
        if restart > 0 {
            resumes.record(restart, spawned.elapsed());
        }
        eventually(&format!("{stop_at} webhook calls"), PATIENCE, || {
            let count = target.calls.load(Ordering::SeqCst);
            async move { (count >= stop_at).then_some(()) }
        })
        .await;
        worker.stop(stop);
    }
    let enqueued = generator.finish().await;

    let worker = spawn_worker(&broker, &config);
    let settled = |status: &OutcomeStatus| {
        matches!(
            status,
            OutcomeStatus::Processed | OutcomeStatus::Failed | OutcomeStatus::DeadLettered
        )
    };
    let unsettled = || {
        let outcomes = outcomes.lock().unwrap();
        enqueued
            .iter()
            .filter(|id| !outcomes.get(*id).is_some_and(settled))
            .map(|id| (id.clone(), outcomes.get(id).copied()))
            .collect::<Vec<_>>()
    };
    eventually_explained(
        3 * PATIENCE,
        || {
            let settled = unsettled().is_empty();
            async move { settled.then_some(()) }
        },
        || {
            let unsettled = unsettled();
            format!(
                "with {} of {} jobs without a final outcome (id, last outcome): {unsettled:?}",
                unsettled.len(),
                enqueued.len()
            )
        },
    )
    .await;
    worker.stop(Stop::Terminate);
    // Dropping the reader's consumer closes it (it leaves its group): wait for that while
    // the broker still runs, or the close waits forever on a broker that is gone.
    reader.abort();
    let _ = reader.await;
    server.abort();

    let runs = target.runs.lock().unwrap();
    let outcomes = outcomes.lock().unwrap();
    let dead_lettered = enqueued
        .iter()
        .filter(|id| outcomes[*id] != OutcomeStatus::Processed)
        .count();
    let processed_without_a_run: Vec<_> = enqueued
        .iter()
        .filter(|id| outcomes[*id] == OutcomeStatus::Processed && !runs.contains_key(*id))
        .collect();
    assert!(
        processed_without_a_run.is_empty(),
        "reported processed but never run: {processed_without_a_run:?}"
    );
    let ran_twice = runs.values().filter(|n| **n > 1).count();
    if stop == Stop::Terminate {
        assert_eq!(ran_twice, 0, "a rolling restart ran jobs twice");
    }
    println!(
        "worker {stop:?} loop: stops={stops} jobs={} dead_lettered={dead_lettered} lost=0 \
         ran_twice={ran_twice} {resumes} on {}",
        enqueued.len(),
        broker.name()
    );
}

async fn sigkilled_worker_in_a_loop_loses_no_job(broker: Broker) {
    worker_stopped_in_a_loop(broker, Stop::Kill, KILLS).await;
}

async fn rolling_restarts_of_the_worker_lose_no_job_and_run_none_twice(broker: Broker) {
    worker_stopped_in_a_loop(broker, Stop::Terminate, RESTARTS).await;
}

on_every_broker!(
    sigkilled_worker_loses_no_job,
    sigkilled_worker_in_a_loop_loses_no_job,
    rolling_restarts_of_the_worker_lose_no_job_and_run_none_twice
);
