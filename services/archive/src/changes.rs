//! The archive's change log: what an API call changes that every replica must know (a
//! replay's record and progress, an erasure) is published to [`ARCHIVE_CHANGES_TOPIC`], signed, and
//! every replica's archiver applies it in log order, the replica that was asked included.
//! That replica answers once its own store has applied it ([`ChangeLog::publish_applied`]),
//! so what it answers is what every replica will hold; between two replicas asked at once,
//! the log's order decides (the first replay record for an idempotency key wins).

use std::time::Duration;

use prost::Message as _;
use retrace_auth::{SIGNATURE_HEADER, SigningKeys};
use retrace_log_store::{ArchiveChange, Change, LogStore};
use retrace_proto::ARCHIVE_CHANGES_TOPIC;
use retrace_sdk::{Delivery, PublishError, Publisher, RawMessage};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;

use crate::admin::without_error_text;
use crate::events::{ErasureApplied, ErasureNotApplied, ErasuresPending};
use crate::shards::Shard;

/// How long a caller waits for its replica to apply a change it published: the replica is
/// normally a batch away from it; longer means it is far behind Kafka.
pub(crate) const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("cannot publish the change to {ARCHIVE_CHANGES_TOPIC}: {0}")]
    Publish(#[from] PublishError),
    #[error(
        "the change was published ({ARCHIVE_CHANGES_TOPIC} partition {partition}, offset {offset}) but \
         this archive has not applied it after {waited:?}: it is behind Kafka and will apply \
         it as it catches up (see /v1/positions); ask again later, with the same \
         Idempotency-Key for a replay"
    )]
    NotApplied {
        partition: i32,
        offset: i64,
        waited: Duration,
    },
}

/// Publishes changes and waits for this replica to apply them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ChangeLog {
    publisher: Publisher,
    /// The archive's group, which its replicas' changes carry.
    archive: String,
    keys: SigningKeys,
    store: LogStore,
    applied: watch::Receiver<()>,
}

/// The archiver's side: says when a batch, and the erasures it made due, are applied.
pub(crate) struct Applied(watch::Sender<()>);

impl Applied {
    pub fn notify(&self) {
        self.0.send_replace(());
    }
}

impl ChangeLog {
    pub fn new(
        publisher: Publisher,
        keys: SigningKeys,
        store: LogStore,
        archive: &str,
    ) -> (ChangeLog, Applied) {
        let (sender, applied) = watch::channel(());
        let log = ChangeLog {
            publisher,
            archive: archive.to_owned(),
            keys,
            store,
            applied,
        };
        (log, Applied(sender))
    }

    /// Publishes `change` under `key` (changes of one key keep their order).
    pub async fn publish(&self, key: &str, change: Change) -> Result<Delivery, PublishError> {
        let value = ArchiveChange {
            archive: self.archive.clone(),
            change: Some(change),
        }
        .encode_to_vec();
        let signature = self
            .keys
            .sign(ARCHIVE_CHANGES_TOPIC, Some(key.as_bytes()), Some(&value));
        let headers: Vec<(&str, Option<&[u8]>)> = signature
            .iter()
            .map(|signature| (SIGNATURE_HEADER, Some(signature.as_bytes())))
            .collect();
        let message = RawMessage {
            key: Some(key.as_bytes()),
            value: Some(&value),
            headers: &headers,
        };
        self.publisher
            .republish(ARCHIVE_CHANGES_TOPIC, &message, key)
            .await
    }

    /// [`publish`](Self::publish), then waits until this replica's store has applied it.
    pub async fn publish_applied(&self, key: &str, change: Change) -> Result<(), ChangeError> {
        let delivery = self.publish(key, change).await?;
        self.until_applied(&delivery).await
    }

    async fn until_applied(&self, delivery: &Delivery) -> Result<(), ChangeError> {
        let mut applied = self.applied.clone();
        let deadline = tokio::time::Instant::now() + APPLY_TIMEOUT;
        loop {
            applied.mark_unchanged();
            let next = self
                .store
                .next_offset(ARCHIVE_CHANGES_TOPIC, delivery.partition);
            if next.is_some_and(|next| next > delivery.offset) {
                return Ok(());
            }
            tokio::select! {
                changed = applied.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        Err(ChangeError::NotApplied {
            partition: delivery.partition,
            offset: delivery.offset,
            waited: APPLY_TIMEOUT,
        })
    }
}

/// Applies the erasures this store has archived far enough to apply (a shard: in the
/// partitions it owns), as every replica does after each batch; one that fails stays
/// pending for the next.
pub(crate) fn apply_due_erasures(store: &LogStore, shard: Option<Shard>) {
    let due = match store
        .due_erasures(|topic, partition| shard.is_none_or(|shard| shard.owns(topic, partition)))
    {
        Ok(due) => due,
        Err(error) => {
            ErasureNotApplied {
                erasure_id: "(listing pending erasures)",
                error: &error,
            }
            .emit();
            return;
        }
    };
    for erasure in &due {
        match store.apply_erasure(erasure, without_error_text) {
            Ok(summary) => ErasureApplied {
                erasure,
                summary: &summary,
            }
            .emit(),
            Err(error) => ErasureNotApplied {
                erasure_id: &erasure.erasure_id,
                error: &error,
            }
            .emit(),
        }
    }
    if let Ok(pending) = store.pending_erasures() {
        ErasuresPending { pending }.emit();
    }
}
