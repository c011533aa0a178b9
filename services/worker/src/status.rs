//! What each queue is doing: counters kept by its runner, served as `GET /v1/jobs/queues`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::routing::get;

use crate::events::Settlement;
use crate::gate::GateHandle;

/// Counters of one queue in this process, since it started.
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    pub running: AtomicU64,
    pub done: AtomicU64,
    pub retrying: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub deferred: AtomicU64,
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
    }
}

/// One queue in `GET /v1/jobs/queues`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueStatus {
    pub queue: String,
    pub gate_open: bool,
    pub gate_reason: String,
    pub running: u64,
    pub done: u64,
    pub retrying: u64,
    /// Failed permanently, and dead-lettered at once.
    pub failed: u64,
    /// Out of attempts, and dead-lettered.
    pub dead_lettered: u64,
    /// Moved to the retry topic to wait for their `not_before`.
    pub deferred: u64,
}

#[derive(Clone)]
pub(crate) struct StatusBoard {
    pub queues: Arc<Vec<(String, GateHandle, Arc<QueueCounters>)>>,
}

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<QueueStatus> {
        self.queues
            .iter()
            .map(|(queue, gate, counters)| {
                let gate = gate.state();
                let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
                QueueStatus {
                    queue: queue.clone(),
                    gate_open: gate.open,
                    gate_reason: gate.reason,
                    running: read(&counters.running),
                    done: read(&counters.done),
                    retrying: read(&counters.retrying),
                    failed: read(&counters.failed),
                    dead_lettered: read(&counters.dead_lettered),
                    deferred: read(&counters.deferred),
                }
            })
            .collect()
    }

    pub fn router(&self) -> Router {
        let board = self.clone();
        Router::new().route(
            "/v1/jobs/queues",
            get(move || {
                let snapshot = board.snapshot();
                async move { Json(snapshot) }
            }),
        )
    }
}
