//! The archive's incident rule, which the store calls for every transaction a batch
//! touches: each failure outcome whose event is archived, with its fingerprint.

use std::collections::{BTreeMap, HashMap};

use retrace_log_store::{
    ArchivedRecord, IncidentCause, IncidentRule, StepFailure, TransactionFailures,
};
use retrace_proto::OutcomeStatus;

use super::fingerprint::{Cause, Fingerprint};
use crate::trace::{is_failure, is_publication, outcomes_by_event};

/// Failures group by [`Fingerprint`]: the step (the event's topic of publication, its type,
/// the consumer) and the cause.
#[derive(Debug, Clone, Copy, Default)]
pub struct FingerprintRule;

impl IncidentRule for FingerprintRule {
    fn failures(&self, _transaction_id: &str, records: &[ArchivedRecord]) -> TransactionFailures {
        let mut subject_ids: Vec<String> = Vec::new();
        // Each event's step: its publication's topic (not a retry or dead-letter lane's),
        // else the first carrier's.
        let mut steps: HashMap<&str, (&str, &str)> = HashMap::new();
        for record in records.iter().filter(|r| r.outcome.is_none()) {
            let Some(ids) = &record.ids else { continue };
            for subject in &ids.subject_ids {
                if !subject_ids.contains(subject) {
                    subject_ids.push(subject.clone());
                }
            }
            let step = (record.key.topic.as_str(), ids.event_type.as_str());
            if is_publication(record) {
                steps.insert(&ids.event_id, step);
            } else {
                steps.entry(&ids.event_id).or_insert(step);
            }
        }
        let mut failures = Vec::new();
        for (event_id, outcomes) in outcomes_by_event(records) {
            let Some((topic, event_type)) = steps.get(event_id) else {
                continue;
            };
            let mut by_consumer: BTreeMap<&str, Vec<_>> = BTreeMap::new();
            for (time_ms, view, status) in &outcomes {
                by_consumer
                    .entry(view.consumer.as_str())
                    .or_default()
                    .push((*time_ms, view, *status));
            }
            for (consumer, said) in by_consumer {
                for (index, (time_ms, view, status)) in said.iter().enumerate() {
                    if !is_failure(*status) {
                        continue;
                    }
                    let later = &said[index + 1..];
                    let superseded = later.iter().any(|(_, _, s)| is_failure(*s));
                    let recovered_at_ms = later
                        .iter()
                        .filter(|(_, _, s)| is_success(*s))
                        .map(|(time_ms, _, _)| *time_ms)
                        .next_back()
                        .filter(|_| !superseded);
                    let cause = Cause::of(&view.error_code, &view.error);
                    let fingerprint = Fingerprint::of(topic, event_type, consumer, cause);
                    failures.push(StepFailure {
                        cause: IncidentCause {
                            id: fingerprint.id().to_owned(),
                            topic: fingerprint.topic().to_owned(),
                            event_type: fingerprint.event_type().to_owned(),
                            consumer: fingerprint.consumer().to_owned(),
                            is_code: matches!(fingerprint.cause(), Cause::Code(_)),
                            cause: fingerprint.cause().as_str().to_owned(),
                        },
                        event_id: event_id.to_owned(),
                        at_ms: *time_ms,
                        error: view.error.clone(),
                        still_failing: !superseded && recovered_at_ms.is_none(),
                        recovered_at_ms,
                    });
                }
            }
        }
        TransactionFailures {
            subject_ids,
            failures,
        }
    }
}

/// The consumer is done with the event: a failure before it no longer stands.
fn is_success(status: OutcomeStatus) -> bool {
    matches!(status, OutcomeStatus::Processed | OutcomeStatus::Skipped)
}
