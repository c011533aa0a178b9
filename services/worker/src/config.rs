//! The worker's configuration: defaults, then an optional TOML file, then `RETRACE_*`
//! environment variables, then flags; each later source wins. Queues are configured in the
//! file only:
//!
//! ```toml
//! [queues.certificates]
//! webhook = "http://127.0.0.1:8080/jobs/certificates"
//! concurrency = 4
//! rate_per_s = 20.0
//! max_attempts = 5
//! timeout_ms = 10000
//! backoff = { base_ms = 1000, factor = 2.0, max_ms = 600000 }
//! kinds."certificate.render".webhook = "http://127.0.0.1:8080/jobs/render"
//!
//! [queues.certificates.gate]
//! time_zone = "Africa/Nairobi"
//! windows = [ { days = "mon-fri", from = "19:00", to = "07:00" } ]
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use retrace_auth::AuthConfig;
use retrace_http::TlsFiles;
use retrace_sdk::{QueueTopics, TopicSpec};
pub use retrace_service::ConfigError;
use retrace_service::{
    CommonArgs, CommonConfig, CommonSections, DEFAULT_BOOTSTRAP, KafkaSection, LogSection,
    Problems, TopicsSection, invalid, serialize_ms,
};
use serde::{Deserialize, Serialize};

use crate::gate::{GateConfig, GateSpec};
use crate::retry::Backoff;

/// One queue: its handlers and limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Webhook for every kind without its own.
    pub webhook: Option<String>,
    /// Per-kind handlers, which win over the queue's.
    pub kinds: BTreeMap<String, KindConfig>,
    /// Jobs running at once, in this process.
    pub concurrency: usize,
    /// Jobs started per second at most, in this process; unlimited when absent.
    pub rate_per_s: Option<f64>,
    /// Attempts before dead-lettering, for jobs that do not set their own.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// How long a webhook call may take.
    pub timeout_ms: u64,
    /// When the queue's jobs may run: schedule windows, load signals, admission rules.
    pub gate: GateConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            webhook: None,
            kinds: BTreeMap::new(),
            concurrency: 4,
            rate_per_s: None,
            max_attempts: 5,
            backoff: Backoff::default(),
            timeout_ms: 30_000,
            gate: GateConfig::default(),
        }
    }
}

impl QueueConfig {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Refuses limits that would stop the queue, naming the setting, and returns its
    /// validated gate.
    pub fn check(&self, queue: &str) -> Result<GateSpec, ConfigError> {
        let invalid = |field: &str, requirement: &str| {
            Err(invalid(&format!("queues.{queue}.{field}"), requirement))
        };
        if self.concurrency == 0 {
            return invalid("concurrency", "at least 1");
        }
        if self
            .rate_per_s
            .is_some_and(|rate| rate.is_nan() || rate <= 0.0)
        {
            return invalid("rate_per_s", "above 0");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts", "at least 1");
        }
        if self.timeout_ms == 0 {
            return invalid("timeout_ms", "at least 1");
        }
        if self.backoff.factor.is_nan()
            || self.backoff.factor < 1.0
            || self.backoff.max_ms < self.backoff.base_ms
        {
            return invalid("backoff", "factor >= 1 and max_ms >= base_ms");
        }
        let webhooks = self
            .webhook
            .iter()
            .map(|url| ("webhook".to_owned(), url))
            .chain(self.kinds.iter().filter_map(|(kind, config)| {
                Some((format!("kinds.{kind}.webhook"), config.webhook.as_ref()?))
            }));
        for (field, url) in webhooks {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(&field, "an http:// or https:// URL");
            }
        }
        self.gate
            .validate(&format!("queues.{queue}.gate"))
            .map_err(|e| retrace_service::wrong(&e.field, e.problem))
    }
}

/// One job kind's own handler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerConfig {
    /// Kafka, the HTTP address (standalone binary), TLS, logging, `[topics]`, and who may
    /// read the queues and redrive (`[auth]`); read as the worker's own (`config.kafka`).
    #[serde(flatten)]
    pub common: CommonConfig,
    pub queues: BTreeMap<String, QueueConfig>,
    /// How long jobs running at shutdown may take to finish; the rest run again elsewhere.
    #[serde(rename = "shutdown_grace_ms", serialize_with = "serialize_ms")]
    pub shutdown_grace: Duration,
    /// This process's name in its queues' consumer groups, making it a static member
    /// (`group.instance.id`): restarted after a crash, it gets its partitions back at once
    /// instead of after the dead member's session timeout (`session.timeout.ms`, 45 s by
    /// default) and a rebalance. Unique per worker process (a pod name, a replica number).
    /// A static member that stops does not leave its groups, so when it does not come back
    /// its partitions wait for the session timeout before moving to the other workers.
    /// `None`: a dynamic member, which leaves on SIGTERM.
    pub instance_id: Option<String>,
}

retrace_service::service_config!(WorkerConfig);

impl WorkerConfig {
    /// The topics the worker creates when missing: Retrace's own, every lane of each queue,
    /// and `[topics] extra`.
    pub fn topics_needed(&self) -> Vec<TopicSpec> {
        let lanes: Vec<QueueTopics> = self.queues.keys().map(|q| QueueTopics::of(q)).collect();
        let own = lanes.iter().flat_map(QueueTopics::all);
        self.provisioning
            .retrace_topics(&self.auth.tokens_topic, own)
    }

    /// The defaults, for a worker on `bootstrap` with no queues.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        WorkerConfig {
            common: CommonConfig::new(bootstrap, SocketAddr::from(([127, 0, 0, 1], 7072))),
            queues: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(10),
            instance_id: None,
        }
    }
}

/// Command-line flags; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WorkerArgs {
    /// Kafka, log and config-file flags. Queues are configured in the file
    /// (`[queues.<name>]`).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address of the HTTP server (/v1/jobs/queues, /healthz, /metrics).
    #[arg(long, env = "RETRACE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Static membership in the queues' consumer groups (`[worker] instance_id`): a name
    /// unique to this process, e.g. its pod name.
    #[arg(long, env = "RETRACE_WORKER_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    kafka: KafkaSection,
    tls: Option<TlsFiles>,
    worker: FileWorker,
    log: LogSection,
    queues: BTreeMap<String, QueueConfig>,
    auth: AuthConfig,
    topics: TopicsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    http: Option<SocketAddr>,
    shutdown_grace_ms: Option<u64>,
    instance_id: Option<String>,
}

impl WorkerArgs {
    /// Layers defaults, the file, and these flags (which clap already merged with the env);
    /// refuses the result naming every problem found (the first of each queue).
    pub fn resolve(self) -> Result<WorkerConfig, ConfigError> {
        let FileConfig {
            kafka,
            tls,
            worker: file,
            log,
            queues,
            auth,
            topics,
        } = self.common.read_file()?;
        let mut problems = Problems::default();
        let mut config = WorkerConfig::new(DEFAULT_BOOTSTRAP);
        if let Some(grace) = file.shutdown_grace_ms {
            config.shutdown_grace = Duration::from_millis(grace);
        }
        config.instance_id = self
            .instance_id
            .or(file.instance_id)
            .filter(|id| !id.is_empty());
        for (name, queue) in &queues {
            let named = retrace_sdk::check_topic_name(&crate::QueueTopics::of(name).dead_letter)
                .map_err(|_| {
                    invalid(
                        &format!("queues.{name}"),
                        "a name of letters, digits, '.', '_' or '-' (it names topics)",
                    )
                });
            problems.check(named.and_then(|()| queue.check(name)));
        }
        config.queues = queues;
        let common = CommonSections::new(kafka, tls, log, auth, topics);
        let http = self.http.or(file.http);
        self.common
            .layer(&mut config.common, common, http, &mut problems);
        problems.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str) -> Result<WorkerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, toml).unwrap();
        WorkerArgs {
            common: CommonArgs {
                config: Some(path),
                ..CommonArgs::default()
            },
            ..WorkerArgs::default()
        }
        .resolve()
    }

    #[test]
    fn queues_come_from_the_file_with_defaults_filled_in() {
        let config = resolve(
            r#"
[kafka]
bootstrap = "file:9092"

[queues.certificates]
webhook = "http://127.0.0.1:8080/jobs"
concurrency = 8
backoff = { base_ms = 10, factor = 3.0, max_ms = 100 }
kinds."certificate.render".webhook = "http://127.0.0.1:8080/render"

[queues.notifications]
webhook = "http://127.0.0.1:8080/notify"
"#,
        )
        .unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "file:9092");
        assert_eq!(config.http, SocketAddr::from(([127, 0, 0, 1], 7072)));
        let certificates = &config.queues["certificates"];
        assert_eq!(certificates.concurrency, 8);
        assert_eq!(certificates.backoff.base_ms, 10);
        assert_eq!(
            certificates.kinds["certificate.render"].webhook.as_deref(),
            Some("http://127.0.0.1:8080/render")
        );
        assert_eq!(config.queues["notifications"].max_attempts, 5);
    }

    #[test]
    fn every_bad_queue_and_section_is_named_at_once() {
        let error = resolve(
            "[queues.a]\nconcurrency = 0\n[queues.b]\ntimeout_ms = 0\n\
             [auth]\nbootstrap_admin_sha256 = \"abc\"\n",
        )
        .unwrap_err();
        let problems: Vec<String> = error.problems().iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("queues.a.concurrency:"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("queues.b.timeout_ms:"),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("auth.bootstrap_admin_sha256"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_bad_setting_is_named() {
        let error = resolve("[queues.q]\nconcurrency = 0\n").unwrap_err();
        assert!(
            error.to_string().contains("queues.q.concurrency"),
            "{error}"
        );
        let error = resolve("[queues.q]\nwebhok = \"http://x\"\n").unwrap_err();
        assert!(error.to_string().contains("webhok"), "{error}");
        let error = resolve("[queues.q]\nwebhook = \"ftp://x\"\n").unwrap_err();
        assert!(error.to_string().contains("queues.q.webhook"), "{error}");
        let error = resolve("[queues.q.gate]\ntime_zone = \"UTC\"\nwindows = [{ days = \"mon\", from = \"25:00\", to = \"07:00\" }]\n").unwrap_err();
        assert!(
            error.to_string().contains("queues.q.gate.windows[0].from"),
            "{error}"
        );
    }
}
