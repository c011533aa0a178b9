//! Everything the gateway reports about itself: one typed event per observable thing, each
//! emitting its log line and its metrics together.

use std::time::Duration;

use metrics::{counter, histogram};
use retrace_telemetry::InternalEvent;
use tracing::{debug, info, warn};

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
