//! What the SDK reports about itself: one typed event per observable thing.

use metrics::counter;
use retrace_telemetry::InternalEvent;
use tracing::{debug, warn};

use crate::Delivery;

pub(crate) struct EventPublished<'a> {
    pub delivery: &'a Delivery,
    pub event_type: &'a str,
}

impl InternalEvent for EventPublished<'_> {
    fn emit(self) {
        debug!(
            topic = %self.delivery.topic,
            partition = self.delivery.partition,
            offset = self.delivery.offset,
            event_type = self.event_type,
            "event published"
        );
        counter!("retrace_sdk_events_published_total", "topic" => self.delivery.topic.clone())
            .increment(1);
    }
}

pub(crate) struct EventHandled<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub status: &'static str,
    pub error: Option<&'a str>,
}

impl InternalEvent for EventHandled<'_> {
    fn emit(self) {
        match self.error {
            Some(error) => warn!(
                consumer = self.consumer,
                topic = self.topic,
                error,
                "event handler failed"
            ),
            None => debug!(
                consumer = self.consumer,
                topic = self.topic,
                "event handled"
            ),
        }
        counter!(
            "retrace_sdk_events_handled_total",
            "consumer" => self.consumer.to_owned(),
            "topic" => self.topic.to_owned(),
            "status" => self.status,
        )
        .increment(1);
    }
}

/// A message the consumer could not turn into an event: it is skipped (the archive keeps it).
pub(crate) struct UndecodableEvent<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub problem: &'a str,
}

impl InternalEvent for UndecodableEvent<'_> {
    fn emit(self) {
        warn!(
            consumer = self.consumer,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            problem = self.problem,
            "message is not a valid Retrace envelope; skipped"
        );
        counter!(
            "retrace_sdk_undecodable_total",
            "consumer" => self.consumer.to_owned(),
            "topic" => self.topic.to_owned(),
        )
        .increment(1);
    }
}

pub(crate) struct ConsumerError<'a> {
    pub consumer: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ConsumerError<'_> {
    fn emit(self) {
        warn!(consumer = self.consumer, error = %self.error, "Kafka consumer error; continuing");
        counter!("retrace_sdk_consumer_errors_total", "consumer" => self.consumer.to_owned())
            .increment(1);
    }
}

/// The producer hit a fatal error (an idempotent producer fenced or out of sequence after a
/// broker outage) and was replaced: without this, every later publish would fail until the
/// service restarted.
pub(crate) struct ProducerReplaced<'a> {
    pub error: &'a str,
}

impl InternalEvent for ProducerReplaced<'_> {
    fn emit(self) {
        warn!(
            error = self.error,
            "the Kafka producer failed fatally; replaced by a new one"
        );
        counter!("retrace_sdk_producer_replaced_total").increment(1);
    }
}
