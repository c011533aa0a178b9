//! What each queue is doing: counters kept by its runner, the group's backlog in Kafka, and
//! the routes that show and act on them: `GET /v1/jobs/queues` and
//! `POST /v1/jobs/queues/{queue}/redrive` ([`crate::redrive::http`]).
//!
//! Counts and the rate are this process's, since it started; `pending` is the queue's, across
//! every process of its consumer group, read from Kafka when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use retrace_api::QueueStatus;
use retrace_auth::{AuditSender, Caller, Guard, Permission};
use retrace_sdk::KafkaSettings;

use crate::QueueTopics;
use crate::events::Settlement;
use crate::gate::GateHandle;

/// How long `GET /v1/jobs/queues` waits for Kafka to say how many jobs wait; past it,
/// `pending` is `null` and `pending_error` says why.
const PENDING_PATIENCE: Duration = Duration::from_secs(2);

/// How long a backlog reading is reused. The group commits its offsets every second, so a
/// fresher reading would not say more.
const PENDING_FRESH: Duration = Duration::from_secs(1);

/// The span `rate_per_s` averages over.
const RATE_WINDOW_S: u64 = 60;

/// Counters of one queue in this process, since it started.
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    pub running: AtomicU64,
    pub done: AtomicU64,
    pub retrying: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub deferred: AtomicU64,
    /// Attempts finished, per second, for `rate_per_s`.
    finished: Mutex<RateWindow>,
}

impl QueueCounters {
    pub fn settled(&self, settlement: Settlement, ran: bool) {
        if ran {
            self.running.fetch_sub(1, Ordering::Relaxed);
        }
        let counter = match settlement {
            Settlement::Processed => &self.done,
            Settlement::Retrying => &self.retrying,
            Settlement::Failed => &self.failed,
            Settlement::DeadLettered => &self.dead_lettered,
            Settlement::Deferred => &self.deferred,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if settlement != Settlement::Deferred {
            self.finished_window().record(Instant::now());
        }
    }

    fn finished_window(&self) -> std::sync::MutexGuard<'_, RateWindow> {
        // A panic while holding it cannot leave the counts inconsistent: keep counting.
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Events per second over the last [`RATE_WINDOW_S`] seconds, in one-second buckets.
#[derive(Debug)]
struct RateWindow {
    started: Instant,
    /// (second since `started`, events in it), at index `second % RATE_WINDOW_S`.
    buckets: [(u64, u64); RATE_WINDOW_S as usize],
}

impl Default for RateWindow {
    fn default() -> Self {
        RateWindow::starting(Instant::now())
    }
}

impl RateWindow {
    fn starting(started: Instant) -> Self {
        RateWindow {
            started,
            buckets: [(0, 0); RATE_WINDOW_S as usize],
        }
    }

    fn record(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.started).as_secs();
        let bucket = &mut self.buckets[(second % RATE_WINDOW_S) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
    }

    /// Events per second from the start of the window (the last [`RATE_WINDOW_S`] seconds,
    /// the current one included, or since the start when younger) to `now`; at least one
    /// second, so a lone event just after the start is not a burst.
    fn per_second(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.started);
        let second = elapsed.as_secs();
        let first = second.saturating_sub(RATE_WINDOW_S - 1);
        let events: u64 = self
            .buckets
            .iter()
            .filter(|(at, _)| (first..=second).contains(at))
            .map(|(_, count)| count)
            .sum();
        let span = (elapsed.as_secs_f64() - first as f64).max(1.0);
        events as f64 / span
    }
}

/// One queue, as the status routes see it.
pub(crate) struct BoardQueue {
    pub name: String,
    pub gate: GateHandle,
    pub counters: Arc<QueueCounters>,
    pub backlog: Arc<Backlog>,
}

#[derive(Clone)]
pub(crate) struct StatusBoard {
    pub queues: Arc<Vec<BoardQueue>>,
    /// Where redrives read dead letters and publish.
    pub kafka: KafkaSettings,
}

impl StatusBoard {
    /// Gate and counters now; `pending` is left unknown (see [`StatusBoard::status`]).
    fn counters(&self) -> Vec<QueueStatus> {
        let now = Instant::now();
        self.queues
            .iter()
            .map(|queue| {
                let gate = queue.gate.state();
                let counters = &queue.counters;
                let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
                QueueStatus {
                    queue: queue.name.clone(),
                    gate_open: gate.open,
                    gate_reason: gate.reason,
                    pending: None,
                    pending_error: None,
                    running: read(&counters.running),
                    done: read(&counters.done),
                    retrying: read(&counters.retrying),
                    failed: read(&counters.failed),
                    dead_lettered: read(&counters.dead_lettered),
                    deferred: read(&counters.deferred),
                    rate_per_s: counters.finished_window().per_second(now),
                }
            })
            .collect()
    }

    /// Every queue's status, its backlog read from Kafka (all queues at once, on the
    /// blocking pool, each within [`PENDING_PATIENCE`]; a reading is reused for a second).
    pub async fn status(&self) -> Vec<QueueStatus> {
        let mut statuses = self.counters();
        let readings = self.queues.iter().map(|queue| {
            let backlog = Arc::clone(&queue.backlog);
            tokio::task::spawn_blocking(move || backlog.pending(PENDING_PATIENCE))
        });
        let readings = futures::future::join_all(readings).await;
        for (status, reading) in statuses.iter_mut().zip(readings) {
            match reading {
                Ok(Ok(pending)) => status.pending = Some(pending),
                Ok(Err(error)) => status.pending_error = Some(error),
                Err(panic) => {
                    status.pending_error = Some(format!("reading the backlog failed: {panic}"))
                }
            }
        }
        statuses
    }

    /// Reading the queues needs `trace:read`, redriving `redrive`; redrives are audited.
    pub fn router(&self, guard: &Guard, audit: AuditSender) -> Router {
        let reading = Router::new()
            .route("/v1/jobs/queues", get(queues))
            .route_layer(guard.require(Permission::TraceRead));
        let redriving = Router::new()
            .route("/v1/jobs/queues/{queue}/redrive", post(redrive))
            .route_layer(guard.require(Permission::Redrive));
        reading.merge(redriving).with_state(Api {
            board: self.clone(),
            audit,
        })
    }

    fn has_queue(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q.name == queue)
    }

    fn queue_names(&self) -> Vec<&str> {
        self.queues.iter().map(|q| q.name.as_str()).collect()
    }
}

/// What the routes share.
#[derive(Clone)]
struct Api {
    board: StatusBoard,
    audit: AuditSender,
}

async fn queues(State(api): State<Api>) -> Json<Vec<QueueStatus>> {
    Json(api.board.status().await)
}

async fn redrive(
    State(api): State<Api>,
    Path(queue): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Response {
    if !api.board.has_queue(&queue) {
        return crate::redrive::http::unknown_queue(&queue, &api.board.queue_names());
    }
    crate::redrive::http::answer(&api.board.kafka, &queue, &body, &caller, &api.audit).await
}

/// Reads how many jobs wait for one queue's consumer group: a consumer with the group's id
/// that never subscribes (so never joins the group) and only asks for offsets.
pub(crate) struct Backlog {
    consumer: BaseConsumer,
    topics: Vec<String>,
    /// The last reading and when it was taken, reused for [`PENDING_FRESH`].
    last: Mutex<Option<(Instant, Result<u64, String>)>>,
}

impl Backlog {
    /// The consumer connects lazily, on the first reading.
    pub fn new(kafka: &KafkaSettings, queue: &str) -> Result<Self, KafkaError> {
        let mut client = kafka.client_config(&[("enable.auto.commit", "false")]);
        // The runner's group (runner.rs).
        client.set("group.id", format!("retrace-worker.{queue}"));
        let topics = QueueTopics::of(queue);
        Ok(Backlog {
            consumer: client.create()?,
            topics: vec![topics.normal, topics.urgent, topics.bulk, topics.retry],
            last: Mutex::new(None),
        })
    }

    /// [`Backlog::read`], or the last reading if it is younger than [`PENDING_FRESH`]: a
    /// dashboard polling often costs Kafka one reading a second per queue, and concurrent
    /// requests wait for one reading rather than each taking their own. Blocking.
    fn pending(&self, patience: Duration) -> Result<u64, String> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, reading)) = &*last
            && at.elapsed() < PENDING_FRESH
        {
            return reading.clone();
        }
        let reading = self.read(patience);
        *last = Some((Instant::now(), reading.clone()));
        reading
    }

    /// The jobs waiting on the queue's lanes and retry topic; an error, in words, when Kafka
    /// does not answer within `patience`. Blocking.
    fn read(&self, patience: Duration) -> Result<u64, String> {
        // Nothing reads this consumer's events otherwise (errors, mostly): drop them.
        for _ in 0..1_000 {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let deadline = Instant::now() + patience;
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or_else(|| format!("Kafka did not say how many jobs wait within {patience:?}"))
        };
        let failed = |what: &str, error: KafkaError| format!("cannot read {what}: {error}");
        let mut partitions = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), left()?)
                .map_err(|e| failed(&format!("the partitions of {topic}"), e))?;
            for found in metadata.topics() {
                for partition in found.partitions() {
                    partitions.add_partition(found.name(), partition.id());
                }
            }
        }
        if partitions.count() == 0 {
            return Ok(0);
        }
        let committed = self
            .consumer
            .committed_offsets(partitions, left()?)
            .map_err(|e| failed("the group's committed offsets", e))?;
        let mut pending = 0;
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, left()?)
                .map_err(|e| failed(&format!("the offsets of {topic} [{partition}]"), e))?;
            let committed = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            pending += partition_lag(low, high, committed);
        }
        Ok(pending)
    }
}

/// Messages of one partition not yet consumed by the group: from its committed offset, or
/// the low watermark when nothing is committed (the worker starts from the earliest) or
/// when what was committed has since been deleted, to the high watermark.
fn partition_lag(low: i64, high: i64, committed: Option<i64>) -> u64 {
    let high = high.max(low);
    let from = committed.unwrap_or(low).clamp(low, high);
    (high - from) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_runs_from_the_committed_offset_or_the_start_to_the_end() {
        assert_eq!(partition_lag(0, 10, Some(4)), 6);
        assert_eq!(partition_lag(0, 10, None), 10, "nothing committed");
        assert_eq!(
            partition_lag(5, 10, None),
            5,
            "the start is the low watermark"
        );
        assert_eq!(partition_lag(5, 10, Some(2)), 5, "committed, then deleted");
        assert_eq!(partition_lag(0, 10, Some(10)), 0);
        assert_eq!(partition_lag(0, 10, Some(12)), 0, "never negative");
        assert_eq!(partition_lag(0, 0, None), 0, "empty partition");
    }

    #[test]
    fn the_rate_averages_the_last_minute_or_since_the_start() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut window = RateWindow::starting(start);
        assert_eq!(window.per_second(at(500)), 0.0);
        window.record(at(100));
        assert_eq!(window.per_second(at(200)), 1.0, "at least one second");
        for ms in (0..10_000).step_by(100) {
            window.record(at(ms));
        }
        // 101 events in the first 10 s.
        assert!((window.per_second(at(10_000)) - 10.1).abs() < 1e-9);
        // 70 s on, the first 10 s have left the window.
        assert_eq!(window.per_second(at(70_000)), 0.0);
        for ms in (70_000..100_000).step_by(500) {
            window.record(at(ms));
        }
        // 60 events over the window (41 s .. 100 s).
        let rate = window.per_second(at(100_000));
        assert!((rate - 60.0 / 59.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_status_from_an_older_worker_still_reads() {
        let old = r#"{"queue":"q","gate_open":true,"gate_reason":"r","running":0,"done":1,
            "retrying":0,"failed":0,"dead_lettered":0,"deferred":0}"#;
        let status: QueueStatus = serde_json::from_str(old).unwrap();
        assert_eq!((status.pending, status.rate_per_s), (None, 0.0));
    }
}
