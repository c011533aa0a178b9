//! Byte layout of every key in the archive.
//!
//! Ids (topics, transactions, subjects, events) never contain NUL, so `0x00` ends them.
//! Numbers are big-endian so that byte order is numeric order; times have their sign bit
//! flipped so that negative times sort first.

use crate::RecordKey;

const END: u8 = 0;
/// partition (4 bytes) + offset (8 bytes) at the end of every record key.
const POSITION_LEN: usize = 12;
const TIME_LEN: usize = 8;

/// `topic \0 partition offset`: the primary key.
pub(crate) fn record(key: &RecordKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.topic.len() + 1 + POSITION_LEN);
    push_id(&mut out, &key.topic);
    out.extend_from_slice(&(key.partition as u32).to_be_bytes());
    out.extend_from_slice(&(key.offset as u64).to_be_bytes());
    out
}

pub(crate) fn parse_record(bytes: &[u8]) -> Option<RecordKey> {
    let split = bytes.len().checked_sub(POSITION_LEN + 1)?;
    let (topic, rest) = bytes.split_at(split);
    if rest[0] != END {
        return None;
    }
    let partition = u32::from_be_bytes(rest[1..5].try_into().ok()?);
    let offset = u64::from_be_bytes(rest[5..].try_into().ok()?);
    Some(RecordKey {
        topic: String::from_utf8(topic.to_vec()).ok()?,
        partition: i32::try_from(partition).ok()?,
        offset: i64::try_from(offset).ok()?,
    })
}

/// `id \0`: the prefix of every index entry about one id.
pub(crate) fn id_prefix(id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 1);
    push_id(&mut out, id);
    out
}

/// `id \0 record`: index entries from an id to records (events, outcomes, flagged).
pub(crate) fn id_record(id: &str, record: &[u8]) -> Vec<u8> {
    let mut out = id_prefix(id);
    out.extend_from_slice(record);
    out
}

/// `id \0 time record`: index entries from an id to records in time order.
pub(crate) fn id_time_record(id: &str, time_ms: i64, record: &[u8]) -> Vec<u8> {
    let mut out = id_prefix(id);
    out.extend_from_slice(&time(time_ms));
    out.extend_from_slice(record);
    out
}

/// `id \0 time`: where a time-ordered scan of `id` starts or stops.
pub(crate) fn id_time(id: &str, time_ms: i64) -> Vec<u8> {
    let mut out = id_prefix(id);
    out.extend_from_slice(&time(time_ms));
    out
}

/// `id \0 other`: a pair of ids (subject → transaction, topic → partition).
pub(crate) fn id_pair(id: &str, other: &[u8]) -> Vec<u8> {
    id_record(id, other)
}

/// `mark time transaction`: a transaction by the moment something happened to it.
pub(crate) fn mark(mark: u8, time_ms: i64, transaction: &str) -> Vec<u8> {
    let mut out = mark_time(mark, time_ms).to_vec();
    out.extend_from_slice(transaction.as_bytes());
    out
}

/// `mark time`: where a time-ordered scan of marks starts or stops.
pub(crate) fn mark_time(mark: u8, time_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + TIME_LEN);
    out.push(mark);
    out.extend_from_slice(&time(time_ms));
    out
}

/// Splits a mark key into its mark, time and transaction.
pub(crate) fn split_mark(key: &[u8]) -> Option<(u8, i64, &[u8])> {
    let (&mark, rest) = key.split_first()?;
    let (time, transaction) = split_time(rest)?;
    Some((mark, time, transaction))
}

pub(crate) fn mark_transaction(key: &[u8]) -> Option<&[u8]> {
    split_mark(key).map(|(_, _, transaction)| transaction)
}

/// The part of an index key after `id \0`.
pub(crate) fn after_id(key: &[u8]) -> Option<&[u8]> {
    let end = key.iter().position(|b| *b == END)?;
    Some(&key[end + 1..])
}

/// Splits `time record` (what follows `id \0` in a time-ordered index).
pub(crate) fn split_time(rest: &[u8]) -> Option<(i64, &[u8])> {
    if rest.len() < TIME_LEN {
        return None;
    }
    let (time, record) = rest.split_at(TIME_LEN);
    Some((parse_time(time)?, record))
}

pub(crate) fn time(time_ms: i64) -> [u8; TIME_LEN] {
    ((time_ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn parse_time(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

pub(crate) fn partition(partition: i32) -> [u8; 4] {
    (partition as u32).to_be_bytes()
}

fn push_id(out: &mut Vec<u8>, id: &str) {
    debug_assert!(!id.as_bytes().contains(&END), "ids never contain NUL");
    out.extend_from_slice(id.as_bytes());
    out.push(END);
}

/// Lowercase hex, for opaque cursors.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn record_keys_round_trip(topic in "[a-zA-Z0-9._-]{1,60}", partition in 0..i32::MAX, offset in 0..i64::MAX) {
            let key = RecordKey { topic, partition, offset };
            prop_assert_eq!(parse_record(&record(&key)), Some(key));
        }

        #[test]
        fn time_order_is_byte_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), time(a).cmp(&time(b)));
            prop_assert_eq!(parse_time(&time(a)), Some(a));
        }

        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        }
    }

    #[test]
    fn offsets_of_one_partition_sort_numerically() {
        let key = |offset| {
            record(&RecordKey {
                topic: "t".into(),
                partition: 1,
                offset,
            })
        };
        assert!(key(255) < key(256));
        assert!(key(9) < key(10));
    }
}
