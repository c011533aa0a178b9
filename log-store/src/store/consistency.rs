//! Checking that every index agrees with the records and every record with the indexes.

use std::collections::HashMap;

use super::indexes::{index_entries, record_key_suffix};
use super::{Inner, LogStore};
use crate::{ConsistencyReport, StoreError, codec, keys};

impl LogStore {
    /// Checks that every index agrees with the records, and every record with the indexes.
    /// Reads the whole archive: for tests and for operators after an incident.
    pub fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        self.inner.check_consistency()
    }
}

impl Inner {
    fn check_consistency(&self) -> Result<ConsistencyReport, StoreError> {
        let mut report = ConsistencyReport::default();
        let mut last_offsets: HashMap<(String, i32, u32), i64> = HashMap::new();
        for guard in self.records.iter() {
            let (key, value) = guard.into_inner().map_err(self.error("scan records"))?;
            report.records += 1;
            let Some(record_key) = keys::parse_record(&key) else {
                report
                    .problems
                    .push(format!("record key {} is unreadable", keys::to_hex(&key)));
                continue;
            };
            let record = match codec::decode(record_key.clone(), &value) {
                Ok(record) => record,
                Err(error) => {
                    report
                        .problems
                        .push(format!("record {record_key} cannot be decoded: {error}"));
                    continue;
                }
            };
            let last = last_offsets
                .entry((
                    record_key.topic.clone(),
                    record_key.partition,
                    record_key.epoch,
                ))
                .or_insert(record_key.offset);
            *last = (*last).max(record_key.offset);
            for (index, index_key, _) in index_entries(&record, &key)? {
                let index = self.keyspace(index);
                let present = index
                    .contains_key(&index_key)
                    .map_err(self.error("check an index entry"))?;
                if !present {
                    report.problems.push(format!(
                        "record {record_key} is missing from index {}",
                        index.name().as_ref() as &str
                    ));
                }
            }
        }
        let pointing_indexes = [
            (&self.by_transaction, "by_transaction"),
            (&self.by_event, "by_event"),
            (&self.by_time, "by_time"),
            (&self.outcomes, "outcomes"),
            (&self.flagged, "flagged"),
        ];
        for (index, name) in pointing_indexes {
            for guard in index.iter() {
                let key = guard.key().map_err(self.error("scan an index"))?;
                report.index_entries += 1;
                let target = record_key_suffix(name, &key);
                let present = match target {
                    Some(target) => self
                        .records
                        .contains_key(target)
                        .map_err(self.error("check a record"))?,
                    None => false,
                };
                if !present {
                    report.problems.push(format!(
                        "index {name} entry {} points at no record",
                        keys::to_hex(&key)
                    ));
                }
            }
        }
        let transactions_named_by = self
            .by_subject
            .iter()
            .map(|guard| {
                (
                    "by_subject",
                    guard,
                    keys::after_id as fn(&[u8]) -> Option<&[u8]>,
                )
            })
            .chain(self.marks.iter().map(|guard| {
                (
                    "marks",
                    guard,
                    keys::mark_transaction as fn(&[u8]) -> Option<&[u8]>,
                )
            }));
        for (name, guard, transaction_of) in transactions_named_by {
            let key = guard.key().map_err(self.error("scan an index"))?;
            report.index_entries += 1;
            let transaction = transaction_of(&key).map(|t| String::from_utf8_lossy(t).into_owned());
            let known = match &transaction {
                Some(t) => self
                    .by_transaction
                    .prefix(keys::id_prefix(t))
                    .next()
                    .is_some(),
                None => false,
            };
            if !known {
                report.problems.push(format!(
                    "index {name} entry {} names an unknown transaction",
                    keys::to_hex(&key)
                ));
            }
        }
        for position in self.read_positions()? {
            let last =
                last_offsets.get(&(position.topic.clone(), position.partition, position.epoch));
            if last.is_none_or(|last| *last >= position.next_offset) {
                report.problems.push(format!(
                    "position of {}/{} is {} in epoch {} but the newest record there is {:?}",
                    position.topic, position.partition, position.next_offset, position.epoch, last
                ));
            }
        }
        Ok(report)
    }
}
