//! The gateway's configuration: defaults, then an optional TOML file, then `RETRACE_*`
//! environment variables, then flags; each later source wins.

use std::net::SocketAddr;
use std::time::Duration;

use retrace_auth::AuthConfig;
use retrace_http::TlsFiles;
use retrace_sdk::TopicSpec;
pub use retrace_service::ConfigError;
use retrace_service::{
    CommonArgs, CommonConfig, CommonSections, DEFAULT_BOOTSTRAP, KafkaSection, LogSection,
    Problems, TopicsSection, serialize_ms,
};
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
    /// Kafka, the HTTP address, TLS, logging, `[topics]`, and who may publish (`[auth]`);
    /// read as the gateway's own (`config.kafka`).
    #[serde(flatten)]
    pub common: CommonConfig,
    /// Largest request body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    pub idempotency: IdempotencySettings,
    /// How long requests in flight at SIGTERM may take to be answered before the process
    /// stops anyway (`[gateway] shutdown_grace_ms`). A request cut off is not answered, so
    /// its client retries it.
    pub shutdown_grace: Duration,
}

retrace_service::service_config!(GatewayConfig);

impl GatewayConfig {
    /// The defaults, for a gateway publishing to `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        GatewayConfig {
            common: CommonConfig::new(bootstrap, SocketAddr::from(([127, 0, 0, 1], 7071))),
            max_body_bytes: 1 << 20,
            idempotency: IdempotencySettings {
                window: Duration::from_secs(600),
                capacity: 100_000,
            },
            shutdown_grace: Duration::from_secs(15),
        }
    }

    /// The topics the gateway creates when missing: Retrace's own (it publishes outcomes and
    /// audit records), and `[topics] extra`.
    pub fn topics_needed(&self) -> Vec<TopicSpec> {
        self.provisioning
            .retrace_topics(&self.auth.tokens_topic, [])
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
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    kafka: KafkaSection,
    tls: Option<TlsFiles>,
    gateway: FileGateway,
    log: LogSection,
    auth: AuthConfig,
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
        let FileConfig {
            kafka,
            tls,
            gateway: file,
            log,
            auth,
            topics,
        } = self.common.read_file()?;
        let mut problems = Problems::default();
        let mut config = GatewayConfig::new(DEFAULT_BOOTSTRAP);
        if let Some(grace) = file.shutdown_grace_ms {
            config.shutdown_grace = Duration::from_millis(grace);
        }
        let max_body = self.max_body_bytes.or(file.max_body_bytes);
        if let Some(max) = problems.at_least_one("gateway.max_body_bytes", max_body) {
            config.max_body_bytes = max;
        }
        let window = self.idempotency_window_s.or(file.idempotency_window_s);
        if let Some(window) = problems.at_least_one("gateway.idempotency_window_s", window) {
            config.idempotency.window = Duration::from_secs(window);
        }
        let capacity = self.idempotency_capacity.or(file.idempotency_capacity);
        if let Some(capacity) = problems.at_least_one("gateway.idempotency_capacity", capacity) {
            config.idempotency.capacity = capacity;
        }
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

    /// The flags of a gateway whose configuration file, in `dir`, holds `toml`.
    fn with_file(dir: &tempfile::TempDir, toml: &str) -> GatewayArgs {
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, toml).unwrap();
        GatewayArgs {
            common: CommonArgs {
                config: Some(path),
                ..CommonArgs::default()
            },
            ..GatewayArgs::default()
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = with_file(
            &dir,
            r#"
[kafka]
bootstrap = "file:9092"
properties = { "security.protocol" = "SASL_SSL" }

[gateway]
max_body_bytes = 2048
idempotency_window_s = 60
"#,
        );
        args.common.kafka_bootstrap = Some("flag:9092".into());
        args.common.kafka_properties = vec!["message.timeout.ms=2500".into()];
        args.idempotency_window_s = Some(30);
        let config = args.resolve().unwrap();
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
        let error = with_file(&dir, "[gateway]\nmax_body = 5\n")
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
