//! [`enqueue`]: put a job on its queue's lane.

use retrace_proto::Envelope;
use retrace_sdk::{Delivery, PublishError, Publisher};

use crate::QueueTopics;

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

/// Publishes `job` on queue `queue`: on the lane of its priority (`retrace.jobs.<queue>`,
/// `.urgent`, `.bulk`). Returns once Kafka acknowledged it. The job id is its event id.
pub async fn enqueue(
    publisher: &Publisher,
    queue: &str,
    job: Envelope,
) -> Result<Delivery, EnqueueError> {
    let topics = QueueTopics::of(queue);
    retrace_sdk::check_topic_name(&topics.dead_letter).map_err(|e| EnqueueError::BadQueue {
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
    let lane = topics.lane(spec.priority());
    Ok(publisher.publish(lane, &job).await?)
}
