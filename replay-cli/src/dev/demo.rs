//! The demo workload: a birth-registration flow across four services, as a civil
//! registration platform runs it.
//!
//! registration → `registrations` → validation → `validations`, which also queues a
//! `certificate.render` job → the worker's `certificates` queue → `certificates`, and a
//! `notification.sms` job → the `notifications` queue → `notifications`.
//!
//! Validation fails for about one registration in twelve with the kind of transient error
//! real dependencies give (a register timing out); a replayed event succeeds, as it would
//! once the register is back. Certificate rendering fails a first attempt as often (the
//! worker retries it), and for about one in forty every attempt fails until the job is
//! dead-lettered; a redriven job succeeds (the renderer was fixed). So `retrace failed`,
//! `retrace trace`, `retrace replay` and `retrace jobs` have something to show.

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use retrace_proto::{Envelope, Job, JobPriority};
use retrace_sdk::{
    EventHandler, HandlerError, KafkaSettings, PublishError, Publisher, ReceivedEvent, consume,
};
use retrace_worker::{
    Handlers, JobError, JobHandler, QueueConfig, QueueTopics, ReceivedJob, WorkerConfig, enqueue,
};
use tokio_util::sync::CancellationToken;

use crate::Failure;

pub const TOPICS: [&str; 4] = [
    "registrations",
    "validations",
    "certificates",
    "notifications",
];
/// The demo's personal data, as `[masking] json_paths`: callers without `payload:read` (an
/// analyst) see these values as `"***"`.
pub const PERSONAL_DATA: [&str; 2] = ["child.given_name", "mother_id"];

/// The worker's queues.
pub const QUEUES: [&str; 2] = ["certificates", "notifications"];

/// Every topic the demo needs: its event topics and each queue's lanes.
pub fn topics() -> Vec<String> {
    let lanes = QUEUES.iter().flat_map(|queue| {
        let topics = QueueTopics::of(queue);
        topics.all().map(str::to_owned)
    });
    TOPICS.iter().map(|t| t.to_string()).chain(lanes).collect()
}

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

/// The validation service: checks a registration, then queues its certificate.
struct Validation {
    publisher: Publisher,
}

impl EventHandler for Validation {
    async fn handle(&self, event: &ReceivedEvent) -> Result<(), HandlerError> {
        let submitted = &event.envelope;
        if unlucky(&submitted.event_id, 12) && submitted.replay.is_none() {
            return Err(HandlerError::new(
                "population register did not answer within 2 s (timeout)",
            ));
        }
        let validated =
            Envelope::caused_by(submitted, "validation", "birth.registration.validated.v1")
                .with_payload("application/json", submitted.payload.clone());
        let published = self.publisher.publish("validations", &validated).await;
        published.map_err(|e| HandlerError::new(e.to_string()))?;
        enqueue(
            &self.publisher,
            "certificates",
            job_of(&validated, "certificate.render"),
        )
        .await
        .map(|_| ())
        .map_err(|e| HandlerError::new(e.to_string()))
    }
}

/// The `certificates` queue: renders the certificate, then queues the SMS to the mother.
struct RenderCertificate {
    publisher: Publisher,
}

impl JobHandler for RenderCertificate {
    async fn run(&self, job: &ReceivedJob) -> Result<(), JobError> {
        let request = &job.envelope;
        let renderer_down = job.redriven_by.is_none()
            && (unlucky(&request.event_id, 40)
                || (unlucky(&request.event_id, 12) && job.attempt == 1));
        if renderer_down {
            return Err(JobError::Retry(
                "certificate renderer unavailable: HTTP 503 from pdf-renderer:8080".to_owned(),
            ));
        }
        let generated =
            Envelope::caused_by(request, "certificates", "birth.certificate.generated.v1")
                .with_payload("application/json", request.payload.clone());
        let published = self.publisher.publish("certificates", &generated).await;
        published.map_err(|e| JobError::Retry(e.to_string()))?;
        enqueue(
            &self.publisher,
            "notifications",
            job_of(&generated, "notification.sms"),
        )
        .await
        .map(|_| ())
        .map_err(|e| JobError::Retry(e.to_string()))
    }
}

/// The `notifications` queue: sends the SMS.
struct SendSms {
    publisher: Publisher,
}

impl JobHandler for SendSms {
    async fn run(&self, job: &ReceivedJob) -> Result<(), JobError> {
        let sent = Envelope::caused_by(&job.envelope, "notifications", "notification.sms.sent.v1");
        let published = self.publisher.publish("notifications", &sent).await;
        published
            .map(|_| ())
            .map_err(|e| JobError::Retry(e.to_string()))
    }
}

/// A job of `kind`, caused by `cause`, due within a day.
fn job_of(cause: &Envelope, kind: &str) -> Envelope {
    let mut job = Envelope::caused_by(cause, cause.source.clone(), format!("{kind}.requested.v1"))
        .with_payload("application/json", cause.payload.clone());
    job.job = Some(Job {
        kind: kind.to_owned(),
        priority: JobPriority::Normal as i32,
        deadline: Some((SystemTime::now() + Duration::from_secs(24 * 3600)).into()),
        max_attempts: 3,
        ..Job::default()
    });
    job
}

/// The worker's configuration for the demo's queues: 128 jobs at once, quick retries, and a gate that
/// closes while registrations arrive faster than `gate_rate` a second (raise `--demo-rate`
/// above `--demo-gate-rate` to see it close).
pub fn worker_config(settings: &KafkaSettings, gate_rate: f64) -> Result<WorkerConfig, Failure> {
    let mut config = WorkerConfig::new(settings.bootstrap_servers.clone());
    config.kafka = settings.clone();
    let gate = format!(
        r#"
[[signals]]
kind = "topic_rate"
topics = ["registrations"]
max_rate = {gate_rate}
interval_ms = 1000
recover_after_ms = 5000
"#
    );
    for queue in QUEUES {
        let mut queue_config = QueueConfig {
            // The demo's handlers mostly wait on Kafka acknowledgements (three in a row for a
            // certificate), so many run at once: at 32, a broker answering in 100 ms capped
            // a queue near 100 jobs a second.
            concurrency: 128,
            gate: toml::from_str(&gate)
                .map_err(|e| Failure::Server(format!("the demo's gate configuration: {e}")))?,
            ..QueueConfig::default()
        };
        queue_config.backoff.base_ms = 500;
        queue_config.backoff.max_ms = 5_000;
        config.queues.insert(queue.to_owned(), queue_config);
    }
    Ok(config)
}

/// The demo's in-process job handlers.
pub fn handlers(publisher: &Publisher) -> Handlers {
    Handlers::new()
        .queue(
            "certificates",
            RenderCertificate {
                publisher: publisher.clone(),
            },
        )
        .queue(
            "notifications",
            SendSms {
                publisher: publisher.clone(),
            },
        )
}

/// Runs the registration desk and the validation service until `shutdown`.
pub async fn run(
    settings: &KafkaSettings,
    publisher: &Publisher,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<(), Failure> {
    let validation = Validation {
        publisher: publisher.clone(),
    };
    let (validated, registered) = tokio::join!(
        consume(
            settings,
            "validation",
            "validation",
            &["registrations"],
            &validation,
            publisher,
            shutdown,
        ),
        register(publisher, rate, shutdown),
    );
    validated.map_err(server)?;
    registered.map_err(server)
}

/// Registrations being published at once, so a high `--demo-rate` (a soak) is not capped by
/// one broker round trip per registration.
const REGISTRATIONS_IN_FLIGHT: usize = 64;

/// The registration service: citizens register births at `rate` per second.
async fn register(
    publisher: &Publisher,
    rate: f64,
    shutdown: &CancellationToken,
) -> Result<(), PublishError> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    let mut in_flight = FuturesUnordered::new();
    let mut number: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
            _ = ticker.tick() => {}
        }
        if in_flight.len() >= REGISTRATIONS_IN_FLIGHT {
            in_flight.next().await;
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
        let publisher = publisher.clone();
        in_flight.push(async move {
            if let Err(error) = publisher.publish("registrations", &event).await {
                // The flow goes on; the registration desk would try again.
                tracing::warn!(%error, "demo registration not published");
            }
        });
    }
    while in_flight.next().await.is_some() {}
    Ok(())
}

/// One event in `one_in` is unlucky; FNV-1a of its id decides, so it depends on nothing
/// else.
fn unlucky(event_id: &str, one_in: u64) -> bool {
    let hash = event_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    hash.is_multiple_of(one_in)
}

fn server(error: impl std::fmt::Display) -> Failure {
    Failure::Server(format!("the demo stopped: {error}"))
}
