//! An archive service running in the test's process, on a free port, over a temporary
//! directory.

use std::path::Path;
use std::time::Duration;

use retrace_archive::{ArchiveArgs, ArchiveConfig, ArchiveError};
use retrace_log_store::{LogStore, StoreOptions};
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
use retrace_service::Reloader;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{Broker, PATIENCE, eventually, free_port};

pub struct RunningArchive {
    /// `host:port` of its HTTP API.
    pub http: String,
    /// Sent as `Authorization: Bearer …` by the harness' own requests (positions), when the
    /// archive authenticates callers.
    pub token: Option<String>,
    shutdown: CancellationToken,
    /// A test that panics drops the archive without stopping it: this stops it, so its
    /// blocking tasks (the token registry's reader) end and the test's runtime can close.
    _stop_on_drop: DropGuard,
    task: tokio::task::JoinHandle<Result<(), ArchiveError>>,
    dir: tempfile::TempDir,
}

/// Starts an archive of every topic of `broker`, with authentication disabled (every caller
/// is an anonymous admin), and waits until its API answers.
pub async fn start_archive(broker: &Broker) -> RunningArchive {
    RunningArchive::start_with(broker, |_| {}).await
}

/// Creates the topics every archive writes (its changes, its audit records), for an archive
/// that does not create topics itself (`RETRACE_TOPICS_CREATE=false`, or on the mock cluster,
/// which has no CreateTopics API).
pub async fn create_archive_topics(broker: &Broker) {
    for topic in [ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC] {
        broker.create_topic(topic, 3).await;
    }
}

impl RunningArchive {
    /// Starts an archive of every topic of `broker` with the harness' settings (short batch
    /// waits, authentication disabled), then `configure`'s changes (e.g. `config.auth`), and
    /// waits until `/healthz` answers 200: consuming, and with authentication on, the token
    /// registry caught up.
    pub async fn start_with(
        broker: &Broker,
        configure: impl FnOnce(&mut ArchiveConfig),
    ) -> RunningArchive {
        RunningArchive::start_in(broker, tempfile::tempdir().unwrap(), configure).await
    }

    /// [`RunningArchive::start_with`] over `dir`: a new archive's, or the one a stopped
    /// archive handed over ([`RunningArchive::shut_down`]).
    pub async fn start_in(
        broker: &Broker,
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ArchiveConfig),
    ) -> RunningArchive {
        // Elsewhere the archive creates them, with its own credentials where the cluster wants
        // some.
        if let Broker::Mock(_) = broker {
            create_archive_topics(broker).await;
        }
        let mut config = ArchiveConfig::new(broker.bootstrap(), dir.path());
        let port = free_port();
        config.http = ([127, 0, 0, 1], port).into();
        config.batch.max_wait = Duration::from_millis(20);
        config.metadata_refresh = Duration::from_secs(1);
        // Tests of one binary share a Kafka node: each archive in a group of its own, or
        // they would split the partitions between them.
        config.group_id = crate::unique_topic("archive-group");
        config.auth.enabled = false;
        config.auth.signing_keys = vec![crate::TEST_SIGNING_KEY.to_owned()];
        configure(&mut config);
        RunningArchive::serve(Reloader::fixed("archive", config), dir, port).await
    }

    /// Starts an archive configured by the file `config` (TOML, written by the test), with
    /// the harness' broker, address and batch wait as flags, reloading the file when it
    /// changes (every 50 ms); waits until `/healthz` answers 200.
    pub async fn start_from_file(broker: &Broker, config: &Path) -> RunningArchive {
        if let Broker::Mock(_) = broker {
            create_archive_topics(broker).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = ArchiveArgs {
            common: crate::config_args(broker, config),
            http: Some(([127, 0, 0, 1], port).into()),
            data_dir: Some(dir.path().to_owned()),
            batch_wait_ms: Some(20),
            ..ArchiveArgs::default()
        };
        let reloader = args
            .common
            .clone()
            .reloader("archive", move || args.clone().resolve())
            .unwrap();
        RunningArchive::serve(reloader, dir, port).await
    }

    async fn serve(
        reloader: Reloader<ArchiveConfig>,
        dir: tempfile::TempDir,
        port: u16,
    ) -> RunningArchive {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(retrace_archive::serve(reloader, shutdown.clone()));
        let archive = RunningArchive {
            http: format!("127.0.0.1:{port}"),
            token: None,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            task,
            dir,
        };
        eventually("the archive's API to answer", PATIENCE, || async {
            assert!(
                !archive.task.is_finished(),
                "the archive stopped while starting; its log says why"
            );
            let health = reqwest::get(archive.url("/healthz")).await.ok()?;
            health.status().is_success().then_some(())
        })
        .await;
        archive
    }

    /// `http://host:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The archive's data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `/v1/positions`, with the harness' token if any.
    pub async fn positions(&self) -> Option<Vec<crate::Position>> {
        let mut request = reqwest::Client::new().get(self.url("/v1/positions"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request.send().await.ok()?.json().await.ok()
    }

    /// How many records of `topic` the archive has stored.
    pub async fn archived_count(&self, topic: &str) -> Option<i64> {
        crate::archived_count(&self.http, self.token.as_deref(), topic).await
    }

    pub async fn wait_for_records(&self, topic: &str, count: i64) {
        eventually(
            &format!("{count} records of {topic} archived"),
            PATIENCE,
            || async { (self.archived_count(topic).await? >= count).then_some(()) },
        )
        .await;
    }

    /// `GET /v1/config`'s answer, with the harness' token if any.
    pub async fn config(&self) -> serde_json::Value {
        let mut request = reqwest::Client::new().get(self.url("/v1/config"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GET /v1/config");
        response.json().await.unwrap()
    }

    /// Waits until `/v1/config` shows a version other than `version`; answers the document.
    pub async fn config_after(&self, version: &str) -> serde_json::Value {
        eventually(
            &format!("a configuration version other than {version}"),
            PATIENCE,
            || async {
                let document = self.config().await;
                (document["version"] != version).then_some(document)
            },
        )
        .await
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
        let dir = self.shut_down().await;
        let store = LogStore::open(dir.path(), &StoreOptions::default()).unwrap();
        (store, dir)
    }

    /// Stops the archive cleanly and hands over its directory, closed (to compact it, or
    /// search its files).
    pub async fn shut_down(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
        self.dir
    }
}
