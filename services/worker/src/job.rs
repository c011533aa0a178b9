//! What a job is, and the Kafka topics of a queue.

use retrace_proto::JobPriority;

/// A queue's topics. Each priority has its own lane, so the gate can pause the normal and
/// bulk lanes without holding back urgent jobs, and no job is read just to wait.
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
}
