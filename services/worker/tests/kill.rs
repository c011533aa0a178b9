//! The worker binary, SIGKILLed while a job runs, loses no job: restarted, it runs every job
//! at least once.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, PATIENCE, eventually, free_port, job, on_every_broker, serve, unique_topic,
};
use retrace_worker::{WebhookBody, enqueue};

fn spawn_worker(broker: &Broker, config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_retrace-worker"))
        .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
        // A killed member must leave the group quickly for the next one to get its partitions.
        .env(
            "RETRACE_KAFKA_PROPERTIES",
            ["session.timeout.ms=6000", "heartbeat.interval.ms=500"]
                .iter()
                .chain(broker.producer_properties())
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("RETRACE_CONFIG", config)
        // The test creates the topics it uses; librdkafka's mock cluster has no CreateTopics
        // API, and each start would wait for it to time out.
        .env("RETRACE_TOPICS_CREATE", "false")
        .env("RETRACE_HTTP", format!("127.0.0.1:{}", free_port()))
        .env("RETRACE_LOG", "warn")
        .spawn()
        .expect("the retrace-worker binary starts")
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

async fn sigkilled_worker_loses_no_job(broker: Broker) {
    const JOBS: usize = 20;
    let queue = unique_topic("kill");
    broker.create_queue(&queue).await;
    let target = Blocking::default();
    target.blocking.store(true, Ordering::SeqCst);
    let router = axum::Router::new()
        .route("/jobs", axum::routing::post(blocking_answer))
        .with_state(target.clone());
    let (url, server) = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        // Authentication is about who may call the worker's API, not what this test is about.
        format!(
            "[auth]\nenabled = false\n\n[queues.{queue}]\nwebhook = \"{url}/jobs\"\n\
             concurrency = 2\nbackoff = {{ base_ms = 50, factor = 2.0, max_ms = 200 }}\n"
        ),
    )
    .unwrap();
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..JOBS {
        let job = job("kill-test", "certificate.render");
        ids.insert(job.event_id.clone());
        enqueue(&publisher, &queue, job).await.unwrap();
    }
    let mut worker = spawn_worker(&broker, &config);
    eventually("a job blocked mid-run", PATIENCE, || async {
        (!target.started.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    target.blocking.store(false, Ordering::SeqCst);
    target.release.notify_waiters();

    let mut worker = spawn_worker(&broker, &config);
    eventually("every job completed", PATIENCE, || async {
        (*target.completed.lock().unwrap() == ids).then_some(())
    })
    .await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    server.abort();
}

on_every_broker!(sigkilled_worker_loses_no_job);
