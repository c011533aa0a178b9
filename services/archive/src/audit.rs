//! The archive's side of the audit trail: every read, replay, erasure, token change and
//! denial appended to the store's hash-chained trail ([`LogStore::append_audit`]) and logged
//! as a `category="audit"` line.
//!
//! An API answer is given only once its audit record is durable: a read that cannot be
//! accounted for is not served. Each record is also published, signed, to `retrace.audit`
//! with this replica's name ([`REPLICA_HEADER`]), so every other replica chains it too and
//! any of them shows the whole trail; the replica that wrote it keeps the copy it reads
//! back without chaining it again. Denials are recorded from the guard's [`DenialSink`] on the
//! blocking pool, so refusing a request never waits for the disk.

use retrace_auth::{Caller, Denial, DenialSink, SIGNATURE_HEADER, SigningKeys};
use retrace_log_store::{AuditEntry, LogStore, StoreError};
use retrace_proto::{AUDIT_TOPIC, AuditEvent};
use retrace_sdk::{Publisher, RawMessage};
use retrace_telemetry::InternalEvent;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

use crate::events::{AuditNotPublished, AuditNotRecorded, AuditRecorded};
use crate::replay::{now_ms, timestamp};

/// What one request did, as its audit record will say.
#[derive(Debug, Clone)]
pub(crate) struct Audit {
    pub caller: Caller,
    /// `transaction.read`, `replay.start`, `subject.erase`, ...
    pub action: &'static str,
    /// The transaction, subject, query or token it was done to.
    pub target: String,
    /// Why, when the caller said.
    pub reason: String,
}

impl Audit {
    pub fn new(caller: &Caller, action: &'static str, target: impl Into<String>) -> Audit {
        Audit {
            caller: caller.clone(),
            action,
            target: target.into(),
            reason: String::new(),
        }
    }
}

/// The `service` of the archive's audit events on `retrace.audit`.
pub(crate) const ARCHIVE_SERVICE: &str = "archive";

/// The header naming the replica that published an audit event.
pub(crate) const REPLICA_HEADER: &str = "retrace-replica";

/// Appends audit records, and publishes them for the other replicas. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Auditor {
    store: LogStore,
    publisher: Publisher,
    keys: SigningKeys,
    replica: String,
    /// Denials being recorded in the background.
    pending: TaskTracker,
    runtime: Handle,
}

impl Auditor {
    /// Must be called inside the Tokio runtime the API runs on.
    pub fn new(store: LogStore, publisher: Publisher, keys: SigningKeys, replica: &str) -> Auditor {
        Auditor {
            store,
            publisher,
            keys,
            replica: replica.to_owned(),
            pending: TaskTracker::new(),
            runtime: Handle::current(),
        }
    }

    /// Appends `audit` with its `result` (`ok`, or the error), durably. Blocks on the disk:
    /// call it on the blocking pool.
    pub fn record(&self, audit: &Audit, result: &str) -> Result<(), StoreError> {
        self.append(AuditEntry {
            at_ms: now_ms(),
            actor: audit.caller.actor.clone(),
            actor_id: audit.caller.actor_id.clone(),
            role: audit.caller.role.as_str().to_owned(),
            origin: audit.caller.origin.clone(),
            action: audit.action.to_owned(),
            target: audit.target.clone(),
            reason: audit.reason.clone(),
            result: result.to_owned(),
        })
    }

    fn append(&self, entry: AuditEntry) -> Result<(), StoreError> {
        match self.store.append_audit(entry.clone()) {
            Ok(record) => {
                AuditRecorded {
                    entry: &entry,
                    seq: record.seq,
                }
                .emit();
                self.publish(entry);
                Ok(())
            }
            Err(error) => {
                AuditNotRecorded {
                    entry: &entry,
                    error: &error,
                }
                .emit();
                Err(error)
            }
        }
    }

    /// Publishes `entry` for the other replicas in the background: it is durable here
    /// already, and the producer retries until its delivery timeout.
    fn publish(&self, entry: AuditEntry) {
        let auditor = self.clone();
        self.pending.spawn_on(
            async move {
                let event = AuditEvent {
                    at: Some(timestamp(entry.at_ms)),
                    actor: entry.actor,
                    role: entry.role,
                    origin: entry.origin,
                    action: entry.action,
                    target: entry.target,
                    reason: entry.reason,
                    result: entry.result,
                    service: ARCHIVE_SERVICE.to_owned(),
                    actor_id: entry.actor_id,
                };
                let value = prost::Message::encode_to_vec(&event);
                let key = event.actor.as_bytes();
                let signature = auditor.keys.sign(AUDIT_TOPIC, Some(key), Some(&value));
                let mut headers: Vec<(&str, Option<&[u8]>)> =
                    vec![(REPLICA_HEADER, Some(auditor.replica.as_bytes()))];
                if let Some(signature) = &signature {
                    headers.push((SIGNATURE_HEADER, Some(signature.as_bytes())));
                }
                let message = RawMessage {
                    key: Some(key),
                    value: Some(&value),
                    headers: &headers,
                };
                if let Err(error) = auditor
                    .publisher
                    .republish(AUDIT_TOPIC, &message, &event.action)
                    .await
                {
                    AuditNotPublished {
                        action: &event.action,
                        error: &error,
                    }
                    .emit();
                }
            },
            &self.runtime,
        );
    }

    /// Waits for denials still being recorded, and audit records still being published.
    pub async fn stopped(&self) {
        self.pending.close();
        self.pending.wait().await;
    }
}

/// The guard's denials, into the audit trail: action `denied`, target the request, result
/// the status, the reason and the sentence the caller was answered with.
impl DenialSink for Auditor {
    fn denied(&self, denial: &Denial) {
        let entry = AuditEntry {
            at_ms: now_ms(),
            actor: denial
                .actor
                .clone()
                .unwrap_or_else(|| "unauthenticated".to_owned()),
            actor_id: denial
                .caller
                .as_ref()
                .map(|c| c.actor_id.clone())
                .unwrap_or_default(),
            role: denial
                .caller
                .as_ref()
                .map(|c| c.role.as_str().to_owned())
                .unwrap_or_default(),
            origin: denial.origin.clone(),
            action: "denied".to_owned(),
            target: format!("{} {}", denial.method, denial.path),
            reason: String::new(),
            result: format!("{} {}: {}", denial.status, denial.reason, denial.message),
        };
        let auditor = self.clone();
        // A failure is logged by `append`; the caller is refused either way.
        self.pending
            .spawn_blocking_on(move || auditor.append(entry).ok(), &self.runtime);
    }
}
