//! The gateway's configuration: defaults, then an optional TOML file, then `RETRACE_*`
//! environment variables, then flags; each later source wins.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use retrace_sdk::KafkaSettings;
use retrace_telemetry::LogFormat;
use serde::Deserialize;

/// How long the gateway's producer waits for Kafka to acknowledge a message before the
/// request fails with 503. Shorter than the SDK's 30 s: an HTTP client should hear back
/// before its own timeout. Override with the Kafka property `message.timeout.ms`.
pub const DEFAULT_MESSAGE_TIMEOUT_MS: &str = "10000";

/// What the gateway remembers to answer a repeated request instead of publishing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySettings {
    /// How long a key (an `Idempotency-Key`, or an event id on a topic) is remembered after
    /// its first use.
    pub window: Duration,
    /// Most keys remembered, per kind (request keys; event ids); the oldest are forgotten
    /// first when full.
    pub capacity: usize,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub kafka: KafkaSettings,
    /// Address of the HTTP server.
    pub http: SocketAddr,
    /// Largest request body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    pub idempotency: IdempotencySettings,
    pub log_format: LogFormat,
    pub log_filter: String,
}

impl GatewayConfig {
    /// The defaults, for a gateway publishing to `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        let mut kafka = KafkaSettings::new(bootstrap);
        kafka.properties.insert(
            "message.timeout.ms".to_owned(),
            DEFAULT_MESSAGE_TIMEOUT_MS.to_owned(),
        );
        GatewayConfig {
            kafka,
            http: SocketAddr::from(([127, 0, 0, 1], 7071)),
            max_body_bytes: 1 << 20,
            idempotency: IdempotencySettings {
                window: Duration::from_secs(600),
                capacity: 100_000,
            },
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
        }
    }
}

/// Command-line flags; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GatewayArgs {
    /// TOML configuration file (see README for its sections).
    #[arg(long, env = "RETRACE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long, env = "RETRACE_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
    /// librdkafka property passed through, name=value (repeat, or comma-separate in the env).
    /// The gateway sets `message.timeout.ms=10000` unless given.
    #[arg(
        long = "kafka-property",
        env = "RETRACE_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,
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
    /// `json` or `text`.
    #[arg(long, env = "RETRACE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, `RUST_LOG` syntax, e.g. `info,retrace_gateway=debug`.
    #[arg(long, env = "RETRACE_LOG")]
    pub log: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(transparent)]
    Kafka(#[from] retrace_sdk::SettingsError),
    #[error("{field} must be {requirement}")]
    Invalid {
        field: &'static str,
        requirement: &'static str,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    kafka: FileKafka,
    #[serde(default)]
    gateway: FileGateway,
    #[serde(default)]
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKafka {
    bootstrap: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGateway {
    http: Option<SocketAddr>,
    max_body_bytes: Option<usize>,
    idempotency_window_s: Option<u64>,
    idempotency_capacity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    format: Option<LogFormat>,
    filter: Option<String>,
}

impl GatewayArgs {
    /// Layers defaults, the file, and these flags (which clap already merged with the env).
    pub fn resolve(self) -> Result<GatewayConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let bootstrap = self
            .kafka_bootstrap
            .or(file.kafka.bootstrap)
            .unwrap_or_else(|| "localhost:9092".to_owned());
        let mut config = GatewayConfig::new(bootstrap);
        config.kafka.properties.extend(file.kafka.properties);
        config.kafka = config
            .kafka
            .with_properties(self.kafka_properties.iter().map(String::as_str))?;
        if let Some(http) = self.http.or(file.gateway.http) {
            config.http = http;
        }
        if let Some(max) = self.max_body_bytes.or(file.gateway.max_body_bytes) {
            if max == 0 {
                return Err(ConfigError::Invalid {
                    field: "max_body_bytes",
                    requirement: "at least 1",
                });
            }
            config.max_body_bytes = max;
        }
        let window = self
            .idempotency_window_s
            .or(file.gateway.idempotency_window_s);
        if let Some(window) = window {
            if window == 0 {
                return Err(ConfigError::Invalid {
                    field: "idempotency_window_s",
                    requirement: "at least 1",
                });
            }
            config.idempotency.window = Duration::from_secs(window);
        }
        let capacity = self
            .idempotency_capacity
            .or(file.gateway.idempotency_capacity);
        if let Some(capacity) = capacity {
            if capacity == 0 {
                return Err(ConfigError::Invalid {
                    field: "idempotency_capacity",
                    requirement: "at least 1",
                });
            }
            config.idempotency.capacity = capacity;
        }
        if let Some(format) = self.log_format.or(file.log.format) {
            config.log_format = format;
        }
        if let Some(filter) = self.log.or(file.log.filter) {
            config.log_filter = filter;
        }
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
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
            config: Some(path),
            kafka_bootstrap: Some("flag:9092".into()),
            kafka_properties: vec!["message.timeout.ms=2500".into()],
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
    fn the_gateway_waits_less_for_kafka_than_the_sdk_by_default() {
        let config = GatewayArgs::default().resolve().unwrap();
        assert_eq!(
            config.kafka.properties.get("message.timeout.ms").unwrap(),
            DEFAULT_MESSAGE_TIMEOUT_MS
        );
    }

    #[test]
    fn an_unknown_setting_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, "[gateway]\nmax_body = 5\n").unwrap();
        let error = GatewayArgs {
            config: Some(path),
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
