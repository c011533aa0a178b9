//! The settings every service has, resolved once: [`CommonConfig`] in each service's
//! configuration (its fields read as the service's own: `config.kafka`, `config.http`), laid
//! over the service's defaults from the file's shared sections ([`CommonSections`]) and the
//! flags by [`CommonArgs::layer`].

use std::net::SocketAddr;

use retrace_auth::AuthConfig;
use retrace_http::TlsFiles;
use retrace_sdk::{KafkaSettings, TopicSettings};
use retrace_telemetry::{LogFormat, LogSinks};
use serde::Serialize;

use crate::{CommonArgs, KafkaSection, LogSection, Problems, TopicsSection};

/// What every service's configuration holds, flattened into it: in `/v1/config`, in the
/// version hash and in reload diffs these are top-level settings, as the service's own.
#[derive(Debug, Clone, Serialize)]
pub struct CommonConfig {
    pub kafka: KafkaSettings,
    /// Address of the HTTP server (`--http`, `RETRACE_HTTP`, `[<service>] http`).
    pub http: SocketAddr,
    /// Serve HTTPS with these (`[tls]`, `--tls-cert`/`--tls-key`); plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// `[log.sinks]`: where each log category goes.
    pub log_sinks: LogSinks,
    /// `[auth]`: who may call the service.
    pub auth: AuthConfig,
    /// `[topics]`: how the topics it needs are created at start.
    pub provisioning: TopicSettings,
}

impl CommonConfig {
    /// The defaults of a service on `bootstrap` serving HTTP on `http`.
    pub fn new(bootstrap: impl Into<String>, http: SocketAddr) -> Self {
        CommonConfig {
            kafka: KafkaSettings::new(bootstrap),
            http,
            tls: None,
            log_format: LogFormat::Auto,
            log_filter: "info".to_owned(),
            log_sinks: LogSinks::default(),
            auth: AuthConfig::default(),
            provisioning: TopicSettings::default(),
        }
    }
}

/// The sections of a configuration file every service reads: `[kafka]`, `[tls]`, `[log]`,
/// `[auth]` and `[topics]`, as the service's file type parsed them.
#[derive(Debug, Default)]
pub struct CommonSections {
    pub kafka: KafkaSection,
    pub tls: Option<TlsFiles>,
    pub log: LogSection,
    pub auth: AuthConfig,
    pub topics: TopicsSection,
}

impl CommonSections {
    /// The sections, as a service's file type holds them.
    pub fn new(
        kafka: KafkaSection,
        tls: Option<TlsFiles>,
        log: LogSection,
        auth: AuthConfig,
        topics: TopicsSection,
    ) -> Self {
        CommonSections {
            kafka,
            tls,
            log,
            auth,
            topics,
        }
    }
}

impl CommonArgs {
    /// Lays the settings every service has over `config` (the service's defaults): `file`'s
    /// sections, then these flags (which clap already merged with the env). `http` is the
    /// address the service's own flag or file section gave, if any. Each problem is noted in
    /// `problems`, in this order: Kafka, logging, TLS, topics, authentication.
    pub fn layer(
        &self,
        config: &mut CommonConfig,
        file: CommonSections,
        http: Option<SocketAddr>,
        problems: &mut Problems,
    ) {
        if let Some(kafka) = problems.check(self.kafka(file.kafka, &[])) {
            config.kafka = kafka;
        }
        if let Some(http) = http {
            config.http = http;
        }
        let log = self.log(file.log, &mut config.log_format, &mut config.log_filter);
        if let Some(sinks) = problems.check(log) {
            config.log_sinks = sinks;
        }
        if let Some(tls) = problems.check(self.tls(file.tls)) {
            config.tls = tls;
        }
        if let Some(topics) = problems.check(self.topics(file.topics)) {
            config.provisioning = topics;
        }
        if let Some(auth) = problems.check(self.auth(file.auth)) {
            config.auth = auth;
        }
    }
}

/// Makes `$config`, a service's configuration with its [`CommonConfig`] in a field named
/// `common` and an inherent `topics_needed()`, a [`ServiceConfig`](crate::host::ServiceConfig):
/// it derefs to the common settings (so `config.kafka` reads as before), is
/// [`Reloadable`](crate::Reloadable) with its `[tls]`, and the host provisions its
/// `topics_needed()` at start.
#[macro_export]
macro_rules! service_config {
    ($config:ty) => {
        impl ::std::ops::Deref for $config {
            type Target = $crate::CommonConfig;

            fn deref(&self) -> &$crate::CommonConfig {
                &self.common
            }
        }

        impl ::std::ops::DerefMut for $config {
            fn deref_mut(&mut self) -> &mut $crate::CommonConfig {
                &mut self.common
            }
        }

        impl $crate::Reloadable for $config {
            fn tls(&self) -> ::std::option::Option<&$crate::TlsFiles> {
                self.common.tls.as_ref()
            }
        }

        impl $crate::host::ServiceConfig for $config {
            fn topics(&self) -> ::std::vec::Vec<$crate::TopicSpec> {
                self.topics_needed()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigError;

    #[derive(Serialize)]
    struct Service {
        #[serde(flatten)]
        common: CommonConfig,
        batch: usize,
    }

    #[test]
    fn the_common_settings_read_as_the_service_own() {
        let service = Service {
            common: CommonConfig::new("kafka:9092", ([127, 0, 0, 1], 7070).into()),
            batch: 5,
        };
        let value = serde_json::to_value(&service).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "auth",
                "batch",
                "http",
                "kafka",
                "log_filter",
                "log_format",
                "log_sinks",
                "provisioning",
                "tls"
            ]
        );
        assert_eq!(value["http"], "127.0.0.1:7070");
    }

    #[test]
    fn flags_win_over_the_file_and_every_problem_is_noted_in_order() {
        let args = CommonArgs {
            kafka_bootstrap: Some("flag:9092".into()),
            log: Some("debug".into()),
            tls_cert: Some("only.crt".into()),
            topics_partitions: Some(0),
            ..CommonArgs::default()
        };
        let file = CommonSections {
            kafka: KafkaSection {
                bootstrap: Some("file:9092".into()),
                ..KafkaSection::default()
            },
            log: LogSection {
                filter: Some("warn".into()),
                ..LogSection::default()
            },
            auth: AuthConfig {
                bootstrap_admin_sha256: Some("abc".into()),
                ..AuthConfig::default()
            },
            ..CommonSections::default()
        };
        let mut config = CommonConfig::new("default:9092", ([127, 0, 0, 1], 7070).into());
        let mut problems = Problems::default();
        let http = Some(([0, 0, 0, 0], 8080).into());
        args.layer(&mut config, file, http, &mut problems);
        assert_eq!(config.kafka.bootstrap_servers, "flag:9092");
        assert_eq!(config.log_filter, "debug");
        assert_eq!(config.http, ([0, 0, 0, 0], 8080).into());
        let error = problems.finish(()).unwrap_err();
        let fields: Vec<String> = error
            .problems()
            .iter()
            .map(|problem| match problem {
                ConfigError::Invalid { field, .. } => field.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(fields.len(), 3, "{fields:?}");
        assert_eq!(fields[..2], ["tls", "topics.partitions"]);
        assert!(
            fields[2].contains("auth.bootstrap_admin_sha256"),
            "{fields:?}"
        );
    }
}
