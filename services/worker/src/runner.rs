//! One queue's runner: consume its lanes and retry topic, admit jobs through the gate, run
//! them with a concurrency and rate limit, and settle each attempt (outcome, retry copy or
//! dead letter) before its offset may be committed.
//!
//! Pausing is per partition and has two causes: a *held head* (the first message of a
//! partition that may not run yet: gated, or a retry not yet due), and a queue *slowed* by
//! its target (`Retry-After`), which pauses every lane. A held head is kept in memory with
//! any message of its partition that arrived after it, and the partition is paused; on
//! release they are decided again, in offset order, and the partition resumes once none is
//! left. Nothing is fetched twice and nothing is sought: librdkafka resumes a paused
//! partition after the last message it handed out, and pausing is a barrier (messages
//! fetched before it are discarded, not delivered), so no message is skipped. A retry copy
//! not yet due thus costs no extra fetch round trip when it is released.

mod assignments;
mod attempt;
mod dispatch;
mod holds;
mod pausing;
mod rebalance;
mod settle;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use retrace_proto::JobPriority;
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::QueueConfig;
use crate::events::{During, KafkaTrouble};
use crate::gate::{AdmissionPolicy, GateHandle, GateSpec};
use crate::handler::SharedHandler;
use crate::status::QueueCounters;
use crate::{QueueTopics, WorkerError};

use assignments::{Assignments, Ticket};
use attempt::RawCopy;
use rebalance::RebalanceLog;

/// Offsets are stored only once a job is settled, and committed in the background (and at
/// shutdown). Prefetch is kept small: the gate pauses partitions, and a paused partition's
/// prefetched messages are dropped anyway.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
    ("auto.offset.reset", "earliest"),
    ("queued.max.messages.kbytes", "8192"),
];

/// How often held heads and the gate are looked at again even if nothing was signalled.
const RECHECK: Duration = Duration::from_millis(500);

type Tp = (String, i32);

/// Which of a queue's topics a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Normal,
    Urgent,
    Bulk,
    Retry,
}

/// The handlers of one queue: per kind, and for every other kind.
#[derive(Clone, Default)]
pub(crate) struct QueueHandlers {
    pub by_kind: HashMap<String, SharedHandler>,
    pub fallback: Option<SharedHandler>,
}

impl QueueHandlers {
    fn of(&self, kind: &str) -> Option<SharedHandler> {
        self.by_kind
            .get(kind)
            .or(self.fallback.as_ref())
            .map(Arc::clone)
    }
}

/// What every job task of a queue shares.
struct Shared {
    queue: String,
    consumer_name: String,
    topics: QueueTopics,
    config: QueueConfig,
    publisher: Publisher,
    handlers: QueueHandlers,
    /// The gate's spec as last reloaded: its admission rules apply to the next job.
    spec: watch::Receiver<GateSpec>,
    counters: Arc<QueueCounters>,
    /// Cancelled when the shutdown grace is over: publishing stops retrying.
    abandon: CancellationToken,
}

impl Shared {
    /// The admission rules of the gate's latest spec.
    fn policy(&self) -> AdmissionPolicy {
        self.spec.borrow().policy
    }
}

/// What a runner is given besides its configuration.
pub(crate) struct RunnerParts {
    pub publisher: Publisher,
    pub handlers: QueueHandlers,
    pub gate: GateHandle,
    pub spec: watch::Receiver<GateSpec>,
    pub counters: Arc<QueueCounters>,
    /// How long running jobs may take to finish at shutdown.
    pub grace: Duration,
    /// This process's static membership in the queue's group (`group.instance.id`).
    pub instance_id: Option<String>,
}

pub(crate) struct QueueRunner {
    shared: Arc<Shared>,
    consumer: StreamConsumer<RebalanceLog>,
    gate: GateHandle,
    grace: Duration,
}

/// Why a partition's head waits.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// A retry copy, due at the time.
    Due(SystemTime),
    /// The gate said wait; look again when it changes, or at `until`.
    Gate {
        priority: JobPriority,
        deadline: Option<SystemTime>,
        until: Option<SystemTime>,
    },
}

/// A finished job task.
struct Settled {
    ticket: Ticket,
    /// False when shutdown came before the attempt's copies and outcome were acknowledged:
    /// the offset stays uncommitted and the job runs again.
    done: bool,
    slow_for: Option<Duration>,
}

#[derive(Default)]
struct State {
    assignments: Assignments,
    /// Partitions whose head may not run yet, with the messages behind it; each is paused.
    waiting: HashMap<Tp, Waiting>,
    paused: HashSet<Tp>,
    slowed_until: Option<Instant>,
    next_start: Option<Instant>,
}

/// The messages of one partition that wait, in offset order.
struct Waiting {
    /// Why the first one waits; `None` once released: it is decided again as soon as a job
    /// may start.
    hold: Option<Hold>,
    messages: VecDeque<Pending>,
}

/// A consumed message not yet decided on.
struct Pending {
    ticket: Ticket,
    lane: Lane,
    raw: RawCopy,
}

impl QueueRunner {
    pub fn new(
        kafka: &KafkaSettings,
        queue: &str,
        config: &QueueConfig,
        parts: RunnerParts,
    ) -> Result<Self, WorkerError> {
        let RunnerParts {
            publisher,
            handlers,
            gate,
            spec,
            counters,
            grace,
            instance_id,
        } = parts;
        let mut client = kafka.client_config(CONSUMER_DEFAULTS);
        client.set("group.id", format!("retrace-worker.{queue}"));
        if let Some(instance_id) = &instance_id {
            client.set("group.instance.id", instance_id);
        }
        let consumer = client
            .create_with_context(RebalanceLog::default())
            .map_err(|source| WorkerError::Consumer {
                queue: queue.to_owned(),
                bootstrap: kafka.bootstrap_servers.clone(),
                source: Box::new(source),
            })?;
        Ok(QueueRunner {
            shared: Arc::new(Shared {
                queue: queue.to_owned(),
                consumer_name: format!("worker:{queue}"),
                topics: QueueTopics::of(queue),
                config: config.clone(),
                publisher,
                handlers,
                spec,
                counters,
                abandon: CancellationToken::new(),
            }),
            consumer,
            gate,
            grace,
        })
    }

    /// Runs until `shutdown`; then lets running jobs finish for the grace period, and
    /// commits what is settled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let topics = &self.shared.topics;
        let subscribed = [
            topics.normal.as_str(),
            topics.urgent.as_str(),
            topics.bulk.as_str(),
            topics.retry.as_str(),
        ];
        self.consumer
            .subscribe(&subscribed)
            .map_err(|source| WorkerError::Subscribe {
                queue: self.shared.queue.clone(),
                source: Box::new(source),
            })?;
        let mut state = State::default();
        let mut jobs: JoinSet<Settled> = JoinSet::new();
        let mut gate = self.gate.clone();
        let mut gate_state = gate.state();
        let mut gate_live = true;
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.apply_rebalances(&mut state);
            self.start_released(&mut state, &mut jobs);
            let wake = self.next_wake(&state);
            let take = self.may_start(&state, &jobs);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = jobs.join_next() => self.settled(&mut state, joined),
                () = gate.changed(), if gate_live => {
                    let current = gate.state();
                    // The sender is gone (a gate that never changes): stop listening.
                    gate_live = current != gate_state;
                    gate_state = current;
                    self.reevaluate(&mut state);
                }
                _ = recheck.tick() => self.reevaluate(&mut state),
                () = sleep_until(wake), if wake.is_some() => self.reevaluate(&mut state),
                message = self.consumer.recv(), if take => match message {
                    Ok(message) => {
                        self.apply_rebalances(&mut state);
                        self.take(&mut state, &mut jobs, &message);
                    }
                    Err(error) => self.trouble(During::Consume, &error),
                },
            }
        }
        let drain_until = tokio::time::Instant::now() + self.grace;
        while !jobs.is_empty() {
            tokio::select! {
                Some(joined) = jobs.join_next() => self.settled(&mut state, joined),
                () = tokio::time::sleep_until(drain_until) => {
                    self.shared.abandon.cancel();
                    while let Some(joined) = jobs.join_next().await {
                        self.settled(&mut state, joined);
                    }
                }
            }
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit, or the group is gone: the next run
            // resumes from the last committed offset, at worst running a few jobs again.
            self.trouble(During::FinalCommit, &error);
        }
        Ok(())
    }

    fn lane(&self, topic: &str) -> Option<Lane> {
        let topics = &self.shared.topics;
        [
            (&topics.normal, Lane::Normal),
            (&topics.urgent, Lane::Urgent),
            (&topics.bulk, Lane::Bulk),
            (&topics.retry, Lane::Retry),
        ]
        .into_iter()
        .find(|(name, _)| name.as_str() == topic)
        .map(|(_, lane)| lane)
    }

    /// Whether a job may start now: a free slot, and the rate limit allows it.
    fn may_start(&self, state: &State, jobs: &JoinSet<Settled>) -> bool {
        jobs.len() < self.shared.config.concurrency
            && state.next_start.is_none_or(|at| at <= Instant::now())
    }

    fn trouble(&self, during: During, error: &dyn std::fmt::Display) {
        KafkaTrouble {
            queue: &self.shared.queue,
            during,
            error,
        }
        .emit();
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
