//! Retry bookkeeping carried in Kafka headers, and the backoff between attempts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rdkafka::message::{BorrowedMessage, Headers, Message};

pub use retrace_proto::headers::job::{ATTEMPT, DUE_AT, ERROR, REDRIVE_REASON, REDRIVEN_BY};

/// Exponential backoff with full jitter between attempts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Delay before the second attempt, before jitter.
    pub base_ms: u64,
    /// Growth per attempt.
    pub factor: f64,
    /// Longest delay.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 1_000,
            factor: 2.0,
            max_ms: 600_000,
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1 for the first): a random duration between
    /// half and all of `base * factor^(attempt-1)`, capped at `max`. Half-jitter keeps a
    /// floor, so retries of many jobs failing together spread out without running at once.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let full = (self.base_ms as f64 * self.factor.powi(exponent)).min(self.max_ms as f64);
        let jittered = rand::rng().random_range(full / 2.0..=full.max(0.0));
        Duration::from_millis(jittered as u64)
    }
}

/// A message's headers as owned pairs, in order.
pub(crate) fn owned_headers(message: &BorrowedMessage<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// The last value of header `name`, as text.
pub(crate) fn header<'a>(headers: &'a [(String, Option<Vec<u8>>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
}

/// Every value of header `name`, in order.
pub(crate) fn all_headers(headers: &[(String, Option<Vec<u8>>)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(key, _)| key == name)
        .filter_map(|(_, value)| Some(String::from_utf8_lossy(value.as_deref()?).into_owned()))
        .collect()
}

/// The attempt a delivered copy is for: its `retrace-job-attempt` header, else 1.
pub(crate) fn attempt_of(headers: &[(String, Option<Vec<u8>>)]) -> u32 {
    header(headers, ATTEMPT)
        .and_then(|text| text.trim().parse().ok())
        .filter(|attempt| *attempt >= 1)
        .unwrap_or(1)
}

/// When a retry copy is due; `None` (due now) when the header is absent or unreadable.
pub(crate) fn due_at(headers: &[(String, Option<Vec<u8>>)]) -> Option<SystemTime> {
    let text = header(headers, DUE_AT)?.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Some(UNIX_EPOCH + Duration::from_millis(ms));
    }
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    let ms = u64::try_from(timestamp.as_millisecond()).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The headers of the next copy of a job: the original ones without the retry bookkeeping,
/// then `attempt`, `due` (if any) and the error history plus `new_error` (if any).
pub(crate) fn next_headers(
    original: &[(String, Option<Vec<u8>>)],
    attempt: u32,
    due: Option<SystemTime>,
    new_error: Option<&str>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers: Vec<_> = original
        .iter()
        .filter(|(key, _)| key != ATTEMPT && key != DUE_AT)
        .cloned()
        .collect();
    headers.push((ATTEMPT.to_owned(), Some(attempt.to_string().into_bytes())));
    if let Some(due) = due {
        headers.push((
            DUE_AT.to_owned(),
            Some(epoch_ms(due).to_string().into_bytes()),
        ));
    }
    if let Some(error) = new_error {
        headers.push((ERROR.to_owned(), Some(error.as_bytes().to_vec())));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Option<Vec<u8>>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn backoff_grows_is_capped_and_keeps_half_as_a_floor() {
        let backoff = Backoff {
            base_ms: 100,
            factor: 2.0,
            max_ms: 1_000,
        };
        for _ in 0..50 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(backoff.delay(30) <= Duration::from_millis(1_000));
            assert!(backoff.delay(30) >= Duration::from_millis(500));
        }
    }

    #[test]
    fn next_headers_keep_the_originals_and_accumulate_errors() {
        let original = h(&[
            ("retrace-event-id", "e"),
            (ATTEMPT, "2"),
            (DUE_AT, "5"),
            (ERROR, "attempt 1: boom"),
        ]);
        let due = UNIX_EPOCH + Duration::from_millis(1234);
        let next = next_headers(&original, 3, Some(due), Some("attempt 2: bang"));
        assert_eq!(header(&next, "retrace-event-id"), Some("e"));
        assert_eq!(attempt_of(&next), 3);
        assert_eq!(due_at(&next), Some(due));
        assert_eq!(
            all_headers(&next, ERROR),
            vec!["attempt 1: boom", "attempt 2: bang"]
        );
    }

    #[test]
    fn due_at_reads_epoch_ms_and_rfc3339() {
        assert_eq!(attempt_of(&[]), 1);
        assert_eq!(due_at(&[]), None);
        let rfc = h(&[(DUE_AT, "1970-01-01T00:00:01Z")]);
        assert_eq!(due_at(&rfc), Some(UNIX_EPOCH + Duration::from_secs(1)));
    }
}
