//! Archived records made without Kafka, for the benches that fill a store directly (`trace`,
//! `incidents`, `archive`'s storage ceiling): each message is built as the SDK publishes it
//! (value, key = transaction id, trace headers, offsets counted per partition), then
//! classified and prepared by the archive's own [`classify`] and [`prepare`], so the store
//! holds what the archiver would have written. [`Writer`] appends them through
//! [`LogStore::append`] in the archiver's batches.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use prost::Message as _;
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use retrace_archive::{ArchiveConfig, classify, prepare};
use retrace_auth::SigningKeys;
use retrace_log_store::{LogStore, PreparedRecord};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{Envelope, OUTCOME_TYPE, OUTCOMES_TOPIC, Outcome};

/// Records per append: the archiver's default batch.
pub fn archiver_batch() -> usize {
    ArchiveConfig::new("unused", "unused").batch.max_records
}

/// Kafka headers carrying `headers`, as the SDK sets them.
pub fn kafka_headers(headers: &TraceHeaders) -> OwnedHeaders {
    headers
        .pairs()
        .into_iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(value),
            })
        })
}

/// A message as consumed from `topic`, classified and prepared as the archive does.
pub fn archived(
    topic: &str,
    partition: i32,
    offset: i64,
    key: &str,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
    time_ms: i64,
) -> PreparedRecord {
    let message = OwnedMessage::new(
        Some(value),
        Some(key.as_bytes().to_vec()),
        topic.to_owned(),
        Timestamp::CreateTime(time_ms),
        partition,
        offset,
        headers,
    );
    prepare(
        classify(&message, time_ms, &SigningKeys::default(), None),
        "",
    )
}

/// Makes records of events and outcomes, numbering each partition's offsets from 0.
#[derive(Default)]
pub struct Records {
    next_offsets: HashMap<(String, i32), i64>,
}

impl Records {
    /// `event` published on `topic`'s `partition`, as having occurred at `time_ms`.
    pub fn event(
        &mut self,
        event: &Envelope,
        topic: &str,
        partition: i32,
        time_ms: i64,
    ) -> PreparedRecord {
        let mut event = event.clone();
        event.occurred_at = Some(at(time_ms).into());
        let offset = self.next_offset(topic, partition);
        archived(
            topic,
            partition,
            offset,
            &event.transaction_id,
            event.encode_to_vec(),
            Some(kafka_headers(&TraceHeaders::of(&event))),
            time_ms,
        )
    }

    /// `outcome` published on the outcomes topic's `partition`, as reported at `time_ms`,
    /// with the headers the SDK's `publish_outcome` gives it.
    pub fn outcome(&mut self, outcome: &Outcome, partition: i32, time_ms: i64) -> PreparedRecord {
        let mut outcome = outcome.clone();
        outcome.at = Some(at(time_ms).into());
        let headers = TraceHeaders {
            transaction_id: outcome.transaction_id.clone(),
            causation_id: outcome.event_id.clone(),
            source: outcome.consumer.clone(),
            event_type: OUTCOME_TYPE.to_owned(),
            ..TraceHeaders::default()
        };
        let offset = self.next_offset(OUTCOMES_TOPIC, partition);
        archived(
            OUTCOMES_TOPIC,
            partition,
            offset,
            &outcome.transaction_id,
            outcome.encode_to_vec(),
            Some(kafka_headers(&headers)),
            time_ms,
        )
    }

    fn next_offset(&mut self, topic: &str, partition: i32) -> i64 {
        let next = self
            .next_offsets
            .entry((topic.to_owned(), partition))
            .or_default();
        *next += 1;
        *next - 1
    }
}

fn at(time_ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(time_ms.max(0) as u64)
}

/// Appends records to a store in the archiver's batches.
pub struct Writer {
    store: LogStore,
    batch: Vec<PreparedRecord>,
    batch_records: usize,
    written: usize,
}

impl Writer {
    pub fn new(store: LogStore) -> Self {
        let batch_records = archiver_batch();
        Writer {
            store,
            batch: Vec::with_capacity(batch_records),
            batch_records,
            written: 0,
        }
    }

    pub fn push(&mut self, record: PreparedRecord) -> anyhow::Result<()> {
        self.batch.push(record);
        if self.batch.len() >= self.batch_records {
            self.store.append(&std::mem::take(&mut self.batch))?;
        }
        self.written += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Appends what is left and makes it all durable; answers the store.
    pub fn finish(self) -> anyhow::Result<LogStore> {
        self.store.append(&self.batch)?;
        self.store.flush()?;
        Ok(self.store)
    }
}
