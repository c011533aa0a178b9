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

/// Bits of the 8-byte offset field below the epoch.
const OFFSET_BITS: u32 = 48;

/// `topic \0 partition epoch:offset`: the primary key. The epoch takes the top 16 bits of
/// the offset field, so epoch-0 keys are byte for byte those of format 2 (no record is
/// rewritten on upgrade) and a partition's records sort by epoch, then offset. A key that
/// does not [`fit`](fits) would land on another epoch's: writers and readers check first.
pub(crate) fn record(key: &RecordKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.topic.len() + 1 + POSITION_LEN);
    push_id(&mut out, &key.topic);
    out.extend_from_slice(&(key.partition as u32).to_be_bytes());
    out.extend_from_slice(&offset_field(key.epoch, key.offset).to_be_bytes());
    out
}

/// The epoch and offset fit in the key's 8-byte offset field.
pub(crate) fn fits(key: &RecordKey) -> bool {
    key.epoch <= RecordKey::MAX_EPOCH && (0..=RecordKey::MAX_OFFSET).contains(&key.offset)
}

/// `topic \0 partition` followed by the greatest offset field: where a scan of the
/// partition's records, every epoch's, ends (inclusive).
pub(crate) fn partition_end(topic: &str, partition: i32) -> Vec<u8> {
    let mut out = id_prefix(topic);
    out.extend_from_slice(&(partition as u32).to_be_bytes());
    out.extend_from_slice(&u64::MAX.to_be_bytes());
    out
}

fn offset_field(epoch: u32, offset: i64) -> u64 {
    (u64::from(epoch) << OFFSET_BITS) | offset as u64
}

pub(crate) fn parse_record(bytes: &[u8]) -> Option<RecordKey> {
    let split = bytes.len().checked_sub(POSITION_LEN + 1)?;
    let (topic, rest) = bytes.split_at(split);
    if rest[0] != END {
        return None;
    }
    let partition = u32::from_be_bytes(rest[1..5].try_into().ok()?);
    let field = u64::from_be_bytes(rest[5..].try_into().ok()?);
    Some(RecordKey {
        topic: String::from_utf8(topic.to_vec()).ok()?,
        partition: i32::try_from(partition).ok()?,
        epoch: u32::try_from(field >> OFFSET_BITS).ok()?,
        offset: i64::try_from(field & ((1 << OFFSET_BITS) - 1)).ok()?,
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
        fn record_keys_round_trip(
            topic in "[a-zA-Z0-9._-]{1,60}",
            partition in 0..i32::MAX,
            epoch in 0..=RecordKey::MAX_EPOCH,
            offset in 0..=RecordKey::MAX_OFFSET,
        ) {
            let key = RecordKey { topic, partition, epoch, offset };
            prop_assert!(fits(&key));
            prop_assert_eq!(parse_record(&record(&key)), Some(key));
        }

        #[test]
        fn a_partition_sorts_by_epoch_then_offset(
            a in (0..=RecordKey::MAX_EPOCH, 0..=RecordKey::MAX_OFFSET),
            b in (0..=RecordKey::MAX_EPOCH, 0..=RecordKey::MAX_OFFSET),
        ) {
            let key = |(epoch, offset)| record(&RecordKey { topic: "t".into(), partition: 3, epoch, offset });
            prop_assert_eq!(a.cmp(&b), key(a).cmp(&key(b)));
            prop_assert!(key(a) <= partition_end("t", 3));
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
                epoch: 0,
                offset,
            })
        };
        assert!(key(255) < key(256));
        assert!(key(9) < key(10));
    }

    /// Format 2 wrote `topic \0 partition offset`: epoch 0 keeps those exact bytes, so an
    /// upgraded archive's records are found without being rewritten.
    #[test]
    fn epoch_zero_keys_are_the_format_2_keys() {
        let key = RecordKey {
            topic: "t".into(),
            partition: 2,
            epoch: 0,
            offset: 300,
        };
        let mut format_2 = b"t\0".to_vec();
        format_2.extend_from_slice(&2u32.to_be_bytes());
        format_2.extend_from_slice(&300u64.to_be_bytes());
        assert_eq!(record(&key), format_2);
    }

    #[test]
    fn a_new_epoch_does_not_collide_with_the_old_one() {
        let key = |epoch| RecordKey {
            topic: "t".into(),
            partition: 0,
            epoch,
            offset: 0,
        };
        assert_ne!(record(&key(0)), record(&key(1)));
        assert_eq!(parse_record(&record(&key(1))), Some(key(1)));
    }

    #[test]
    fn keys_beyond_the_fields_do_not_fit() {
        let key = |epoch, offset| RecordKey {
            topic: "t".into(),
            partition: 0,
            epoch,
            offset,
        };
        assert!(fits(&key(RecordKey::MAX_EPOCH, RecordKey::MAX_OFFSET)));
        assert!(!fits(&key(RecordKey::MAX_EPOCH + 1, 0)));
        assert!(!fits(&key(0, RecordKey::MAX_OFFSET + 1)));
        assert!(!fits(&key(0, -1)));
    }
}
