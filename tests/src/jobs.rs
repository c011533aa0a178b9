//! What tests of the worker share: a queue's topics, a job, a gate that stays closed, a
//! local HTTP server (a webhook target, or a service's API), a worker running in the test,
//! and a webhook target that counts its calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use retrace_api::QueueStatus;
use retrace_proto::{Envelope, Job, JobPriority};
use retrace_worker::{
    Backoff, Handlers, JobError, JobHandler, QueueConfig, ReceivedJob, WebhookBody, Worker,
    WorkerConfig,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Broker, PATIENCE, auth_off, eventually, free_port, unique_topic};

/// Retries a few milliseconds apart, so a scenario's retries do not make it slow.
pub const FAST_BACKOFF: Backoff = Backoff {
    base_ms: 50,
    factor: 2.0,
    max_ms: 200,
};

/// A normal-priority job of `kind` from `source`, about beneficiary:7.
pub fn job(source: &str, kind: &str) -> Envelope {
    let mut envelope = Envelope::root(source, "job.requested.v1")
        .with_subject("beneficiary:7")
        .with_payload("application/json", br#"{"n":1}"#.to_vec());
    envelope.job = Some(Job {
        kind: kind.to_owned(),
        priority: JobPriority::Normal as i32,
        ..Job::default()
    });
    envelope
}

/// A job handler that fails with a retryable error ("renderer down (attempt N)") while
/// `failing` is set, and succeeds once it is cleared.
pub struct Flaky {
    pub failing: Arc<AtomicBool>,
}

impl JobHandler for Flaky {
    async fn run(&self, job: &ReceivedJob) -> Result<(), JobError> {
        match self.failing.load(Ordering::SeqCst) {
            true => Err(JobError::Retry(format!(
                "renderer down (attempt {})",
                job.attempt
            ))),
            false => Ok(()),
        }
    }
}

impl Flaky {
    /// A worker for `queue` whose only handler is a `Flaky`, failing until the returned flag
    /// is cleared; a job is dead-lettered after `max_attempts`, `backoff` apart.
    pub async fn worker(
        broker: &Broker,
        queue: &str,
        max_attempts: u32,
        backoff: Backoff,
    ) -> (RunningWorker, Arc<AtomicBool>) {
        let failing = Arc::new(AtomicBool::new(true));
        let mut config = WorkerConfig::new(broker.bootstrap());
        config.kafka = broker.settings();
        config.queues.insert(
            queue.to_owned(),
            QueueConfig {
                max_attempts,
                backoff,
                ..QueueConfig::default()
            },
        );
        let flaky = Flaky {
            failing: Arc::clone(&failing),
        };
        let running = RunningWorker::with_handler(broker, &config, queue, flaky).await;
        (running, failing)
    }
}

/// A gate whose only window starts in two hours: closed now, and for the whole test.
pub fn closed_gate() -> retrace_worker::gate::GateConfig {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let at = |hours: i64| {
        let time = now
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .expect("two hours from now is a time");
        format!("{:02}:{:02}", time.hour(), time.minute())
    };
    toml::from_str(&format!(
        "time_zone = \"UTC\"\nwindows = [{{ days = \"daily\", from = \"{}\", to = \"{}\" }}]\n",
        at(2),
        at(3)
    ))
    .expect("the closed gate is valid")
}

/// Serves `router` on a free loopback port; returns its base URL and the server's task.
pub async fn serve(router: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
        .await
        .expect("a free loopback port binds");
    let url = format!("http://{}", listener.local_addr().expect("a bound address"));
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the test server runs")
    });
    (url, server)
}

/// A worker running in the test, its `/v1/jobs/queues` served on a free port.
pub struct RunningWorker {
    worker: JoinHandle<()>,
    server: JoinHandle<()>,
    audit: JoinHandle<()>,
    shutdown: CancellationToken,
    status_url: String,
}

impl RunningWorker {
    pub async fn start(broker: &Broker, worker: Worker) -> RunningWorker {
        let shutdown = CancellationToken::new();
        let (guard, audit_sender, audit) = auth_off(&broker.bootstrap(), shutdown.clone()).await;
        let (url, server) = serve(worker.router(&guard, audit_sender)).await;
        let stop = shutdown.clone();
        let worker = tokio::spawn(async move { worker.run(stop).await.unwrap() });
        RunningWorker {
            worker,
            server,
            audit,
            shutdown,
            status_url: url,
        }
    }

    /// A worker whose only handler is `handler`, for `queue`.
    pub async fn with_handler(
        broker: &Broker,
        config: &WorkerConfig,
        queue: &str,
        handler: impl JobHandler,
    ) -> RunningWorker {
        let handlers = Handlers::new().queue(queue, handler);
        RunningWorker::start(broker, Worker::new(config, handlers).unwrap()).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.worker.await.unwrap();
        self.server.abort();
        self.audit.await.unwrap();
    }

    pub async fn status_when(
        &self,
        what: &str,
        ready: impl Fn(&QueueStatus) -> bool,
    ) -> QueueStatus {
        eventually(what, PATIENCE, || async {
            let statuses: Vec<QueueStatus> =
                reqwest::get(format!("{}/v1/jobs/queues", self.status_url))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
            statuses.into_iter().find(|s| ready(s))
        })
        .await
    }
}

/// A webhook target that answers by job kind (`ok` 204, `invalid` 422, `flaky` 502 then 200,
/// `busy` 429 then 200, anything else 200), counting calls per job id, and noting whether
/// every call's `Idempotency-Key` was its job id (`keys_match`, set to true by the test first).
#[derive(Clone, Default)]
pub struct WebhookTarget {
    pub calls: Arc<Mutex<HashMap<String, u32>>>,
    pub keys_match: Arc<AtomicBool>,
}

async fn answer(
    State(target): State<WebhookTarget>,
    headers: HeaderMap,
    Json(body): Json<WebhookBody>,
) -> axum::response::Response {
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key != body.job_id {
        target.keys_match.store(false, Ordering::SeqCst);
    }
    let calls = {
        let mut calls = target.calls.lock().unwrap();
        let count = calls.entry(body.job_id.clone()).or_default();
        *count += 1;
        *count
    };
    match (body.kind.as_str(), calls) {
        ("ok", _) => StatusCode::NO_CONTENT.into_response(),
        ("invalid", _) => StatusCode::UNPROCESSABLE_ENTITY.into_response(),
        ("flaky", 1) => StatusCode::BAD_GATEWAY.into_response(),
        ("busy", 1) => (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")]).into_response(),
        _ => StatusCode::OK.into_response(),
    }
}

/// A new queue whose jobs a running worker sends to `target`'s webhook, served by the
/// returned task.
pub async fn webhook_queue(
    broker: &Broker,
    prefix: &str,
    target: &WebhookTarget,
) -> (String, RunningWorker, JoinHandle<()>) {
    let (queue, config, server) = webhook_config(broker, prefix, target).await;
    let running =
        RunningWorker::start(broker, Worker::new(&config, Handlers::new()).unwrap()).await;
    (queue, running, server)
}

/// A new queue whose jobs go to `target`'s webhook, served by the returned task, and a
/// worker's configuration for it, for a test that changes it or starts several workers.
pub async fn webhook_config(
    broker: &Broker,
    prefix: &str,
    target: &WebhookTarget,
) -> (String, WorkerConfig, JoinHandle<()>) {
    let queue = unique_topic(prefix);
    broker.create_queue(&queue).await;
    let router = axum::Router::new()
        .route("/jobs", axum::routing::post(answer))
        .with_state(target.clone());
    let (url, server) = serve(router).await;
    let mut config = WorkerConfig::new(broker.bootstrap());
    config.kafka = broker.settings();
    config.queues.insert(
        queue.clone(),
        QueueConfig {
            webhook: Some(format!("{url}/jobs")),
            backoff: FAST_BACKOFF,
            ..QueueConfig::default()
        },
    );
    (queue, config, server)
}
