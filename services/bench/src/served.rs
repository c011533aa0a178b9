//! The archive's API served to a bench over a filled store, and the figures of the requests
//! timed against it: the pieces `trace` and `incidents` share.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use retrace_archive::{Archive, ArchiveConfig, TopicSelection};
use retrace_fixtures::Broker;
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
use tokio_util::sync::CancellationToken;

/// A router served on a loopback port.
pub struct Server {
    pub url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), retrace_http::HttpError>>,
}

impl Server {
    pub async fn start(router: axum::Router) -> anyhow::Result<Server> {
        let listener = retrace_http::bind(([127, 0, 0, 1], 0).into(), None).await?;
        let stop = CancellationToken::new();
        Ok(Server {
            url: listener.url(),
            task: tokio::spawn(listener.serve(router, stop.clone().cancelled_owned())),
            stop,
        })
    }

    /// Returns once the server, and with it the router, is gone.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        Ok(self.task.await??)
    }
}

/// The archive over a filled store, serving its API with authentication on as in
/// production (each request's token checked, each read audited): without consuming
/// ([`start`](Self::start), nothing changes while it is measured) or archiving one topic of
/// its broker as it would in production ([`ingesting`](Self::ingesting)).
pub struct ServedArchive {
    pub url: String,
    /// The bootstrap admin's, for `Authorization: Bearer …`.
    pub token: String,
    /// The mock cluster it reads its tokens from, and consumes from when ingesting.
    pub broker: Broker,
    server: Server,
    shutdown: CancellationToken,
    /// A bench that fails while serving drops the archive without [`stop`](Self::stop):
    /// its tasks are stopped all the same, or the runtime would wait for them forever.
    _stop_on_drop: tokio_util::sync::DropGuard,
    running: tokio::task::JoinHandle<Result<(), retrace_archive::ArchiveError>>,
}

impl ServedArchive {
    /// Opens the archive in `dir` (every other handle to its store must be gone) and serves
    /// it once its token registry has caught up.
    pub async fn start(dir: &Path) -> anyhow::Result<ServedArchive> {
        Self::open(dir, None).await
    }

    /// [`start`](Self::start), and archives `topic` (created with `partitions` on the
    /// archive's broker) until stopped.
    pub async fn ingesting(dir: &Path, topic: &str, partitions: i32) -> anyhow::Result<Self> {
        Self::open(dir, Some((topic, partitions))).await
    }

    async fn open(dir: &Path, ingest: Option<(&str, i32)>) -> anyhow::Result<ServedArchive> {
        let broker = Broker::mock();
        // What every archive writes: its audit records (one per read), its changes.
        for topic in [AUDIT_TOPIC, ARCHIVE_CHANGES_TOPIC] {
            broker.create_topic(topic, 3).await;
        }
        let shutdown = CancellationToken::new();
        let mut config = ArchiveConfig::new(broker.bootstrap(), dir);
        let auth = crate::auth::secured(&broker).await;
        config.auth = auth.config;
        if let Some((topic, partitions)) = ingest {
            broker.create_topic(topic, partitions).await;
            config.topics = TopicSelection::Names(vec![topic.to_owned()]);
            // The mock cluster has no CreateTopics API: the topic is made above.
            config.provisioning.create = false;
        }
        let archive = Archive::open(&config, shutdown.clone())
            .await
            .context("opening the filled archive")?;
        let router = archive.router();
        // Ready once its token registry has read the tokens topic and it has caught up with
        // Kafka (whose topics the fill did not write: nothing to catch up on).
        let ready = archive.readiness();
        let running = tokio::spawn(archive.run());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.iter().all(|flag| flag.load(Ordering::Acquire)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the archive did not become ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let server = Server::start(router).await?;
        Ok(ServedArchive {
            url: server.url.clone(),
            token: auth.token,
            broker,
            server,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            running,
        })
    }

    /// Stops serving and archiving (the batch in hand is written); returns once the store
    /// is closed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        self.shutdown.cancel();
        self.running
            .await
            .context("the archive's task")?
            .context("running the archive")?;
        Ok(())
    }
}

/// Requests `path(i)` for `i` in `0..count` as the bootstrap admin: each path once untimed
/// (a warm cache; at most 100), then each timed; `check(body, i)` after the clock stops.
pub async fn time_gets(
    client: &reqwest::Client,
    archive: &ServedArchive,
    count: usize,
    path: impl Fn(usize) -> String,
    check: impl Fn(&[u8], usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    let get = |i: usize| {
        client
            .get(format!("{}{}", archive.url, path(i)))
            .bearer_auth(&archive.token)
    };
    for i in 0..count.min(100) {
        get(i).send().await?.error_for_status()?;
    }
    let mut timings = Vec::with_capacity(count);
    for i in 0..count {
        let began = Instant::now();
        let body = get(i).send().await?.error_for_status()?.bytes().await?;
        timings.push(began.elapsed());
        check(&body, i).with_context(|| format!("GET {}", path(i)))?;
    }
    Ok(timings)
}

/// The median and the 99th percentile (the sample at rank round((n - 1) q)); sorts
/// `samples`, which is not empty.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
