//! Which offset of a partition may be committed when messages finish out of order.

use std::collections::BTreeSet;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

/// The messages of one partition in flight. Offset `n` may be committed (as "next to read"
/// = `n`) only once every message before it is settled, so a crash never skips an
/// unfinished one.
#[derive(Debug, Default)]
pub struct PartitionProgress {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset settled so far.
    settled_to: Option<i64>,
}

impl PartitionProgress {
    /// Marks `offset` received and not yet settled.
    pub fn started(&mut self, offset: i64) {
        self.in_flight.insert(offset);
    }

    /// Marks `offset` settled; returns the offset to commit now, if it moved. An offset
    /// that is not in flight here (never started, or started before this progress was
    /// begun anew) moves nothing: counting it would let the commit point jump over offsets
    /// this progress has not seen settle.
    pub fn settled(&mut self, offset: i64) -> Option<i64> {
        let before = self.commit_point();
        if !self.in_flight.remove(&offset) {
            return None;
        }
        self.settled_to = Some(self.settled_to.unwrap_or(0).max(offset + 1));
        let after = self.commit_point();
        (after != before).then_some(after).flatten()
    }

    /// Everything before the returned offset is settled.
    pub fn commit_point(&self) -> Option<i64> {
        match self.in_flight.first() {
            Some(first) => Some(*first).filter(|_| self.settled_to.is_some()),
            None => self.settled_to,
        }
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Stores `next` as the offset `topic`/`partition` resumes from; the consumer commits it in
/// the background (`enable.auto.offset.store = false`).
pub fn store_next_offset<X: ConsumerContext>(
    consumer: &impl Consumer<X>,
    topic: &str,
    partition: i32,
    next: i64,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.store_offsets(&list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_past_a_contiguous_settled_prefix() {
        let mut p = PartitionProgress::default();
        for offset in 10..14 {
            p.started(offset);
        }
        assert_eq!(p.settled(12), Some(10), "10 and 11 still run");
        assert_eq!(p.settled(11), None, "10 still runs");
        assert_eq!(p.settled(10), Some(13));
        assert_eq!(p.settled(13), Some(14));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn an_offset_never_started_here_moves_nothing() {
        let mut p = PartitionProgress::default();
        p.started(10);
        assert_eq!(p.settled(15), None, "15 was not started here");
        assert_eq!(
            p.settled(10),
            Some(11),
            "not 16: 11 to 15 never settled here"
        );
    }

    #[test]
    fn nothing_to_commit_before_anything_settles() {
        let mut p = PartitionProgress::default();
        p.started(5);
        assert_eq!(p.commit_point(), None);
        assert_eq!(p.settled(5), Some(6));
    }
}
