//! Publishing a request's events and outcomes on Kafka: each event id at most once per
//! topic within the idempotency window, and what Kafka's refusal means for the answer.

use std::time::Instant;

use axum::http::StatusCode;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use retrace_api::EventResult;
use retrace_http::ApiError;
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome};
use retrace_sdk::PublishError;
use retrace_telemetry::InternalEvent;
use serde::Serialize;
use tracing::Instrument;

use crate::Gateway;
use crate::convert::Shape;
use crate::events::{
    BY_EVENT_ID, EventNotPublished, EventPublished, IdempotentReplay, OutcomePublished, reason,
};
use crate::http::{Answer, Rejection};

/// An event's result before it is published: neither where Kafka put it nor why not yet.
fn result_of(topic: &str, envelope: &Envelope) -> EventResult {
    EventResult {
        event_id: envelope.event_id.clone(),
        transaction_id: envelope.transaction_id.clone(),
        topic: topic.to_owned(),
        partition: None,
        offset: None,
        error: None,
        replayed: false,
    }
}

/// Why Kafka did not take an event, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Not reachable, or not acknowledging in time: try again later.
    Unavailable,
    UnknownTopic,
    /// Larger than the producer's or broker's `message.max.bytes`.
    TooLarge,
    /// Refused by the SDK's validation (the gateway validates first, so not expected).
    Invalid,
}

impl Failure {
    fn of(error: &PublishError) -> Self {
        match error {
            PublishError::Invalid(_) => Failure::Invalid,
            PublishError::NotAcknowledged { source, .. } => match **source {
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition,
                ) => Failure::UnknownTopic,
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
                ) => Failure::TooLarge,
                _ => Failure::Unavailable,
            },
            _ => Failure::Unavailable,
        }
    }

    /// The status of a request whose events failed this way (`failures` not empty): 503
    /// with `Retry-After` as soon as one could go through later.
    fn status(failures: &[Failure]) -> (StatusCode, &'static str) {
        let worst = if failures.contains(&Failure::Unavailable) {
            Failure::Unavailable
        } else {
            failures[0]
        };
        match worst {
            Failure::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, reason::KAFKA_UNAVAILABLE),
            Failure::UnknownTopic => (StatusCode::NOT_FOUND, reason::UNKNOWN_TOPIC),
            Failure::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, reason::MESSAGE_TOO_LARGE),
            Failure::Invalid => (StatusCode::BAD_REQUEST, reason::INVALID),
        }
    }
}

#[derive(Serialize)]
struct BatchAnswer<'a> {
    results: &'a [EventResult],
}

#[derive(Serialize)]
struct OutcomeAnswer<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
}

impl Gateway {
    /// Publishes `envelopes` on `topic`, all at once, and answers with every one's result.
    /// An event id already published on `topic` within the window is answered with its first
    /// result instead.
    pub(crate) async fn publish_events(
        &self,
        topic: &str,
        shape: Shape,
        envelopes: &[Envelope],
    ) -> Result<Answer, Rejection> {
        // Locked in event id order, so two requests sharing event ids cannot deadlock.
        let mut order: Vec<usize> = (0..envelopes.len()).collect();
        order.sort_unstable_by(|a, b| envelopes[*a].event_id.cmp(&envelopes[*b].event_id));
        let mut slots: Vec<_> = envelopes.iter().map(|_| None).collect();
        for index in order {
            let key = format!("{topic}\0{}", envelopes[index].event_id);
            slots[index] = Some(self.shared.events.lock(key).await);
        }
        let attempts = envelopes
            .iter()
            .zip(slots)
            .map(|(envelope, slot)| async move {
                let mut slot = slot.expect("every event's slot is locked");
                if let Some(first) = &*slot {
                    IdempotentReplay {
                        by: BY_EVENT_ID,
                        key: &envelope.event_id,
                    }
                    .emit();
                    return Ok(EventResult {
                        replayed: true,
                        ..first.clone()
                    });
                }
                let published = self.publish_one(topic, envelope).await?;
                *slot = Some(published.clone());
                Ok(published)
            });
        let attempts: Vec<Result<EventResult, (EventResult, Failure)>> =
            futures::future::join_all(attempts).await;
        let failures: Vec<Failure> = attempts
            .iter()
            .filter_map(|attempt| attempt.as_ref().err().map(|(_, failure)| *failure))
            .collect();
        let results: Vec<EventResult> = attempts
            .into_iter()
            .map(|attempt| attempt.unwrap_or_else(|(result, _)| result))
            .collect();
        if failures.is_empty() {
            return Ok(match shape {
                Shape::Single => Answer::accepted(&results[0]),
                Shape::Batch => Answer::accepted(&BatchAnswer { results: &results }),
            });
        }
        let (status, reason) = Failure::status(&failures);
        let error = match shape {
            Shape::Single => results[0].error.clone().unwrap_or_default(),
            Shape::Batch => format!(
                "{} of {} events were not published and the others were: each of `results` \
                 has either an offset or an error. Sending the failed ones again with the same \
                 event ids is safe",
                failures.len(),
                results.len()
            ),
        };
        let mut error = ApiError::of_status(status, error).with_results(results);
        if status == StatusCode::NOT_FOUND {
            error = error.with_field("topic");
        }
        Err(Rejection::new(reason, error))
    }

    async fn publish_one(
        &self,
        topic: &str,
        envelope: &Envelope,
    ) -> Result<EventResult, (EventResult, Failure)> {
        let span = tracing::info_span!(
            "publish",
            topic,
            event_id = %envelope.event_id,
            transaction_id = %envelope.transaction_id,
        );
        let mut result = result_of(topic, envelope);
        let started = Instant::now();
        match self
            .shared
            .publisher
            .publish(topic, envelope)
            .instrument(span.clone())
            .await
        {
            Ok(delivery) => {
                let _entered = span.enter();
                EventPublished {
                    topic,
                    partition: delivery.partition,
                    offset: delivery.offset,
                    elapsed: started.elapsed(),
                }
                .emit();
                result.partition = Some(delivery.partition);
                result.offset = Some(delivery.offset);
                Ok(result)
            }
            Err(error) => {
                let _entered = span.enter();
                EventNotPublished {
                    topic,
                    error: &error,
                }
                .emit();
                let failure = Failure::of(&error);
                result.error = Some(error.to_string());
                Err((result, failure))
            }
        }
    }

    pub(crate) async fn publish_outcome(&self, outcome: &Outcome) -> Result<Answer, Rejection> {
        let span = tracing::info_span!(
            "publish_outcome",
            event_id = %outcome.event_id,
            transaction_id = %outcome.transaction_id,
            consumer = %outcome.consumer,
        );
        match self
            .shared
            .publisher
            .publish_outcome(outcome)
            .instrument(span)
            .await
        {
            Ok(delivery) => {
                OutcomePublished {
                    status: outcome.status().as_str_name(),
                }
                .emit();
                Ok(Answer::accepted(&OutcomeAnswer {
                    topic: OUTCOMES_TOPIC,
                    partition: delivery.partition,
                    offset: delivery.offset,
                }))
            }
            Err(error) => {
                let (status, reason) = Failure::status(&[Failure::of(&error)]);
                Err(Rejection::new(
                    reason,
                    ApiError::of_status(status, error.to_string()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_retryable_failure_makes_the_whole_request_retryable() {
        assert_eq!(
            Failure::status(&[Failure::TooLarge, Failure::Unavailable]).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Failure::status(&[Failure::TooLarge]).0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            Failure::status(&[Failure::UnknownTopic]).0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn a_timed_out_message_means_kafka_is_unavailable() {
        let error = PublishError::NotAcknowledged {
            event_id: "e".into(),
            topic: "t".into(),
            source: Box::new(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        };
        assert_eq!(Failure::of(&error), Failure::Unavailable);
    }
}
