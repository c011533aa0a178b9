//! [`redrive`]: move dead-lettered jobs back to their lane.
//!
//! The dead-letter topic is read from its beginning to its high watermark (when the redrive
//! starts) by a consumer without a group (partitions assigned, nothing committed). The last
//! dead-lettered copy of each selected job goes back to the lane of its priority with a fresh
//! attempt count, its error history dropped, and `retrace-job-redriven-by` /
//! `retrace-job-redrive-reason` headers. The topic keeps every copy: redriving `All` twice
//! redrives twice (handlers are idempotent by job id); recording redrives is the CLI's job.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
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

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedriveReport {
    /// Job ids redriven (or that would be, in a dry run), with the lane each went to.
    pub redriven: BTreeMap<String, String>,
    /// Selected job ids not found in the dead-letter topic.
    pub not_found: Vec<String>,
    pub dry_run: bool,
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
