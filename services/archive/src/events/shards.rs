//! What a shard reports about asking the others: each shard that answered or not, so an
//! operator sees a shard down before a user reads an answer flagged incomplete.

use metrics::{counter, gauge};
use retrace_telemetry::{InternalEvent, register};
use tracing::warn;

use crate::shards::{Shard, Sharding};

pub(super) fn register_metrics(sharding: &Sharding) {
    let others: Vec<String> = sharding
        .others()
        .map(|(shard, _)| shard.to_string())
        .collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    register(
        "retrace_archive_shard_requests_total",
        &[("shard", &others), ("outcome", &["answered", "unanswered"])],
    );
    register("retrace_archive_shard_answering", &[("shard", &others)]);
    for shard in others {
        gauge!("retrace_archive_shard_answering", "shard" => shard.to_owned()).set(1.0);
    }
}

/// A shard answered a question this one asked for a caller.
pub(crate) struct ShardAnswered {
    pub shard: Shard,
}

impl InternalEvent for ShardAnswered {
    fn emit(self) {
        let shard = self.shard.to_string();
        counter!("retrace_archive_shard_requests_total", "shard" => shard.clone(), "outcome" => "answered")
            .increment(1);
        gauge!("retrace_archive_shard_answering", "shard" => shard).set(1.0);
    }
}

/// None of a shard's replicas answered: the answer names the shard in `incomplete`.
pub(crate) struct ShardUnanswered<'a> {
    pub shard: Shard,
    /// What each replica tried answered, in the order tried.
    pub errors: &'a [String],
}

impl InternalEvent for ShardUnanswered<'_> {
    fn emit(self) {
        let shard = self.shard.to_string();
        warn!(
            shard,
            errors = self.errors.join("; "),
            "no replica of the shard answered: answers name it as incomplete until one does"
        );
        counter!("retrace_archive_shard_requests_total", "shard" => shard.clone(), "outcome" => "unanswered")
            .increment(1);
        gauge!("retrace_archive_shard_answering", "shard" => shard).set(0.0);
    }
}
