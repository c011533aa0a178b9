//! Which partitions a runner owns, and how far each may be committed.
//!
//! Every assignment of a partition to this runner is an epoch of its own, with progress of
//! its own. A revoked partition is read again from its committed offset, by whichever
//! consumer gets it (this one too), so a job started before the revoke may still be running
//! when the same offsets are consumed again. Its completion must not count in the new epoch:
//! a late job 15 would let the new epoch commit 16 as soon as its job 10 settled, and jobs 11
//! to 14, not yet consumed again, would never run (issue 28, item 2). So a message carries
//! the epoch it was consumed in ([`Ticket`]), and only its own epoch counts it.

use std::collections::HashMap;

use retrace_sdk::PartitionProgress;

use super::Tp;

/// One assignment of one partition to this runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Epoch(u64);

/// A consumed message, and the epoch of its partition it was consumed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ticket {
    pub tp: Tp,
    pub offset: i64,
    epoch: Epoch,
}

struct Owned {
    epoch: Epoch,
    progress: PartitionProgress,
}

#[derive(Default)]
pub(super) struct Assignments {
    owned: HashMap<Tp, Owned>,
    /// The last epoch handed out: epochs are never reused, so a revoke followed by an
    /// assign of the same partition is told apart from the assignment before.
    last: u64,
}

impl Assignments {
    /// Starts a new epoch of `tp`, with nothing in flight.
    pub fn assign(&mut self, tp: Tp) {
        self.last += 1;
        let owned = Owned {
            epoch: Epoch(self.last),
            progress: PartitionProgress::default(),
        };
        self.owned.insert(tp, owned);
    }

    pub fn revoke(&mut self, tp: &Tp) {
        self.owned.remove(tp);
    }

    pub fn partitions(&self) -> impl Iterator<Item = &Tp> {
        self.owned.keys()
    }

    /// The ticket of offset `offset` of `tp`, consumed now; `None` when `tp` is not owned.
    pub fn ticket(&self, tp: Tp, offset: i64) -> Option<Ticket> {
        let epoch = self.owned.get(&tp)?.epoch;
        Some(Ticket { tp, offset, epoch })
    }

    /// Marks a message started (its job runs, or it is settled at once): the commit point
    /// stays before it until it is settled. A ticket of an earlier epoch starts nothing.
    pub fn started(&mut self, ticket: &Ticket) {
        if let Some(progress) = self.progress_of(ticket) {
            progress.started(ticket.offset);
        }
    }

    /// Marks a message settled; returns the offset to commit now if its partition's commit
    /// point moved. A ticket of an earlier epoch moves nothing: its partition is read again
    /// from the committed offset, and the message runs again there.
    pub fn settled(&mut self, ticket: &Ticket) -> Option<i64> {
        self.progress_of(ticket)?.settled(ticket.offset)
    }

    fn progress_of(&mut self, ticket: &Ticket) -> Option<&mut PartitionProgress> {
        self.owned
            .get_mut(&ticket.tp)
            .filter(|owned| owned.epoch == ticket.epoch)
            .map(|owned| &mut owned.progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p0() -> Tp {
        ("jobs".to_owned(), 0)
    }

    /// Starts `offsets` of partition 0 in its current epoch.
    fn start(assignments: &mut Assignments, offsets: std::ops::RangeInclusive<i64>) -> Vec<Ticket> {
        offsets
            .map(|offset| {
                let ticket = assignments.ticket(p0(), offset).expect("p0 is owned");
                assignments.started(&ticket);
                ticket
            })
            .collect()
    }

    #[test]
    fn a_job_of_an_earlier_assignment_never_moves_the_commit_point() {
        let mut assignments = Assignments::default();
        assignments.assign(p0());
        let old = start(&mut assignments, 10..=15);
        assignments.revoke(&p0());
        assignments.assign(p0());
        // Committed 10: job 10 is consumed again and started; 11 and after are not yet.
        let new_10 = start(&mut assignments, 10..=10).remove(0);
        assert_eq!(assignments.settled(&old[5]), None, "old job 15 finishes");
        assert_eq!(
            assignments.settled(&new_10),
            Some(11),
            "11 to 15 must run again before the commit point passes them"
        );
        assert_eq!(assignments.settled(&old[1]), None, "old job 11 finishes");
        let new_11 = start(&mut assignments, 11..=11).remove(0);
        assert_eq!(assignments.settled(&new_11), Some(12));
    }

    #[test]
    fn a_revoked_partition_counts_nothing_until_assigned_again() {
        let mut assignments = Assignments::default();
        assignments.assign(p0());
        let old = start(&mut assignments, 3..=3).remove(0);
        assignments.revoke(&p0());
        assert_eq!(assignments.ticket(p0(), 4), None, "not ours");
        assert_eq!(assignments.settled(&old), None);
        assignments.assign(p0());
        assert_eq!(assignments.settled(&old), None, "a new epoch");
        let new = start(&mut assignments, 3..=3).remove(0);
        assert_eq!(assignments.settled(&new), Some(4));
    }
}
