//! Connection settings shared by every Kafka client Retrace creates.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

/// Where Kafka is, and any librdkafka properties to pass through unchanged
/// (`security.protocol`, `sasl.*`, `ssl.*`, ...), so Retrace works against a secured cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub properties: BTreeMap<String, String>,
    /// How long a service's start-up steps retry what passes by itself (a leader being
    /// elected, a topic created a moment ago; see [`crate::retry_at_start`]) before the
    /// service gives up and exits with the step's error.
    #[serde(rename = "startup_deadline_ms", serialize_with = "serialize_ms")]
    pub startup_deadline: Duration,
    /// This process's name in the consumer groups of [`crate::consume`], making it a static
    /// member (`group.instance.id`): restarted, it gets its partitions back at once. Unique
    /// per process (a pod name, a replica number). `None`: a dynamic member. Read by
    /// `consume` only; the archive and the worker have settings of their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
}

/// The default [`KafkaSettings::startup_deadline`]: longer than a broker's fencing of a dead
/// peer (`broker.session.timeout.ms`, 9 s) plus a controller election, with room to spare.
pub const DEFAULT_STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Serializes a duration as whole milliseconds, as the configuration files write them
/// (`*_ms`).
pub fn serialize_ms<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "Kafka property {0:?} is not of the form `name=value`, e.g. `security.protocol=SASL_SSL`"
    )]
    NotAProperty(String),
}

impl KafkaSettings {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
            startup_deadline: DEFAULT_STARTUP_DEADLINE,
            group_instance_id: None,
        }
    }

    /// Makes [`crate::consume`] a static member of its group under `instance_id` (see
    /// [`KafkaSettings::group_instance_id`]); an empty id leaves it a dynamic member.
    pub fn with_group_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.group_instance_id = Some(instance_id.into()).filter(|id| !id.is_empty());
        self
    }

    /// Adds properties written as `name=value`.
    pub fn with_properties<'a>(
        mut self,
        properties: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, SettingsError> {
        for property in properties {
            let (name, value) = property
                .split_once('=')
                .filter(|(name, _)| !name.trim().is_empty())
                .ok_or_else(|| SettingsError::NotAProperty(property.to_owned()))?;
            self.properties
                .insert(name.trim().to_owned(), value.trim().to_owned());
        }
        Ok(self)
    }

    /// A client configuration with Retrace's `defaults`, then the user's properties on top.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (name, value) in defaults {
            config.set(*name, *value);
        }
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_properties_override_defaults() {
        let settings = KafkaSettings::new("localhost:9092")
            .with_properties(["security.protocol=SASL_SSL", "acks = 1"])
            .unwrap();
        let config = settings.client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
    }

    #[test]
    fn a_property_without_equals_is_refused() {
        let error = KafkaSettings::new("k:1")
            .with_properties(["sasl.mechanism"])
            .unwrap_err();
        assert!(error.to_string().contains("sasl.mechanism"));
    }

    /// librdkafka is built with OpenSSL and Cyrus SASL: the settings of a secured cluster
    /// (SCRAM or PLAIN over TLS, Kerberos) make a client instead of "not available at build
    /// time".
    #[test]
    fn ssl_and_sasl_settings_make_a_client() {
        let cases: [&[&str]; 3] = [
            &[
                "sasl.mechanism=SCRAM-SHA-512",
                "sasl.username=retrace",
                "sasl.password=s",
            ],
            &[
                "sasl.mechanism=PLAIN",
                "sasl.username=retrace",
                "sasl.password=s",
            ],
            &[
                "sasl.mechanism=GSSAPI",
                "sasl.kerberos.service.name=kafka",
                "sasl.kerberos.principal=retrace@EXAMPLE.GOV",
                "sasl.kerberos.keytab=/etc/retrace/retrace.keytab",
            ],
        ];
        for mechanism in cases {
            let settings = KafkaSettings::new("kafka.example.gov:9093")
                .with_properties(["security.protocol=SASL_SSL", "ssl.ca.location=probe"])
                .and_then(|s| s.with_properties(mechanism.iter().copied()))
                .unwrap();
            let created: Result<rdkafka::producer::BaseProducer, _> =
                settings.client_config(&[]).create();
            assert!(created.is_ok(), "{mechanism:?}: {:?}", created.err());
        }
    }
}
