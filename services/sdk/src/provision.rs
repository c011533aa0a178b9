//! Topic provisioning: the topics a service needs, created when missing and left alone when
//! they exist, and the drift between what exists and what the configuration asks for.
//!
//! Existing topics are never altered: changing a topic's partition count reshuffles which
//! partition a transaction's key lands on, which is a decision for an operator, not for a
//! service starting up. So drift is reported (at start and by `retrace topics check`), not
//! fixed.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use retrace_proto::{AUDIT_TOPIC, OUTCOMES_TOPIC};
use retrace_telemetry::InternalEvent;

use crate::KafkaSettings;
use crate::events::{TopicCreated, TopicDrifted, TopicNotCreated, TopicsNotChecked};
use crate::startup::{is_transient, retry_at_start};

/// How long one admin or metadata request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// `[topics]`: how the topics a service needs are created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicSettings {
    /// Create missing topics at start; when false, drift (missing topics included) is only
    /// reported.
    pub create: bool,
    pub partitions: i32,
    /// `None`: the cluster's `default.replication.factor`, and replication is not checked.
    pub replication: Option<i32>,
    /// Further topics to create, e.g. the topics of the services publishing through Retrace.
    pub extra: Vec<String>,
    /// `retention.ms` of the extra topics created; `None`: the cluster's default. Retrace's
    /// own topics keep the cluster's (the change log and audit topic are read whole by every
    /// new archive replica).
    pub retention_ms: Option<i64>,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            create: true,
            partitions: 3,
            replication: None,
            extra: Vec::new(),
            retention_ms: None,
        }
    }
}

/// One topic as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: Option<i32>,
    /// Topic configuration entries, e.g. `cleanup.policy=compact`.
    pub config: Vec<(&'static str, String)>,
}

impl TopicSettings {
    /// `names` (then [`extra`](Self::extra)) with the configured partitions and replication.
    pub fn specs<'a>(&'a self, names: impl IntoIterator<Item = &'a str>) -> Vec<TopicSpec> {
        let mut specs: Vec<TopicSpec> = Vec::new();
        for name in names {
            if !specs.iter().any(|spec| spec.name == name) {
                specs.push(self.spec(name));
            }
        }
        for name in &self.extra {
            if !specs.iter().any(|spec| spec.name == *name) {
                let config = self
                    .retention_ms
                    .map(|ms| ("retention.ms", ms.to_string()))
                    .into_iter()
                    .collect();
                specs.push(TopicSpec {
                    config,
                    ..self.spec(name)
                });
            }
        }
        specs
    }

    fn spec(&self, name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_owned(),
            partitions: self.partitions,
            replication: self.replication,
            config: Vec::new(),
        }
    }

    /// The topics every Retrace service uses (the API tokens topic named `tokens_topic`,
    /// outcomes, audit), then the service's `own`, then the extra ones.
    pub fn retrace_topics<'a>(
        &'a self,
        tokens_topic: &str,
        own: impl IntoIterator<Item = &'a str>,
    ) -> Vec<TopicSpec> {
        let mut specs = vec![self.compacted_log(tokens_topic)];
        for spec in self.specs([OUTCOMES_TOPIC, AUDIT_TOPIC].into_iter().chain(own)) {
            if spec.name != tokens_topic {
                specs.push(spec);
            }
        }
        specs
    }

    /// A compacted one-partition topic (API tokens: the latest record per id is the truth,
    /// and the registry reads it whole, in order).
    pub fn compacted_log(&self, name: &str) -> TopicSpec {
        TopicSpec {
            partitions: 1,
            config: vec![("cleanup.policy", "compact".to_owned())],
            ..self.spec(name)
        }
    }
}

/// How an existing or missing topic differs from its [`TopicSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    Missing {
        topic: String,
    },
    Partitions {
        topic: String,
        expected: i32,
        actual: i32,
    },
    Replication {
        topic: String,
        expected: i32,
        actual: i32,
    },
}

impl Drift {
    pub fn topic(&self) -> &str {
        match self {
            Drift::Missing { topic }
            | Drift::Partitions { topic, .. }
            | Drift::Replication { topic, .. } => topic,
        }
    }

    /// Every [`kind`](Self::kind).
    pub const KINDS: [&'static str; 3] = ["missing", "partitions", "replication"];

    /// `missing`, `partitions` or `replication`: the metric label.
    pub fn kind(&self) -> &'static str {
        let [missing, partitions, replication] = Drift::KINDS;
        match self {
            Drift::Missing { .. } => missing,
            Drift::Partitions { .. } => partitions,
            Drift::Replication { .. } => replication,
        }
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing { topic } => write!(f, "{topic}: missing"),
            Drift::Partitions {
                topic,
                expected,
                actual,
            } => write!(
                f,
                "{topic}: {actual} partitions, configured {expected} (left as is: changing it \
                 moves keys to other partitions)"
            ),
            Drift::Replication {
                topic,
                expected,
                actual,
            } => write!(
                f,
                "{topic}: replication factor {actual}, configured {expected}"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot read the topics of Kafka at {bootstrap}: {source}; check that it is reachable")]
    Metadata {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot create an admin client for Kafka at {bootstrap}: {source}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
    #[error(
        "cannot create topics {topics} on Kafka at {bootstrap} yet: {source}; check that a \
         controller is elected and the brokers are reachable"
    )]
    Create {
        topics: String,
        bootstrap: String,
        source: Box<KafkaError>,
    },
}

impl ProvisionError {
    /// Whether trying again shortly may succeed: Kafka unreachable for now, a controller
    /// being elected, a request timed out.
    pub fn is_transient(&self) -> bool {
        match self {
            ProvisionError::Metadata { source, .. } => is_transient(source),
            ProvisionError::Create { source, .. } => is_transient(source),
            ProvisionError::Client { .. } => false,
        }
    }
}

/// What [`ensure_topics`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// Created now (or by someone else meanwhile: a race another service won is no error).
    pub created: Vec<String>,
    /// Missing and not created, with the broker's reason.
    pub failed: Vec<(String, String)>,
    /// Existing topics that differ from their spec, left as they are.
    pub drift: Vec<Drift>,
}

/// Compares `specs` with the topics Kafka has.
pub async fn check_topics(
    kafka: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<Vec<Drift>, ProvisionError> {
    let kafka = kafka.clone();
    let (_, existing) = tokio::task::spawn_blocking(move || existing_topics(&kafka))
        .await
        .expect("reading metadata does not panic")?;
    Ok(drift(specs, &existing))
}

/// Creates the topics of `specs` that do not exist (unless `settings.create` is false), and
/// reports every drift of the existing ones, each as a typed event (`service` names who
/// asked). Failing to create a topic is reported, not fatal: a cluster that forbids it may
/// have the topic created by its operator later, and the service's clients wait for it.
pub async fn ensure_topics(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    specs: &[TopicSpec],
    service: &str,
) -> Result<Provisioned, ProvisionError> {
    let mut provisioned = Provisioned::default();
    let mut missing = Vec::new();
    for drift in check_topics(kafka, specs).await? {
        match drift {
            Drift::Missing { topic } if settings.create => missing.push(topic),
            other => provisioned.drift.push(other),
        }
    }
    let mut not_yet = None;
    if !missing.is_empty() {
        let to_create: Vec<&TopicSpec> = specs
            .iter()
            .filter(|spec| missing.contains(&spec.name))
            .collect();
        not_yet = create(kafka, &to_create, &mut provisioned).await?;
    }
    for topic in &provisioned.created {
        TopicCreated { topic, service }.emit();
    }
    for (topic, reason) in &provisioned.failed {
        TopicNotCreated {
            topic,
            service,
            reason,
        }
        .emit();
    }
    for drift in &provisioned.drift {
        TopicDrifted { drift, service }.emit();
    }
    match not_yet {
        Some(error) => Err(error),
        None => Ok(provisioned),
    }
}

/// [`ensure_topics`], tried again while Kafka answers something passing (unreachable, a
/// controller being elected) until [`KafkaSettings::startup_deadline`].
pub async fn ensure_topics_at_start(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    specs: &[TopicSpec],
    service: &str,
) -> Result<Provisioned, ProvisionError> {
    crate::events::register_provisioning_metrics(service);
    retry_at_start(
        "create the topics it needs",
        kafka.startup_deadline,
        ProvisionError::is_transient,
        || ensure_topics(kafka, settings, specs, service),
    )
    .await
}

/// [`ensure_topics_at_start`] for a service starting: Kafka unreachable past the deadline is
/// reported, not fatal, since the service's clients keep trying to connect anyway.
pub async fn provision_at_start(
    kafka: &KafkaSettings,
    settings: &TopicSettings,
    specs: &[TopicSpec],
    service: &str,
) {
    if let Err(error) = ensure_topics_at_start(kafka, settings, specs, service).await {
        TopicsNotChecked {
            service,
            error: &error,
        }
        .emit();
    }
}

/// Creates `specs`, recording what was created and what Kafka refused in `provisioned`;
/// what failed for a passing reason is not recorded but returned, to be tried again.
async fn create(
    kafka: &KafkaSettings,
    specs: &[&TopicSpec],
    provisioned: &mut Provisioned,
) -> Result<Option<ProvisionError>, ProvisionError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .client_config(&[])
            .create()
            .map_err(|source| ProvisionError::Client {
                bootstrap: kafka.bootstrap_servers.clone(),
                source,
            })?;
    let new_topics: Vec<NewTopic> = specs
        .iter()
        .map(|spec| {
            // -1: the cluster's default replication factor.
            let replication = TopicReplication::Fixed(spec.replication.unwrap_or(-1));
            spec.config.iter().fold(
                NewTopic::new(&spec.name, spec.partitions, replication),
                |topic, (name, value)| topic.set(name, value),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let mut not_yet: Vec<String> = Vec::new();
    let mut cause = None;
    match admin.create_topics(&new_topics, &options).await {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        provisioned.created.push(topic);
                    }
                    Err((topic, code)) if is_transient(&KafkaError::AdminOp(code)) => {
                        not_yet.push(topic);
                        cause = Some(KafkaError::AdminOp(code));
                    }
                    Err((topic, code)) => provisioned.failed.push((topic, code.to_string())),
                }
            }
        }
        // No answer at all is final here: a broker without the CreateTopics API (the
        // in-process mock cluster) never answers, and Kafka being unreachable already failed
        // the metadata read before this.
        Err(error)
            if is_transient(&error)
                && error != KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) =>
        {
            not_yet.extend(specs.iter().map(|spec| spec.name.clone()));
            cause = Some(error);
        }
        // The whole request failed (e.g. a broker without the CreateTopics API): every topic
        // is still missing, for the same reason.
        Err(error) => provisioned.failed.extend(
            specs
                .iter()
                .map(|spec| (spec.name.clone(), error.to_string())),
        ),
    }
    Ok(cause.map(|source| ProvisionError::Create {
        topics: not_yet.join(", "),
        bootstrap: kafka.bootstrap_servers.clone(),
        source: Box::new(source),
    }))
}

/// What Kafka holds of `specs`' topics: how many brokers the cluster has, and each existing
/// topic's name, partition count and replication factor, in `specs`' order.
pub async fn topic_layout(
    kafka: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(usize, Vec<(String, i32, i32)>), ProvisionError> {
    let kafka = kafka.clone();
    let (brokers, existing) = tokio::task::spawn_blocking(move || existing_topics(&kafka))
        .await
        .expect("reading metadata does not panic")?;
    let layout = specs
        .iter()
        .filter_map(|spec| {
            let (partitions, replication) = existing.get(&spec.name)?;
            Some((spec.name.clone(), *partitions, *replication))
        })
        .collect();
    Ok((brokers, layout))
}

/// Each existing topic's partition count and replication factor (of its first partition).
type TopicShapes = HashMap<String, (i32, i32)>;

/// How many brokers the cluster has, and the shape of every existing topic.
fn existing_topics(kafka: &KafkaSettings) -> Result<(usize, TopicShapes), ProvisionError> {
    let metadata_error = |source| ProvisionError::Metadata {
        bootstrap: kafka.bootstrap_servers.clone(),
        source,
    };
    let client: BaseProducer = kafka.client_config(&[]).create().map_err(metadata_error)?;
    // All topics, not the ones asked about: a request naming a topic may create it on a
    // broker that auto-creates topics, with the wrong settings.
    let metadata = client
        .client()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(metadata_error)?;
    let topics = metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
        .map(|topic| {
            let partitions = topic.partitions();
            let replication = partitions.first().map_or(0, |p| p.replicas().len());
            (
                topic.name().to_owned(),
                (
                    i32::try_from(partitions.len()).unwrap_or(i32::MAX),
                    i32::try_from(replication).unwrap_or(i32::MAX),
                ),
            )
        })
        .collect();
    Ok((metadata.brokers().len(), topics))
}

fn drift(specs: &[TopicSpec], existing: &TopicShapes) -> Vec<Drift> {
    let mut found = Vec::new();
    for spec in specs {
        let topic = spec.name.clone();
        let Some(&(partitions, replication)) = existing.get(&spec.name) else {
            found.push(Drift::Missing { topic });
            continue;
        };
        if partitions != spec.partitions {
            found.push(Drift::Partitions {
                topic: topic.clone(),
                expected: spec.partitions,
                actual: partitions,
            });
        }
        if let Some(expected) = spec.replication.filter(|&wanted| wanted != replication) {
            found.push(Drift::Replication {
                topic,
                expected,
                actual: replication,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_keep_names_once_and_add_the_extra_topics() {
        let settings = TopicSettings {
            partitions: 6,
            extra: vec!["registrations".into(), "retrace.audit".into()],
            ..TopicSettings::default()
        };
        let names: Vec<String> = settings
            .specs(["retrace.audit", "retrace.outcomes"])
            .into_iter()
            .map(|spec| spec.name)
            .collect();
        assert_eq!(
            names,
            ["retrace.audit", "retrace.outcomes", "registrations"]
        );
        let tokens = settings.compacted_log("retrace.tokens");
        assert_eq!(tokens.partitions, 1);
        assert_eq!(tokens.config, [("cleanup.policy", "compact".to_owned())]);
    }

    #[test]
    fn the_retention_applies_to_the_extra_topics_only() {
        let settings = TopicSettings {
            extra: vec!["registrations".into(), "retrace.audit".into()],
            retention_ms: Some(86_400_000),
            ..TopicSettings::default()
        };
        let specs = settings.specs(["retrace.audit"]);
        let configs: Vec<(&str, &[(&str, String)])> = specs
            .iter()
            .map(|spec| (spec.name.as_str(), spec.config.as_slice()))
            .collect();
        assert_eq!(
            configs,
            [
                ("retrace.audit", &[][..]),
                (
                    "registrations",
                    &[("retention.ms", "86400000".to_owned())][..]
                ),
            ]
        );
    }

    #[test]
    fn drift_names_what_differs_and_ignores_an_unset_replication() {
        let settings = TopicSettings::default();
        let mut specs = settings.specs(["a", "b", "c"]);
        specs[2].replication = Some(3);
        let existing = HashMap::from([("b".to_owned(), (1, 1)), ("c".to_owned(), (3, 1))]);
        let found = drift(&specs, &existing);
        assert_eq!(
            found,
            [
                Drift::Missing { topic: "a".into() },
                Drift::Partitions {
                    topic: "b".into(),
                    expected: 3,
                    actual: 1
                },
                Drift::Replication {
                    topic: "c".into(),
                    expected: 3,
                    actual: 1
                },
            ]
        );
        assert_eq!(found[1].kind(), "partitions");
    }
}
