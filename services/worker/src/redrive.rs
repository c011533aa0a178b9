//! [`redrive`]: move dead-lettered jobs back to their lane.
//!
//! The dead-letter topic is read from its beginning to its high watermark (when the redrive
//! starts) by a consumer without a group (partitions assigned, nothing committed). The last
//! dead-lettered copy of each selected job goes back to the lane of its priority with a fresh
//! attempt count, its error history dropped, and `retrace-job-redriven-by` /
//! `retrace-job-redrive-reason` headers. The topic keeps every copy: redriving `All` twice
//! redrives twice (handlers are idempotent by job id); recording redrives is the CLI's job.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use retrace_api::{RedriveBody, RedriveReport};
use retrace_proto::Envelope;
use retrace_sdk::{KafkaSettings, PublishError, Publisher, RawMessage};
use retrace_telemetry::InternalEvent;

use crate::QueueTopics;
use crate::events::JobRedriven;
use crate::retry::{self, ATTEMPT, DUE_AT, ERROR, REDRIVE_REASON, REDRIVEN_BY};

/// Which dead-lettered jobs to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveSelection {
    Jobs(BTreeSet<String>),
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedriveRequest {
    pub selection: RedriveSelection,
    /// Jobs published per second at most; unlimited when `None`.
    pub rate_per_s: Option<f64>,
    /// Find and report, publish nothing.
    pub dry_run: bool,
    /// Who asked (a person or service), recorded on every redriven copy.
    pub requested_by: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("cannot read dead-letter topic {topic}: {source}")]
    Read { topic: String, source: KafkaError },
    #[error(
        "reading dead-letter topic {topic} did not reach its end within {0:?}",
        READ_PATIENCE
    )]
    TimedOut { topic: String },
    #[error("redrive stopped after {redriven} jobs: {source}")]
    Publish {
        redriven: usize,
        source: PublishError,
    },
    #[error("redrive refused: {0}")]
    Invalid(&'static str),
}

const READ_PATIENCE: Duration = Duration::from_secs(30);

/// Moves the selected dead-lettered jobs of `queue` back to their lanes.
pub async fn redrive(
    settings: &KafkaSettings,
    queue: &str,
    request: &RedriveRequest,
) -> Result<RedriveReport, RedriveError> {
    if request.requested_by.trim().is_empty() || request.reason.trim().is_empty() {
        return Err(RedriveError::Invalid(
            "`requested_by` and `reason` are required",
        ));
    }
    if request
        .rate_per_s
        .is_some_and(|rate| rate.is_nan() || rate <= 0.0)
    {
        return Err(RedriveError::Invalid("`rate_per_s` must be above 0"));
    }
    let topics = QueueTopics::of(queue);
    let reader_settings = settings.clone();
    let dlq = topics.dead_letter.clone();
    let selection = request.selection.clone();
    let found =
        tokio::task::spawn_blocking(move || read_dead_letters(&reader_settings, &dlq, &selection))
            .await
            .expect("reading the dead-letter topic does not panic")?;
    let mut report = RedriveReport {
        dry_run: request.dry_run,
        ..RedriveReport::default()
    };
    if let RedriveSelection::Jobs(ids) = &request.selection {
        report.not_found = ids
            .iter()
            .filter(|id| !found.iter().any(|copy| &copy.job_id == *id))
            .cloned()
            .collect();
    }
    let publisher = match request.dry_run {
        true => None,
        false => Some(
            Publisher::new(settings).map_err(|source| RedriveError::Publish {
                redriven: 0,
                source,
            })?,
        ),
    };
    let interval = request
        .rate_per_s
        .map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut next = Instant::now();
    for copy in found {
        let lane = topics.lane(copy.priority).to_owned();
        if let Some(publisher) = &publisher {
            if let Some(interval) = interval {
                tokio::time::sleep_until(next.into()).await;
                next = next.max(Instant::now()) + interval;
            }
            let mut headers: Vec<(&str, Option<&[u8]>)> = copy
                .headers
                .iter()
                .filter(|(name, _)| {
                    ![ATTEMPT, DUE_AT, ERROR, REDRIVEN_BY, REDRIVE_REASON].contains(&name.as_str())
                })
                .map(|(name, value)| (name.as_str(), value.as_deref()))
                .collect();
            headers.push((REDRIVEN_BY, Some(request.requested_by.as_bytes())));
            headers.push((REDRIVE_REASON, Some(request.reason.as_bytes())));
            let message = RawMessage {
                key: copy.key.as_deref(),
                value: copy.value.as_deref(),
                headers: &headers,
            };
            publisher
                .republish(&lane, &message, &copy.job_id)
                .await
                .map_err(|source| RedriveError::Publish {
                    redriven: report.redriven.len(),
                    source,
                })?;
        }
        JobRedriven {
            queue,
            job_id: &copy.job_id,
            lane: &lane,
            dry_run: request.dry_run,
        }
        .emit();
        report.redriven.insert(copy.job_id, lane);
    }
    Ok(report)
}

/// A dead-lettered copy, as read.
struct DeadLetter {
    job_id: String,
    priority: retrace_proto::JobPriority,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The last copy of each selected job on `topic`, in topic order of those last copies.
fn read_dead_letters(
    settings: &KafkaSettings,
    topic: &str,
    selection: &RedriveSelection,
) -> Result<Vec<DeadLetter>, RedriveError> {
    let read_error = |source| RedriveError::Read {
        topic: topic.to_owned(),
        source,
    };
    // librdkafka wants a group id even for assigned partitions; this one never joins a
    // group (no subscribe) and never commits.
    let group = format!("retrace-redrive-{}", retrace_proto::new_event_id());
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ])
        .create()
        .map_err(read_error)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(read_error)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(read_error)?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(read_error)?;
            remaining.insert(partition, high);
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment).map_err(read_error)?;
    let mut found: Vec<DeadLetter> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let give_up = Instant::now() + READ_PATIENCE;
    while !remaining.is_empty() {
        if Instant::now() > give_up {
            return Err(RedriveError::TimedOut {
                topic: topic.to_owned(),
            });
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(read_error)?;
        let partition = message.partition();
        if let Some(high) = remaining.get(&partition) {
            if message.offset() + 1 >= *high {
                remaining.remove(&partition);
            }
        } else {
            continue;
        }
        let Ok(envelope) = Envelope::decode(message.payload().unwrap_or_default()) else {
            continue;
        };
        let selected = match selection {
            RedriveSelection::All => true,
            RedriveSelection::Jobs(ids) => ids.contains(&envelope.event_id),
        };
        if !selected {
            continue;
        }
        let copy = DeadLetter {
            priority: envelope
                .job
                .as_ref()
                .map(|j| j.priority())
                .unwrap_or_default(),
            job_id: envelope.event_id.clone(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: retry::owned_headers(&message),
        };
        match position.get(&copy.job_id) {
            Some(index) => found[*index] = copy,
            None => {
                position.insert(copy.job_id.clone(), found.len());
                found.push(copy);
            }
        }
    }
    Ok(found)
}

/// `POST /v1/jobs/queues/{queue}/redrive`: the body checked (400 naming the field), the
/// redrive run to its end even if the caller goes away, audited, and its report answered.
pub(crate) mod http {
    use axum::Json;
    use axum::response::{IntoResponse, Response};
    use retrace_auth::{AuditSender, Caller};
    use retrace_http::{ApiError, json_body};
    use retrace_sdk::KafkaSettings;
    use retrace_telemetry::InternalEvent;

    use super::{
        RedriveBody, RedriveError, RedriveReport, RedriveRequest, RedriveSelection, redrive,
    };
    use crate::events::RedriveAudited;

    pub(crate) fn unknown_queue(queue: &str, known: &[&str]) -> Response {
        ApiError::not_found(format!(
            "no queue {queue:?} in this worker; its queues: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
        .into_response()
    }

    /// Checks `body` and runs the redrive `caller` asks for on `queue`, a known queue; the
    /// redrive goes to the archive's audit trail through `audit`.
    pub(crate) async fn answer(
        kafka: &KafkaSettings,
        queue: &str,
        body: &[u8],
        caller: &Caller,
        audit: &AuditSender,
    ) -> Response {
        let request = match json_body(body, "redrive request")
            .and_then(|body| check(body, caller.actor.clone()))
        {
            Ok(request) => request,
            Err(refusal) => return refusal.into_response(),
        };
        let reason = request.reason.clone();
        let action = if request.dry_run {
            "redrive.plan"
        } else {
            "redrive"
        };
        match run(kafka.clone(), queue.to_owned(), request).await {
            Ok(report) => {
                let result = format!("ok: {} jobs", report.redriven.len());
                audit.record(caller, action, queue, &reason, &result);
                Json(report).into_response()
            }
            Err(refusal) => {
                audit.record(caller, action, queue, &reason, &refusal.body.error);
                refusal.into_response()
            }
        }
    }

    /// The redrive `body` asks for, or a refusal naming the field at fault.
    pub(crate) fn check(
        body: RedriveBody,
        requested_by: String,
    ) -> Result<RedriveRequest, ApiError> {
        let reason = body.reason.trim();
        if reason.is_empty() {
            return Err(ApiError::invalid(
                "reason",
                "reason is required: say why these jobs are redriven, for the audit trail",
            ));
        }
        let selection = match (body.jobs, body.all) {
            (Some(_), true) => {
                return Err(ApiError::invalid(
                    "jobs",
                    "give either jobs (a list of job ids) or all: true, not both",
                ));
            }
            (None, false) => {
                return Err(ApiError::invalid(
                    "jobs",
                    "say which jobs: jobs (a list of job ids) or all: true",
                ));
            }
            (None, true) => RedriveSelection::All,
            (Some(jobs), false) => {
                if jobs.is_empty() {
                    return Err(ApiError::invalid(
                        "jobs",
                        "jobs is empty: list job ids, or pass all: true",
                    ));
                }
                if let Some(blank) = jobs.iter().position(|id| id.trim().is_empty()) {
                    return Err(ApiError::invalid(
                        &format!("jobs[{blank}]"),
                        "a job id is blank",
                    ));
                }
                RedriveSelection::Jobs(jobs.into_iter().collect())
            }
        };
        if let Some(rate) = body.rate
            && !(rate > 0.0 && rate.is_finite())
        {
            return Err(ApiError::invalid(
                "rate",
                format!("rate {rate} must be a number of jobs per second above 0"),
            ));
        }
        Ok(RedriveRequest {
            selection,
            rate_per_s: body.rate,
            dry_run: body.dry_run,
            requested_by,
            reason: reason.to_owned(),
        })
    }

    /// Runs the redrive on its own task, so a caller who hangs up does not stop it halfway,
    /// and audits it when it ends.
    async fn run(
        kafka: KafkaSettings,
        queue: String,
        request: RedriveRequest,
    ) -> Result<RedriveReport, ApiError> {
        let task = tokio::spawn(async move {
            let result = redrive(&kafka, &queue, &request).await;
            RedriveAudited {
                queue: &queue,
                request: &request,
                result: &result,
            }
            .emit();
            result
        });
        let result = task.await.map_err(|panic| {
            ApiError::internal(format!("the redrive failed unexpectedly: {panic}"))
        })?;
        result.map_err(|error| match error {
            RedriveError::Invalid(_) => {
                ApiError::new(retrace_api::ErrorCode::Invalid, error.to_string())
            }
            RedriveError::Read { .. } | RedriveError::TimedOut { .. } => ApiError::unavailable(
                format!("{error}; nothing was redriven. Is Kafka reachable?"),
            ),
            RedriveError::Publish { .. } => ApiError::unavailable(format!(
                "{error}. Those jobs are back on their lane; redriving the rest again \
                 redrives those twice (handlers get the job id as idempotency key)"
            )),
        })
    }

    #[cfg(test)]
    mod tests {
        use std::collections::BTreeSet;

        use axum::http::StatusCode;

        use super::*;

        fn body(json: &str) -> Result<RedriveRequest, ApiError> {
            check(
                json_body(json.as_bytes(), "redrive request")?,
                "ops@desk".to_owned(),
            )
        }

        fn field(json: &str) -> String {
            body(json).unwrap_err().body.field.unwrap()
        }

        #[test]
        fn a_good_body_becomes_a_request() {
            let request =
                body(r#"{"jobs":["a","b"],"rate":5,"reason":" renderer back "}"#).unwrap();
            assert_eq!(
                request,
                RedriveRequest {
                    selection: RedriveSelection::Jobs(BTreeSet::from(["a".into(), "b".into()])),
                    rate_per_s: Some(5.0),
                    dry_run: false,
                    requested_by: "ops@desk".into(),
                    reason: "renderer back".into(),
                }
            );
            let all = body(r#"{"all":true,"dry_run":true,"reason":"x"}"#).unwrap();
            assert_eq!(
                (all.selection, all.dry_run, all.rate_per_s),
                (RedriveSelection::All, true, None)
            );
        }

        #[test]
        fn a_bad_body_is_refused_naming_the_field() {
            assert_eq!(field(r#"{"all":true}"#), "reason");
            assert_eq!(field(r#"{"all":true,"reason":"  "}"#), "reason");
            assert_eq!(field(r#"{"reason":"x"}"#), "jobs");
            assert_eq!(field(r#"{"jobs":["a"],"all":true,"reason":"x"}"#), "jobs");
            assert_eq!(field(r#"{"jobs":[],"reason":"x"}"#), "jobs");
            assert_eq!(field(r#"{"jobs":["a"," "],"reason":"x"}"#), "jobs[1]");
            assert_eq!(field(r#"{"all":true,"rate":0,"reason":"x"}"#), "rate");
            assert_eq!(field(r#"{"job":["a"],"reason":"x"}"#), "job");
            assert_eq!(field(r#"{"all":"yes","reason":"x"}"#), "body");
            assert_eq!(field("not json"), "body");
            let refusal = body(r#"{"reason":"x"}"#).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        }
    }
}
