//! Shards: an archive split by partition across processes, each on its own disk.
//!
//! A shard `i/N` archives partition p of every data topic where p mod N = i, assigned
//! statically ([`assignment`]): no rebalance ever moves a partition's history away from the
//! store that holds it. The change log and the audit topic are read whole by every shard,
//! so each one applies every change and holds the whole audit trail.
//!
//! Any shard answers a question about the whole archive ([`fanout`]): it asks the other
//! shards, over the same HTTP API a client uses, for what they hold, and builds the answer
//! once. Where to reach each shard comes from configuration (`[archive] shard_urls`, each
//! shard's replicas in the order to try): an operator who splits an archive writes the map
//! once, and a shard told the wrong map refuses to start rather than answering from half
//! the archive. A shard none of whose replicas answers is named in the answer's
//! `incomplete`, and the answer is a 206, never silently partial.

pub(crate) mod answers;
pub(crate) mod assignment;
pub(crate) mod fanout;

use std::fmt;
use std::str::FromStr;

use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
use serde::{Serialize, Serializer};

/// One shard of an archive split in `count`: `index/count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether this shard archives `partition` of `topic`: the topics every shard reads
    /// whole, else the partitions whose number is this shard's index modulo the count.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        topic == ARCHIVE_CHANGES_TOPIC
            || topic == AUDIT_TOPIC
            || u32::try_from(partition).is_ok_and(|p| p % self.count == self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(index, count)| {
            Some(Shard {
                index: index.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(shard) if shard.count >= 1 && shard.index < shard.count => Ok(shard),
            _ => Err(format!(
                "{text:?} is not a shard: write `i/N`, this shard's index from 0 to N-1 and \
                 the number of shards, e.g. `1/3`"
            )),
        }
    }
}

/// This archive's shard, and where every shard of the archive answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sharding {
    pub shard: Shard,
    /// Per shard index, the base URLs of its replicas, tried in order. This shard's own
    /// entry is never asked: it answers from its store.
    pub urls: Vec<Vec<String>>,
}

impl Sharding {
    /// A sharding, checked: one entry per shard, each with at least one URL.
    pub fn new(shard: Shard, urls: Vec<Vec<String>>) -> Result<Self, String> {
        if urls.len() != shard.count as usize {
            return Err(format!(
                "{} shards are configured (`shard = \"{shard}\"`) but `shard_urls` lists {}: \
                 give each shard's URLs, in shard order",
                shard.count,
                urls.len()
            ));
        }
        if let Some(empty) = urls
            .iter()
            .enumerate()
            .position(|(index, urls)| index != shard.index as usize && urls.is_empty())
        {
            return Err(format!(
                "shard {empty}/{} has no URL: list at least one of its replicas",
                shard.count
            ));
        }
        Ok(Sharding { shard, urls })
    }

    /// The other shards, with the URLs to try for each.
    pub fn others(&self) -> impl Iterator<Item = (Shard, &[String])> {
        let count = self.shard.count;
        self.urls
            .iter()
            .enumerate()
            .filter(move |(index, _)| *index as u32 != self.shard.index)
            .map(move |(index, urls)| {
                let shard = Shard {
                    index: index as u32,
                    count,
                };
                (shard, urls.as_slice())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_owns_its_residue_and_the_topics_every_shard_reads() {
        let shard: Shard = "1/3".parse().unwrap();
        let owned: Vec<i32> = (0..8).filter(|p| shard.owns("births", *p)).collect();
        assert_eq!(owned, [1, 4, 7]);
        assert!(shard.owns(ARCHIVE_CHANGES_TOPIC, 0));
        assert!(shard.owns(AUDIT_TOPIC, 2));
        assert_eq!(shard.to_string(), "1/3");
    }

    #[test]
    fn a_malformed_shard_is_refused_with_an_example() {
        for text in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            let error = text.parse::<Shard>().unwrap_err();
            assert!(error.contains("e.g. `1/3`"), "{text}: {error}");
        }
    }

    #[test]
    fn the_map_has_an_entry_per_shard() {
        let shard: Shard = "0/2".parse().unwrap();
        let error = Sharding::new(shard, vec![vec![]]).unwrap_err();
        assert!(error.contains("lists 1"), "{error}");
        let error = Sharding::new(shard, vec![vec![], vec![]]).unwrap_err();
        assert!(error.contains("shard 1/2 has no URL"), "{error}");
        let sharding = Sharding::new(shard, vec![vec![], vec!["http://b".into()]]).unwrap();
        let others: Vec<_> = sharding.others().collect();
        assert_eq!(
            others,
            [("1/2".parse().unwrap(), &["http://b".to_owned()][..])]
        );
    }
}
