//! Layered configuration every Retrace service shares: defaults, then an optional TOML file,
//! then `RETRACE_*` environment variables, then flags; each later source wins.
//!
//! A service flattens [`CommonArgs`] into its own clap arguments, reads its file type (which
//! embeds [`KafkaSection`] and [`LogSection`] as `[kafka]` and `[log]`) with
//! [`CommonArgs::read_file`], and layers the common settings with [`CommonArgs::kafka`] and
//! [`CommonArgs::log`]; its own settings it layers itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use retrace_http::TlsFiles;
use retrace_sdk::KafkaSettings;
use retrace_telemetry::LogFormat;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Kafka's address when nothing says otherwise.
pub const DEFAULT_BOOTSTRAP: &str = "localhost:9092";

/// The flags every service takes; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (see README for its sections).
    #[arg(long, env = "RETRACE_CONFIG")]
    pub config: Option<PathBuf>,
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
}

/// `[kafka]` in a configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub bootstrap: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[log]` in a configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<LogFormat>,
    pub filter: Option<String>,
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
    /// `field` is the setting's path in the file, e.g. `queues.certificates.concurrency`.
    #[error("{field} must be {requirement}")]
    Invalid { field: String, requirement: String },
}

impl CommonArgs {
    /// The file named by `--config`, or `F::default()` when there is none.
    pub fn read_file<F: DeserializeOwned + Default>(&self) -> Result<F, ConfigError> {
        let Some(path) = &self.config else {
            return Ok(F::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        })
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

    /// Overrides the service's log defaults with the file's, then the flags'.
    pub fn log(&self, file: LogSection, format: &mut LogFormat, filter: &mut String) {
        if let Some(chosen) = self.log_format.or(file.format) {
            *format = chosen;
        }
        if let Some(chosen) = self.log.clone().or(file.filter) {
            *filter = chosen;
        }
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
pub fn invalid(field: &str, requirement: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        requirement: requirement.into(),
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
        args.log(parsed.log, &mut format, &mut filter);
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
        assert_eq!(error.to_string(), "batch_records must be at least 1");
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
        assert!(error.starts_with("tls must be both"), "{error}");
        args.tls_key = Some("flag.key".into());
        let chosen = args.tls(from_file).unwrap().unwrap();
        assert_eq!(
            (chosen.cert, chosen.key),
            ("flag.crt".into(), "flag.key".into())
        );
        assert_eq!(CommonArgs::default().tls(None).unwrap(), None);
    }
}
