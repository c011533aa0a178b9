//! The archiver: consumes every configured Kafka topic in consumer group `retrace-archive`
//! and keeps every record, whole, in the log store, so any transaction can be traced end to
//! end and re-run.
//!
//! A batch's offsets are committed to Kafka only after the batch is durable, and the archive
//! resumes from its own stored positions, so a crash loses nothing and stores nothing twice.
//! Records that are not Retrace envelopes are kept too, flagged and counted.

mod archiver;
mod classify;
mod config;
mod events;
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use retrace_log_store::{LogStore, StoreError};
use retrace_telemetry::InternalEvent;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use classify::{classify, prepare};
pub use config::{
    ALL_TOPICS_PATTERN, ArchiveArgs, ArchiveConfig, BatchSettings, ConfigError, TopicSelection,
};

use crate::archiver::Archiver;
use crate::events::ArchiveStarted;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start consuming from Kafka at {bootstrap}: {source}")]
    Kafka {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot serve HTTP on {addr}: {source}. Is another process using that port?")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Runs the archiver and its HTTP server until `shutdown` is cancelled, then drains: the
/// batch in hand is written, offsets committed, the store flushed.
pub async fn run(config: ArchiveConfig, shutdown: CancellationToken) -> Result<(), ArchiveError> {
    // Metrics recorded before the recorder exists are lost.
    retrace_telemetry::prometheus();
    let data_dir = config.data_dir.clone();
    let options = config.store.clone();
    let store = tokio::task::spawn_blocking(move || LogStore::open(&data_dir, &options))
        .await
        .expect("opening the store does not panic")?;
    let archiver = Archiver::new(&config, store.clone()).map_err(|source| ArchiveError::Kafka {
        bootstrap: config.kafka.bootstrap_servers.clone(),
        source,
    })?;
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
    ArchiveStarted {
        bootstrap: &config.kafka.bootstrap_servers,
        topics: &config.topics.subscription().join(","),
        group_id: &config.group_id,
        http: http_addr,
    }
    .emit();
    let ready = Arc::new(AtomicBool::new(true));
    let app = http::router(http::HttpState {
        store,
        ready: Arc::clone(&ready),
    });
    // The server stops when the archiver does, whatever stopped it.
    let stop_http = shutdown.child_token();
    let serve =
        axum::serve(listener, app).with_graceful_shutdown(stop_http.clone().cancelled_owned());
    let archive = async {
        archiver.run(&shutdown).await;
        ready.store(false, Ordering::Release);
        stop_http.cancel();
    };
    let ((), served) = tokio::join!(archive, serve);
    served.map_err(|source| ArchiveError::Http {
        addr: http_addr,
        source,
    })
}
