//! The archive service: consumes every configured Kafka topic in consumer group
//! `retrace-archive` and keeps every record, whole, in the log store, so any transaction can
//! be traced end to end and re-run; and serves the trace and replay API over that store.
//!
//! A batch's offsets are committed to Kafka only after the batch is durable, and the archive
//! resumes from its own stored positions, so a crash loses nothing and stores nothing twice.
//! Records that are not Retrace envelopes are kept too, flagged and counted.

pub mod api;
mod archiver;
mod classify;
mod config;
mod events;
mod http;
mod replay;
mod routes;
mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use retrace_log_store::{LogStore, ReplayState, StoreError};
use retrace_sdk::{PublishError, Publisher};
use retrace_telemetry::InternalEvent;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use classify::{classify, prepare};
pub use config::{
    ALL_TOPICS_PATTERN, ArchiveArgs, ArchiveConfig, BatchSettings, ConfigError, TopicSelection,
};
pub use routes::parse_time;

use crate::archiver::Archiver;
use crate::events::{ApiListening, ArchiveStarted};
use crate::replay::{Replayer, now_ms};

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
    #[error("cannot serve HTTP on {addr}: {source}. Is another process using that port?")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// An archive ready to run: its store open, its consumer created, its API routable.
pub struct Archive {
    archiver: Archiver,
    replayer: Replayer,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl Archive {
    /// Opens the store and creates the Kafka clients. Replays left running by a previous
    /// process that stopped are marked failed, so no one waits for them.
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
        ArchiveStarted {
            bootstrap: &config.kafka.bootstrap_servers,
            topics: &config.topics.subscription().join(","),
            group_id: &config.group_id,
            data_dir: &config.data_dir,
        }
        .emit();
        Ok(Archive {
            archiver,
            replayer: Replayer::new(store, publisher, shutdown.clone()),
            ready: Arc::new(AtomicBool::new(true)),
            shutdown,
        })
    }

    /// The trace and replay API and `/v1/positions`; health and metrics are left to the
    /// caller, which may serve several services on one address.
    pub fn router(&self) -> Router {
        routes::router(self.replayer.clone()).merge(http::router(self.replayer.store().clone()))
    }

    /// Whether the archive is consuming; false once it has stopped.
    pub fn ready(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.ready)
    }

    /// Archives until `shutdown` is cancelled, then drains: the batch in hand is written,
    /// offsets committed, running replays stopped and their progress saved, the store
    /// flushed.
    pub async fn run(self) {
        self.archiver.run(&self.shutdown).await;
        self.ready.store(false, Ordering::Release);
        self.replayer.stopped().await;
    }
}

/// Runs the archive and its HTTP server (API, `/healthz`, `/metrics`) until `shutdown` is
/// cancelled.
pub async fn run(config: ArchiveConfig, shutdown: CancellationToken) -> Result<(), ArchiveError> {
    let archive = Archive::open(&config, shutdown.clone()).await?;
    let listener = TcpListener::bind(config.http)
        .await
        .map_err(|source| ArchiveError::Http {
            addr: config.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ArchiveError::Http {
        addr: config.http,
        source,
    })?;
    let app = archive
        .router()
        .merge(retrace_telemetry::health_router(vec![archive.ready()]))
        .merge(retrace_telemetry::metrics_router());
    ApiListening { addr: http_addr }.emit();
    // The server stops when the archive does, whatever stopped it.
    let stop_http = shutdown.child_token();
    let serve =
        axum::serve(listener, app).with_graceful_shutdown(stop_http.clone().cancelled_owned());
    let archive = async {
        archive.run().await;
        stop_http.cancel();
    };
    let ((), served) = tokio::join!(archive, serve);
    served.map_err(|source| ArchiveError::Http {
        addr: http_addr,
        source,
    })
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
