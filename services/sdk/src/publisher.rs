//! [`Publisher`]: envelopes and outcomes onto Kafka, acknowledged by the broker.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prost::Message;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{
    AUDIT_TOPIC, AUDIT_TYPE, AuditEvent, Envelope, EnvelopeError, OUTCOME_TYPE, OUTCOMES_TOPIC,
    Outcome,
};
use retrace_telemetry::InternalEvent;

use crate::KafkaSettings;
use crate::events::{
    BROKER_ERRORS, BrokerUnreachable, EventPublished, PRODUCER, ProducerReplaced,
    PublishAcknowledged,
};

/// Durability first: every in-sync replica acknowledges, and retries never duplicate.
///
/// `murmur2_random` places a key where the Java client's default partitioner does (murmur2 of
/// the key), so a transaction's events land on one partition whichever SDK or language
/// published them; librdkafka's own default (`consistent_random`, CRC32) disagrees with Java
/// for most keys. Keyless messages still spread at random.
///
/// `message.timeout.ms` (30 s) outlasts a leader's failover, so a broker's routine death fails
/// no publish: Kafka fences a dead broker after `broker.session.timeout.ms` (9 s), a dead
/// active controller adds an election, and the longest stall measured on three nodes was
/// 12.7 s (docs/configuration.md, "Kafka timeouts, and why"; `tests/scenarios/cluster.rs`).
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "30000"),
];

/// Where the broker put a published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("event not published: {0}")]
    Invalid(#[from] EnvelopeError),
    #[error("cannot create a Kafka producer for {bootstrap}: {source}")]
    Create {
        bootstrap: String,
        source: Box<KafkaError>,
    },
    #[error(
        "Kafka did not acknowledge event {event_id} on topic {topic}: {source}. It may or may \
         not be stored; publishing it again with the same event id is safe"
    )]
    NotAcknowledged {
        event_id: String,
        topic: String,
        source: Box<KafkaError>,
    },
}

/// A Kafka message as bytes: key, value and headers, each possibly absent.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Publishes Retrace messages. Cheap to clone; clones share one producer, and a producer that
/// failed fatally is replaced for all of them.
#[derive(Clone)]
pub struct Publisher {
    /// The producer in use and how many it replaced, so concurrent failures replace it once.
    producer: Arc<RwLock<(u64, FutureProducer<WatchBrokers>)>>,
    settings: KafkaSettings,
}

/// The producer's librdkafka context: a broker it cannot reach is reported
/// ([`BrokerUnreachable`]); other client errors are logged as rdkafka's default does.
pub(crate) struct WatchBrokers;

impl ClientContext for WatchBrokers {
    fn error(&self, error: KafkaError, reason: &str) {
        let [transport, all_brokers_down] = BROKER_ERRORS;
        let unreachable = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::BrokerTransportFailure) => transport,
            Some(RDKafkaErrorCode::AllBrokersDown) => all_brokers_down,
            _ => {
                tracing::error!("librdkafka: {error}: {reason}");
                return;
            }
        };
        BrokerUnreachable {
            client: PRODUCER,
            reason: unreachable,
            detail: reason,
        }
        .emit();
    }
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self, PublishError> {
        Ok(Publisher {
            producer: Arc::new(RwLock::new((0, create(settings)?))),
            settings: settings.clone(),
        })
    }

    /// Replaces the producer of `generation` if it failed fatally, or if the broker fenced
    /// it: some brokers answer a producer whose id they lost (after an outage) with
    /// `PRODUCER_FENCED` to every request, which librdkafka does not count as fatal. Its
    /// messages in flight have failed (their callers were told); later ones go through the
    /// new producer.
    fn replace_if_fatal(
        &self,
        generation: u64,
        producer: &FutureProducer<WatchBrokers>,
        error: &KafkaError,
    ) {
        let fenced = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        );
        let reason = match producer.client().fatal_error() {
            Some((_, reason)) => reason,
            None if fenced => error.to_string(),
            None => return,
        };
        let mut current = self
            .producer
            .write()
            .expect("the producer lock is not poisoned");
        if current.0 != generation {
            return;
        }
        // If a new one cannot be created either, the next failure tries again.
        if let Ok(fresh) = create(&self.settings) {
            *current = (generation + 1, fresh);
            ProducerReplaced { error: &reason }.emit();
        }
    }

    /// Publishes `envelope` on `topic`, keyed by its transaction id, with its ids also in
    /// headers. Returns once the broker has acknowledged it.
    pub async fn publish(
        &self,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<Delivery, PublishError> {
        envelope.validate()?;
        let delivery = self
            .send(
                topic,
                &envelope.transaction_id,
                &envelope.encode_to_vec(),
                &TraceHeaders::of(envelope),
                &envelope.event_id,
            )
            .await?;
        EventPublished {
            delivery: &delivery,
            event_type: &envelope.r#type,
        }
        .emit();
        Ok(delivery)
    }

    /// Publishes what a consumer did with an event on the outcomes topic.
    pub async fn publish_outcome(&self, outcome: &Outcome) -> Result<Delivery, PublishError> {
        outcome.validate()?;
        let headers = TraceHeaders {
            transaction_id: outcome.transaction_id.clone(),
            causation_id: outcome.event_id.clone(),
            source: outcome.consumer.clone(),
            event_type: OUTCOME_TYPE.to_owned(),
            ..TraceHeaders::default()
        };
        self.send(
            OUTCOMES_TOPIC,
            &outcome.transaction_id,
            &outcome.encode_to_vec(),
            &headers,
            &outcome.event_id,
        )
        .await
    }

    /// Publishes what a service let someone do, or refused, for the archive's audit trail.
    /// `sign` is given the topic, the message key and the value as they will be sent, and
    /// answers the header carrying their signature (name, value), if any: the archive chains
    /// only signed audit events.
    pub async fn publish_audit(
        &self,
        event: &AuditEvent,
        sign: impl FnOnce(&str, &[u8], &[u8]) -> Option<(&'static str, String)>,
    ) -> Result<Delivery, PublishError> {
        let headers = TraceHeaders {
            source: event.service.clone(),
            event_type: AUDIT_TYPE.to_owned(),
            ..TraceHeaders::default()
        };
        let value = event.encode_to_vec();
        let signature = sign(AUDIT_TOPIC, event.actor.as_bytes(), &value);
        let mut kafka_headers = kafka_headers(&headers);
        if let Some((name, signature)) = &signature {
            kafka_headers = kafka_headers.insert(Header {
                key: name,
                value: Some(signature.as_bytes()),
            });
        }
        let record = FutureRecord::to(AUDIT_TOPIC)
            .key(event.actor.as_bytes())
            .payload(&value)
            .headers(kafka_headers);
        self.deliver(record, &event.action).await
    }

    /// Publishes a message exactly as given (key, value and headers), as a replay does with
    /// an archived message. `event_id` only names the message in errors.
    pub async fn republish(
        &self,
        topic: &str,
        message: &RawMessage<'_>,
        event_id: &str,
    ) -> Result<Delivery, PublishError> {
        let headers = message
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (name, value)| {
                all.insert(Header {
                    key: name,
                    value: *value,
                })
            });
        let mut record = FutureRecord::to(topic).headers(headers);
        if let Some(key) = message.key {
            record = record.key(key);
        }
        if let Some(value) = message.value {
            record = record.payload(value);
        }
        self.deliver(record, event_id).await
    }

    async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &TraceHeaders,
        event_id: &str,
    ) -> Result<Delivery, PublishError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(kafka_headers(headers));
        self.deliver(record, event_id).await
    }

    async fn deliver<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        event_id: &str,
    ) -> Result<Delivery, PublishError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let topic = record.topic.to_owned();
        // The producer queue is bounded; waiting for room is the backpressure a caller feels.
        let queue_timeout = Duration::from_secs(30);
        let (generation, producer) = self
            .producer
            .read()
            .expect("the producer lock is not poisoned")
            .clone();
        let started = Instant::now();
        let sent = producer.send(record, queue_timeout).await;
        if let Err((error, _)) = &sent {
            self.replace_if_fatal(generation, &producer, error);
        }
        match sent {
            Ok(delivery) => {
                PublishAcknowledged {
                    topic: &topic,
                    waited: started.elapsed(),
                }
                .emit();
                Ok(Delivery {
                    topic,
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _)) => Err(PublishError::NotAcknowledged {
                event_id: event_id.to_owned(),
                topic,
                source: Box::new(source),
            }),
        }
    }
}

fn create(settings: &KafkaSettings) -> Result<FutureProducer<WatchBrokers>, PublishError> {
    settings
        .client_config(PRODUCER_DEFAULTS)
        .create_with_context(WatchBrokers)
        .map_err(|source| PublishError::Create {
            bootstrap: settings.bootstrap_servers.clone(),
            source: Box::new(source),
        })
}

/// `headers` as Kafka record headers, in their order.
fn kafka_headers(headers: &TraceHeaders) -> OwnedHeaders {
    headers
        .pairs()
        .into_iter()
        .fold(OwnedHeaders::new(), |all, (name, value)| {
            all.insert(Header {
                key: name,
                value: Some(value),
            })
        })
}
