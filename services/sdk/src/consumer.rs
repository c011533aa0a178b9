//! [`consume`]: run a handler over a topic's events and report an outcome for each.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use retrace_proto::{Envelope, Outcome, OutcomeStatus};
use retrace_telemetry::InternalEvent;
use tokio_util::sync::CancellationToken;

use crate::events::{ConsumerError, DuplicateSkipped, EventHandled, UndecodableEvent};
use crate::recent::{RECENT_EVENTS, RecentEvents};
use crate::{KafkaSettings, PartitionProgress, Publisher, store_next_offset};

/// Offsets are stored only after an event's outcome is published, then committed in the
/// background: at-least-once delivery to the handler.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
];

/// Events received and not yet settled, at most: handlers wait on other services, so one
/// event at a time would leave a consumer idle for most of each round trip.
const IN_FLIGHT: usize = 64;

/// An event handed to an [`EventHandler`].
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub envelope: Envelope,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a handler could not process an event: the outcome's error text and, when the handler
/// names the cause, its error code. Failures of one step with the same code form one incident
/// whatever their text; without a code, their text with its variable parts normalised groups
/// them (docs/incidents.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
    code: Option<String>,
}

impl HandlerError {
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            code: None,
        }
    }

    /// With a stable code for the cause, e.g. `population_register_timeout`: ASCII letters,
    /// digits, `_`, `.` and `-`, at most 64 ([`retrace_proto::check_error_code`]). A code
    /// that breaks the rule is left out of the outcome, and its error text says so.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// What a service does with each event it consumes.
pub trait EventHandler: Send + Sync {
    fn handle(
        &self,
        event: &ReceivedEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("cannot create a Kafka consumer for {bootstrap}: {source}")]
    Create {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot subscribe to topics {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: KafkaError,
    },
    /// The consumer can no longer be used: as a static member, another consumer joined the
    /// group under the same instance id and fenced this one.
    #[error(
        "the Kafka consumer in group {group_id} failed fatally ({code:?}: {reason}); \
         was another consumer started with the same group instance id?"
    )]
    Fatal {
        group_id: String,
        code: RDKafkaErrorCode,
        reason: String,
    },
}

/// Consumes `topics` in consumer group `group_id` until `shutdown`, hands every event to
/// `handler`, and publishes an [`Outcome`] from `consumer_name` for each. A message that is
/// not a valid envelope is counted and skipped; it stays in the archive.
///
/// Up to 64 events are handled at once, but never two of the same transaction: its events
/// reach the handler one after another, in partition order (publishers key by transaction
/// id, so they share a partition).
///
/// Delivery is at least once, and an event may be on the topic twice (a publish retried
/// after its answer was lost). A second record of an event id this consumer processed among
/// its last 10,000 is skipped, counted in `retrace_sdk_duplicates_skipped_total`, with no
/// outcome. Not skipped: a replayed copy (asked for), the second record of an event whose
/// handler failed (a retry), and anything after a restart or a rebalance, since the window
/// is this process's memory: handlers with effects outside Kafka still check the event id.
///
/// Restarts. A consumer that shuts down leaves its group, which hands its partitions to the
/// others (or to it again once restarted) at once. One that dies (SIGKILL, a lost node) holds
/// them until its session ends: the coordinator waits `session.timeout.ms` (45 s by default;
/// a `settings.properties` entry) without a heartbeat, then rebalances, so a consumer
/// restarted after a crash resumes only after that, about 45 to 90 s on Apache Kafka.
/// With [`KafkaSettings::group_instance_id`] it is a static member (`group.instance.id`):
/// restarted under the same id, crashed or shut down, it takes its partitions back at once
/// (in under a second on Apache Kafka), with no rebalance. But a static member does not leave
/// its group when it stops, so if it does not come back its partitions wait
/// `session.timeout.ms` before moving to the other members: the session timeout is then how
/// long a restart may take without a rebalance, and how long a member gone for good leaves
/// its partitions unconsumed. Each process needs an id of its own: a second consumer started
/// under the same id fences the first, whose `consume` returns [`ConsumeError::Fatal`].
pub async fn consume(
    settings: &KafkaSettings,
    group_id: &str,
    consumer_name: &str,
    topics: &[&str],
    handler: &impl EventHandler,
    publisher: &Publisher,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    crate::events::register_consumer_metrics(consumer_name, topics);
    let mut config = settings.client_config(CONSUMER_DEFAULTS);
    config.set("group.id", group_id);
    if let Some(instance_id) = &settings.group_instance_id {
        config.set("group.instance.id", instance_id);
    }
    let consumer: StreamConsumer = config.create().map_err(|source| ConsumeError::Create {
        bootstrap: settings.bootstrap_servers.clone(),
        source,
    })?;
    consumer
        .subscribe(topics)
        .map_err(|source| ConsumeError::Subscribe {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            source,
        })?;
    let mut order = Order::default();
    let recent = RecentEvents::new(RECENT_EVENTS);
    let mut running = FuturesUnordered::new();
    loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(handled) = running.next(), if !running.is_empty() => {
                Step::Handled(Box::new(handled))
            }
            message = consumer.recv(), if order.unsettled() < IN_FLIGHT => Step::Received(message),
        };
        let settled = match step {
            Step::Handled(handled) => {
                let Handled { event, reported } = *handled;
                if !reported {
                    break;
                }
                let (next, commit) = order.settled(&event);
                if let Some(next) = next {
                    running.push(handle(
                        next,
                        consumer_name,
                        handler,
                        publisher,
                        &recent,
                        shutdown,
                    ));
                }
                commit.map(|offset| (event.topic, event.partition, offset))
            }
            Step::Received(Err(error)) => {
                ConsumerError {
                    consumer: consumer_name,
                    error: &error,
                }
                .emit();
                // Fenced (a static member replaced under its id): nothing more will come, and
                // what is being handled cannot be committed; the other member has it all.
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    return Err(ConsumeError::Fatal {
                        group_id: group_id.to_owned(),
                        code,
                        reason,
                    });
                }
                None
            }
            Step::Received(Ok(message)) => match decode(&message) {
                Ok(event) => {
                    if let Some(event) = order.received(event) {
                        running.push(handle(
                            event,
                            consumer_name,
                            handler,
                            publisher,
                            &recent,
                            shutdown,
                        ));
                    }
                    None
                }
                Err(problem) => {
                    UndecodableEvent {
                        consumer: consumer_name,
                        topic: message.topic(),
                        partition: message.partition(),
                        offset: message.offset(),
                        problem: &problem,
                    }
                    .emit();
                    order
                        .skipped(message.topic(), message.partition(), message.offset())
                        .map(|offset| (message.topic().to_owned(), message.partition(), offset))
                }
            },
        };
        if let Some((topic, partition, next)) = settled
            && let Err(error) = store_next_offset(&consumer, &topic, partition, next)
        {
            ConsumerError {
                consumer: consumer_name,
                error: &error,
            }
            .emit();
        }
    }
    // Events still being handled are dropped unsettled: their offsets were not stored, so
    // the next run hands them over again.
    drop(running);
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit, or the group is gone: the next run resumes
        // from the last committed offset, at worst handling a few events again.
        ConsumerError {
            consumer: consumer_name,
            error: &error,
        }
        .emit();
    }
    Ok(())
}

enum Step<M> {
    Received(M),
    /// Boxed: an event is large beside a received message's handle.
    Handled(Box<Handled>),
}

struct Handled {
    event: ReceivedEvent,
    /// False when shut down before the outcome was published.
    reported: bool,
}

fn decode(message: &BorrowedMessage<'_>) -> Result<ReceivedEvent, String> {
    let envelope = Envelope::decode(message.payload().unwrap_or_default())
        .map_err(|e| format!("not a protobuf envelope: {e}"))?;
    envelope.validate().map_err(|e| e.to_string())?;
    Ok(ReceivedEvent {
        envelope,
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    })
}

/// Runs the handler on one event and publishes its outcome, unless the event was processed
/// lately. Two records of one event share its transaction, so the second starts only after
/// the first settled: it finds the first remembered.
async fn handle(
    event: ReceivedEvent,
    consumer_name: &str,
    handler: &impl EventHandler,
    publisher: &Publisher,
    recent: &RecentEvents,
    shutdown: &CancellationToken,
) -> Handled {
    let event_id = &event.envelope.event_id;
    // A replayed copy was asked for: it runs again whatever this consumer remembers.
    if event.envelope.replay.is_none() && recent.contains(event_id) {
        DuplicateSkipped {
            consumer: consumer_name,
            topic: &event.topic,
            partition: event.partition,
            offset: event.offset,
            event_id,
        }
        .emit();
        return Handled {
            event,
            reported: true,
        };
    }
    let result = handler.handle(&event).await;
    // Only a success is remembered: a failed event's second record is a retry.
    if result.is_ok() {
        recent.remember(event_id);
    }
    let outcome = settle(&event, consumer_name, result);
    let reported = report(publisher, &outcome, shutdown).await;
    Handled { event, reported }
}

/// Which events may be handled now, and which offsets may be stored. A transaction's events
/// are handled one after another, in the order they were received; different transactions
/// run side by side. A partition's offset moves only past events that are settled.
#[derive(Default)]
struct Order {
    /// Transactions with an event being handled, and their events waiting behind it.
    busy: HashMap<String, VecDeque<ReceivedEvent>>,
    progress: HashMap<(String, i32), PartitionProgress>,
    unsettled: usize,
}

impl Order {
    fn unsettled(&self) -> usize {
        self.unsettled
    }

    /// Returns the event if it can be handled now; otherwise it waits for its transaction.
    fn received(&mut self, event: ReceivedEvent) -> Option<ReceivedEvent> {
        self.start(&event.topic, event.partition, event.offset);
        match self.busy.get_mut(&event.envelope.transaction_id) {
            Some(waiting) => {
                waiting.push_back(event);
                None
            }
            None => {
                self.busy
                    .insert(event.envelope.transaction_id.clone(), VecDeque::new());
                Some(event)
            }
        }
    }

    /// Settles a handled event: returns its transaction's next event, if one waits, and the
    /// partition's offset to store, if it moved.
    fn settled(&mut self, event: &ReceivedEvent) -> (Option<ReceivedEvent>, Option<i64>) {
        let transaction = &event.envelope.transaction_id;
        let next = self.busy.get_mut(transaction).and_then(VecDeque::pop_front);
        if next.is_none() {
            self.busy.remove(transaction);
        }
        let commit = self.finish(&event.topic, event.partition, event.offset);
        (next, commit)
    }

    /// A message that is not an event: nothing to handle, its offset is settled at once.
    fn skipped(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.start(topic, partition, offset);
        self.finish(topic, partition, offset)
    }

    fn start(&mut self, topic: &str, partition: i32, offset: i64) {
        self.unsettled += 1;
        self.progress
            .entry((topic.to_owned(), partition))
            .or_default()
            .started(offset);
    }

    fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        self.unsettled -= 1;
        self.progress
            .get_mut(&(topic.to_owned(), partition))
            .and_then(|progress| progress.settled(offset))
    }
}

/// The one place that decides what a handler's result means. Retries and dead-lettering
/// (the off-peak worker) plug in here: they turn a failure into `RETRYING` or
/// `DEAD_LETTERED` and re-route the event.
fn settle(event: &ReceivedEvent, consumer: &str, result: Result<(), HandlerError>) -> Outcome {
    let outcome = match result {
        Ok(()) => Outcome::of(&event.envelope, consumer, OutcomeStatus::Processed, None, 1),
        Err(HandlerError { message, code }) => {
            let failed = OutcomeStatus::Failed;
            let outcome = Outcome::of(&event.envelope, consumer, failed, Some(message), 1);
            match code {
                Some(code) => outcome.with_error_code(code),
                None => outcome,
            }
        }
    };
    let status = outcome.status();
    EventHandled {
        consumer,
        topic: &event.topic,
        status: status.as_str_name(),
        error: (status == OutcomeStatus::Failed).then_some(outcome.error.as_str()),
    }
    .emit();
    outcome
}

/// Publishes `outcome`, retrying until Kafka takes it: the event's offset is not stored
/// before its outcome is. Returns false if shut down first.
async fn report(publisher: &Publisher, outcome: &Outcome, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match publisher.publish_outcome(outcome).await {
            Ok(_) => return true,
            Err(error) => {
                ConsumerError {
                    consumer: &outcome.consumer,
                    error: &error,
                }
                .emit();
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(transaction: &str, offset: i64) -> ReceivedEvent {
        let mut envelope = Envelope::root("registration", "birth.registration.submitted.v1");
        envelope.transaction_id = transaction.to_owned();
        ReceivedEvent {
            envelope,
            topic: "registrations".to_owned(),
            partition: 0,
            offset,
        }
    }

    #[test]
    fn a_transactions_events_wait_for_each_other_and_others_do_not() {
        let mut order = Order::default();
        let first = order.received(event("t1", 0)).expect("nothing runs for t1");
        assert!(
            order.received(event("t1", 1)).is_none(),
            "t1's first event runs"
        );
        let other = order
            .received(event("t2", 2))
            .expect("t2 does not wait for t1");

        let (next, commit) = order.settled(&first);
        assert_eq!(next.map(|e| e.offset), Some(1), "t1's second event is next");
        assert_eq!(commit, Some(1), "offset 0 is settled, 1 is not");
        let (next, commit) = order.settled(&other);
        assert!(next.is_none());
        assert_eq!(
            commit, None,
            "offset 1 still runs, so the offset stays at 1"
        );
        let (next, commit) = order.settled(&event("t1", 1));
        assert!(next.is_none());
        assert_eq!(commit, Some(3));
        assert_eq!(order.unsettled(), 0);
    }

    #[test]
    fn a_handlers_error_code_goes_into_the_outcome_and_a_bad_one_is_said_in_its_text() {
        let received = event("t1", 0);
        let coded = settle(
            &received,
            "validation",
            Err(HandlerError::new("no answer within 2 s").with_code("population_register_timeout")),
        );
        assert_eq!(coded.status(), OutcomeStatus::Failed);
        assert_eq!(coded.error, "no answer within 2 s");
        assert_eq!(coded.error_code, "population_register_timeout");

        let uncoded = settle(&received, "validation", Err(HandlerError::new("no answer")));
        assert_eq!(uncoded.error_code, "");

        let refused = settle(
            &received,
            "validation",
            Err(HandlerError::new("no answer").with_code("no answer")),
        );
        assert_eq!(refused.error_code, "");
        assert!(refused.error.starts_with("no answer [error_code left out:"));
        refused.validate().expect("the outcome is still published");
    }

    #[test]
    fn an_undecodable_message_moves_the_offset_only_past_settled_events() {
        let mut order = Order::default();
        let running = order.received(event("t1", 0)).unwrap();
        assert_eq!(
            order.skipped("registrations", 0, 1),
            Some(0),
            "offset 0 still runs, so the offset stays before it"
        );
        assert_eq!(order.settled(&running).1, Some(2));
    }
}
