//! What the SDK reports about itself: one typed event per observable thing. The series a
//! service knows at start are registered at zero: [`register_metrics`] for what it
//! publishes, [`register_provisioning_metrics`] as it provisions its topics, and each
//! consumer's as [`consume`](crate::consume) starts.

use std::time::Duration;

use metrics::{counter, histogram};
use retrace_telemetry::InternalEvent;
use tracing::{debug, info, warn};

use crate::Delivery;
use crate::provision::{Drift, ProvisionError};
use retrace_proto::OutcomeStatus;
use retrace_telemetry::register;

/// The `client` of [`BrokerUnreachable`] for the SDK's [`Publisher`](crate::Publisher).
pub(crate) const PRODUCER: &str = "producer";
/// The `reason`s of [`BrokerUnreachable`]: one broker, or all of them.
pub(crate) const BROKER_ERRORS: [&str; 2] = ["transport", "all_brokers_down"];
/// The statuses a consumer's handler settles an event with.
const HANDLED: [OutcomeStatus; 2] = [OutcomeStatus::Processed, OutcomeStatus::Failed];

/// Registers at zero the SDK's series of a service that publishes events
/// ([`Publisher::publish`](crate::Publisher::publish)) to `events_to`, and other messages
/// (outcomes, audit events, copies) to `also_to`: the topics it knows at start.
pub fn register_metrics(events_to: &[&str], also_to: &[&str]) {
    register(
        "retrace_sdk_events_published_total",
        &[("topic", events_to)],
    );
    let acknowledged: Vec<&str> = events_to.iter().chain(also_to).copied().collect();
    register(
        "retrace_sdk_publish_ack_seconds",
        &[("topic", &acknowledged)],
    );
    register("retrace_sdk_producer_replaced_total", &[]);
    register(
        "retrace_kafka_broker_errors_total",
        &[("client", &[PRODUCER]), ("reason", &BROKER_ERRORS)],
    );
    register("retrace_startup_retries_total", &[]);
}

/// Registers at zero the provisioning series of `service` (`retrace-gateway`, the client
/// name it provisions its topics as).
pub fn register_provisioning_metrics(service: &str) {
    let service = [service];
    register("retrace_topics_created_total", &[("service", &service)]);
    register(
        "retrace_topics_create_failures_total",
        &[("service", &service)],
    );
    register(
        "retrace_topics_drift_total",
        &[("service", &service), ("kind", &Drift::KINDS)],
    );
}

/// Registers at zero the series of consumer `consumer` of `topics`.
pub(crate) fn register_consumer_metrics(consumer: &str, topics: &[&str]) {
    let consumer = [consumer];
    let handled = HANDLED.map(|status| status.as_str_name());
    register(
        "retrace_sdk_events_handled_total",
        &[
            ("consumer", &consumer),
            ("topic", topics),
            ("status", &handled),
        ],
    );
    for per_topic in [
        "retrace_sdk_undecodable_total",
        "retrace_sdk_duplicates_skipped_total",
    ] {
        register(per_topic, &[("consumer", &consumer), ("topic", topics)]);
    }
    register(
        "retrace_sdk_consumer_errors_total",
        &[("consumer", &consumer)],
    );
}

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

/// A message the broker acknowledged, and how long that took from the send: linger, the
/// queue, the round trip and the broker's replication. What every acknowledged publish
/// (event, outcome, job copy, replay) waits for.
pub(crate) struct PublishAcknowledged<'a> {
    pub topic: &'a str,
    pub waited: Duration,
}

impl InternalEvent for PublishAcknowledged<'_> {
    fn emit(self) {
        histogram!("retrace_sdk_publish_ack_seconds", "topic" => self.topic.to_owned())
            .record(self.waited.as_secs_f64());
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

/// A second record of an event this consumer processed within its window (a publish
/// retried after its answer was lost): not handed to the handler again, and no outcome, since
/// the first record's outcome is the event's.
pub(crate) struct DuplicateSkipped<'a> {
    pub consumer: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub event_id: &'a str,
}

impl InternalEvent for DuplicateSkipped<'_> {
    fn emit(self) {
        debug!(
            consumer = self.consumer,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            event_id = self.event_id,
            "event already processed; its second record skipped"
        );
        counter!(
            "retrace_sdk_duplicates_skipped_total",
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
            "the Kafka producer failed fatally or was fenced; replaced by a new one"
        );
        counter!("retrace_sdk_producer_replaced_total").increment(1);
    }
}

/// A client of this process cannot reach a Kafka broker (librdkafka's error callback:
/// `BrokerTransportFailure`, a connection that failed or broke, or `AllBrokersDown`). While
/// the other brokers hold in-sync replicas, publishing carries on through them.
pub(crate) struct BrokerUnreachable<'a> {
    /// Which kind of client saw it: `producer`.
    pub client: &'static str,
    /// `transport` (one broker) or `all_brokers_down`.
    pub reason: &'static str,
    /// librdkafka's text, which names the broker (`host:port/id: Connect to … failed`).
    pub detail: &'a str,
}

impl InternalEvent for BrokerUnreachable<'_> {
    fn emit(self) {
        // librdkafka starts its text with the broker (`host:port/node-id: …`).
        let broker = self
            .detail
            .split_once(": ")
            .map(|(broker, _)| broker)
            .filter(|broker| broker.contains('/'))
            .unwrap_or_default();
        warn!(
            client = self.client,
            reason = self.reason,
            broker,
            error = self.detail,
            "Kafka broker unreachable: {}",
            self.detail
        );
        counter!(
            "retrace_kafka_broker_errors_total",
            "client" => self.client,
            "reason" => self.reason
        )
        .increment(1);
    }
}

/// A topic a service needs was missing and is now created.
pub(crate) struct TopicCreated<'a> {
    pub topic: &'a str,
    pub service: &'a str,
}

impl InternalEvent for TopicCreated<'_> {
    fn emit(self) {
        info!(topic = self.topic, service = self.service, "topic created");
        counter!("retrace_topics_created_total", "service" => self.service.to_owned()).increment(1);
    }
}

/// A topic a service needs is missing and could not be created.
pub(crate) struct TopicNotCreated<'a> {
    pub topic: &'a str,
    pub service: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for TopicNotCreated<'_> {
    fn emit(self) {
        warn!(
            topic = self.topic,
            service = self.service,
            reason = self.reason,
            "topic {} is missing and could not be created ({}); create it, or allow {} to \
             (CREATE on the cluster), or set [topics] create = false if it is created elsewhere",
            self.topic,
            self.reason,
            self.service
        );
        counter!("retrace_topics_create_failures_total", "service" => self.service.to_owned())
            .increment(1);
    }
}

/// An existing topic differs from the configuration; it is left as it is.
pub(crate) struct TopicDrifted<'a> {
    pub drift: &'a Drift,
    pub service: &'a str,
}

impl InternalEvent for TopicDrifted<'_> {
    fn emit(self) {
        warn!(
            topic = self.drift.topic(),
            service = self.service,
            drift = self.drift.kind(),
            "topic drift: {}",
            self.drift
        );
        counter!(
            "retrace_topics_drift_total",
            "service" => self.service.to_owned(),
            "kind" => self.drift.kind()
        )
        .increment(1);
    }
}

/// A service could not compare its topics with Kafka's at start.
pub(crate) struct TopicsNotChecked<'a> {
    pub service: &'a str,
    pub error: &'a ProvisionError,
}

impl InternalEvent for TopicsNotChecked<'_> {
    fn emit(self) {
        warn!(
            service = self.service,
            "topics not provisioned: {}; missing topics are not created until the next start",
            self.error
        );
        counter!("retrace_topics_create_failures_total", "service" => self.service.to_owned())
            .increment(1);
    }
}

/// A start-up step that Kafka answered with something passing (a leader being elected, a
/// topic not yet known everywhere), to be tried again.
pub(crate) struct StartupRetried<'a> {
    pub step: &'a str,
    pub attempt: u32,
    pub cause: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl InternalEvent for StartupRetried<'_> {
    fn emit(self) {
        warn!(
            step = self.step,
            attempt = self.attempt,
            cause = %self.cause,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "start-up step not done yet, trying again: {}: {}",
            self.step,
            self.cause
        );
        counter!("retrace_startup_retries_total").increment(1);
    }
}
