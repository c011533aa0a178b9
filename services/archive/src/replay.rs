//! Replays: re-publishing a transaction's archived messages, as they were, so the services
//! downstream handle them again.
//!
//! A replay is planned first (the exact messages and where they go), recorded in the store
//! (who, when, why, what) before anything is published, and then run in the background at a
//! bounded rate; its progress is saved as it goes. Every re-published message keeps its key,
//! value and headers and gains `retrace-replay-id` / `retrace-replay-of` headers (and, for an
//! envelope, its `replay` field), so consumers and traces can tell the copy from the original.
//!
//! What a replay request must pass first, and how it is answered, is [`policy`].

mod policy;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use prost::Message as _;
use retrace_log_store::{ArchivedRecord, Change, LogStore, RecordKind, ReplayRecord, ReplayState};
use retrace_proto::headers::{REPLAY_ID, REPLAY_OF};
use retrace_proto::{Envelope, Replay};
use retrace_sdk::{Delivery, PublishError, Publisher, RawMessage};
use retrace_telemetry::InternalEvent;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use retrace_api::PlannedMessage;

use crate::changes::{ChangeError, ChangeLog};
use crate::events::{MessageReplayed, ReplayFinished, ReplayProgressNotSaved, ReplayStarted};
use crate::trace::{failed_event_ids, is_publication, replay_id};

pub(crate) use policy::{Replays, Replied};

/// How many messages a bulk replay keeps in flight; Kafka keeps each partition's order.
const BULK_IN_FLIGHT: usize = 64;
/// Progress is saved at least this often, so whoever watches a replay sees it move.
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// Which of a transaction's messages to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub from_event_id: Option<String>,
    pub only_failed: bool,
    /// Only these events (an incident's failing steps).
    pub events: Option<HashSet<String>>,
    pub target_topic: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("event {0} is not an event of this transaction: pick one from its trace")]
    UnknownFromEvent(String),
}

/// One message to re-publish.
#[derive(Debug, Clone)]
pub struct Planned {
    pub original: ArchivedRecord,
    pub target_topic: String,
}

impl Planned {
    pub fn view(&self) -> PlannedMessage {
        let ids = self.original.ids.clone().unwrap_or_default();
        PlannedMessage {
            transaction_id: ids.transaction_id,
            event_id: ids.event_id,
            event_type: ids.event_type,
            topic: self.original.key.topic.clone(),
            partition: self.original.key.partition,
            offset: self.original.key.offset,
            target_topic: self.target_topic.clone(),
        }
    }
}

/// The messages of one transaction a replay re-publishes, in original (time) order: its
/// original events (not outcomes, not earlier replays' copies), each once, as published: a
/// job the worker retried and dead-lettered is re-published once, from its publication on
/// its queue, not from its retry or dead-letter copies.
pub fn plan(records: &[ArchivedRecord], selection: &Selection) -> Result<Vec<Planned>, PlanError> {
    let mut originals: Vec<&ArchivedRecord> = records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Envelope | RecordKind::HeadersOnly))
        .filter(|r| replay_id(r).is_none())
        .collect();
    // The worker's copies repeat the event's time: among records of one time, the
    // publication goes first, so it is the one kept of its event.
    originals.sort_by_key(|r| (r.time_ms, !is_publication(r)));
    let start = match &selection.from_event_id {
        Some(from) => originals
            .iter()
            .position(|r| r.ids.as_ref().is_some_and(|ids| ids.event_id == *from))
            .ok_or_else(|| PlanError::UnknownFromEvent(from.clone()))?,
        None => 0,
    };
    let failed = match &selection.events {
        Some(events) => Some(events.clone()),
        None => selection.only_failed.then(|| failed_event_ids(records)),
    };
    let mut seen = HashSet::new();
    Ok(originals[start..]
        .iter()
        .filter(|r| {
            let event_id = r.ids.as_ref().map_or("", |ids| ids.event_id.as_str());
            failed.as_ref().is_none_or(|f| f.contains(event_id))
                && (event_id.is_empty() || seen.insert(event_id.to_owned()))
        })
        .map(|r| Planned {
            original: (*r).clone(),
            target_topic: selection
                .target_topic
                .clone()
                .unwrap_or_else(|| r.key.topic.clone()),
        })
        .collect())
}

/// What claiming a replay on the change log came to.
pub(crate) enum Claim {
    /// The replay is this replica's to publish.
    Won(ReplayRecord),
    /// Another replay held its idempotency key first: this one is not kept.
    Lost(ReplayRecord),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClaimError {
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Store(#[from] retrace_log_store::StoreError),
    #[error(
        "replay {0} was published on the archive's change log, but this archive refused the \
         record (it is listed among the flagged records): every replica must share the \
         `[auth]` signing keys"
    )]
    NotKept(String),
}

/// Runs replays in the background; owns their tasks, which stop when the service does.
#[derive(Clone)]
pub struct Replayer {
    store: LogStore,
    publisher: Publisher,
    changes: ChangeLog,
    /// Who runs the replays this replica claims.
    replica: String,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Replayer {
    pub(crate) fn new(
        store: LogStore,
        publisher: Publisher,
        changes: ChangeLog,
        replica: &str,
        shutdown: CancellationToken,
    ) -> Self {
        Replayer {
            store,
            publisher,
            changes,
            replica: replica.to_owned(),
            tasks: TaskTracker::new(),
            shutdown,
        }
    }

    pub fn store(&self) -> &LogStore {
        &self.store
    }

    /// Publishes `replay` (running, by this replica, of `planned` messages) on the change
    /// log and waits for this replica to apply it; then the log says whether it won its
    /// idempotency key. Blocks: call it on the blocking pool.
    pub(crate) fn claim(
        &self,
        mut replay: ReplayRecord,
        planned: usize,
    ) -> Result<Claim, ClaimError> {
        replay.planned = planned as u64;
        replay.replica_id = self.replica.clone();
        replay.set_state(ReplayState::Running);
        let key = change_key(&replay).to_owned();
        tokio::runtime::Handle::current().block_on(
            self.changes
                .publish_applied(&key, Change::Replay(replay.clone())),
        )?;
        let kept = if replay.request_key.is_empty() {
            self.store.replay(&replay.replay_id)?
        } else {
            self.store.replay_for_request(&replay.request_key)?
        };
        match kept {
            Some(kept) if kept.replay_id == replay.replay_id => Ok(Claim::Won(replay)),
            Some(kept) => Ok(Claim::Lost(kept)),
            None => Err(ClaimError::NotKept(replay.replay_id)),
        }
    }

    /// Starts re-publishing `messages` of a replay this replica won, at up to `rate`
    /// messages a second (`None`: one at a time, as fast as Kafka acknowledges).
    pub(crate) fn start(&self, replay: ReplayRecord, messages: Vec<Planned>, rate: Option<u32>) {
        ReplayStarted { replay: &replay }.emit();
        let this = self.clone();
        self.tasks
            .spawn(async move { this.run(replay, messages, rate).await });
    }

    /// Marks failed, in the background, the replays this replica was running when it last
    /// stopped (other replicas mark theirs), on the change log like any progress.
    pub(crate) fn fail_interrupted(&self) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let replays = match this.store.replays() {
                Ok(replays) => replays,
                Err(error) => {
                    return ReplayProgressNotSaved {
                        replay_id: "(listing replays)",
                        error: &error,
                    }
                    .emit();
                }
            };
            for mut replay in replays {
                if replay.state() != ReplayState::Running || replay.replica_id != this.replica {
                    continue;
                }
                replay.set_state(ReplayState::Failed);
                replay.finished_at_ms = now_ms();
                replay.error = format!(
                    "interrupted: the archive service stopped after {} of {} messages; replay \
                     again to finish",
                    replay.published, replay.planned
                );
                this.save(&replay).await;
            }
        });
    }

    /// Waits for running replays to stop after shutdown was requested.
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn run(&self, mut replay: ReplayRecord, messages: Vec<Planned>, rate: Option<u32>) {
        let in_flight = if rate.is_some() { BULK_IN_FLIGHT } else { 1 };
        let mut ticker = rate.map(|rate| {
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        // The copy the publishing futures read, while `replay` counts progress.
        let asked = replay.clone();
        let mut pending = FuturesOrdered::new();
        let mut queue = messages.iter();
        let mut failure: Option<String> = None;
        let mut saved_at = Instant::now();
        loop {
            let can_send = pending.len() < in_flight && failure.is_none();
            let next = if can_send { queue.next() } else { None };
            if let Some(message) = next {
                if let Some(ticker) = ticker.as_mut() {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        () = self.shutdown.cancelled() => {
                            failure = Some("interrupted: the archive service stopped".into());
                            continue;
                        }
                    }
                }
                pending.push_back(self.republish(&asked, message));
                continue;
            }
            let Some(delivered) = pending.next().await else {
                break;
            };
            match delivered {
                Ok(()) => {
                    replay.published += 1;
                    if saved_at.elapsed() >= SAVE_EVERY {
                        self.save(&replay).await;
                        saved_at = Instant::now();
                    }
                }
                Err(error) => failure = failure.or(Some(error.to_string())),
            }
        }
        replay.finished_at_ms = now_ms();
        match failure {
            None => replay.set_state(ReplayState::Done),
            Some(error) => {
                replay.set_state(ReplayState::Failed);
                replay.error = format!(
                    "{error}; {} of {} messages were re-published before it stopped: replay \
                     again (consumers see the same event ids) to finish",
                    replay.published, replay.planned
                );
            }
        }
        self.save(&replay).await;
        ReplayFinished { replay: &replay }.emit();
    }

    async fn republish(
        &self,
        replay: &ReplayRecord,
        message: &Planned,
    ) -> Result<(), PublishError> {
        let original = &message.original;
        let event_id = original
            .ids
            .as_ref()
            .map_or("", |ids| ids.event_id.as_str());
        let value = match original.kind {
            RecordKind::Envelope => original.value.as_deref().map(|value| {
                let mut envelope = Envelope::decode(value).unwrap_or_default();
                envelope.replay = Some(Replay {
                    replay_id: replay.replay_id.clone(),
                    original_event_id: event_id.to_owned(),
                    original_topic: original.key.topic.clone(),
                    original_partition: original.key.partition,
                    original_offset: original.key.offset,
                    requested_by: replay.requested_by.clone(),
                    reason: replay.reason.clone(),
                    requested_at: Some(timestamp(replay.requested_at_ms)),
                });
                envelope.encode_to_vec()
            }),
            _ => original.value.clone(),
        };
        let mut headers: Vec<(&str, Option<&[u8]>)> = original
            .headers
            .iter()
            .filter(|h| h.name != REPLAY_ID && h.name != REPLAY_OF)
            .map(|h| (h.name.as_str(), h.value.as_deref()))
            .collect();
        headers.push((REPLAY_ID, Some(replay.replay_id.as_bytes())));
        headers.push((REPLAY_OF, Some(event_id.as_bytes())));
        let raw = RawMessage {
            key: original.message_key.as_deref(),
            value: value.as_deref(),
            headers: &headers,
        };
        let delivery: Delivery = self
            .publisher
            .republish(&message.target_topic, &raw, event_id)
            .await?;
        MessageReplayed {
            replay_id: &replay.replay_id,
            original: &original.key,
            delivery: &delivery,
        }
        .emit();
        Ok(())
    }

    /// Progress, on the change log for every replica, is best effort: a failed save is
    /// logged, and the next one catches up.
    async fn save(&self, replay: &ReplayRecord) {
        let change = Change::Replay(replay.clone());
        if let Err(error) = self.changes.publish(change_key(replay), change).await {
            ReplayProgressNotSaved {
                replay_id: &replay.replay_id,
                error: &error,
            }
            .emit();
        }
    }
}

/// A replay's records on the change log share one key, so they stay in order: its
/// idempotency key (which two replicas asked at once compete for), else its id.
fn change_key(replay: &ReplayRecord) -> &str {
    if replay.request_key.is_empty() {
        &replay.replay_id
    } else {
        &replay.request_key
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `ms` since the epoch as a protobuf time.
pub(crate) fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}
