//! Everything the worker reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together. [`register_queue_metrics`] registers a
//! queue's series at zero as the worker starts.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use retrace_proto::{AUDIT_TOPIC, OUTCOMES_TOPIC};
use retrace_sdk::QueueTopics;
use retrace_telemetry::{InternalEvent, register};
use tracing::{debug, info, warn};

/// Installs Retrace's metrics recorder, and registers at zero what the worker publishes
/// through the SDK: outcomes, audit events, and job copies to each queue's topics.
pub(crate) fn register_metrics(config: &crate::WorkerConfig) {
    retrace_telemetry::prometheus();
    let queues: Vec<QueueTopics> = config.queues.keys().map(|q| QueueTopics::of(q)).collect();
    let mut also_to = vec![OUTCOMES_TOPIC, AUDIT_TOPIC];
    also_to.extend(queues.iter().flat_map(QueueTopics::all));
    retrace_sdk::register_metrics(&[], &also_to);
}

/// Registers at zero the series of `queue`: its jobs by how they settled, Kafka errors by
/// step, pauses, redrives (its gate's are [`crate::gate::register_metrics`]'s).
pub(crate) fn register_queue_metrics(queue: &str) {
    let queue = [queue];
    let statuses = Settlement::ALL.map(Settlement::as_str);
    register(
        "retrace_worker_jobs_total",
        &[("queue", &queue), ("status", &statuses)],
    );
    register(
        "retrace_worker_kafka_errors_total",
        &[
            ("queue", &queue),
            ("during", &During::ALL.map(During::as_str)),
        ],
    );
    register(
        "retrace_worker_redrives_total",
        &[
            ("queue", &queue),
            ("dry_run", &["true", "false"]),
            ("result", &["ok", "failed"]),
        ],
    );
    for per_queue in [
        "retrace_worker_job_seconds",
        "retrace_worker_running",
        "retrace_worker_not_a_job_total",
        "retrace_worker_partition_pauses_total",
        "retrace_worker_queue_slowed_total",
        "retrace_worker_redriven_total",
    ] {
        register(per_queue, &[("queue", &queue)]);
    }
}

pub(crate) struct WorkerStarted<'a> {
    pub bootstrap: &'a str,
    pub queues: &'a str,
}

impl InternalEvent for WorkerStarted<'_> {
    fn emit(self) {
        info!(
            bootstrap = self.bootstrap,
            queues = self.queues,
            "worker started"
        );
    }
}

pub(crate) struct HttpListening<'a> {
    pub url: &'a str,
}

impl InternalEvent for HttpListening<'_> {
    fn emit(self) {
        info!(url = self.url, "worker HTTP listening");
    }
}

pub(crate) struct JobStarted<'a> {
    pub queue: &'a str,
}

impl InternalEvent for JobStarted<'_> {
    fn emit(self) {
        debug!("job started");
        gauge!("retrace_worker_running", "queue" => self.queue.to_owned()).increment(1.0);
    }
}

/// How an attempt ended, as the `status` label of `retrace_worker_jobs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    Processed,
    Retrying,
    /// Permanent failure: dead-lettered at once.
    Failed,
    /// Out of attempts.
    DeadLettered,
    /// Its `not_before` is ahead: moved to the retry topic without an attempt.
    Deferred,
}

impl Settlement {
    pub const ALL: [Settlement; 5] = [
        Settlement::Processed,
        Settlement::Retrying,
        Settlement::Failed,
        Settlement::DeadLettered,
        Settlement::Deferred,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Processed => "processed",
            Settlement::Retrying => "retrying",
            Settlement::Failed => "failed",
            Settlement::DeadLettered => "dead_lettered",
            Settlement::Deferred => "deferred",
        }
    }
}

pub(crate) struct JobSettled<'a> {
    pub queue: &'a str,
    pub settlement: Settlement,
    pub attempt: u32,
    /// Time in the handler; `None` when it did not run.
    pub elapsed: Option<Duration>,
    pub error: Option<&'a str>,
}

impl InternalEvent for JobSettled<'_> {
    fn emit(self) {
        let status = self.settlement.as_str();
        match self.error {
            Some(error) => warn!(status, attempt = self.attempt, error, "job attempt failed"),
            None => debug!(status, attempt = self.attempt, "job settled"),
        }
        let queue = self.queue.to_owned();
        counter!("retrace_worker_jobs_total", "queue" => queue.clone(), "status" => status)
            .increment(1);
        if let Some(elapsed) = self.elapsed {
            gauge!("retrace_worker_running", "queue" => queue.clone()).decrement(1.0);
            histogram!("retrace_worker_job_seconds", "queue" => queue)
                .record(elapsed.as_secs_f64());
        }
    }
}

/// A message on a queue topic that is not a job: skipped (the archive keeps it).
pub(crate) struct NotAJob<'a> {
    pub queue: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub problem: &'a str,
}

impl InternalEvent for NotAJob<'_> {
    fn emit(self) {
        warn!(
            queue = self.queue,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            problem = self.problem,
            "message is not a valid job; skipped"
        );
        counter!("retrace_worker_not_a_job_total", "queue" => self.queue.to_owned()).increment(1);
    }
}

/// What a queue was doing when Kafka failed it: the `during` label of
/// `retrace_worker_kafka_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum During {
    Consume,
    Pause,
    Resume,
    StoreOffset,
    FinalCommit,
    PublishJobCopy,
    PublishOutcome,
}

impl During {
    pub const ALL: [During; 7] = [
        During::Consume,
        During::Pause,
        During::Resume,
        During::StoreOffset,
        During::FinalCommit,
        During::PublishJobCopy,
        During::PublishOutcome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            During::Consume => "consume",
            During::Pause => "pause",
            During::Resume => "resume",
            During::StoreOffset => "store offset",
            During::FinalCommit => "final commit",
            During::PublishJobCopy => "publish a job copy",
            During::PublishOutcome => "publish an outcome",
        }
    }
}

pub(crate) struct KafkaTrouble<'a> {
    pub queue: &'a str,
    pub during: During,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for KafkaTrouble<'_> {
    fn emit(self) {
        let during = self.during.as_str();
        warn!(queue = self.queue, during, error = %self.error, "Kafka error; continuing");
        counter!(
            "retrace_worker_kafka_errors_total",
            "queue" => self.queue.to_owned(),
            "during" => during,
        )
        .increment(1);
    }
}

pub(crate) struct PartitionsPaused<'a> {
    pub queue: &'a str,
    pub paused: usize,
    pub resumed: usize,
}

impl InternalEvent for PartitionsPaused<'_> {
    fn emit(self) {
        debug!(
            queue = self.queue,
            paused = self.paused,
            resumed = self.resumed,
            "partitions paused or resumed"
        );
        counter!("retrace_worker_partition_pauses_total", "queue" => self.queue.to_owned())
            .increment(self.paused as u64);
    }
}

pub(crate) struct QueueSlowed<'a> {
    pub queue: &'a str,
    pub pause: Duration,
}

impl InternalEvent for QueueSlowed<'_> {
    fn emit(self) {
        info!(
            queue = self.queue,
            pause_ms = self.pause.as_millis() as u64,
            "target asked to back off; queue paused"
        );
        counter!("retrace_worker_queue_slowed_total", "queue" => self.queue.to_owned())
            .increment(1);
    }
}

pub(crate) struct JobRedriven<'a> {
    pub queue: &'a str,
    pub job_id: &'a str,
    pub lane: &'a str,
    pub dry_run: bool,
}

impl InternalEvent for JobRedriven<'_> {
    fn emit(self) {
        info!(
            queue = self.queue,
            job_id = self.job_id,
            lane = self.lane,
            dry_run = self.dry_run,
            "dead-lettered job redriven"
        );
        if !self.dry_run {
            counter!("retrace_worker_redriven_total", "queue" => self.queue.to_owned())
                .increment(1);
        }
    }
}

/// A redrive asked for over HTTP, once it ended: who, why, which jobs, how many moved. The
/// audit record of the redrive (`category="audit"`), dry runs included.
pub(crate) struct RedriveAudited<'a> {
    pub queue: &'a str,
    pub request: &'a crate::RedriveRequest,
    pub result: &'a Result<retrace_api::RedriveReport, crate::RedriveError>,
}

impl InternalEvent for RedriveAudited<'_> {
    fn emit(self) {
        let request = self.request;
        let selection = match &request.selection {
            crate::RedriveSelection::All => "all".to_owned(),
            crate::RedriveSelection::Jobs(ids) => {
                format!("jobs {}", ids.iter().cloned().collect::<Vec<_>>().join(","))
            }
        };
        let result = match self.result {
            Ok(report) => {
                let jobs: Vec<&str> = report.redriven.keys().map(String::as_str).collect();
                info!(
                    category = "audit",
                    queue = self.queue,
                    requested_by = request.requested_by,
                    reason = request.reason,
                    selection,
                    dry_run = request.dry_run,
                    jobs = ?jobs,
                    redriven = jobs.len(),
                    not_found = ?report.not_found,
                    "dead-lettered jobs redriven"
                );
                "ok"
            }
            Err(error) => {
                warn!(
                    category = "audit",
                    queue = self.queue,
                    requested_by = request.requested_by,
                    reason = request.reason,
                    selection,
                    dry_run = request.dry_run,
                    redriven = match error {
                        crate::RedriveError::Publish { redriven, .. } => *redriven,
                        _ => 0,
                    },
                    error = %error,
                    "redrive of dead-lettered jobs failed"
                );
                "failed"
            }
        };
        counter!(
            "retrace_worker_redrives_total",
            "queue" => self.queue.to_owned(),
            "dry_run" => if request.dry_run { "true" } else { "false" },
            "result" => result,
        )
        .increment(1);
    }
}

/// A reloaded configuration adds or removes queues: that takes a restart.
pub(crate) struct QueuesNeedRestart<'a> {
    pub added: &'a str,
    pub removed: &'a str,
}

impl InternalEvent for QueuesNeedRestart<'_> {
    fn emit(self) {
        warn!(
            added = self.added,
            removed = self.removed,
            "the reloaded configuration adds queues [{}] and removes [{}]: queues start and \
             stop with the worker, so restart it for this to take effect",
            self.added,
            self.removed
        );
    }
}
