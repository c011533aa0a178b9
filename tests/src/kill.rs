//! What the kill-loop and rolling-restart tests share: stopping a service's process the hard
//! way (SIGKILL) or the orchestrator's way (SIGTERM, then wait), and a generator that keeps
//! publishing while processes come and go, remembering what was acknowledged.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The consumer session timeout (`session.timeout.ms`) of a service that a test restarts over
/// and over on Apache Kafka: longer than the default 45 s, so that a restart which waited for
/// the dead member's eviction shows as a resume of a minute or more.
pub const RESTARTED_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment for a service process that a test kills over and over. The services are
/// static members of their consumer groups, which Apache Kafka hands a restarted member's
/// partitions back to at once: there the session is [`RESTARTED_SESSION_TIMEOUT`], so that
/// [`Resumes::record`] tells a restart that waited for the eviction from one that did not.
/// librdkafka's mock cluster does not replace a static member, so there the killed member's
/// session is made to end after three seconds.
pub fn restarted_consumer_env(broker: &crate::Broker) -> Vec<(&'static str, String)> {
    let properties = match broker {
        crate::Broker::Mock(_) => "session.timeout.ms=3000,heartbeat.interval.ms=300".to_owned(),
        _ => format!(
            "session.timeout.ms={}",
            RESTARTED_SESSION_TIMEOUT.as_millis()
        ),
    };
    vec![("RETRACE_KAFKA_PROPERTIES", properties)]
}

/// How long each restart of a loop took to resume: from spawning the new process to the
/// first piece of work it did itself (a record archived, a job run).
pub struct Resumes {
    /// Whether the broker is Apache Kafka, where [`Resumes::record`] holds each resume to less
    /// than the session timeout.
    apache_kafka: bool,
    took: Vec<Duration>,
}

impl Resumes {
    pub fn new(broker: &crate::Broker) -> Self {
        Resumes {
            apache_kafka: !matches!(broker, crate::Broker::Mock(_)),
            took: Vec::new(),
        }
    }

    /// Records the `restart`th resume, which `took` this long, and checks it (see
    /// [`Resumes::check`]).
    pub fn record(&mut self, restart: usize, took: Duration) {
        self.took.push(took);
        self.check(restart, took);
    }

    /// On Apache Kafka a restarted static member must resume before the dead one's session
    /// ends: a resume that took the session timeout or longer waited for the coordinator to
    /// evict the dead member (and a rebalance), which static membership is there to avoid.
    fn check(&self, restart: usize, took: Duration) {
        if self.apache_kafka {
            assert!(
                took < RESTARTED_SESSION_TIMEOUT,
                "restart {restart} resumed after {took:?}, not within the session timeout \
                 (session.timeout.ms={}): the new process waited for the dead member's \
                 eviction instead of taking its partitions back as the same static member \
                 (resumes so far: {self})",
                RESTARTED_SESSION_TIMEOUT.as_millis()
            );
        }
    }

    /// The `q`-quantile (nearest rank) of the resumes so far.
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.took.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied().unwrap_or_default()
    }
}

/// `resumes=… resume_p50_ms=… resume_max_ms=…`, for a test's summary line.
impl std::fmt::Display for Resumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resumes={} resume_p50_ms={} resume_max_ms={}",
            self.took.len(),
            self.quantile(0.5).as_millis(),
            self.quantile(1.0).as_millis()
        )
    }
}

/// How a test stops a service's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash, a node lost. Nothing is drained.
    Kill,
    /// SIGTERM, as an orchestrator's rolling restart does: the service drains and exits 0.
    Terminate,
}

/// A service's process started by a test; killed if the test ends (or fails) without
/// stopping it, so a failed run leaves nothing behind.
pub struct ServiceProcess(Child);

/// The service binary `name` to run: `built` (the test's `env!("CARGO_BIN_EXE_…")`), or
/// the one in `RETRACE_TEST_BIN_DIR` when set, to test a given build (a release, or a copy
/// kept apart from a target directory that other builds overwrite).
pub fn service_binary(name: &str, built: &str) -> PathBuf {
    match std::env::var_os("RETRACE_TEST_BIN_DIR") {
        Some(dir) if !dir.is_empty() => Path::new(&dir).join(name),
        _ => PathBuf::from(built),
    }
}

/// The archive binary `built` on `broker`, archiving `topic` into `data_dir`, answering on
/// `http`, configured by the file `config`, as a test that stops it over and over runs it
/// ([`restarted_consumer_env`]); the caller adds what it is about (its group, a replica id).
/// It creates no topic: the test does ([`crate::create_archive_topics`] for the archive's
/// own).
pub fn archive_process(
    built: &str,
    broker: &crate::Broker,
    topic: &str,
    data_dir: &Path,
    http: &str,
    config: &Path,
) -> Command {
    let mut command = Command::new(service_binary("retrace-archive", built));
    command
        .env("RETRACE_CONFIG", config)
        .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
        .envs(restarted_consumer_env(broker))
        .env("RETRACE_ARCHIVE_TOPICS", topic)
        .env("RETRACE_TOPICS_CREATE", "false")
        .env("RETRACE_ARCHIVE_BATCH_RECORDS", "100")
        .env("RETRACE_DATA_DIR", data_dir)
        .env("RETRACE_HTTP", http)
        .env("RETRACE_LOG", "warn");
    command
}

/// The gateway binary `built` (the test's `env!("CARGO_BIN_EXE_retrace-gateway")`) on
/// `broker`, answering on `http`, configured by the file `config`. It creates no topic: the
/// test does (librdkafka's mock cluster has no CreateTopics API, and each start would wait
/// for it to time out).
pub fn spawn_gateway_process(
    built: &str,
    broker: &crate::Broker,
    http: &str,
    config: &Path,
) -> ServiceProcess {
    ServiceProcess::spawn(
        Command::new(service_binary("retrace-gateway", built))
            .env("RETRACE_CONFIG", config)
            .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
            .env("RETRACE_HTTP", http)
            .env("RETRACE_TOPICS_CREATE", "false")
            .env("RETRACE_LOG", "warn"),
    )
}

impl ServiceProcess {
    pub fn spawn(command: &mut Command) -> ServiceProcess {
        command.env_remove("RETRACE_TEST_BIN_DIR");
        ServiceProcess(command.spawn().expect("the service's binary starts"))
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().expect("the process can be asked")
    }

    /// Its process id, to send it a signal of the test's choosing.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Stops the process `how`, and waits for it to exit; a terminated service must exit
    /// cleanly (its drain finished within its deadline).
    pub fn stop(mut self, how: Stop) {
        match how {
            Stop::Kill => {
                self.0.kill().expect("SIGKILL is delivered");
                self.0.wait().expect("the killed process is reaped");
            }
            Stop::Terminate => {
                let sent = Command::new("kill")
                    .args(["-TERM", &self.0.id().to_string()])
                    .status()
                    .expect("kill(1) runs");
                assert!(sent.success(), "SIGTERM is delivered");
                let status = self.0.wait().expect("the terminated process is reaped");
                assert!(
                    status.success(),
                    "SIGTERM is a clean stop (drained within its deadline); it exited {status}"
                );
            }
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes one message after another, `in_flight` at a time, through `publish`, until
/// stopped; keeps the ids `publish` reports acknowledged.
pub struct Generator {
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Generator {
    /// `publish(n)` sends the `n`th message and returns its id once acknowledged (a 2xx, an
    /// SDK ack), `None` when it was refused or the answer never came. A pause of `pace`
    /// after each acknowledgement keeps the rate moderate, so the test's final checks read
    /// a bounded archive.
    pub fn start<F, Fut>(in_flight: usize, pace: Duration, publish: F) -> Generator
    where
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let acknowledged = Arc::clone(&acknowledged);
            let stop = stop.clone();
            async move {
                let mut pending = FuturesUnordered::new();
                let mut next = 0u64;
                loop {
                    while pending.len() < in_flight && !stop.is_cancelled() {
                        let sent = publish(next);
                        pending.push(async move {
                            let id = sent.await;
                            tokio::time::sleep(pace).await;
                            id
                        });
                        next += 1;
                    }
                    match pending.next().await {
                        Some(Some(id)) => {
                            acknowledged.lock().expect("never poisoned").insert(id);
                        }
                        Some(None) => {}
                        None => break,
                    }
                }
            }
        });
        Generator {
            acknowledged,
            stop,
            task,
        }
    }

    /// How many messages have been acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().expect("never poisoned").len()
    }

    /// Stops publishing, waits for the messages in flight, and returns every acknowledged id.
    pub async fn finish(self) -> BTreeSet<String> {
        self.stop.cancel();
        self.task.await.expect("the generator does not panic");
        std::mem::take(&mut *self.acknowledged.lock().expect("never poisoned"))
    }
}

/// How far past `current` a loop waits before its next kill: a random number of new records
/// in `1..=spread`, so kills land at random moments without sleeping.
pub fn next_kill_at(current: i64, spread: i64) -> i64 {
    use rand::Rng;
    current + rand::rng().random_range(1..=spread)
}
