//! The off-peak worker: runs jobs queued on Kafka (`retrace.jobs.<queue>`) when the system
//! is quiet, so work that need not happen now never adds to a peak. Urgent jobs and near
//! deadlines still run; failures retry through a delayed retry topic, then dead-letter.
//!
//! # Topics of a queue
//!
//! | topic | what |
//! |---|---|
//! | `retrace.jobs.<q>` | normal jobs: run while the gate is open |
//! | `retrace.jobs.<q>.urgent` | urgent jobs: never gated |
//! | `retrace.jobs.<q>.bulk` | bulk jobs: run once the gate has been open `bulk_after_ms` |
//! | `retrace.jobs.<q>.retry` | copies waiting for their next attempt, or their `not_before` |
//! | `retrace.jobs.<q>.dlq` | jobs out of attempts, or failed permanently |
//!
//! Jobs are enqueued with [`enqueue`] (the lane follows `Envelope.job.priority`). One consumer
//! per queue, in group `retrace-worker.<q>`, reads the three lanes and the retry topic;
//! processes sharing a queue share its partitions.
//!
//! # Gating without holding jobs
//!
//! A job that may not run now (gate closed, bulk too early, retry not yet due) is not kept:
//! its partition is paused and, when the job may run, sought back to its offset and resumed.
//! So at most the head of each waiting partition has been read, and a head whose deadline
//! comes near runs regardless (it is looked at again then). A target answering 429/503 with
//! `Retry-After` pauses all three lanes of the queue for that long. Within an open gate,
//! `concurrency` and `rate_per_s` limit the queue in each process.
//!
//! # Retries
//!
//! A failed attempt is re-published, with its original key, value and headers, to the retry
//! topic with `retrace-job-attempt` (the next attempt), `retrace-job-due-at` (epoch ms) and
//! one more `retrace-job-error` header (`attempt 2: HTTP 503 from http://…`). The delay is
//! exponential with half jitter (`backoff`), at least the target's `Retry-After`. After
//! `max_attempts` (the job's, else the queue's), or at once on a permanent failure (a 4xx),
//! the copy goes to the dead-letter topic instead. [`redrive`] moves jobs back.
//!
//! **One retry topic, not delay tiers.** Copies on one retry partition are not in due order
//! (backoffs differ). The runner never sleeps on a partition: a head not yet due pauses that
//! partition until it is due. A copy due earlier, behind a later one, thus waits until the
//! later one is due: at most the longest backoff (`backoff.max_ms`), and in practice little,
//! since copies keyed by one transaction tend to share a partition and a schedule. Tiered
//! topics (`.retry.5s`, `.retry.1m`, …) would make each partition FIFO in due time, at the
//! cost of more topics to create and watch; a single topic keeps operations simple, and the
//! bound above is documented instead.
//!
//! # At least once
//!
//! An offset is stored for commit only once its job is settled: done (outcome published),
//! retried onward or dead-lettered (copy acknowledged by Kafka, then outcome), and only when
//! every earlier offset of the partition is settled too. A worker killed mid-job loses
//! nothing; the job runs again, and handlers receive the job id as idempotency key.
//!
//! # Outcomes
//!
//! Every attempt publishes an `Outcome` from consumer `worker:<q>`: `PROCESSED`, `RETRYING`,
//! `FAILED` (permanent) or `DEAD_LETTERED` (out of attempts), with the attempt number and
//! error, so a trace shows the job's attempts inside its transaction.
//!
//! # Metrics
//!
//! `retrace_worker_jobs_total{queue,status}` (`processed`, `retrying`, `failed`,
//! `dead_lettered`, `deferred`), `retrace_worker_job_seconds{queue}`,
//! `retrace_worker_running{queue}`, `retrace_worker_redrives_total{queue,dry_run,result}`,
//! plus Kafka trouble, pauses and slow-downs (`events.rs`).
//!
//! # HTTP
//!
//! `GET /v1/jobs/queues`: per queue, the gate and why, `pending` (the group's backlog in
//! Kafka), this process's counts and `rate_per_s` ([`retrace_api::QueueStatus`]).
//! `GET /v1/config`: the configuration running ([`serve`]).
//!
//! # Reload
//!
//! [`serve`] follows a [`Reloader`]: each queue's `[queues.<q>.gate]` (windows, signals,
//! thresholds) applies to its running gate at once. A queue's consumer reads topics named
//! after the queue, so no setting changes its topic set, and no reload re-creates it; queues
//! added or removed, and a queue's other settings, take effect at the next start (the reload
//! says so in its log).
//! `POST /v1/jobs/queues/{queue}/redrive` with a [`retrace_api::RedriveBody`] answers a
//! [`retrace_api::RedriveReport`];
//! every redrive is logged with `category="audit"`.

mod config;
mod events;
pub mod gate;
mod handler;
mod redrive;
mod retry;
mod runner;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use rdkafka::error::KafkaError;
use retrace_api::QueueStatus;
use retrace_auth::{AuditSender, Guard};
use retrace_sdk::{PublishError, Publisher};
use retrace_service::{Host, Hosted, Loaded, Reloader};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, KindConfig, QueueConfig, WorkerArgs, WorkerConfig};
pub use handler::{IDEMPOTENCY_KEY, JobError, JobHandler, ReceivedJob, Webhook, WebhookBody};
pub use redrive::{RedriveError, RedriveRequest, RedriveSelection, redrive};
/// Jobs are enqueued with the SDK; re-exported for the worker's users.
pub use retrace_sdk::{EnqueueError, QueueTopics, enqueue};
pub use retry::{ATTEMPT, Backoff, DUE_AT, ERROR, REDRIVE_REASON, REDRIVEN_BY};

use crate::events::{HttpListening, QueuesNeedRestart, WorkerStarted};
use crate::gate::{Gate, GateError, GateSpec};
use crate::handler::SharedHandler;
use crate::runner::{QueueHandlers, QueueRunner, RunnerParts};
use crate::status::{Backlog, BoardQueue, QueueCounters, StatusBoard};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}. Check the bootstrap servers and the Kafka properties (a misspelt name?)")]
    Producer(#[source] PublishError),
    #[error("cannot create the Kafka consumer of queue {queue} for {bootstrap}: {source}")]
    Consumer {
        queue: String,
        bootstrap: String,
        source: Box<KafkaError>,
    },
    #[error("cannot subscribe to the topics of queue {queue}: {source}")]
    Subscribe {
        queue: String,
        source: Box<KafkaError>,
    },
    #[error("queue {queue} has no handler: configure queues.{queue}.webhook (or per kind)")]
    NoHandler { queue: String },
    #[error("a handler is given for queue {queue}, which is not configured: add [queues.{queue}]")]
    UnknownQueue { queue: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] retrace_auth::ServiceAuthError),
    #[error("cannot start the gate of queue {queue}: {source}")]
    Gate {
        queue: String,
        source: Box<GateError>,
    },
    #[error(transparent)]
    Http(#[from] retrace_http::HttpError),
}

/// In-process handlers, by queue and by (queue, kind). They win over webhooks.
#[derive(Clone, Default)]
pub struct Handlers {
    by_queue: HashMap<String, SharedHandler>,
    by_kind: HashMap<(String, String), SharedHandler>,
}

impl Handlers {
    pub fn new() -> Self {
        Handlers::default()
    }

    /// Runs every job of `queue` without a kind handler.
    pub fn queue(mut self, queue: &str, handler: impl JobHandler) -> Self {
        self.by_queue.insert(queue.to_owned(), Arc::new(handler));
        self
    }

    /// Runs the jobs of `kind` in `queue`.
    pub fn kind(mut self, queue: &str, kind: &str, handler: impl JobHandler) -> Self {
        self.by_kind
            .insert((queue.to_owned(), kind.to_owned()), Arc::new(handler));
        self
    }
}

/// The worker: one runner and one gate per configured queue, and their status.
pub struct Worker {
    runners: Vec<QueueRunner>,
    gates: Vec<Gate>,
    /// Where each queue's gate takes reloaded specs from.
    gate_specs: BTreeMap<String, watch::Sender<GateSpec>>,
    /// The configurations to follow, when reloading.
    config: Option<watch::Receiver<Arc<Loaded<WorkerConfig>>>>,
    board: StatusBoard,
    bootstrap: String,
}

impl Worker {
    /// Creates the producer, each queue's consumer and gate (they connect lazily). Every
    /// queue needs a handler: a webhook in its configuration, or one in `handlers`.
    pub fn new(config: &WorkerConfig, handlers: Handlers) -> Result<Worker, WorkerError> {
        for queue in handlers
            .by_queue
            .keys()
            .chain(handlers.by_kind.keys().map(|(queue, _)| queue))
        {
            if !config.queues.contains_key(queue) {
                return Err(WorkerError::UnknownQueue {
                    queue: queue.clone(),
                });
            }
        }
        events::register_metrics(config);
        let publisher = Publisher::new(&config.kafka).map_err(WorkerError::Producer)?;
        let mut runners = Vec::new();
        let mut gates = Vec::new();
        let mut gate_specs = BTreeMap::new();
        let mut board = Vec::new();
        for (queue, queue_config) in &config.queues {
            let mut resolved = QueueHandlers::default();
            for (kind, kind_config) in &queue_config.kinds {
                if let Some(url) = &kind_config.webhook {
                    let webhook: SharedHandler =
                        Arc::new(Webhook::new(url.clone(), queue_config.timeout()));
                    resolved.by_kind.insert(kind.clone(), webhook);
                }
            }
            if let Some(url) = &queue_config.webhook {
                resolved.fallback =
                    Some(Arc::new(Webhook::new(url.clone(), queue_config.timeout())));
            }
            for ((handler_queue, kind), handler) in &handlers.by_kind {
                if handler_queue == queue {
                    resolved.by_kind.insert(kind.clone(), Arc::clone(handler));
                }
            }
            if let Some(handler) = handlers.by_queue.get(queue) {
                resolved.fallback = Some(Arc::clone(handler));
            }
            if resolved.fallback.is_none() && resolved.by_kind.is_empty() {
                return Err(WorkerError::NoHandler {
                    queue: queue.clone(),
                });
            }
            let spec = queue_config.check(queue)?;
            events::register_queue_metrics(queue);
            gate::register_metrics(queue, &spec);
            let (gate_task, gate) =
                Gate::new(queue, &spec, &config.kafka).map_err(|source| WorkerError::Gate {
                    queue: queue.clone(),
                    source: Box::new(source),
                })?;
            let (specs, following) = watch::channel(spec);
            gates.push(gate_task.following(following.clone()));
            gate_specs.insert(queue.clone(), specs);
            let counters = Arc::new(QueueCounters::default());
            let backlog =
                Backlog::new(&config.kafka, queue).map_err(|source| WorkerError::Consumer {
                    queue: queue.clone(),
                    bootstrap: config.kafka.bootstrap_servers.clone(),
                    source: Box::new(source),
                })?;
            board.push(BoardQueue {
                name: queue.clone(),
                gate: gate.clone(),
                counters: Arc::clone(&counters),
                backlog: Arc::new(backlog),
            });
            let parts = RunnerParts {
                publisher: publisher.clone(),
                handlers: resolved,
                gate,
                spec: following,
                counters,
                grace: config.shutdown_grace,
                instance_id: config.instance_id.clone(),
            };
            runners.push(QueueRunner::new(&config.kafka, queue, queue_config, parts)?);
        }
        Ok(Worker {
            runners,
            gates,
            gate_specs,
            config: None,
            board: StatusBoard {
                queues: Arc::new(board),
                kafka: config.kafka.clone(),
            },
            bootstrap: config.kafka.bootstrap_servers.clone(),
        })
    }

    /// Makes the worker apply the configurations `config` publishes while it runs (each
    /// queue's gate; the rest at the next start).
    pub fn following(mut self, config: watch::Receiver<Arc<Loaded<WorkerConfig>>>) -> Worker {
        self.config = Some(config);
        self
    }

    /// `GET /v1/jobs/queues` (each queue's status) and `POST /v1/jobs/queues/{queue}/redrive`
    /// (dead-lettered jobs back to their lane), to serve alone ([`run`]) or beside other
    /// services' routes.
    pub fn router(&self, guard: &Guard, audit: AuditSender) -> Router {
        self.board.router(guard, audit)
    }

    /// Each queue's status now, its backlog read from Kafka.
    pub async fn status(&self) -> Vec<QueueStatus> {
        self.board.status().await
    }

    /// Runs every queue and its gate until `shutdown`; running jobs get the shutdown grace
    /// to finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let queues: Vec<&str> = self
            .board
            .queues
            .iter()
            .map(|queue| queue.name.as_str())
            .collect();
        WorkerStarted {
            bootstrap: &self.bootstrap,
            queues: &queues.join(","),
        }
        .emit();
        let mut running = JoinSet::new();
        if let Some(config) = self.config {
            let follow = follow_gates(config, self.gate_specs, shutdown.clone());
            running.spawn(async move {
                follow.await;
                Ok(())
            });
        }
        for gate in self.gates {
            let shutdown = shutdown.clone();
            running.spawn(async move {
                gate.run(shutdown).await;
                Ok(())
            });
        }
        for runner in self.runners {
            running.spawn(runner.run(shutdown.clone()));
        }
        let mut first_error = None;
        while let Some(result) = running.join_next().await {
            let result =
                result.unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
            if let Err(error) = result {
                // One queue that cannot run stops the worker: better loud than half-working.
                shutdown.cancel();
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Hands each queue's reloaded gate to its gate task, until `shutdown`; says which changes
/// wait for a restart.
async fn follow_gates(
    mut config: watch::Receiver<Arc<Loaded<WorkerConfig>>>,
    gates: BTreeMap<String, watch::Sender<GateSpec>>,
    shutdown: CancellationToken,
) {
    while let Some(loaded) = retrace_service::next_config(&mut config, &shutdown).await {
        let queues = &loaded.config.queues;
        for (queue, specs) in &gates {
            // A reload already checked every queue; a queue now gone keeps its gate.
            let Some(spec) = queues.get(queue).and_then(|q| q.check(queue).ok()) else {
                continue;
            };
            specs.send_if_modified(|running| {
                let changed = *running != spec;
                if changed {
                    *running = spec;
                }
                changed
            });
        }
        let added: Vec<&str> = queues
            .keys()
            .filter(|queue| !gates.contains_key(*queue))
            .map(String::as_str)
            .collect();
        let removed: Vec<&str> = gates
            .keys()
            .filter(|queue| !queues.contains_key(*queue))
            .map(String::as_str)
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            QueuesNeedRestart {
                added: &added.join(","),
                removed: &removed.join(","),
            }
            .emit();
        }
    }
}

/// Runs the worker and serves `/v1/jobs/queues` (and redrive), `/healthz` and `/metrics` on
/// `config.http` until `shutdown` is cancelled, with `config` for good.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    serve(Reloader::fixed("worker", config), shutdown).await
}

/// [`run`], reloading the configuration on SIGHUP and when its file changes, and answering
/// `GET /v1/config`.
pub async fn serve(
    reloader: Reloader<WorkerConfig>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let host = Host::new("worker", reloader, shutdown);
    host.serve(|start| async move {
        let worker = Worker::new(start.config(), Handlers::new())?.following(start.subscribe());
        let auth = start.service_auth().await?;
        HttpListening { url: start.url() }.emit();
        let router = worker.router(&auth.guard, auth.audit());
        Ok(Hosted::with_auth(router, auth).task(worker.run(start.shutdown())))
    })
    .await
}
