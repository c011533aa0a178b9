//! The service kit every Retrace service (gateway, worker, archive) runs on: [`host`] runs it,
//! and its configuration is layered here the same way for all of them: defaults, then an
//! optional TOML file, then `RETRACE_*` environment variables, then flags; each later source
//! wins.
//!
//! A service flattens [`CommonArgs`] into its own clap arguments, reads its file type (which
//! embeds [`KafkaSection`], [`LogSection`] and [`TopicsSection`] as `[kafka]`, `[log]` and
//! `[topics]`) with
//! [`CommonArgs::read_file`], and layers the common settings with [`CommonArgs::kafka`] and
//! [`CommonArgs::log`] and [`CommonArgs::topics`]; its own settings it layers itself, noting every problem in
//! [`Problems`] so that all of them are reported at once.
//!
//! The settings every service has are one [`CommonConfig`], flattened into the service's
//! configuration (`service_config!`) and layered by [`CommonArgs::layer`] from the file's
//! [`CommonSections`].
//!
//! [`reload`] re-resolves the same layering on SIGHUP or a change of the file, and publishes
//! the result to the parts of a service that apply it without a restart.
//!
//! [`host`] runs a service: HTTP (with TLS reload), start-up, topics, `/v1/config`,
//! `/healthz`, `/metrics`, the reloader and the service's tasks, and shutdown.

mod binary;
mod common;
mod events;
pub mod host;
pub mod http;
pub mod reload;

use std::collections::BTreeMap;
use std::path::PathBuf;

use retrace_auth::{AuthConfig, AuthConfigError};
pub use retrace_sdk::serialize_ms;
use retrace_sdk::{KafkaSettings, TopicSettings};
use retrace_telemetry::{
    Category, FileSink, InternalEvent, LogFormat, LogSink, LogSinks, Rotation,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use binary::run_binary;
pub use common::{CommonConfig, CommonSections};
pub use events::ConsumerRecreated;
pub use host::{Host, Hosted, ServiceConfig, Startup};
pub use reload::{
    Loaded, ReloadOutcome, Reloadable, Reloader, Trigger, follow_auth, next_config, topic_set_hash,
};
/// For [`service_config!`]: what [`Reloadable`] and [`ServiceConfig`] name.
pub use retrace_http::TlsFiles;
pub use retrace_sdk::TopicSpec;

/// Kafka's address when nothing says otherwise.
pub const DEFAULT_BOOTSTRAP: &str = "localhost:9092";

/// The flags every service takes; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (see docs/configuration.md for its sections).
    #[arg(long, env = "RETRACE_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often the configuration file is checked for changes, in milliseconds; 0 reloads
    /// on SIGHUP only.
    #[arg(long, env = "RETRACE_CONFIG_POLL_MS")]
    pub config_poll_ms: Option<u64>,
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long, env = "RETRACE_KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
    /// librdkafka property passed through, name=value (repeat, or comma-separate in the env).
    #[arg(
        long = "kafka-property",
        env = "RETRACE_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,
    /// How long start-up steps retry Kafka's passing answers (a leader being elected, a
    /// topic just created) before the service exits, in milliseconds; default 60000.
    #[arg(long, env = "RETRACE_KAFKA_STARTUP_DEADLINE_MS")]
    pub kafka_startup_deadline_ms: Option<u64>,
    /// `json` or `text`.
    #[arg(long, env = "RETRACE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, `RUST_LOG` syntax, e.g. `info,retrace_archive=debug`.
    #[arg(long, env = "RETRACE_LOG")]
    pub log: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with `--tls-key`).
    #[arg(long, env = "RETRACE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (with `--tls-cert`).
    #[arg(long, env = "RETRACE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// SHA-256 (64 lowercase hex digits) of the bootstrap admin token; wins over
    /// `[auth] bootstrap_admin_sha256`.
    #[arg(long, env = "RETRACE_AUTH_BOOTSTRAP_ADMIN_SHA256")]
    pub auth_bootstrap_admin_sha256: Option<String>,
    /// Keys that sign and verify token records and audit events (hex, comma-separated, the
    /// current one first); replaces `[auth] signing_keys`. Prefer the environment (or
    /// `[auth] signing_key_file`): a flag's value shows in the process list.
    #[arg(long, env = "RETRACE_SIGNING_KEYS", hide_env_values = true)]
    pub signing_keys: Option<String>,
    /// Write `audit` log lines to this file (rotated) instead of stderr.
    #[arg(long, env = "RETRACE_LOG_AUDIT_FILE")]
    pub log_audit_file: Option<PathBuf>,
    /// Write `security` log lines to this file (rotated) instead of stderr.
    #[arg(long, env = "RETRACE_LOG_SECURITY_FILE")]
    pub log_security_file: Option<PathBuf>,
    /// Write `app` log lines to this file (rotated) instead of stderr.
    #[arg(long, env = "RETRACE_LOG_APP_FILE")]
    pub log_app_file: Option<PathBuf>,
    /// Write `debug` log lines to this file (rotated) instead of stderr.
    #[arg(long, env = "RETRACE_LOG_DEBUG_FILE")]
    pub log_debug_file: Option<PathBuf>,
    /// Rotation of every log file without its own: `never`, `hourly` or `daily`.
    #[arg(long, env = "RETRACE_LOG_ROTATION")]
    pub log_rotation: Option<Rotation>,
    /// Rotated log files kept, for every log file without its own setting.
    #[arg(long, env = "RETRACE_LOG_MAX_FILES")]
    pub log_max_files: Option<usize>,
    /// Create the topics the service needs when they are missing (`true` or `false`).
    #[arg(long, env = "RETRACE_TOPICS_CREATE")]
    pub topics_create: Option<bool>,
    /// Partitions of each topic created (the tokens topic always has 1).
    #[arg(long, env = "RETRACE_TOPICS_PARTITIONS")]
    pub topics_partitions: Option<i32>,
    /// Replication factor of each topic created. Default: the cluster's.
    #[arg(long, env = "RETRACE_TOPICS_REPLICATION")]
    pub topics_replication: Option<i32>,
    /// Further topics to create (comma-separated), e.g. your services' own.
    #[arg(long, env = "RETRACE_TOPICS_EXTRA", value_delimiter = ',')]
    pub topics_extra: Vec<String>,
    /// How long Kafka keeps the records of the extra topics created (`retention.ms`).
    /// Default: the cluster's.
    #[arg(long, env = "RETRACE_TOPICS_RETENTION_MS")]
    pub topics_retention_ms: Option<i64>,
}

/// `[kafka]` in a configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub bootstrap: Option<String>,
    pub startup_deadline_ms: Option<u64>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[log]` in a configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<LogFormat>,
    pub filter: Option<String>,
    /// `[log.sinks.<category>]`: where `debug`, `app`, `audit` and `security` lines go.
    #[serde(default)]
    pub sinks: SinksSection,
}

/// `[log.sinks]`: one optional sink per category; a category without one goes to stderr.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksSection {
    pub debug: Option<SinkSection>,
    pub app: Option<SinkSection>,
    pub audit: Option<SinkSection>,
    pub security: Option<SinkSection>,
}

/// `[log.sinks.audit]` and its like: a file, rotated; stderr without `file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    pub file: Option<PathBuf>,
    /// `never`, `hourly` or `daily` (the default).
    pub rotation: Option<Rotation>,
    /// Rotated files kept; all when unset.
    pub max_files: Option<usize>,
}

/// `[topics]` in a configuration file: how the topics the service needs are created.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSection {
    pub create: Option<bool>,
    pub partitions: Option<i32>,
    pub replication: Option<i32>,
    pub extra: Option<Vec<String>>,
    pub retention_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `field` is where in the file serde stopped, e.g. `archive.batch_recs`, or `syntax`.
    #[error("configuration file {path} is not valid: {field}: {source}")]
    Parse {
        path: PathBuf,
        field: String,
        source: Box<toml::de::Error>,
    },
    #[error(transparent)]
    Kafka(#[from] retrace_sdk::SettingsError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// `field` is the setting's path in the file, e.g. `queues.certificates.concurrency`.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// More than one of the above, in the order they were found.
    #[error("{} problems in the configuration: {}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ConfigError {
    /// Each problem on its own, `Several` taken apart.
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(errors) => errors.iter().flat_map(ConfigError::problems).collect(),
            one => vec![one],
        }
    }
}

/// The problems found while layering a configuration, collected so that one refusal names
/// them all instead of one per attempt.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    /// `result`'s value, or `None` once its error is noted.
    pub fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.0.push(error)).ok()
    }

    /// `value` if given and not zero; a zero is noted as a problem at `field`.
    pub fn at_least_one<N: PartialEq + Default>(
        &mut self,
        field: &str,
        value: Option<N>,
    ) -> Option<N> {
        self.check(at_least_one(field, value?))
    }

    /// `value` when nothing was noted, else the problem (or [`ConfigError::Several`]).
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        let mut errors = self.0;
        match errors.len() {
            0 => Ok(value),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Several(errors)),
        }
    }
}

impl CommonArgs {
    /// A [`Reloader`] of the configuration `resolve` layers from these arguments, watching
    /// the file as `--config-poll-ms` says.
    pub fn reloader<C: Reloadable>(
        &self,
        service: &'static str,
        resolve: impl Fn() -> Result<C, ConfigError> + Send + Sync + 'static,
    ) -> Result<Reloader<C>, ConfigError> {
        let poll = match self.config_poll_ms {
            Some(0) => None,
            Some(ms) => Some(std::time::Duration::from_millis(ms)),
            None => Some(reload::POLL_INTERVAL),
        };
        Ok(Reloader::new(service, self.config.clone(), resolve)?.poll_every(poll))
    }

    /// The file named by `--config`, or `F::default()` when there is none.
    pub fn read_file<F: DeserializeOwned + Default>(&self) -> Result<F, ConfigError> {
        let Some(path) = &self.config else {
            return Ok(F::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let parse_error = |field: String, source| ConfigError::Parse {
            path: path.clone(),
            field,
            source: Box::new(source),
        };
        let deserializer =
            toml::Deserializer::parse(&text).map_err(|e| parse_error("syntax".to_owned(), e))?;
        serde_path_to_error::deserialize(deserializer)
            .map_err(|e| parse_error(e.path().to_string(), e.into_inner()))
    }

    /// Where Kafka is (flag or env, else the file, else [`DEFAULT_BOOTSTRAP`]), and its
    /// properties: the service's `defaults`, then the file's, then the flags'.
    pub fn kafka(
        &self,
        file: KafkaSection,
        defaults: &[(&str, &str)],
    ) -> Result<KafkaSettings, ConfigError> {
        let bootstrap = self
            .kafka_bootstrap
            .clone()
            .or(file.bootstrap)
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        let mut kafka = KafkaSettings::new(bootstrap);
        if let Some(ms) = self.kafka_startup_deadline_ms.or(file.startup_deadline_ms) {
            kafka.startup_deadline = std::time::Duration::from_millis(ms);
        }
        kafka.properties.extend(
            defaults
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        kafka.properties.extend(file.properties);
        Ok(kafka.with_properties(self.kafka_properties.iter().map(String::as_str))?)
    }

    /// The certificate and key to serve HTTPS with: the flags', else the file's `[tls]`;
    /// `None` serves plain HTTP.
    pub fn tls(&self, file: Option<TlsFiles>) -> Result<Option<TlsFiles>, ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None) => Ok(file),
            _ => Err(invalid(
                "tls",
                "both a certificate and a key (--tls-cert with --tls-key, or RETRACE_TLS_CERT \
                 with RETRACE_TLS_KEY)",
            )),
        }
    }

    /// The file's `[auth]`, with the bootstrap admin hash from the flag or env if given,
    /// validated.
    pub fn auth(&self, mut file: AuthConfig) -> Result<AuthConfig, ConfigError> {
        if let Some(hash) = &self.auth_bootstrap_admin_sha256 {
            file.bootstrap_admin_sha256 = Some(hash.clone());
        }
        if let Some(keys) = &self.signing_keys {
            file.signing_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .map(str::to_owned)
                .collect();
        }
        file.validate()?;
        Ok(file)
    }

    /// `[topics]` over [`TopicSettings::default`], then the flags; each count is at least 1
    /// and each extra topic a valid name.
    pub fn topics(&self, file: TopicsSection) -> Result<TopicSettings, ConfigError> {
        let mut problems = Problems::default();
        let mut topics = TopicSettings::default();
        if let Some(create) = self.topics_create.or(file.create) {
            topics.create = create;
        }
        let partitions = self.topics_partitions.or(file.partitions);
        if let Some(partitions) = problems.check(positive("topics.partitions", partitions)) {
            topics.partitions = partitions.unwrap_or(topics.partitions);
        }
        let replication = self.topics_replication.or(file.replication);
        topics.replication = problems
            .check(positive("topics.replication", replication))
            .flatten();
        topics.extra = Some(self.topics_extra.clone())
            .filter(|extra| !extra.is_empty())
            .or(file.extra)
            .unwrap_or_default();
        let retention = self.topics_retention_ms.or(file.retention_ms);
        topics.retention_ms = problems
            .check(positive("topics.retention_ms", retention))
            .flatten();
        for (index, topic) in topics.extra.iter().enumerate() {
            problems.check(
                retrace_sdk::check_topic_name(topic)
                    .map_err(|e| wrong(&format!("topics.extra[{index}]"), e.to_string())),
            );
        }
        problems.finish(topics)
    }

    /// Each log category's sink: the flags' file, else the file's `[log.sinks.<category>]`,
    /// else stderr; rotation and files kept from the sink's section, else the flags, else daily
    /// and all.
    pub fn log_sinks(&self, file: SinksSection) -> Result<LogSinks, ConfigError> {
        let mut problems = Problems::default();
        let mut sinks = LogSinks::default();
        let sections = [
            (Category::Debug, file.debug, &self.log_debug_file),
            (Category::App, file.app, &self.log_app_file),
            (Category::Audit, file.audit, &self.log_audit_file),
            (Category::Security, file.security, &self.log_security_file),
        ];
        for (category, section, flag) in sections {
            let section = section.unwrap_or_default();
            let Some(path) = flag.clone().or(section.file) else {
                continue;
            };
            let field = format!("log.sinks.{}.max_files", category.name());
            let max_files = problems.at_least_one(&field, section.max_files.or(self.log_max_files));
            if path.file_name().is_none() {
                problems.check::<()>(Err(wrong(
                    &format!("log.sinks.{}.file", category.name()),
                    format!("{} names no file", path.display()),
                )));
                continue;
            }
            *sinks.sink_mut(category) = LogSink::File(FileSink {
                path,
                rotation: section.rotation.or(self.log_rotation).unwrap_or_default(),
                max_files,
            });
        }
        problems.finish(sinks)
    }

    /// Overrides the service's log defaults with the file's, then the flags'; returns each
    /// category's sink ([`log_sinks`](Self::log_sinks)).
    pub fn log(
        &self,
        file: LogSection,
        format: &mut LogFormat,
        filter: &mut String,
    ) -> Result<LogSinks, ConfigError> {
        if let Some(chosen) = self.log_format.or(file.format) {
            *format = chosen;
        }
        if let Some(chosen) = self.log.clone().or(file.filter) {
            *filter = chosen;
        }
        self.log_sinks(file.sinks)
    }
}

/// The environment variables a service whose flags are `A` reads, e.g.
/// `RETRACE_KAFKA_BOOTSTRAP`.
pub fn env_vars<A: clap::Args>() -> Vec<String> {
    A::augment_args(clap::Command::new("service"))
        .get_arguments()
        .filter_map(|arg| Some(arg.get_env()?.to_str()?.to_owned()))
        .collect()
}

/// Of `names`, the `RETRACE_*` ones a service whose flags are `A` does not read: clap
/// ignores them, so a misspelt variable would otherwise be silently without effect.
pub fn unknown_env_vars<A: clap::Args>(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let known = env_vars::<A>();
    names
        .into_iter()
        .filter(|name| name.starts_with("RETRACE_") && !known.contains(name))
        .collect()
}

/// Logs a warning for each `RETRACE_*` variable of this process that `service` (whose flags
/// are `A`) does not read. Call it once logging is set up.
pub fn warn_unknown_env_vars<A: clap::Args>(service: &str) {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for name in unknown_env_vars::<A>(names) {
        events::UnknownEnvVar {
            name: &name,
            service,
        }
        .emit();
    }
}

/// `value` if it is absent or above zero.
fn positive<N: PartialOrd + From<u8>>(
    field: &str,
    value: Option<N>,
) -> Result<Option<N>, ConfigError> {
    match value {
        Some(count) if count < N::from(1) => Err(invalid(field, "at least 1")),
        other => Ok(other),
    }
}

/// `value`, unless it is zero.
pub fn at_least_one<N: PartialEq + Default>(field: &str, value: N) -> Result<N, ConfigError> {
    if value == N::default() {
        return Err(invalid(field, "at least 1"));
    }
    Ok(value)
}

/// The error for a setting at `field` that is not `requirement`.
pub fn invalid(field: &str, requirement: impl std::fmt::Display) -> ConfigError {
    wrong(field, format!("must be {requirement}"))
}

/// The error for a setting at `field` with `problem` (a sentence saying what is wrong).
pub fn wrong(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        kafka: KafkaSection,
        #[serde(default)]
        log: LogSection,
        tls: Option<TlsFiles>,
        #[serde(default)]
        topics: TopicsSection,
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let (_dir, path) = file(
            r#"
[kafka]
bootstrap = "file:9092"
properties = { "security.protocol" = "SASL_SSL", "linger.ms" = "20" }

[log]
format = "text"
filter = "debug"
"#,
        );
        let args = CommonArgs {
            config: Some(path),
            kafka_properties: vec!["linger.ms=1".into()],
            log: Some("warn".into()),
            ..CommonArgs::default()
        };
        let parsed: File = args.read_file().unwrap();
        let kafka = args
            .kafka(parsed.kafka, &[("linger.ms", "5"), ("acks", "all")])
            .unwrap();
        assert_eq!(kafka.bootstrap_servers, "file:9092");
        assert_eq!(kafka.properties["linger.ms"], "1");
        assert_eq!(kafka.properties["acks"], "all");
        assert_eq!(kafka.properties["security.protocol"], "SASL_SSL");
        let (mut format, mut filter) = (LogFormat::Json, "info".to_owned());
        let sinks = args.log(parsed.log, &mut format, &mut filter).unwrap();
        assert_eq!(sinks, LogSinks::default());
        assert_eq!((format, filter.as_str()), (LogFormat::Text, "warn"));
    }

    #[test]
    fn without_anything_kafka_is_local() {
        let args = CommonArgs::default();
        let parsed: File = args.read_file().unwrap();
        let kafka = args.kafka(parsed.kafka, &[]).unwrap();
        assert_eq!(kafka.bootstrap_servers, DEFAULT_BOOTSTRAP);
    }

    #[test]
    fn a_bad_file_is_named_with_its_problem() {
        let (_dir, path) = file("[kafka]\nbootstrp = \"x\"\n");
        let args = CommonArgs {
            config: Some(path.clone()),
            ..CommonArgs::default()
        };
        let error = args.read_file::<File>().unwrap_err().to_string();
        assert!(error.contains("bootstrp"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        let missing = CommonArgs {
            config: Some(path.with_file_name("absent.toml")),
            ..CommonArgs::default()
        };
        assert!(matches!(
            missing.read_file::<File>(),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn zero_is_refused_by_name() {
        assert_eq!(at_least_one("batch_records", 5_usize).unwrap(), 5);
        let error = at_least_one("batch_records", 0_usize).unwrap_err();
        assert_eq!(error.to_string(), "batch_records: must be at least 1");
    }

    #[test]
    fn a_bad_file_names_the_setting_at_fault() {
        let (_dir, path) = file("[log]\nformat = \"xml\"\n");
        let args = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let error = args.read_file::<File>().unwrap_err();
        assert!(
            matches!(&error, ConfigError::Parse { field, .. } if field == "log.format"),
            "{error}"
        );
    }

    #[test]
    fn every_problem_is_kept_in_order() {
        let mut problems = Problems::default();
        assert_eq!(problems.check(at_least_one("a", 1)), Some(1));
        assert_eq!(problems.check(at_least_one("b", 0)), None);
        assert_eq!(problems.check(at_least_one("c", 0)), None);
        let error = problems.finish(()).unwrap_err();
        let lines: Vec<String> = error.problems().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines, ["b: must be at least 1", "c: must be at least 1"]);
        assert!(Problems::default().finish(7).is_ok());
    }

    #[test]
    fn the_bootstrap_hash_from_the_environment_wins_and_is_checked() {
        let hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let args = CommonArgs {
            auth_bootstrap_admin_sha256: Some(hash.into()),
            ..CommonArgs::default()
        };
        let auth = args.auth(AuthConfig::default()).unwrap();
        assert_eq!(auth.bootstrap_admin_sha256.as_deref(), Some(hash));
        let bad = CommonArgs {
            auth_bootstrap_admin_sha256: Some("abc".into()),
            ..CommonArgs::default()
        };
        let error = bad.auth(AuthConfig::default()).unwrap_err().to_string();
        assert!(error.contains("auth.bootstrap_admin_sha256"), "{error}");
    }

    #[test]
    fn a_misspelt_variable_is_told_from_the_ones_read() {
        let read = env_vars::<CommonArgs>();
        assert!(
            read.contains(&"RETRACE_KAFKA_BOOTSTRAP".to_owned()),
            "{read:?}"
        );
        let unknown = unknown_env_vars::<CommonArgs>(
            ["RETRACE_KAFKA_BOOTSRAP", "RETRACE_LOG", "PATH"].map(str::to_owned),
        );
        assert_eq!(unknown, ["RETRACE_KAFKA_BOOTSRAP"]);
    }

    #[test]
    fn topics_come_from_the_flags_else_the_file_and_bad_values_are_named() {
        let (_dir, path) = file("[topics]\npartitions = 6\nreplication = 3\nextra = [\"a\"]\n");
        let mut args = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let from_file = |args: &CommonArgs| args.read_file::<File>().unwrap().topics;
        let topics = args.topics(from_file(&args)).unwrap();
        assert_eq!(
            (topics.create, topics.partitions, topics.replication),
            (true, 6, Some(3))
        );
        assert_eq!(topics.extra, ["a"]);
        args.topics_partitions = Some(12);
        args.topics_create = Some(false);
        let topics = args.topics(from_file(&args)).unwrap();
        assert_eq!((topics.create, topics.partitions), (false, 12));
        args.topics_partitions = Some(0);
        args.topics_extra = vec!["bad topic".into()];
        let error = args.topics(from_file(&args)).unwrap_err();
        let lines: Vec<String> = error.problems().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "topics.partitions: must be at least 1");
        assert!(lines[1].starts_with("topics.extra[0]: "), "{lines:?}");
        assert_eq!(
            CommonArgs::default()
                .topics(TopicsSection::default())
                .unwrap(),
            TopicSettings::default()
        );
    }

    #[test]
    fn log_sinks_take_rotation_from_the_file_and_files_from_the_flags() {
        let (_dir, path) = file(
            "[log.sinks.audit]\nfile = \"/var/log/retrace/audit.log\"\nrotation = \"hourly\"\n\
             max_files = 48\n\n[log.sinks.security]\nfile = \"/var/log/retrace/security.log\"\n",
        );
        let args = CommonArgs {
            config: Some(path),
            log_app_file: Some("/var/log/retrace/app.log".into()),
            log_max_files: Some(7),
            ..CommonArgs::default()
        };
        let parsed: File = args.read_file().unwrap();
        let (mut format, mut filter) = (LogFormat::Auto, "info".to_owned());
        let sinks = args.log(parsed.log, &mut format, &mut filter).unwrap();
        let sink = |path: &str, rotation, max_files| {
            LogSink::File(FileSink {
                path: path.into(),
                rotation,
                max_files: Some(max_files),
            })
        };
        assert_eq!(
            sinks.audit,
            sink("/var/log/retrace/audit.log", Rotation::Hourly, 48)
        );
        assert_eq!(
            sinks.security,
            sink("/var/log/retrace/security.log", Rotation::Daily, 7)
        );
        assert_eq!(
            sinks.app,
            sink("/var/log/retrace/app.log", Rotation::Daily, 7)
        );
        assert_eq!(sinks.debug, LogSink::Stderr);
    }

    #[test]
    fn a_bad_log_sink_is_refused_naming_its_field() {
        let (_dir, path) = file("[log.sinks.audit]\nfile = \"a.log\"\nrotation = \"weekly\"\n");
        let args = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let error = args.read_file::<File>().unwrap_err();
        assert!(
            matches!(&error, ConfigError::Parse { field, .. } if field == "log.sinks.audit.rotation"),
            "{error}"
        );
        let (_dir, path) = file("[log.sinks.security]\nfile = \"s.log\"\nmax_files = 0\n");
        let args = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let parsed: File = args.read_file().unwrap();
        let error = args.log_sinks(parsed.log.sinks).unwrap_err();
        assert_eq!(
            error.to_string(),
            "log.sinks.security.max_files: must be at least 1"
        );
        let error = args
            .log_sinks(SinksSection {
                app: Some(SinkSection {
                    file: Some("/var/log/..".into()),
                    ..SinkSection::default()
                }),
                ..SinksSection::default()
            })
            .unwrap_err();
        assert!(
            error.to_string().starts_with("log.sinks.app.file: "),
            "{error}"
        );
    }

    #[test]
    fn tls_comes_from_the_flags_else_the_file_and_needs_both_halves() {
        let (_dir, path) = file("[tls]\ncert = \"file.crt\"\nkey = \"file.key\"\n");
        let mut args = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let from_file = args.read_file::<File>().unwrap().tls;
        assert_eq!(
            args.tls(from_file.clone()).unwrap().unwrap().cert,
            PathBuf::from("file.crt")
        );
        args.tls_cert = Some("flag.crt".into());
        let error = args.tls(from_file.clone()).unwrap_err().to_string();
        assert!(error.starts_with("tls: must be both"), "{error}");
        args.tls_key = Some("flag.key".into());
        let chosen = args.tls(from_file).unwrap().unwrap();
        assert_eq!(
            (chosen.cert, chosen.key),
            ("flag.crt".into(), "flag.key".into())
        );
        assert_eq!(CommonArgs::default().tls(None).unwrap(), None);
    }
}
