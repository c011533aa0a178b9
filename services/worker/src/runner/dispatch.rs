//! Deciding on a consumed message: start its job, defer it to the retry topic, settle it at
//! once when it is not a job, or hold it at its partition's head.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::Message as _;
use rdkafka::message::{BorrowedMessage, Message};
use retrace_proto::Envelope;
use retrace_telemetry::InternalEvent;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::attempt::{RawCopy, attempt, defer};
use super::holds::must_wait;
use super::{Hold, Lane, Pending, QueueRunner, Settled, State, Tp, Waiting};
use crate::events::NotAJob;
use crate::handler::ReceivedJob;
use crate::retry::{self, ERROR, REDRIVEN_BY};

/// What became of a message a runner decided on.
pub(super) enum Decision {
    /// Started, moved, or settled at once (not a job).
    Taken,
    /// It may not run yet; handed back to wait at its partition's head.
    Wait(Pending, Hold),
}

impl QueueRunner {
    /// Takes one consumed message: decides on it, unless its partition already waits.
    pub(super) fn take(
        &self,
        state: &mut State,
        jobs: &mut JoinSet<Settled>,
        message: &BorrowedMessage<'_>,
    ) {
        let tp: Tp = (message.topic().to_owned(), message.partition());
        let Some(lane) = self.lane(&tp.0) else {
            return;
        };
        let Some(ticket) = state.assignments.ticket(tp, message.offset()) else {
            // librdkafka drops what it fetched for a partition it revokes; should a message
            // still come, it is its new owner's, who reads it from the committed offset.
            return;
        };
        let pending = Pending {
            ticket,
            lane,
            raw: RawCopy {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: retry::owned_headers(message),
            },
        };
        if let Some(waiting) = state.waiting.get_mut(&pending.ticket.tp) {
            // Fetched before the pause took effect: it waits its turn behind the head.
            waiting.messages.push_back(pending);
            return;
        }
        if let Decision::Wait(pending, hold) = self.decide(state, jobs, pending) {
            let tp = pending.ticket.tp.clone();
            state.waiting.insert(
                tp,
                Waiting {
                    hold: Some(hold),
                    messages: VecDeque::from([pending]),
                },
            );
            self.reconcile(state);
        }
    }

    /// Runs a message's job (or moves it to the retry topic if it is not due yet, or settles
    /// it at once if it is not a job), or hands it back with the reason it must wait.
    pub(super) fn decide(
        &self,
        state: &mut State,
        jobs: &mut JoinSet<Settled>,
        pending: Pending,
    ) -> Decision {
        let envelope = match decode_job(pending.raw.value.as_deref()) {
            Ok(envelope) => envelope,
            Err(problem) => {
                let ticket = &pending.ticket;
                NotAJob {
                    queue: &self.shared.queue,
                    topic: &ticket.tp.0,
                    partition: ticket.tp.1,
                    offset: ticket.offset,
                    problem: &problem,
                }
                .emit();
                state.assignments.started(ticket);
                self.store(state, ticket);
                return Decision::Taken;
            }
        };
        let job = envelope.job.clone().unwrap_or_default();
        let now = SystemTime::now();
        let headers = &pending.raw.headers;
        if pending.lane == Lane::Retry
            && let Some(due) = retry::due_at(headers).filter(|due| *due > now)
        {
            return Decision::Wait(pending, Hold::Due(due));
        }
        let not_before = job.not_before.and_then(|t| SystemTime::try_from(t).ok());
        let deferred = (pending.lane != Lane::Retry)
            .then_some(not_before)
            .flatten()
            .filter(|at| *at > now);
        if deferred.is_none() {
            let deadline = job.deadline.and_then(|t| SystemTime::try_from(t).ok());
            let priority = job.priority();
            if let Some(until) = must_wait(
                &self.gate.state(),
                priority,
                deadline,
                now,
                &self.shared.policy(),
            ) {
                let hold = Hold::Gate {
                    priority,
                    deadline,
                    until,
                };
                return Decision::Wait(pending, hold);
            }
        }
        let Pending {
            ticket,
            raw,
            lane: _,
        } = pending;
        let received = ReceivedJob {
            attempt: retry::attempt_of(&raw.headers),
            errors: retry::all_headers(&raw.headers, ERROR),
            redriven_by: retry::header(&raw.headers, REDRIVEN_BY).map(str::to_owned),
            envelope,
            job,
            queue: self.shared.queue.clone(),
            topic: ticket.tp.0.clone(),
            partition: ticket.tp.1,
            offset: ticket.offset,
        };
        let span = tracing::info_span!(
            "job",
            queue = %self.shared.queue,
            transaction_id = %received.envelope.transaction_id,
            event_id = %received.envelope.event_id,
            attempt = received.attempt,
        );
        state.assignments.started(&ticket);
        let shared = Arc::clone(&self.shared);
        if let Some(due) = deferred {
            jobs.spawn(defer(shared, received, raw, due, ticket).instrument(span));
            return Decision::Taken;
        }
        if let Some(rate) = self.shared.config.rate_per_s {
            let start = state
                .next_start
                .unwrap_or_else(Instant::now)
                .max(Instant::now());
            state.next_start = Some(start + Duration::from_secs_f64(1.0 / rate));
        }
        jobs.spawn(attempt(shared, received, raw, ticket).instrument(span));
        Decision::Taken
    }
}

fn decode_job(payload: Option<&[u8]>) -> Result<Envelope, String> {
    let envelope = Envelope::decode(payload.unwrap_or_default())
        .map_err(|e| format!("not a protobuf envelope: {e}"))?;
    envelope.validate().map_err(|e| e.to_string())?;
    match &envelope.job {
        None => Err("field `job` is missing: a job's envelope must carry it".to_owned()),
        Some(job) if job.kind.is_empty() => {
            Err("field `job.kind` is missing: it selects the handler".to_owned())
        }
        Some(_) => Ok(envelope),
    }
}
