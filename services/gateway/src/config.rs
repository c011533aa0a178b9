//! The gateway's configuration: defaults, then an optional TOML file, then `RETRACE_*`
//! environment variables, then flags; each later source wins.

use std::net::SocketAddr;
use std::time::Duration;

use retrace_auth::AuthConfig;
pub use retrace_config::ConfigError;
use retrace_config::{
    CommonArgs, DEFAULT_BOOTSTRAP, KafkaSection, LogSection, Problems, Reloadable, TopicsSection,
    serialize_ms,
};
use retrace_http::TlsFiles;
use retrace_sdk::{KafkaSettings, TopicSettings, TopicSpec};
use retrace_telemetry::{LogFormat, LogSinks};
use serde::{Deserialize, Serialize};

/// What the gateway remembers to answer a repeated request instead of publishing twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdempotencySettings {
    /// How long a key (an `Idempotency-Key`, or an event id on a topic) is remembered after
    /// its first use.
    #[serde(rename = "window_ms", serialize_with = "serialize_ms")]
    pub window: Duration,
    /// Most keys remembered, per kind (request keys; event ids); the oldest are forgotten
    /// first when full.
    pub capacity: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayConfig {
    pub kafka: KafkaSettings,
    /// Address of the HTTP server.
    pub http: SocketAddr,
    /// Serve HTTPS with these (`[tls]`, `--tls-cert`/`--tls-key`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Largest request body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    pub idempotency: IdempotencySettings,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// `[log.sinks]`: where each log category goes.
    pub log_sinks: LogSinks,
    /// Who may publish: `[auth]`.
    pub auth: AuthConfig,
    /// How long requests in flight at SIGTERM may take to be answered before the process
    /// stops anyway (`[gateway] shutdown_grace_ms`). A request cut off is not answered, so
    /// its client retries it.
    pub shutdown_grace: Duration,
    /// `[topics]`: how the topics it needs are created at start.
    pub provisioning: TopicSettings,
}

impl GatewayConfig {
    /// The topics the gateway creates when missing: Retrace's own (it publishes outcomes and
    /// audit records), and `[topics] extra`.
    pub fn topics_needed(&self) -> Vec<TopicSpec> {
        self.provisioning
            .retrace_topics(&self.auth.tokens_topic, [])
    }
}

impl GatewayConfig {
    /// The defaults, for a gateway publishing to `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        GatewayConfig {
            kafka: KafkaSettings::new(bootstrap),
            http: SocketAddr::from(([127, 0, 0, 1], 7071)),
            tls: None,
            max_body_bytes: 1 << 20,
            idempotency: IdempotencySettings {
                window: Duration::from_secs(600),
                capacity: 100_000,
            },
            log_format: LogFormat::Auto,
            log_sinks: LogSinks::default(),
            log_filter: "info".to_owned(),
            auth: AuthConfig::default(),
            provisioning: TopicSettings::default(),
            shutdown_grace: Duration::from_secs(15),
        }
    }
}

impl Reloadable for GatewayConfig {
    fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }
}

/// Command-line flags; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// Kafka, log and config-file flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address of the HTTP server (/v1/..., /healthz, /metrics).
    #[arg(long, env = "RETRACE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Largest request body accepted, in bytes; larger ones are answered 413.
    #[arg(long, env = "RETRACE_GATEWAY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// How long an Idempotency-Key or event id is remembered, in seconds.
    #[arg(long, env = "RETRACE_GATEWAY_IDEMPOTENCY_WINDOW_S")]
    pub idempotency_window_s: Option<u64>,
    /// Most Idempotency-Keys (and, separately, event ids) remembered; oldest forgotten first.
    #[arg(long, env = "RETRACE_GATEWAY_IDEMPOTENCY_CAPACITY")]
    pub idempotency_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    kafka: KafkaSection,
    tls: Option<TlsFiles>,
    #[serde(default)]
    gateway: FileGateway,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    auth: AuthConfig,
    #[serde(default)]
    topics: TopicsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGateway {
    http: Option<SocketAddr>,
    max_body_bytes: Option<usize>,
    idempotency_window_s: Option<u64>,
    idempotency_capacity: Option<usize>,
    shutdown_grace_ms: Option<u64>,
}

impl GatewayArgs {
    /// Layers defaults, the file, and these flags (which clap already merged with the env);
    /// refuses the result naming every problem found.
    pub fn resolve(self) -> Result<GatewayConfig, ConfigError> {
        let file: FileConfig = self.common.read_file()?;
        let mut problems = Problems::default();
        let mut config = GatewayConfig::new(DEFAULT_BOOTSTRAP);
        let kafka = self.common.kafka(file.kafka, &[]);
        if let Some(kafka) = problems.check(kafka) {
            config.kafka = kafka;
        }
        if let Some(grace) = file.gateway.shutdown_grace_ms {
            config.shutdown_grace = Duration::from_millis(grace);
        }
        if let Some(http) = self.http.or(file.gateway.http) {
            config.http = http;
        }
        let max_body = self.max_body_bytes.or(file.gateway.max_body_bytes);
        if let Some(max) = problems.at_least_one("gateway.max_body_bytes", max_body) {
            config.max_body_bytes = max;
        }
        let window = self
            .idempotency_window_s
            .or(file.gateway.idempotency_window_s);
        if let Some(window) = problems.at_least_one("gateway.idempotency_window_s", window) {
            config.idempotency.window = Duration::from_secs(window);
        }
        let capacity = self
            .idempotency_capacity
            .or(file.gateway.idempotency_capacity);
        if let Some(capacity) = problems.at_least_one("gateway.idempotency_capacity", capacity) {
            config.idempotency.capacity = capacity;
        }
        let log = self
            .common
            .log(file.log, &mut config.log_format, &mut config.log_filter);
        if let Some(sinks) = problems.check(log) {
            config.log_sinks = sinks;
        }
        if let Some(tls) = problems.check(self.common.tls(file.tls)) {
            config.tls = tls;
        }
        if let Some(topics) = problems.check(self.common.topics(file.topics)) {
            config.provisioning = topics;
        }
        if let Some(auth) = problems.check(self.common.auth(file.auth)) {
            config.auth = auth;
        }
        problems.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(
            &path,
            r#"
[kafka]
bootstrap = "file:9092"
properties = { "security.protocol" = "SASL_SSL" }

[gateway]
max_body_bytes = 2048
idempotency_window_s = 60
"#,
        )
        .unwrap();
        let config = GatewayArgs {
            common: CommonArgs {
                config: Some(path),
                kafka_bootstrap: Some("flag:9092".into()),
                kafka_properties: vec!["message.timeout.ms=2500".into()],
                ..CommonArgs::default()
            },
            idempotency_window_s: Some(30),
            ..GatewayArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "flag:9092");
        assert_eq!(
            config.kafka.properties.get("security.protocol").unwrap(),
            "SASL_SSL"
        );
        assert_eq!(
            config.kafka.properties.get("message.timeout.ms").unwrap(),
            "2500"
        );
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.idempotency.window, Duration::from_secs(30));
        assert_eq!(config.idempotency.capacity, 100_000);
        assert_eq!(config.http, SocketAddr::from(([127, 0, 0, 1], 7071)));
    }

    #[test]
    fn an_unknown_setting_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, "[gateway]\nmax_body = 5\n").unwrap();
        let error = GatewayArgs {
            common: CommonArgs {
                config: Some(path),
                ..CommonArgs::default()
            },
            ..GatewayArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(error.to_string().contains("max_body"), "{error}");
    }

    #[test]
    fn a_zero_body_limit_is_refused() {
        let error = GatewayArgs {
            max_body_bytes: Some(0),
            ..GatewayArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(error.to_string().contains("max_body_bytes"), "{error}");
    }
}
