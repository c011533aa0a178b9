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
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prost::Message as _;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, TopicPartitionList};
use retrace_proto::{Envelope, JobPriority};
use retrace_sdk::{KafkaSettings, Publisher, store_next_offset};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::QueueConfig;
use crate::events::{KafkaTrouble, NotAJob, PartitionsPaused, QueueSlowed};
use crate::gate::{Admission, AdmissionPolicy, GateHandle, GateSpec, GateState, admits};
use crate::handler::{ReceivedJob, SharedHandler};
use crate::retry::{self, ERROR, REDRIVEN_BY};
use crate::status::QueueCounters;
use crate::{QueueTopics, WorkerError};

use assignments::{Assignments, Ticket};
use attempt::{RawCopy, attempt, defer};

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

/// Records assignments and revocations as they happen inside `recv`, for the runner to
/// apply before it looks at the next message.
#[derive(Default)]
pub(crate) struct RebalanceLog {
    changes: Mutex<Vec<(bool, Vec<Tp>)>>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (assigned, list) = match rebalance {
            Rebalance::Assign(list) => (true, list),
            Rebalance::Revoke(list) => (false, list),
            Rebalance::Error(_) => return,
        };
        let partitions = list
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        self.changes
            .lock()
            .expect("the rebalance log is never poisoned")
            .push((assigned, partitions));
    }
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

/// What became of a message a runner decided on.
enum Decision {
    /// Started, moved, or settled at once (not a job).
    Taken,
    /// It may not run yet; handed back to wait at its partition's head.
    Wait(Pending, Hold),
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

impl State {
    /// Applies what the rebalance log recorded, in order; returns the partitions assigned
    /// (and not revoked since). Either way a partition starts afresh, from its committed
    /// offset: its waiting messages were not started, so nothing past them was committed,
    /// and they are consumed again. Its pause flag is librdkafka's to keep (see
    /// `apply_rebalances`), no longer ours to know.
    fn rebalanced(&mut self, changes: Vec<(bool, Vec<Tp>)>) -> Vec<Tp> {
        let mut assigned = Vec::new();
        for (assign, partitions) in changes {
            for tp in partitions {
                self.waiting.remove(&tp);
                self.paused.remove(&tp);
                assigned.retain(|other| *other != tp);
                if assign {
                    self.assignments.assign(tp.clone());
                    assigned.push(tp);
                } else {
                    self.assignments.revoke(&tp);
                }
            }
        }
        assigned
    }
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
                    Err(error) => KafkaTrouble {
                        queue: &self.shared.queue,
                        during: "consume",
                        error: &error,
                    }
                    .emit(),
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
            KafkaTrouble {
                queue: &self.shared.queue,
                during: "final commit",
                error: &error,
            }
            .emit();
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

    fn apply_rebalances(&self, state: &mut State) {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .expect("the rebalance log is never poisoned"),
        );
        if changes.is_empty() {
            return;
        }
        let assigned = state.rebalanced(changes);
        if !assigned.is_empty() {
            // librdkafka keeps the application's pause flag across revoke and assign
            // (2.12.1): a partition paused when it was revoked comes back paused, and would
            // never be fetched again. Resume all that came back; `reconcile` pauses again
            // what must wait (a slowed lane).
            if let Err(error) = self.consumer.resume(&partition_list(&assigned)) {
                self.trouble("resume", &error);
                // Counted as paused, so `reconcile` resumes it at the next recheck.
                state.paused.extend(assigned);
            }
        }
        self.reconcile(state);
    }

    /// Whether a job may start now: a free slot, and the rate limit allows it.
    fn may_start(&self, state: &State, jobs: &JoinSet<Settled>) -> bool {
        jobs.len() < self.shared.config.concurrency
            && state.next_start.is_none_or(|at| at <= Instant::now())
    }

    /// The earliest time something held or slowed must be looked at again.
    fn next_wake(&self, state: &State) -> Option<Instant> {
        let now_sys = SystemTime::now();
        let now = Instant::now();
        let to_instant = |at: SystemTime| now + at.duration_since(now_sys).unwrap_or_default();
        state
            .waiting
            .values()
            .filter_map(|waiting| match waiting.hold? {
                Hold::Due(due) => Some(to_instant(due)),
                Hold::Gate { until, .. } => until.map(to_instant),
            })
            .chain(state.slowed_until)
            // Past, it no longer holds anything back (and waking for it would spin).
            .chain(state.next_start.filter(|at| *at > now))
            .min()
    }

    /// Releases the held heads that may go now, then pauses and resumes partitions to match.
    fn reevaluate(&self, state: &mut State) {
        let now = SystemTime::now();
        if state
            .slowed_until
            .is_some_and(|until| until <= Instant::now())
        {
            state.slowed_until = None;
        }
        let gate = self.gate.state();
        let policy = self.shared.policy();
        for waiting in state.waiting.values_mut() {
            let still = waiting.hold.is_some_and(|hold| match hold {
                Hold::Due(due) => due > now,
                Hold::Gate {
                    priority, deadline, ..
                } => must_wait(&gate, priority, deadline, now, &policy).is_some(),
            });
            if !still {
                waiting.hold = None;
            }
        }
        self.reconcile(state);
    }

    /// Decides again on released heads, and the messages behind them, while jobs may start.
    fn start_released(&self, state: &mut State, jobs: &mut JoinSet<Settled>) {
        while self.may_start(state, jobs) {
            let Some(tp) = state
                .waiting
                .iter()
                .find(|(tp, waiting)| waiting.hold.is_none() && !self.slowed(state, tp))
                .map(|(tp, _)| tp.clone())
            else {
                return;
            };
            let waiting = state.waiting.get_mut(&tp).expect("found above");
            let pending = waiting
                .messages
                .pop_front()
                .expect("a waiting partition has a message");
            let decided = self.decide(state, jobs, pending);
            let waiting = state.waiting.get_mut(&tp).expect("found above");
            match decided {
                Decision::Taken if waiting.messages.is_empty() => {
                    state.waiting.remove(&tp);
                    self.reconcile(state);
                }
                Decision::Taken => {}
                Decision::Wait(pending, hold) => {
                    waiting.messages.push_front(pending);
                    waiting.hold = Some(hold);
                }
            }
        }
    }

    /// Whether `tp`'s lane is paused because the queue's target asked for a pause; the
    /// retry lane is not, so retries already due keep their place.
    fn slowed(&self, state: &State, tp: &Tp) -> bool {
        state.slowed_until.is_some() && self.lane(&tp.0) != Some(Lane::Retry)
    }

    fn should_pause(&self, state: &State, tp: &Tp) -> bool {
        self.slowed(state, tp) || state.waiting.contains_key(tp)
    }

    /// Pauses the partitions that must wait and resumes the others.
    fn reconcile(&self, state: &mut State) {
        let to_pause: Vec<Tp> = state
            .assignments
            .partitions()
            .filter(|tp| self.should_pause(state, tp) && !state.paused.contains(*tp))
            .cloned()
            .collect();
        if !to_pause.is_empty() {
            match self.consumer.pause(&partition_list(&to_pause)) {
                Ok(()) => state.paused.extend(to_pause.iter().cloned()),
                Err(error) => self.trouble("pause", &error),
            }
        }
        let to_resume: Vec<Tp> = state
            .paused
            .iter()
            .filter(|tp| !self.should_pause(state, tp))
            .cloned()
            .collect();
        let mut resumed = 0;
        if !to_resume.is_empty() {
            match self.consumer.resume(&partition_list(&to_resume)) {
                Ok(()) => {
                    for tp in &to_resume {
                        state.paused.remove(tp);
                    }
                    resumed = to_resume.len();
                }
                // Stays paused; tried again at the next recheck.
                Err(error) => self.trouble("resume", &error),
            }
        }
        if !to_pause.is_empty() || resumed > 0 {
            PartitionsPaused {
                queue: &self.shared.queue,
                paused: to_pause.len(),
                resumed,
            }
            .emit();
        }
    }

    fn trouble(&self, during: &'static str, error: &dyn std::fmt::Display) {
        KafkaTrouble {
            queue: &self.shared.queue,
            during,
            error,
        }
        .emit();
    }

    /// Takes one consumed message: decides on it, unless its partition already waits.
    fn take(&self, state: &mut State, jobs: &mut JoinSet<Settled>, message: &BorrowedMessage<'_>) {
        let tp: Tp = (message.topic().to_owned(), message.partition());
        let Some(lane) = self.lane(&tp.0) else {
            return;
        };
        let Some(ticket) = state.assignments.ticket(tp, message.offset()) else {
            // librdkafka drops what it fetched for a partition it revokes; should a message
            // still come, it is its new owner's, who reads it from the committed offset.
            return;
        };
        let pending = Pending {
            ticket,
            lane,
            raw: RawCopy {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: retry::owned_headers(message),
            },
        };
        if let Some(waiting) = state.waiting.get_mut(&pending.ticket.tp) {
            // Fetched before the pause took effect: it waits its turn behind the head.
            waiting.messages.push_back(pending);
            return;
        }
        if let Decision::Wait(pending, hold) = self.decide(state, jobs, pending) {
            let tp = pending.ticket.tp.clone();
            state.waiting.insert(
                tp,
                Waiting {
                    hold: Some(hold),
                    messages: VecDeque::from([pending]),
                },
            );
            self.reconcile(state);
        }
    }

    /// Runs a message's job (or moves it to the retry topic if it is not due yet, or settles
    /// it at once if it is not a job), or hands it back with the reason it must wait.
    fn decide(&self, state: &mut State, jobs: &mut JoinSet<Settled>, pending: Pending) -> Decision {
        let envelope = match decode_job(pending.raw.value.as_deref()) {
            Ok(envelope) => envelope,
            Err(problem) => {
                let ticket = &pending.ticket;
                NotAJob {
                    queue: &self.shared.queue,
                    topic: &ticket.tp.0,
                    partition: ticket.tp.1,
                    offset: ticket.offset,
                    problem: &problem,
                }
                .emit();
                state.assignments.started(ticket);
                self.store(state, ticket);
                return Decision::Taken;
            }
        };
        let job = envelope.job.clone().unwrap_or_default();
        let now = SystemTime::now();
        let headers = &pending.raw.headers;
        if pending.lane == Lane::Retry
            && let Some(due) = retry::due_at(headers).filter(|due| *due > now)
        {
            return Decision::Wait(pending, Hold::Due(due));
        }
        let not_before = job.not_before.and_then(|t| SystemTime::try_from(t).ok());
        let deferred = (pending.lane != Lane::Retry)
            .then_some(not_before)
            .flatten()
            .filter(|at| *at > now);
        if deferred.is_none() {
            let deadline = job.deadline.and_then(|t| SystemTime::try_from(t).ok());
            let priority = job.priority();
            if let Some(until) = must_wait(
                &self.gate.state(),
                priority,
                deadline,
                now,
                &self.shared.policy(),
            ) {
                let hold = Hold::Gate {
                    priority,
                    deadline,
                    until,
                };
                return Decision::Wait(pending, hold);
            }
        }
        let Pending {
            ticket,
            raw,
            lane: _,
        } = pending;
        let received = ReceivedJob {
            attempt: retry::attempt_of(&raw.headers),
            errors: retry::all_headers(&raw.headers, ERROR),
            redriven_by: retry::header(&raw.headers, REDRIVEN_BY).map(str::to_owned),
            envelope,
            job,
            queue: self.shared.queue.clone(),
            topic: ticket.tp.0.clone(),
            partition: ticket.tp.1,
            offset: ticket.offset,
        };
        let span = tracing::info_span!(
            "job",
            queue = %self.shared.queue,
            transaction_id = %received.envelope.transaction_id,
            event_id = %received.envelope.event_id,
            attempt = received.attempt,
        );
        state.assignments.started(&ticket);
        let shared = Arc::clone(&self.shared);
        if let Some(due) = deferred {
            jobs.spawn(defer(shared, received, raw, due, ticket).instrument(span));
            return Decision::Taken;
        }
        if let Some(rate) = self.shared.config.rate_per_s {
            let start = state
                .next_start
                .unwrap_or_else(Instant::now)
                .max(Instant::now());
            state.next_start = Some(start + Duration::from_secs_f64(1.0 / rate));
        }
        jobs.spawn(attempt(shared, received, raw, ticket).instrument(span));
        Decision::Taken
    }

    fn settled(&self, state: &mut State, joined: Result<Settled, tokio::task::JoinError>) {
        let settled = match joined {
            Ok(settled) => settled,
            // Only cancellation at shutdown gets here (panics are caught in the task); the
            // offset stays uncommitted.
            Err(_) => return,
        };
        if let Some(pause) = settled.slow_for {
            let until = Instant::now() + pause;
            if state.slowed_until.is_none_or(|current| current < until) {
                state.slowed_until = Some(until);
                QueueSlowed {
                    queue: &self.shared.queue,
                    pause,
                }
                .emit();
                self.reconcile(state);
            }
        }
        if settled.done {
            self.store(state, &settled.ticket);
        }
    }

    /// Settles `ticket`'s message, and stores its partition's offset if it moved.
    fn store(&self, state: &mut State, ticket: &Ticket) {
        let Some(next) = state.assignments.settled(ticket) else {
            return;
        };
        let tp = &ticket.tp;
        if let Err(error) = store_next_offset(&self.consumer, &tp.0, tp.1, next) {
            self.trouble("store offset", &error);
        }
    }
}

/// `None` when the job may start now; else when to ask again (`None` inside: only when the
/// gate changes).
fn must_wait(
    gate: &GateState,
    priority: JobPriority,
    deadline: Option<SystemTime>,
    now: SystemTime,
    policy: &AdmissionPolicy,
) -> Option<Option<SystemTime>> {
    let stamp = |at: SystemTime| jiff::Timestamp::try_from(at).ok();
    let admission = admits(
        gate,
        priority,
        deadline.and_then(stamp),
        stamp(now).unwrap_or_else(jiff::Timestamp::now),
        policy,
    );
    match admission {
        Admission::Run { .. } => None,
        Admission::Wait { recheck_in, .. } => Some(recheck_in.map(|after| now + after)),
    }
}

fn partition_list(partitions: &[Tp]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn decode_job(payload: Option<&[u8]>) -> Result<Envelope, String> {
    let envelope = Envelope::decode(payload.unwrap_or_default())
        .map_err(|e| format!("not a protobuf envelope: {e}"))?;
    envelope.validate().map_err(|e| e.to_string())?;
    match &envelope.job {
        None => Err("field `job` is missing: a job's envelope must carry it".to_owned()),
        Some(job) if job.kind.is_empty() => {
            Err("field `job.kind` is missing: it selects the handler".to_owned())
        }
        Some(_) => Ok(envelope),
    }
}
