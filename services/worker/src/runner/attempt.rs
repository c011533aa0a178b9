//! One job task: run an attempt and settle it (outcome, and a retry or dead-letter copy), or
//! move a job not yet due to the retry topic; Kafka must acknowledge each before the task
//! reports the job settled.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt as _;
use retrace_proto::{Outcome, OutcomeStatus};
use retrace_sdk::RawMessage;
use retrace_telemetry::InternalEvent;

use super::assignments::Ticket;
use super::{Settled, Shared};
use crate::events::{During, JobSettled, JobStarted, KafkaTrouble, Settlement};
use crate::handler::{JobError, ReceivedJob};
use crate::retry;

/// A consumed message as bytes, to publish a copy of it.
pub(super) struct RawCopy {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Runs one attempt and settles it: outcome, and a retry or dead-letter copy.
pub(super) async fn attempt(
    shared: Arc<Shared>,
    job: ReceivedJob,
    raw: RawCopy,
    ticket: Ticket,
) -> Settled {
    shared
        .counters
        .running
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    JobStarted {
        queue: &shared.queue,
    }
    .emit();
    let started = Instant::now();
    let result = match shared.handlers.of(&job.job.kind) {
        Some(handler) => AssertUnwindSafe(handler.run_boxed(&job))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(JobError::Retry("the handler panicked".to_owned()))),
        None => Err(JobError::Permanent(format!(
            "no handler for kind {:?} in queue {:?}: configure queues.{}.webhook or \
             queues.{}.kinds.\"{}\".webhook",
            job.job.kind, shared.queue, shared.queue, shared.queue, job.job.kind
        ))),
    };
    let elapsed = started.elapsed();
    let max_attempts = match job.job.max_attempts {
        0 => shared.config.max_attempts,
        own => own,
    };
    let slow_for = result.as_ref().err().and_then(JobError::retry_after);
    let code = result
        .as_ref()
        .err()
        .and_then(JobError::code)
        .map(str::to_owned);
    let (settlement, error, copy) = match result {
        Ok(()) => (Settlement::Processed, None, None),
        Err(failure) => {
            let text = failure.text().to_owned();
            let line = format!("attempt {}: {text}", job.attempt);
            if failure.is_permanent() || job.attempt >= max_attempts {
                let settlement = match failure.is_permanent() {
                    true => Settlement::Failed,
                    false => Settlement::DeadLettered,
                };
                let headers = retry::next_headers(&raw.headers, job.attempt, None, Some(&line));
                let dlq = shared.topics.dead_letter.clone();
                (settlement, Some(text), Some((dlq, headers)))
            } else {
                let after = slow_for.unwrap_or(Duration::ZERO);
                let delay = shared.config.backoff.delay(job.attempt).max(after);
                let due = SystemTime::now() + delay;
                let headers =
                    retry::next_headers(&raw.headers, job.attempt + 1, Some(due), Some(&line));
                let topic = shared.topics.retry.clone();
                (Settlement::Retrying, Some(text), Some((topic, headers)))
            }
        }
    };
    let mut done = true;
    if let Some((topic, headers)) = copy {
        done = publish_copy(&shared, &topic, &raw, &headers, job.id()).await;
    }
    if done {
        let status = match settlement {
            Settlement::Processed => OutcomeStatus::Processed,
            Settlement::Retrying => OutcomeStatus::Retrying,
            Settlement::Failed => OutcomeStatus::Failed,
            Settlement::DeadLettered | Settlement::Deferred => OutcomeStatus::DeadLettered,
        };
        let outcome = Outcome::of(
            &job.envelope,
            shared.consumer_name.clone(),
            status,
            error.clone(),
            job.attempt,
        );
        let outcome = match code {
            Some(code) => outcome.with_error_code(code),
            None => outcome,
        };
        done = publish_outcome(&shared, &outcome).await;
    }
    JobSettled {
        queue: &shared.queue,
        settlement,
        attempt: job.attempt,
        elapsed: Some(elapsed),
        error: error.as_deref(),
    }
    .emit();
    shared.counters.settled(settlement, true);
    Settled {
        ticket,
        done,
        slow_for,
    }
}

/// Moves a job whose `not_before` is ahead to the retry topic, due then, without an attempt.
pub(super) async fn defer(
    shared: Arc<Shared>,
    job: ReceivedJob,
    raw: RawCopy,
    due: SystemTime,
    ticket: Ticket,
) -> Settled {
    let headers = retry::next_headers(&raw.headers, job.attempt, Some(due), None);
    let topic = shared.topics.retry.clone();
    let done = publish_copy(&shared, &topic, &raw, &headers, job.id()).await;
    if done {
        JobSettled {
            queue: &shared.queue,
            settlement: Settlement::Deferred,
            attempt: job.attempt,
            elapsed: None,
            error: None,
        }
        .emit();
        shared.counters.settled(Settlement::Deferred, false);
    }
    Settled {
        ticket,
        done,
        slow_for: None,
    }
}

/// Publishes a copy of a job until Kafka acknowledges it; false if abandoned first.
async fn publish_copy(
    shared: &Shared,
    topic: &str,
    raw: &RawCopy,
    headers: &[(String, Option<Vec<u8>>)],
    job_id: &str,
) -> bool {
    let headers: Vec<(&str, Option<&[u8]>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_deref()))
        .collect();
    let message = RawMessage {
        key: raw.key.as_deref(),
        value: raw.value.as_deref(),
        headers: &headers,
    };
    persist(shared, During::PublishJobCopy, || {
        shared.publisher.republish(topic, &message, job_id)
    })
    .await
}

async fn publish_outcome(shared: &Shared, outcome: &Outcome) -> bool {
    persist(shared, During::PublishOutcome, || {
        shared.publisher.publish_outcome(outcome)
    })
    .await
}

/// Retries `publish` with backoff until it succeeds (true) or the grace is over (false).
async fn persist<F, T>(shared: &Shared, during: During, publish: impl Fn() -> F) -> bool
where
    F: std::future::Future<Output = Result<T, retrace_sdk::PublishError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            () = shared.abandon.cancelled() => return false,
            result = publish() => result,
        };
        match result {
            Ok(_) => return true,
            Err(error) => {
                KafkaTrouble {
                    queue: &shared.queue,
                    during,
                    error: &error,
                }
                .emit();
                tokio::select! {
                    () = shared.abandon.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
