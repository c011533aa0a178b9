//! The Rust SDK for services on Retrace: publish [`Envelope`]s to Kafka ([`Publisher`]) and
//! consume them with an [`Outcome`] reported for every event handled ([`consume`]).
//!
//! Every message carries its ids twice, in the envelope and in `retrace-*` headers, and is
//! keyed by transaction id so a transaction's events keep their order. `publish` returns only
//! once the broker has acknowledged the message (`acks=all`, idempotent producer).
//!
//! [`Envelope`]: retrace_proto::Envelope
//! [`Outcome`]: retrace_proto::Outcome

pub mod acls;
mod consumer;
mod events;
mod jobs;
mod kafka;
mod offsets;
mod provision;
mod publisher;
mod recent;
mod startup;
mod topic;

pub use consumer::{ConsumeError, EventHandler, HandlerError, ReceivedEvent, consume};
pub use events::{register_metrics, register_provisioning_metrics};
pub use jobs::{EnqueueError, QueueTopics, enqueue, lane_of};
pub use kafka::{DEFAULT_STARTUP_DEADLINE, KafkaSettings, SettingsError, serialize_ms};
pub use offsets::{PartitionProgress, store_next_offset};
pub use provision::{
    Drift, ProvisionError, Provisioned, TopicSettings, TopicSpec, check_topics, ensure_topics,
    ensure_topics_at_start, provision_at_start, topic_layout,
};
pub use publisher::{Delivery, PublishError, Publisher, RawMessage};
pub use startup::{is_transient, retry_at_start};
pub use topic::{
    INTERNAL_TOPIC_PREFIX, InternalTopic, MAX_TOPIC_LEN, TopicNameError, check_topic_name,
    internal_topic, is_internal_topic,
};
