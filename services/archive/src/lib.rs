//! The archive service: consumes every configured Kafka topic in consumer group
//! `retrace-archive` and keeps every record, whole, in the log store, so any transaction can
//! be traced end to end and re-run; and serves the trace and replay API over that store.
//!
//! A batch's offsets are committed to Kafka only after the batch is durable, and the archive
//! resumes from its own stored positions, so a crash loses nothing and stores nothing twice.
//! Records that are not Retrace envelopes are kept too, flagged and counted.
//!
//! Every API route is behind a permission of `retrace-auth` (API tokens from the compacted
//! tokens topic, OIDC bearer tokens), and every read, replay, erasure, token change and
//! denial is appended to the store's hash-chained audit trail.

mod admin;
pub mod api;
mod archiver;
mod audit;
mod classify;
mod config;
mod events;
mod http;
mod masking;
mod replay;
mod routes;
mod trace;
mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use retrace_auth::{
    AuthSetupError, Authenticator, Guard, Permission, RegistryError, TokenRegistry,
};
use retrace_log_store::{LogStore, ReplayState, StoreError};
use retrace_sdk::{KafkaSettings, PublishError, Publisher};
use retrace_telemetry::InternalEvent;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admin::ERASURE_NOTE;
pub use classify::{classify, prepare};
pub use config::{
    ALL_TOPICS_PATTERN, ArchiveArgs, ArchiveConfig, BatchSettings, ConfigError,
    DEFAULT_REPLAY_BULK_ADMIN_ABOVE, MaskingConfig, TopicSelection,
};
pub use masking::{MASK, MaskingError};
pub use retrace_auth::AuthConfig;
pub use routes::parse_time;
pub use trace::trace;

use crate::archiver::Archiver;
use crate::audit::Auditor;
use crate::events::{ApiListening, ArchiveStarted, TokensTopicNotCreated};
use crate::masking::Masking;
use crate::replay::{Replayer, now_ms};
use crate::routes::Api;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start consuming from Kafka at {bootstrap}: {source}")]
    Kafka {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create the producer replays publish with: {0}")]
    Publisher(#[from] PublishError),
    #[error(transparent)]
    Http(#[from] retrace_http::HttpError),
    #[error("cannot read API tokens: {0}")]
    Tokens(#[from] RegistryError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("masking.json_paths: {0}")]
    Masking(#[from] MaskingError),
}

/// An archive ready to run: its store open, its consumer created, its API routable.
pub struct Archive {
    archiver: Archiver,
    api: Api,
    ready: Arc<AtomicBool>,
    /// Reads the tokens topic until the archive stops; absent when auth is disabled.
    registry_task: Option<JoinHandle<()>>,
    stop_registry: CancellationToken,
    shutdown: CancellationToken,
}

impl Archive {
    /// Opens the store and creates the Kafka clients. Replays left running by a previous
    /// process that stopped are marked failed, so no one waits for them. With authentication
    /// on, creates the tokens topic if it is missing (compacted) and starts reading it.
    pub async fn open(
        config: &ArchiveConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ArchiveError> {
        // Metrics recorded before the recorder exists are lost.
        retrace_telemetry::prometheus();
        let data_dir = config.data_dir.clone();
        let options = config.store.clone();
        let store = tokio::task::spawn_blocking(move || {
            let store = LogStore::open(&data_dir, &options)?;
            fail_interrupted_replays(&store)?;
            Ok::<_, StoreError>(store)
        })
        .await
        .expect("opening the store does not panic")?;
        let archiver =
            Archiver::new(config, store.clone()).map_err(|source| ArchiveError::Kafka {
                bootstrap: config.kafka.bootstrap_servers.clone(),
                source,
            })?;
        let publisher = Publisher::new(&config.kafka)?;
        let masking = Masking::new(&config.masking.json_paths)?;
        let stop_registry = shutdown.child_token();
        // Whatever fails below stops the registry's reader with it.
        let stop_on_error = stop_registry.clone().drop_guard();
        let (registry, registry_task) = if config.auth.enabled {
            ensure_tokens_topic(&config.kafka, &config.auth.tokens_topic).await;
            let (registry, task) = TokenRegistry::start(
                &config.kafka,
                &config.auth.tokens_topic,
                stop_registry.clone(),
            )
            .await?;
            (Some(registry), Some(task))
        } else {
            (None, None)
        };
        let authenticator = Authenticator::new(&config.auth, registry.clone()).await?;
        let auditor = Auditor::new(store.clone());
        let guard = Guard::new(Arc::new(authenticator), Arc::new(auditor.clone()));
        stop_on_error.disarm();
        ArchiveStarted {
            bootstrap: &config.kafka.bootstrap_servers,
            topics: &config.topics.subscription().join(","),
            group_id: &config.group_id,
            data_dir: &config.data_dir,
        }
        .emit();
        Ok(Archive {
            archiver,
            api: Api {
                replayer: Replayer::new(store, publisher, shutdown.clone()),
                guard,
                auditor,
                masking: Arc::new(masking),
                registry,
                bulk_admin_above: config.replay_bulk_admin_above,
            },
            ready: Arc::new(AtomicBool::new(true)),
            registry_task,
            stop_registry,
            shutdown,
        })
    }

    /// The trace, replay, erasure, audit and token API and `/v1/positions`, each route behind
    /// its permission, and the web console at `/ui/` (static, open, data only through the
    /// API); health and metrics are left to the caller, which may serve several services on
    /// one address. Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so audit records name the
    /// caller's address.
    pub fn router(&self) -> Router {
        routes::router(self.api.clone())
            .merge(
                http::router(self.api.store().clone())
                    .route_layer(self.api.guard.require(Permission::TraceRead)),
            )
            .merge(ui::router())
    }

    /// The guard in front of the API, for other routes served beside it (`/metrics`:
    /// `guard.metrics()`).
    pub fn guard(&self) -> &Guard {
        &self.api.guard
    }

    /// Whether the archive is consuming; false once it has stopped. It does not say whether
    /// API tokens can be checked yet: serve [`readiness`](Self::readiness) as `/healthz`.
    pub fn ready(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Every flag `/healthz` must see set: the archive consuming, and (with authentication
    /// on) the token registry caught up with the tokens topic.
    pub fn readiness(&self) -> Vec<Arc<AtomicBool>> {
        let mut flags = vec![self.ready()];
        flags.extend(self.api.registry.as_ref().map(TokenRegistry::ready_flag));
        flags
    }

    /// Archives until `shutdown` is cancelled, then drains: the batch in hand is written,
    /// offsets committed, running replays stopped and their progress saved, denials still
    /// being recorded written, the token reader stopped, the store flushed. Fails when the
    /// store refuses writes until reopened: everything stops, so a restart recovers it.
    pub async fn run(self) -> Result<(), ArchiveError> {
        let archived = self.archiver.run(&self.shutdown).await;
        if archived.is_err() {
            self.shutdown.cancel();
        }
        self.ready.store(false, Ordering::Release);
        self.api.replayer.stopped().await;
        self.api.auditor.stopped().await;
        self.stop_registry.cancel();
        if let Some(task) = self.registry_task {
            task.await
                .expect("the token registry's reader does not panic");
        }
        Ok(archived?)
    }
}

/// Creates the compacted tokens topic unless it exists. Failing is not fatal here (the mock
/// cluster has no admin API; a locked-down cluster may refuse): the registry then says
/// clearly whether the topic is missing.
async fn ensure_tokens_topic(kafka: &KafkaSettings, topic: &str) {
    let created = async {
        let admin: AdminClient<DefaultClientContext> = kafka.client_config(&[]).create()?;
        // -1: the cluster's default replication factor.
        let new =
            NewTopic::new(topic, 1, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact");
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics([&new], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaError::AdminOp(code)),
            }
        }
        Ok::<_, KafkaError>(())
    };
    if let Err(error) = created.await {
        TokensTopicNotCreated {
            topic,
            error: &error,
        }
        .emit();
    }
}

/// Runs the archive and its HTTP server (API, `/healthz`, `/metrics`) until `shutdown` is
/// cancelled.
pub async fn run(config: ArchiveConfig, shutdown: CancellationToken) -> Result<(), ArchiveError> {
    let archive = Archive::open(&config, shutdown.clone()).await?;
    let listener = retrace_http::bind(config.http, config.tls.as_ref()).await?;
    let app = archive
        .router()
        .merge(retrace_telemetry::health_router(archive.readiness()))
        .merge(retrace_telemetry::metrics_router().route_layer(archive.guard().metrics()));
    ApiListening {
        url: &listener.url(),
    }
    .emit();
    // The server stops when the archive does, whatever stopped it.
    let stop_http = shutdown.child_token();
    let serve = listener.serve(app, stop_http.clone().cancelled_owned());
    let archive = async {
        let archived = archive.run().await;
        stop_http.cancel();
        archived
    };
    let (archived, served) = tokio::join!(archive, serve);
    archived?;
    Ok(served?)
}

fn fail_interrupted_replays(store: &LogStore) -> Result<(), StoreError> {
    for mut replay in store.replays()? {
        if replay.state() == ReplayState::Running {
            replay.set_state(ReplayState::Failed);
            replay.finished_at_ms = now_ms();
            replay.error = format!(
                "interrupted: the archive service stopped after {} of {} messages; replay \
                 again to finish",
                replay.published, replay.planned
            );
            store.update_replay(&replay)?;
        }
    }
    Ok(())
}
