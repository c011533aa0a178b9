//! [`ServiceAuth`]: everything a service that does not own the archive needs to put its
//! HTTP API behind the [`Guard`]: the token registry, the authenticator, and a
//! [`DenialSink`] that sends every denial to the archive's audit trail as an
//! [`AuditEvent`] on `retrace.audit`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use retrace_proto::AuditEvent;
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_telemetry::InternalEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{AuditEventDropped, AuditEventNotPublished, SigningKeysLoaded};
use crate::signing::{SIGNATURE_HEADER, SigningKeyError, SigningKeys};
use crate::{
    AuthConfig, AuthSetupError, Authenticator, Caller, Denial, DenialSink, Guard, RegistryError,
    TokenRegistry,
};

/// Audit events waiting to be published; beyond this, new ones are dropped and counted
/// rather than slowing requests down.
const AUDIT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServiceAuthError {
    #[error(transparent)]
    Setup(#[from] AuthSetupError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot create the producer audit events are published with: {0}")]
    Publisher(#[from] retrace_sdk::PublishError),
    #[error(transparent)]
    SigningKeys(#[from] SigningKeyError),
}

/// A service's authentication, running.
pub struct ServiceAuth {
    pub guard: Guard,
    audit: AuditSender,
    /// Set once the token registry has caught up; the service answers 503 until then.
    ready: Arc<AtomicBool>,
    registry: Option<JoinHandle<()>>,
    forwarder: AuditForwarder,
}

impl ServiceAuth {
    /// Starts the token registry (when authentication is enabled) and prepares the audit
    /// forwarder of `service` (e.g. `gateway`), both with `[auth]`'s signing keys (read
    /// now). Run [`ServiceAuth::run`] beside the service.
    pub async fn start(
        config: &AuthConfig,
        kafka: &KafkaSettings,
        service: &str,
        shutdown: CancellationToken,
    ) -> Result<ServiceAuth, ServiceAuthError> {
        let keys = config.signing_keys()?;
        SigningKeysLoaded {
            service,
            keys: &keys,
        }
        .emit();
        let (registry, task) = if config.enabled {
            let (registry, task) =
                TokenRegistry::start(kafka, &config.tokens_topic, keys.clone(), shutdown.clone())
                    .await?;
            (Some(registry), Some(task))
        } else {
            (None, None)
        };
        let ready = registry.as_ref().map_or_else(
            || Arc::new(AtomicBool::new(true)),
            TokenRegistry::ready_flag,
        );
        let authenticator = Authenticator::new(config, registry).await?;
        let (sender, queue) = mpsc::channel(AUDIT_QUEUE);
        let audit = AuditSender {
            service: service.to_owned(),
            sender,
        };
        Ok(ServiceAuth {
            guard: Guard::new(Arc::new(authenticator), Arc::new(audit.clone())),
            audit,
            ready,
            registry: task,
            forwarder: AuditForwarder {
                publisher: Publisher::new(kafka)?,
                keys,
                queue,
                shutdown,
            },
        })
    }

    /// For `retrace_telemetry::health_router`.
    pub fn ready(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Records something a caller was let do (a redrive, a publish to a new topic).
    pub fn audit(&self) -> AuditSender {
        self.audit.clone()
    }

    /// Publishes audit events until shutdown, then the ones still queued; then waits for
    /// the token registry to stop.
    pub async fn run(self) {
        drop(self.audit);
        drop(self.guard);
        self.forwarder.run().await;
        if let Some(registry) = self.registry {
            let _ = registry.await;
        }
    }
}

/// Queues audit events for the forwarder. Cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    service: String,
    sender: mpsc::Sender<AuditEvent>,
}

impl AuditSender {
    /// Queues an audit event about `caller`; never waits.
    pub fn record(&self, caller: &Caller, action: &str, target: &str, reason: &str, result: &str) {
        self.send(AuditEvent {
            at: Some(SystemTime::now().into()),
            actor: caller.actor.clone(),
            actor_id: caller.actor_id.clone(),
            role: caller.role.to_string(),
            origin: caller.origin.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            reason: reason.to_owned(),
            result: result.to_owned(),
            service: self.service.clone(),
        });
    }

    fn send(&self, event: AuditEvent) {
        if self.sender.try_send(event).is_err() {
            AuditEventDropped {
                service: &self.service,
            }
            .emit();
        }
    }
}

impl DenialSink for AuditSender {
    fn denied(&self, denial: &Denial) {
        let caller = denial.caller.as_ref();
        self.send(AuditEvent {
            at: Some(SystemTime::now().into()),
            actor: caller
                .map(|c| c.actor.clone())
                .or_else(|| denial.actor.clone())
                .unwrap_or_else(|| crate::ANONYMOUS_ACTOR.to_owned()),
            actor_id: caller.map(|c| c.actor_id.clone()).unwrap_or_default(),
            role: caller.map(|c| c.role.to_string()).unwrap_or_default(),
            origin: denial.origin.clone(),
            action: "denied".to_owned(),
            target: format!("{} {}", denial.method, denial.path),
            reason: String::new(),
            result: format!("{} {}: {}", denial.status, denial.reason, denial.message),
            service: self.service.clone(),
        });
    }
}

struct AuditForwarder {
    publisher: Publisher,
    /// Signs every audit event: the archive chains only signed ones.
    keys: SigningKeys,
    queue: mpsc::Receiver<AuditEvent>,
    shutdown: CancellationToken,
}

impl AuditForwarder {
    async fn run(mut self) {
        loop {
            let event = tokio::select! {
                event = self.queue.recv() => event,
                () = self.shutdown.cancelled() => break,
            };
            let Some(event) = event else { return };
            self.publish(&event).await;
        }
        self.queue.close();
        while let Some(event) = self.queue.recv().await {
            self.publish(&event).await;
        }
    }

    async fn publish(&self, event: &AuditEvent) {
        let sign = |topic: &str, key: &[u8], value: &[u8]| {
            let signature = self.keys.sign(topic, Some(key), Some(value))?;
            Some((SIGNATURE_HEADER, signature))
        };
        if let Err(error) = self.publisher.publish_audit(event, sign).await {
            AuditEventNotPublished {
                action: &event.action,
                error: &error,
            }
            .emit();
        }
    }
}
