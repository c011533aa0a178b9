//! [`consume`]: run a handler over a topic's events and report an outcome for each.

use std::future::Future;
use std::time::Duration;

use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use retrace_proto::{Envelope, Outcome, OutcomeStatus};
use retrace_telemetry::InternalEvent;
use tokio_util::sync::CancellationToken;

use crate::events::{ConsumerError, EventHandled, UndecodableEvent};
use crate::{KafkaSettings, Publisher};

/// Offsets are stored only after an event's outcome is published, then committed in the
/// background: at-least-once delivery to the handler.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
];

/// An event handed to an [`EventHandler`].
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub envelope: Envelope,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a handler could not process an event; becomes the outcome's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

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
}

/// Consumes `topics` in consumer group `group_id` until `shutdown`, hands every event to
/// `handler`, and publishes an [`Outcome`] from `consumer_name` for each. A message that is
/// not a valid envelope is counted and skipped; it stays in the archive.
pub async fn consume(
    settings: &KafkaSettings,
    group_id: &str,
    consumer_name: &str,
    topics: &[&str],
    handler: &impl EventHandler,
    publisher: &Publisher,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    let mut config = settings.client_config(CONSUMER_DEFAULTS);
    config.set("group.id", group_id);
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
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                ConsumerError {
                    consumer: consumer_name,
                    error: &error,
                }
                .emit();
                continue;
            }
        };
        let decoded = Envelope::decode(message.payload().unwrap_or_default())
            .map_err(|e| format!("not a protobuf envelope: {e}"))
            .and_then(|envelope| {
                envelope.validate().map_err(|e| e.to_string())?;
                Ok(envelope)
            });
        match decoded {
            Ok(envelope) => {
                let event = ReceivedEvent {
                    envelope,
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                let result = handler.handle(&event).await;
                let outcome = settle(&event, consumer_name, result);
                if !report(publisher, &outcome, shutdown).await {
                    break;
                }
            }
            Err(problem) => UndecodableEvent {
                consumer: consumer_name,
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                problem: &problem,
            }
            .emit(),
        }
        if let Err(error) = consumer.store_offset_from_message(&message) {
            ConsumerError {
                consumer: consumer_name,
                error: &error,
            }
            .emit();
        }
    }
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

/// The one place that decides what a handler's result means. Retries and dead-lettering
/// (the off-peak worker) plug in here: they turn a failure into `RETRYING` or
/// `DEAD_LETTERED` and re-route the event.
fn settle(event: &ReceivedEvent, consumer: &str, result: Result<(), HandlerError>) -> Outcome {
    let (status, error) = match result {
        Ok(()) => (OutcomeStatus::Processed, None),
        Err(HandlerError(error)) => (OutcomeStatus::Failed, Some(error)),
    };
    EventHandled {
        consumer,
        topic: &event.topic,
        status: status.as_str_name(),
        error: error.as_deref(),
    }
    .emit();
    Outcome::of(&event.envelope, consumer, status, error, 1)
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
