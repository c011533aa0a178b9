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
//!
//! Its configuration reloads live ([`serve`] with a [`Reloader`]): the topics archived (the
//! consumer is re-created only when the topic set changes), batch limits, masking rules,
//! the bulk replay threshold and `[auth]`'s role map and OIDC settings apply without a
//! restart; `GET /v1/config` shows what runs.

mod admin;
mod archiver;
mod audit;
mod backup;
mod changes;
mod classify;
mod config;
mod events;
mod holdings;
mod incidents;
mod lag;
mod live;
mod masking;
mod reads;
mod rebuild;
mod replay;
mod routes;
mod shards;
mod trace;
mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use retrace_auth::{AuthSetupError, Authenticator, Guard, RegistryError, TokenRegistry};
use retrace_log_store::{LogStore, StoreError};
use retrace_sdk::{PublishError, Publisher};
use retrace_service::{Host, Hosted, Loaded, Reloader};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admin::{ERASED_ERROR, ERASURE_NOTE, UNCHAINED_LISTED};
pub use backup::{BackupError, backup, restore};
pub use classify::{classify, prepare};
pub use config::{
    ALL_TOPICS_PATTERN, ArchiveArgs, ArchiveConfig, BatchSettings, ConfigError,
    DEFAULT_REPLAY_BULK_ADMIN_ABOVE, MaskingConfig, TopicSelection,
};
pub use incidents::{Cause, Fingerprint, FingerprintRule, MAX_CAUSE_CHARS, normalise_error};
pub use masking::{MASK, MaskingError};
pub use rebuild::{RebuildError, RebuildProgress, rebuild};
pub use retrace_auth::AuthConfig;
pub use routes::{openapi, parse_time};
pub use shards::{Shard, Sharding};
pub use trace::trace;

use crate::archiver::Archiver;
use crate::audit::{Audit, Auditor};
use crate::changes::ChangeLog;
use crate::events::{ApiListening, ArchiveStarted};
use crate::lag::Lag;
use crate::live::Live;
use crate::replay::Replayer;
use crate::routes::Api;
use crate::shards::fanout::Peers;

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
    #[error(transparent)]
    SigningKeys(#[from] retrace_auth::SigningKeyError),
}

/// An archive ready to run: its store open, its consumer created, its API routable.
pub struct Archive {
    archiver: Archiver,
    api: Api,
    /// The configurations to follow, and where the API's share of them is published.
    config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
    live: watch::Sender<Arc<Live>>,
    ready: Arc<AtomicBool>,
    /// Whether the last lag check found no partition behind: a replica catching up is not
    /// ready.
    caught_up: Arc<AtomicBool>,
    /// Reads the tokens topic until the archive stops; absent when auth is disabled.
    registry_task: Option<JoinHandle<()>>,
    stop_registry: CancellationToken,
    shutdown: CancellationToken,
    /// `[archive] console`: read once, at start, like the listen address.
    console: bool,
}

impl Archive {
    /// Opens the store and creates the Kafka clients. With authentication
    /// on, creates the tokens topic if it is missing (compacted) and starts reading it.
    pub async fn open(
        config: &ArchiveConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ArchiveError> {
        let fixed = Reloader::fixed("archive", config.clone());
        Archive::following(fixed.subscribe(), shutdown).await
    }

    /// [`open`](Self::open) with the configuration `config` holds, following the ones it
    /// publishes later.
    pub async fn following(
        config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
        shutdown: CancellationToken,
    ) -> Result<Self, ArchiveError> {
        let updates = config.clone();
        let loaded = Arc::clone(&config.borrow());
        let config = &loaded.config;
        // Metrics recorded before the recorder exists are lost: it is installed first.
        events::register_metrics(config);
        // Audit events consumed are chained only when signed with one of these; token
        // records applied only then.
        let keys = config.auth.signing_keys()?;
        let data_dir = config.data_dir.clone();
        let options = config.store.clone();
        let store = tokio::task::spawn_blocking(move || {
            let store = LogStore::open(&data_dir, &options)?;
            let open = store.incidents()?.iter().filter(|i| i.is_open()).count();
            events::IncidentsOpen { open: open as u64 }.emit();
            Ok::<_, StoreError>(store)
        })
        .await
        .expect("opening the store does not panic")?;
        let publisher = Publisher::new(&config.kafka)?;
        let (changes, applied) = ChangeLog::new(
            publisher.clone(),
            keys.clone(),
            store.clone(),
            &config.group_id,
        );
        let archiver = Archiver::new(updates.clone(), store.clone(), keys.clone(), applied)
            .map_err(|source| ArchiveError::Kafka {
                bootstrap: config.kafka.bootstrap_servers.clone(),
                source,
            })?;
        let live = watch::Sender::new(Arc::new(Live::of(config)?));
        let stop_registry = shutdown.child_token();
        // Whatever fails below stops the registry's reader with it.
        let stop_on_error = stop_registry.clone().drop_guard();
        let (registry, registry_task) = if config.auth.enabled {
            let (registry, task) = TokenRegistry::start(
                &config.kafka,
                &config.auth.tokens_topic,
                keys.clone(),
                stop_registry.clone(),
            )
            .await?;
            (Some(registry), Some(task))
        } else {
            (None, None)
        };
        let authenticator = Authenticator::new(&config.auth, registry.clone()).await?;
        let auditor = Auditor::new(
            store.clone(),
            publisher.clone(),
            keys.clone(),
            config.replica(),
        );
        let guard = Guard::new(Arc::new(authenticator), Arc::new(auditor.clone()));
        stop_on_error.disarm();
        ArchiveStarted {
            bootstrap: &config.kafka.bootstrap_servers,
            topics: &config.topics.subscription().join(","),
            group_id: &config.consumer_group(),
            data_dir: &config.data_dir,
        }
        .emit();
        Ok(Archive {
            archiver,
            api: Api {
                replayer: Replayer::new(
                    store,
                    publisher,
                    changes.clone(),
                    config.replica(),
                    shutdown.clone(),
                ),
                changes,
                guard,
                auditor,
                live: live.subscribe(),
                registry,
                lag: Lag::default(),
                peers: config
                    .sharding
                    .clone()
                    .map(|sharding| Arc::new(Peers::new(sharding))),
            },
            config: updates,
            live,
            ready: Arc::new(AtomicBool::new(true)),
            caught_up: Arc::new(AtomicBool::new(false)),
            registry_task,
            stop_registry,
            shutdown,
            console: config.console,
        })
    }

    /// The trace, replay, erasure, audit and token API and `/v1/positions`, each route behind
    /// its permission, and, unless `[archive] console = false`, the web console at `/ui/`
    /// (static, open, data only through the API); health and metrics are left to the caller, which may serve several services on
    /// one address. Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so audit records name the
    /// caller's address.
    pub fn router(&self) -> Router {
        let api = routes::router(self.api.clone());
        if self.console {
            api.merge(ui::router())
        } else {
            api
        }
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

    /// Every flag `/healthz` must see set: the archive consuming and caught up with Kafka
    /// (no partition behind: a replica that was down serves again once it has caught up),
    /// and (with authentication on) the token registry caught up with the tokens topic.
    pub fn readiness(&self) -> Vec<Arc<AtomicBool>> {
        let mut flags = vec![self.ready(), Arc::clone(&self.caught_up)];
        flags.extend(self.api.registry.as_ref().map(TokenRegistry::ready_flag));
        flags
    }

    /// Archives until `shutdown` is cancelled, first marking failed the replays this replica
    /// left running when it last stopped, so no one waits for them. Then drains: the batch in hand is written,
    /// offsets committed, running replays stopped and their progress saved, denials still
    /// being recorded written, the token reader stopped, the store flushed. Fails when the
    /// store refuses writes until reopened: everything stops, so a restart recovers it.
    pub async fn run(self) -> Result<(), ArchiveError> {
        let auth = retrace_service::follow_auth(
            self.config.clone(),
            self.api.guard.clone(),
            "archive",
            |config: &ArchiveConfig| &config.auth,
            self.shutdown.clone(),
        );
        self.api.replayer.fail_interrupted();
        let lag = lag::watch(
            self.api.lag.clone(),
            self.caught_up,
            self.config.clone(),
            self.api.store().clone(),
            self.shutdown.clone(),
        );
        let following = live::follow(self.config, self.live, self.shutdown.clone());
        let shutdown = self.shutdown.clone();
        let archiver = self.archiver;
        let archiving = async {
            let archived = archiver.run(&shutdown).await;
            if archived.is_err() {
                shutdown.cancel();
            }
            archived
        };
        let (archived, (), (), ()) = tokio::join!(archiving, following, auth, lag);
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

/// Runs the archive and its HTTP server (API, `/healthz`, `/metrics`) until `shutdown` is
/// cancelled, with `config` for good.
pub async fn run(config: ArchiveConfig, shutdown: CancellationToken) -> Result<(), ArchiveError> {
    serve(Reloader::fixed("archive", config), shutdown).await
}

/// [`run`], reloading the configuration on SIGHUP and when its file changes, and answering
/// `GET /v1/config`.
pub async fn serve(
    reloader: Reloader<ArchiveConfig>,
    shutdown: CancellationToken,
) -> Result<(), ArchiveError> {
    let host = Host::new("archive", reloader, shutdown);
    host.serve(|start| async move {
        let archive = Archive::following(start.subscribe(), start.shutdown()).await?;
        let auditor = archive.api.auditor.clone();
        let audit_read = move |caller: &retrace_auth::Caller| {
            let read = Audit::new(caller, retrace_service::http::CONFIG_READ, "/v1/config");
            auditor
                .record(&read, "ok")
                .map_err(|error| error.to_string())
        };
        ApiListening { url: start.url() }.emit();
        // The server stops when the archive does, whatever stopped it.
        Ok(
            Hosted::new(archive.router(), archive.guard().clone(), audit_read)
                .ready(archive.readiness())
                .stops_with(archive.run()),
        )
    })
    .await
}
