//! Everything the gateway reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together. [`register_metrics`] registers its series
//! at zero as it starts.

use std::time::Duration;

use metrics::{counter, histogram};
use retrace_proto::{AUDIT_TOPIC, OUTCOMES_TOPIC, OutcomeStatus};
use retrace_telemetry::{InternalEvent, register};
use tracing::{debug, info, warn};

/// The `reason` of a refused request ([`RequestRejected`]), one fixed word each.
pub(crate) mod reason {
    pub const INVALID: &str = "invalid";
    pub const TOO_LARGE: &str = "too_large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    pub const UNKNOWN_TOPIC: &str = "unknown_topic";
    pub const KAFKA_UNAVAILABLE: &str = "kafka_unavailable";
    pub const MESSAGE_TOO_LARGE: &str = "message_too_large";
    /// A caller asked to publish to one of Retrace's own topics: a denial of the guard's
    /// (`retrace_auth_denied_total`), not a refusal of the gateway's.
    pub const INTERNAL_TOPIC: &str = "internal_topic";

    pub const REJECTIONS: [&str; 7] = [
        INVALID,
        TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        IDEMPOTENCY_KEY_REUSED,
        UNKNOWN_TOPIC,
        KAFKA_UNAVAILABLE,
        MESSAGE_TOO_LARGE,
    ];
}

/// The `by` of [`IdempotentReplay`].
pub(crate) const BY_IDEMPOTENCY_KEY: &str = "idempotency_key";
pub(crate) const BY_EVENT_ID: &str = "event_id";

/// Registers the gateway's series at zero (and the SDK's and the guard's it uses): per topic
/// for `topics`, the ones configured for it (`[topics] extra`), which are all it knows
/// before callers name theirs.
pub(crate) fn register_metrics(topics: &[&str]) {
    retrace_telemetry::prometheus();
    for per_topic in [
        "retrace_gateway_events_published_total",
        "retrace_gateway_events_failed_total",
    ] {
        register(per_topic, &[("topic", topics)]);
    }
    register("retrace_gateway_publish_seconds", &[]);
    let statuses: Vec<&str> = (1..)
        .map_while(|status| OutcomeStatus::try_from(status).ok())
        .map(|status| status.as_str_name())
        .collect();
    register(
        "retrace_gateway_outcomes_published_total",
        &[("status", &statuses)],
    );
    register(
        "retrace_gateway_requests_rejected_total",
        &[("reason", &reason::REJECTIONS)],
    );
    register(
        "retrace_gateway_idempotent_replays_total",
        &[("by", &[BY_IDEMPOTENCY_KEY, BY_EVENT_ID])],
    );
    retrace_auth::register_metrics(&[reason::INTERNAL_TOPIC]);
    retrace_sdk::register_metrics(topics, &[OUTCOMES_TOPIC, AUDIT_TOPIC]);
}

pub(crate) struct GatewayStarted<'a> {
    pub bootstrap: &'a str,
    pub url: &'a str,
}

impl InternalEvent for GatewayStarted<'_> {
    fn emit(self) {
        info!(
            bootstrap = self.bootstrap,
            url = self.url,
            "gateway started"
        );
    }
}

/// Kafka acknowledged an event sent through the gateway.
pub(crate) struct EventPublished<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub elapsed: Duration,
}

impl InternalEvent for EventPublished<'_> {
    fn emit(self) {
        debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "event published"
        );
        counter!("retrace_gateway_events_published_total", "topic" => self.topic.to_owned())
            .increment(1);
        histogram!("retrace_gateway_publish_seconds").record(self.elapsed.as_secs_f64());
    }
}

/// Kafka did not acknowledge an event; the caller is told which one.
pub(crate) struct EventNotPublished<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for EventNotPublished<'_> {
    fn emit(self) {
        warn!(topic = self.topic, error = %self.error, "event not published");
        counter!("retrace_gateway_events_failed_total", "topic" => self.topic.to_owned())
            .increment(1);
    }
}

/// An outcome reported through the gateway reached Kafka.
pub(crate) struct OutcomePublished {
    pub status: &'static str,
}

impl InternalEvent for OutcomePublished {
    fn emit(self) {
        debug!(status = self.status, "outcome published");
        counter!("retrace_gateway_outcomes_published_total", "status" => self.status).increment(1);
    }
}

/// A request answered with an error status.
pub(crate) struct RequestRejected<'a> {
    pub status: u16,
    pub reason: &'static str,
    pub field: Option<&'a str>,
    pub error: &'a str,
}

impl InternalEvent for RequestRejected<'_> {
    fn emit(self) {
        if self.status >= 500 {
            warn!(
                status = self.status,
                reason = self.reason,
                error = self.error,
                "request failed"
            );
        } else {
            debug!(
                status = self.status,
                reason = self.reason,
                field = self.field,
                error = self.error,
                "request rejected"
            );
        }
        counter!("retrace_gateway_requests_rejected_total", "reason" => self.reason).increment(1);
    }
}

/// A repeated request or event answered with the first one's result, not published again.
pub(crate) struct IdempotentReplay<'a> {
    /// `idempotency_key` (a whole request) or `event_id` (one event).
    pub by: &'static str,
    pub key: &'a str,
}

impl InternalEvent for IdempotentReplay<'_> {
    fn emit(self) {
        debug!(
            by = self.by,
            key = self.key,
            "answered from the first result; not published again"
        );
        counter!("retrace_gateway_idempotent_replays_total", "by" => self.by).increment(1);
    }
}
