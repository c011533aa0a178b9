//! Jobs for the off-peak worker: the topics of a queue, and [`enqueue`].

use retrace_proto::{Envelope, JobPriority};

use crate::{Delivery, PublishError, Publisher, check_topic_name};

/// A queue's topics. Each priority has its own lane, so the worker's gate can pause the
/// normal and bulk lanes without holding back urgent jobs, and no job is read just to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTopics {
    pub normal: String,
    pub urgent: String,
    pub bulk: String,
    /// Jobs waiting for their next attempt.
    pub retry: String,
    /// Jobs that used up their attempts, with their error history in headers.
    pub dead_letter: String,
}

impl QueueTopics {
    pub fn of(queue: &str) -> Self {
        let base = format!("retrace.jobs.{queue}");
        QueueTopics {
            urgent: format!("{base}.urgent"),
            bulk: format!("{base}.bulk"),
            retry: format!("{base}.retry"),
            dead_letter: format!("{base}.dlq"),
            normal: base,
        }
    }

    /// The lane a job of `priority` is enqueued on.
    pub fn lane(&self, priority: JobPriority) -> &str {
        match priority {
            JobPriority::Urgent => &self.urgent,
            JobPriority::Bulk => &self.bulk,
            JobPriority::Normal | JobPriority::Unspecified => &self.normal,
        }
    }

    /// Every topic of the queue, to create them.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.normal,
            &self.urgent,
            &self.bulk,
            &self.retry,
            &self.dead_letter,
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("job not enqueued: field `{field}` is missing ({why})")]
    Missing {
        field: &'static str,
        why: &'static str,
    },
    #[error("job not enqueued: queue name {queue:?} cannot name a topic ({reason})")]
    BadQueue { queue: String, reason: String },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The lane `job` goes on in `queue`, once it is checked to be a job.
pub fn lane_of(queue: &str, job: &Envelope) -> Result<String, EnqueueError> {
    let topics = QueueTopics::of(queue);
    check_topic_name(&topics.dead_letter).map_err(|e| EnqueueError::BadQueue {
        queue: queue.to_owned(),
        reason: e.to_string(),
    })?;
    let Some(spec) = &job.job else {
        return Err(EnqueueError::Missing {
            field: "job",
            why: "a job's envelope carries its kind and priority",
        });
    };
    if spec.kind.is_empty() {
        return Err(EnqueueError::Missing {
            field: "job.kind",
            why: "it selects the handler, e.g. \"certificate.render\"",
        });
    }
    Ok(topics.lane(spec.priority()).to_owned())
}

/// Publishes `job` on queue `queue`: on the lane of its priority (`retrace.jobs.<queue>`,
/// `.urgent`, `.bulk`). Returns once Kafka acknowledged it. The job id is its event id.
pub async fn enqueue(
    publisher: &Publisher,
    queue: &str,
    job: Envelope,
) -> Result<Delivery, EnqueueError> {
    let lane = lane_of(queue, &job)?;
    Ok(publisher.publish(&lane, &job).await?)
}

#[cfg(test)]
mod tests {
    use retrace_proto::Job;

    use super::*;

    #[test]
    fn each_priority_has_its_lane() {
        let job = |priority: JobPriority| Envelope {
            job: Some(Job {
                kind: "certificate.render".into(),
                priority: priority as i32,
                ..Job::default()
            }),
            ..Envelope::default()
        };
        let lane = |priority| lane_of("certificates", &job(priority)).unwrap();
        assert_eq!(lane(JobPriority::Normal), "retrace.jobs.certificates");
        assert_eq!(lane(JobPriority::Unspecified), "retrace.jobs.certificates");
        assert_eq!(
            lane(JobPriority::Urgent),
            "retrace.jobs.certificates.urgent"
        );
        assert_eq!(lane(JobPriority::Bulk), "retrace.jobs.certificates.bulk");
        assert!(matches!(
            lane_of("certificates", &Envelope::default()),
            Err(EnqueueError::Missing { field: "job", .. })
        ));
        assert!(matches!(
            lane_of("has space", &job(JobPriority::Normal)),
            Err(EnqueueError::BadQueue { .. })
        ));
    }
}
