//! Where each partition stands: its next offset, and which of its logs (epoch) that offset
//! belongs to, as kept in the `positions` keyspace and in memory.

use crate::{LogReset, Position};

/// A partition's position in memory: the writers' view of the `positions` keyspace.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    pub(crate) epoch: u32,
    pub(crate) next_offset: i64,
    pub(crate) reset: Option<LogReset>,
}

/// The next offset alone (8 bytes, format 2's value) until the partition's first reset;
/// then next offset, epoch, previous next offset and reset time (28 bytes).
pub(crate) fn encode_position(cursor: &Cursor) -> Vec<u8> {
    let mut out = cursor.next_offset.to_be_bytes().to_vec();
    if let Some(reset) = &cursor.reset {
        out.extend_from_slice(&cursor.epoch.to_be_bytes());
        out.extend_from_slice(&reset.previous_next_offset.to_be_bytes());
        out.extend_from_slice(&reset.at_ms.to_be_bytes());
    }
    out
}

pub(crate) fn parse_position(key: &[u8], value: &[u8]) -> Option<Position> {
    let topic_end = key.iter().position(|b| *b == 0)?;
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        Some(i64::from_be_bytes(value.get(range)?.try_into().ok()?))
    };
    let (epoch, reset) = match value.len() {
        8 => (0, None),
        28 => (
            u32::from_be_bytes(value[8..12].try_into().ok()?),
            Some(LogReset {
                previous_next_offset: number(12..20)?,
                at_ms: number(20..28)?,
            }),
        ),
        _ => return None,
    };
    Some(Position {
        topic: String::from_utf8(key[..topic_end].to_vec()).ok()?,
        partition: i32::try_from(u32::from_be_bytes(key[topic_end + 1..].try_into().ok()?)).ok()?,
        epoch,
        next_offset: number(0..8)?,
        reset,
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
#[path = "positions_tests.rs"]
mod tests;
