//! Bringing the runner's state in line with the consumer group's assignments and
//! revocations.

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};

use super::pausing::partition_list;
use super::{QueueRunner, State, Tp};
use crate::events::During;

/// Records assignments and revocations as they happen inside `recv`, for the runner to
/// apply before it looks at the next message.
#[derive(Default)]
pub(crate) struct RebalanceLog {
    changes: Mutex<Vec<(bool, Vec<Tp>)>>,
}

impl ClientContext for RebalanceLog {}

impl ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (assigned, list) = match rebalance {
            Rebalance::Assign(list) => (true, list),
            Rebalance::Revoke(list) => (false, list),
            Rebalance::Error(_) => return,
        };
        let partitions = list
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        self.changes
            .lock()
            .expect("the rebalance log is never poisoned")
            .push((assigned, partitions));
    }
}

impl State {
    /// Applies what the rebalance log recorded, in order; returns the partitions assigned
    /// (and not revoked since). Either way a partition starts afresh, from its committed
    /// offset: its waiting messages were not started, so nothing past them was committed,
    /// and they are consumed again. Its pause flag is librdkafka's to keep (see
    /// `apply_rebalances`), no longer ours to know.
    pub(super) fn rebalanced(&mut self, changes: Vec<(bool, Vec<Tp>)>) -> Vec<Tp> {
        let mut assigned = Vec::new();
        for (assign, partitions) in changes {
            for tp in partitions {
                self.waiting.remove(&tp);
                self.paused.remove(&tp);
                assigned.retain(|other| *other != tp);
                if assign {
                    self.assignments.assign(tp.clone());
                    assigned.push(tp);
                } else {
                    self.assignments.revoke(&tp);
                }
            }
        }
        assigned
    }
}

impl QueueRunner {
    pub(super) fn apply_rebalances(&self, state: &mut State) {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .expect("the rebalance log is never poisoned"),
        );
        if changes.is_empty() {
            return;
        }
        let assigned = state.rebalanced(changes);
        if !assigned.is_empty() {
            // librdkafka keeps the application's pause flag across revoke and assign
            // (2.12.1): a partition paused when it was revoked comes back paused, and would
            // never be fetched again. Resume all that came back; `reconcile` pauses again
            // what must wait (a slowed lane).
            if let Err(error) = self.consumer.resume(&partition_list(&assigned)) {
                self.trouble(During::Resume, &error);
                // Counted as paused, so `reconcile` resumes it at the next recheck.
                state.paused.extend(assigned);
            }
        }
        self.reconcile(state);
    }
}
