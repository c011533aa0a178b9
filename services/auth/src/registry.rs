//! [`TokenRegistry`]: every service's copy of the API tokens, read from a compacted Kafka
//! topic (`retrace.tokens`: key = token id, value = the [`TokenRecord`] as JSON; a revocation
//! is the record published again with `revoked_at`).
//!
//! Every record carries the signature of the service that wrote it ([`SIGNATURE_HEADER`]);
//! one without a valid signature (written straight to Kafka by something holding no signing
//! key) is flagged ([`TokenRecordRejected`]: an error line and a counter) and never applied,
//! whatever it says, a tombstone included.
//!
//! Each service reads the whole topic from the beginning, without a consumer group, and
//! keeps the records in memory; it reports [`TokenRegistry::caught_up`] once it has read up
//! to the end offsets seen at start, and services answer 503 until then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use retrace_sdk::{KafkaSettings, PublishError, Publisher, RawMessage, retry_at_start};
use retrace_telemetry::InternalEvent;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{
    RegistryCaughtUp, RegistryKafkaProblem, RegistryRecordSkipped, TokenChanged,
    TokenRecordRejected,
};
use crate::signing::{SIGNATURE_HEADER, SigningKeys, Verdict};
use crate::token::{NewToken, TokenFormatError, TokenRecord};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "cannot read API tokens from Kafka topic {topic}: {source}. Check that Kafka is \
         reachable and the topic exists (compacted: cleanup.policy=compact)"
    )]
    Read { topic: String, source: KafkaError },
    #[error(
        "Kafka topic {topic} does not exist; create it compacted (cleanup.policy=compact), \
         e.g. with one partition and the cluster's replication factor"
    )]
    NoTopic { topic: String },
    #[error("cannot publish to the token topic: {0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Format(#[from] TokenFormatError),
    #[error("a live API token is already named {0:?}; revoke it first or choose another name")]
    NameTaken(String),
    #[error("no API token has the id or live name {0:?}; `retrace token list` shows them")]
    NotFound(String),
    #[error("API token {id} ({name}) was already revoked at {at}")]
    AlreadyRevoked {
        id: String,
        name: String,
        at: Timestamp,
    },
    #[error("this token registry is not connected to Kafka, so it cannot create or revoke tokens")]
    Detached,
}

impl RegistryError {
    /// Whether the error may pass by itself at start: a topic not yet known to every broker,
    /// a leader being elected.
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::NoTopic { .. } => true,
            RegistryError::Read { source, .. } => retrace_sdk::is_transient(source),
            _ => false,
        }
    }
}

/// The API tokens this process knows. Cheap to clone; clones share one map.
#[derive(Clone)]
pub struct TokenRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    topic: String,
    tokens: RwLock<HashMap<String, TokenRecord>>,
    caught_up: Arc<AtomicBool>,
    publisher: Option<Publisher>,
    /// Signs the records published, verifies the records read.
    keys: SigningKeys,
}

impl TokenRegistry {
    /// Starts reading `topic` from the beginning, applying only records signed with one of
    /// `keys` (and signing its own with the first). The returned task polls Kafka until
    /// `shutdown` is cancelled; the registry answers as soon as it is returned, and
    /// [`caught_up`](Self::caught_up) turns true once every record present at start is read.
    pub async fn start(
        kafka: &KafkaSettings,
        topic: &str,
        keys: SigningKeys,
        shutdown: CancellationToken,
    ) -> Result<(TokenRegistry, JoinHandle<()>), RegistryError> {
        let publisher = Publisher::new(kafka)?;
        // A topic created a moment ago, or one whose leader is moving, is not readable for a
        // few seconds: a start-up then waits instead of failing.
        let (consumer, pending) = retry_at_start(
            &format!("read API tokens from {topic}"),
            kafka.startup_deadline,
            RegistryError::is_transient,
            || {
                let (settings, name) = (kafka.clone(), topic.to_owned());
                async move {
                    tokio::task::spawn_blocking(move || assign_from_beginning(&settings, &name))
                        .await
                        .expect("assigning the token topic does not panic")
                }
            },
        )
        .await?;
        let registry = TokenRegistry {
            inner: Arc::new(Inner {
                topic: topic.to_owned(),
                tokens: RwLock::default(),
                caught_up: Arc::new(AtomicBool::new(false)),
                publisher: Some(publisher),
                keys,
            }),
        };
        let reader = registry.clone();
        let task = tokio::task::spawn_blocking(move || reader.read(consumer, pending, shutdown));
        Ok((registry, task))
    }

    /// A registry holding `records` and nothing else, caught up, with no Kafka: for tests
    /// and single-process tools. It cannot create or revoke tokens.
    pub fn detached(records: impl IntoIterator<Item = TokenRecord>) -> TokenRegistry {
        let registry = TokenRegistry {
            inner: Arc::new(Inner {
                topic: String::new(),
                tokens: RwLock::default(),
                caught_up: Arc::new(AtomicBool::new(true)),
                publisher: None,
                keys: SigningKeys::default(),
            }),
        };
        for record in records {
            registry.merge(record);
        }
        registry
    }

    /// Whether every token record present when the registry started has been read.
    pub fn caught_up(&self) -> bool {
        self.inner.caught_up.load(Ordering::Acquire)
    }

    /// The flag behind [`caught_up`](Self::caught_up), for `retrace_telemetry::health_router`.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.inner.caught_up.clone()
    }

    /// The record with this id, revoked and expired ones included.
    pub fn get(&self, id: &str) -> Option<TokenRecord> {
        self.inner
            .tokens
            .read()
            .expect("not poisoned")
            .get(id)
            .cloned()
    }

    /// Every token record, oldest first (revoked and expired ones included).
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut all: Vec<TokenRecord> = self
            .inner
            .tokens
            .read()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Issues a token and publishes its record (acknowledged by every in-sync replica).
    /// Returns the token text, to show once, and the record.
    pub async fn create(
        &self,
        spec: NewToken,
        created_by: &str,
    ) -> Result<(String, TokenRecord), RegistryError> {
        let now = Timestamp::now();
        if self
            .list()
            .iter()
            .any(|r| r.name == spec.name && r.revoked_at.is_none() && !r.is_expired(now))
        {
            return Err(RegistryError::NameTaken(spec.name));
        }
        let (text, record) = TokenRecord::issue(spec, created_by, now)?;
        self.publish(&record).await?;
        TokenChanged {
            change: crate::events::TOKEN_CREATED,
            record: &record,
            by: created_by,
        }
        .emit();
        Ok((text, record))
    }

    /// Revokes the token with this id, or the live token with this name.
    pub async fn revoke(&self, id_or_name: &str, by: &str) -> Result<TokenRecord, RegistryError> {
        let mut record = self
            .get(id_or_name)
            .or_else(|| {
                self.list()
                    .into_iter()
                    .find(|r| r.name == id_or_name && r.revoked_at.is_none())
            })
            .ok_or_else(|| RegistryError::NotFound(id_or_name.to_owned()))?;
        if let Some(at) = record.revoked_at {
            return Err(RegistryError::AlreadyRevoked {
                id: record.id,
                name: record.name,
                at,
            });
        }
        record.revoked_at = Some(Timestamp::now());
        record.revoked_by = Some(by.to_owned());
        self.publish(&record).await?;
        TokenChanged {
            change: crate::events::TOKEN_REVOKED,
            record: &record,
            by,
        }
        .emit();
        Ok(record)
    }

    async fn publish(&self, record: &TokenRecord) -> Result<(), RegistryError> {
        let publisher = self
            .inner
            .publisher
            .as_ref()
            .ok_or(RegistryError::Detached)?;
        let value = serde_json::to_vec(record).expect("a token record serialises");
        let key = Some(record.id.as_bytes());
        let signature = self.inner.keys.sign(&self.inner.topic, key, Some(&value));
        let headers: Vec<(&str, Option<&[u8]>)> = signature
            .iter()
            .map(|signature| (SIGNATURE_HEADER, Some(signature.as_bytes())))
            .collect();
        publisher
            .republish(
                &self.inner.topic,
                &RawMessage {
                    key,
                    value: Some(&value),
                    headers: &headers,
                },
                &format!("token {}", record.id),
            )
            .await?;
        // Known here at once; the same record read back from the topic changes nothing.
        self.merge(record.clone());
        Ok(())
    }

    /// Keeps `record` unless it would un-revoke a token: a revocation is final, whatever
    /// order the records arrive in.
    fn merge(&self, record: TokenRecord) {
        let mut tokens = self.inner.tokens.write().expect("not poisoned");
        if let Some(known) = tokens.get(&record.id)
            && known.revoked_at.is_some()
            && record.revoked_at.is_none()
        {
            return;
        }
        tokens.insert(record.id.clone(), record);
    }

    fn read(
        &self,
        consumer: BaseConsumer,
        mut pending: HashMap<i32, i64>,
        shutdown: CancellationToken,
    ) {
        let started = Instant::now();
        let mut announced = false;
        while !shutdown.is_cancelled() {
            match consumer.poll(POLL) {
                None => {
                    if !pending.is_empty() {
                        // Compaction can leave gaps at the end; the position moves past them.
                        if let Ok(positions) = consumer.position() {
                            for element in positions.elements() {
                                if let Offset::Offset(next) = element.offset()
                                    && pending
                                        .get(&element.partition())
                                        .is_some_and(|h| next >= *h)
                                {
                                    pending.remove(&element.partition());
                                }
                            }
                        }
                    }
                }
                Some(Err(error)) => RegistryKafkaProblem { error: &error }.emit(),
                Some(Ok(message)) => {
                    self.apply(&message);
                    if pending
                        .get(&message.partition())
                        .is_some_and(|high| message.offset() + 1 >= *high)
                    {
                        pending.remove(&message.partition());
                    }
                }
            }
            if !announced && pending.is_empty() {
                announced = true;
                self.inner.caught_up.store(true, Ordering::Release);
                RegistryCaughtUp {
                    tokens: self.inner.tokens.read().expect("not poisoned").len(),
                    elapsed: started.elapsed(),
                }
                .emit();
            }
        }
    }

    fn apply(&self, message: &rdkafka::message::BorrowedMessage<'_>) {
        use rdkafka::message::Headers;
        let signature = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == SIGNATURE_HEADER)
                .and_then(|h| h.value)
        });
        let verdict =
            self.inner
                .keys
                .verify(message.topic(), message.key(), message.payload(), signature);
        if !matches!(verdict, Verdict::Valid(_)) {
            TokenRecordRejected {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(String::from_utf8_lossy).as_deref(),
                verdict: &verdict,
            }
            .emit();
            return;
        }
        let Some(value) = message.payload() else {
            // A tombstone: the token is forgotten (after compaction nobody would know it).
            if let Some(id) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                self.inner.tokens.write().expect("not poisoned").remove(id);
            }
            return;
        };
        match serde_json::from_slice::<TokenRecord>(value) {
            Ok(record) => self.merge(record),
            Err(problem) => RegistryRecordSkipped {
                partition: message.partition(),
                offset: message.offset(),
                problem: &problem,
            }
            .emit(),
        }
    }
}

/// A consumer assigned every partition of `topic` at its beginning (no group is joined, no
/// offset committed), and each non-empty partition's end offset at this moment.
fn assign_from_beginning(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<(BaseConsumer, HashMap<i32, i64>), RegistryError> {
    let read_error = |source| RegistryError::Read {
        topic: topic.to_owned(),
        source,
    };
    // librdkafka wants a group id even for assigned partitions; this one is never joined.
    let group = format!("retrace-tokens-{:016x}", rand::random::<u64>());
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("allow.auto.create.topics", "false"),
        ])
        .create()
        .map_err(read_error)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(read_error)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(RegistryError::NoTopic {
            topic: topic.to_owned(),
        });
    }
    let mut assignment = TopicPartitionList::new();
    let mut pending = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
            .map_err(read_error)?;
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(read_error)?;
        if high > low {
            pending.insert(partition, high);
        }
    }
    consumer.assign(&assignment).map_err(read_error)?;
    Ok((consumer, pending))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::Role;

    fn record(id: &str, revoked: bool) -> TokenRecord {
        let (_, mut record) = TokenRecord::issue(
            NewToken {
                name: format!("n{id}"),
                role: Role::Support,
                extra: vec![],
                topics: None,
                expires_in: None,
            },
            "test",
            Timestamp::now(),
        )
        .unwrap();
        record.id = id.to_owned();
        if revoked {
            record.revoked_at = Some(Timestamp::now());
        }
        record
    }

    #[test]
    fn a_revocation_is_never_undone_by_an_older_record() {
        let registry = TokenRegistry::detached([record("aaaaaaaaaaaa", true)]);
        registry.merge(record("aaaaaaaaaaaa", false));
        assert!(registry.get("aaaaaaaaaaaa").unwrap().revoked_at.is_some());
        registry.merge(record("bbbbbbbbbbbb", false));
        registry.merge(record("bbbbbbbbbbbb", true));
        assert!(registry.get("bbbbbbbbbbbb").unwrap().revoked_at.is_some());
        assert_eq!(registry.list().len(), 2);
        assert!(registry.caught_up());
    }

    #[tokio::test]
    async fn a_detached_registry_cannot_change_tokens() {
        let registry = TokenRegistry::detached([record("aaaaaaaaaaaa", false)]);
        let error = registry.revoke("aaaaaaaaaaaa", "t").await.unwrap_err();
        assert!(matches!(error, RegistryError::Detached), "{error}");
        let error = registry.revoke("nope", "t").await.unwrap_err();
        assert!(error.to_string().contains("\"nope\""), "{error}");
    }
}
