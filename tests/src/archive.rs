//! An archive service running in the test's process, on a free port, over a temporary
//! directory.

use std::time::Duration;

use retrace_archive::{ArchiveConfig, ArchiveError};
use retrace_log_store::{LogStore, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::{Broker, PATIENCE, archived_count, eventually, free_port};

pub struct RunningArchive {
    /// `host:port` of its HTTP API.
    pub http: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ArchiveError>>,
    dir: tempfile::TempDir,
}

/// Starts an archive of every topic of `broker`, and waits until its API answers.
pub async fn start_archive(broker: &Broker) -> RunningArchive {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ArchiveConfig::new(broker.bootstrap(), dir.path());
    let port = free_port();
    config.http = ([127, 0, 0, 1], port).into();
    config.batch.max_wait = Duration::from_millis(20);
    config.metadata_refresh = Duration::from_secs(1);
    config.kafka = config
        .kafka
        .with_properties(broker.producer_properties().iter().copied())
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(retrace_archive::run(config, shutdown.clone()));
    let archive = RunningArchive {
        http: format!("127.0.0.1:{port}"),
        shutdown,
        task,
        dir,
    };
    eventually("the archive's API to answer", PATIENCE, || async {
        let health = reqwest::get(archive.url("/healthz")).await.ok()?;
        health.status().is_success().then_some(())
    })
    .await;
    archive
}

impl RunningArchive {
    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn wait_for_records(&self, topic: &str, count: i64) {
        eventually(
            &format!("{count} records of {topic} archived"),
            PATIENCE,
            || async { (archived_count(&self.http, topic).await? >= count).then_some(()) },
        )
        .await;
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the archive cleanly and opens what it stored.
    pub async fn stop(self) -> (LogStore, tempfile::TempDir) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        let store = LogStore::open(self.dir.path(), &StoreOptions::default()).unwrap();
        (store, self.dir)
    }
}
