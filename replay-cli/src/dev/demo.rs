//! The demo workload: a birth-registration flow across four services, as a civil
//! registration platform runs it.
//!
//! registration → `registrations` → validation → `validations` → certificates →
//! `certificates` → notifications → `notifications`.
//!
//! Validation and certificate generation each fail for about one registration in twelve,
//! with the kind of transient error real dependencies give (a register timing out, a
//! renderer down). A replayed event succeeds, as it would once the dependency is back, so
//! `retrace failed`, `retrace trace` and `retrace replay` have something to show.

use std::time::Duration;

use retrace_proto::Envelope;
use retrace_sdk::{
    EventHandler, HandlerError, KafkaSettings, PublishError, Publisher, ReceivedEvent, consume,
};
use tokio_util::sync::CancellationToken;

use crate::Failure;

pub const TOPICS: [&str; 4] = [
    "registrations",
    "validations",
    "certificates",
    "notifications",
];

const FIRST_NAMES: [&str; 8] = [
    "Amina", "Tomás", "Mei", "Kwame", "Sofia", "Arjun", "Leila", "Mateo",
];
const DISTRICTS: [&str; 5] = [
    "Northfield",
    "Riverside",
    "Hillcrest",
    "Lakeside",
    "Old Town",
];

/// One service of the flow: handles an event, publishes the next one.
struct Stage {
    name: &'static str,
    next_topic: &'static str,
    next_type: &'static str,
    /// The transient error it gives about one time in twelve, or never.
    flaky: Option<&'static str>,
    publisher: Publisher,
}

impl EventHandler for Stage {
    async fn handle(&self, event: &ReceivedEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        let unlucky = fnv(&envelope.event_id).is_multiple_of(12);
        if let Some(error) = self.flaky
            && unlucky
            && envelope.replay.is_none()
        {
            return Err(HandlerError(error.to_owned()));
        }
        let next = Envelope::caused_by(envelope, self.name, self.next_type)
            .with_payload("application/json", envelope.payload.clone());
        self.publisher
            .publish(self.next_topic, &next)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError(e.to_string()))
    }
}

/// Runs the four services until `shutdown`.
pub async fn run(
    settings: &KafkaSettings,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<(), Failure> {
    let publisher = Publisher::new(settings).map_err(server)?;
    let stage = |name, next_topic, next_type, flaky| Stage {
        name,
        next_topic,
        next_type,
        flaky,
        publisher: publisher.clone(),
    };
    let validation = stage(
        "validation",
        "validations",
        "birth.registration.validated.v1",
        Some("population register did not answer within 2 s (timeout)"),
    );
    let certificates = stage(
        "certificates",
        "certificates",
        "birth.certificate.generated.v1",
        Some("certificate renderer unavailable: HTTP 503 from pdf-renderer:8080"),
    );
    let notifications = stage(
        "notifications",
        "notifications",
        "notification.sms.sent.v1",
        None,
    );
    let service = |stage: &'static str, topic: &'static str, handler: Stage| {
        let publisher = publisher.clone();
        async move {
            consume(
                settings,
                stage,
                stage,
                &[topic],
                &handler,
                &publisher,
                shutdown,
            )
            .await
        }
    };
    let (validated, certified, notified, registered) = tokio::join!(
        service("validation", "registrations", validation),
        service("certificates", "validations", certificates),
        service("notifications", "certificates", notifications),
        register(&publisher, rate, shutdown),
    );
    for result in [validated, certified, notified] {
        result.map_err(server)?;
    }
    registered.map_err(server)
}

/// The registration service: citizens register births at `rate` per second.
async fn register(
    publisher: &Publisher,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<(), PublishError> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    let mut number: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        number += 1;
        let child = FIRST_NAMES[number as usize % FIRST_NAMES.len()];
        let district = DISTRICTS[number as usize % DISTRICTS.len()];
        let payload = serde_json::json!({
            "registration_number": format!("BR-2026-{number:06}"),
            "child": { "given_name": child, "sex": if number.is_multiple_of(2) { "F" } else { "M" } },
            "district": district,
            "mother_id": format!("NID-{:08}", 10_000_000 + number * 7),
        });
        let event = Envelope::root("registration", "birth.registration.submitted.v1")
            .with_subject(format!("beneficiary:{}", 1000 + number % 250))
            .with_subject(format!("birth-registration:BR-2026-{number:06}"))
            .with_payload("application/json", payload.to_string().into_bytes());
        if let Err(error) = publisher.publish("registrations", &event).await {
            // The flow goes on; the registration desk would try again.
            tracing::warn!(%error, "demo registration not published");
        }
    }
}

/// FNV-1a: whether an event is unlucky depends on nothing but its id.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn server(error: impl std::fmt::Display) -> Failure {
    Failure::Server(format!("the demo stopped: {error}"))
}
