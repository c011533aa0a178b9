//! Kafka ACLs for a deployment: which principal may do what to which of Retrace's topics and
//! groups ([`AclPlan::acls`]), and applying them through the admin API ([`create_acls`]).
//!
//! The set is derived from the names the services use (the tokens, outcomes and audit
//! topics, the job topics `retrace.jobs.<queue>…`, the archive's and the worker's consumer
//! groups), so it is written once, here; `retrace kafka acls --print | --apply` shows and
//! applies it, and docs/security.md ("Kafka ACLs") explains it. Every ACL allows (Kafka's DENY
//! wins over any ALLOW, so "every topic but Retrace's" cannot be written with one): what is
//! not listed is refused by the authorizer.

mod create;

use std::fmt;

use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC, OUTCOMES_TOPIC};

use crate::jobs::QueueTopics;
use crate::topic::{INTERNAL_TOPIC_PREFIX, check_topic_name};

pub use create::{AclApplyError, create_acls};

/// The topic prefix of every job queue's topics (lanes, retry, dead letters).
pub const JOB_TOPIC_PREFIX: &str = "retrace.jobs.";

/// The prefix of the worker's consumer groups, `retrace-worker.<queue>`.
pub const WORKER_GROUP_PREFIX: &str = "retrace-worker.";

/// The prefix of the group id each service's token registry gives its consumer
/// (`retrace-tokens-<random>`, in retrace-auth's registry): never joined, but librdkafka looks
/// its coordinator up, which needs DESCRIBE on the group.
pub const TOKEN_READER_GROUP_PREFIX: &str = "retrace-tokens-";

/// The group id of `retrace rebuild --from-kafka` (assigned partitions, never joined).
pub const REBUILD_GROUP: &str = "retrace-rebuild";

/// The default principals of Retrace's services.
pub const DEFAULT_ARCHIVE_PRINCIPAL: &str = "User:retrace-archive";
pub const DEFAULT_GATEWAY_PRINCIPAL: &str = "User:retrace-gateway";
pub const DEFAULT_WORKER_PRINCIPAL: &str = "User:retrace-worker";

/// What an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
}

/// How an ACL's resource name matches: the name itself, or every name starting with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PatternType {
    Literal,
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Create,
    Describe,
}

/// A resource name as an ACL matches it: `orders` (literal), `births.*` (every name starting
/// with `births.`), `*` (every name: Kafka's literal wildcard).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pattern {
    pub name: String,
    pub pattern: PatternType,
}

impl Pattern {
    pub fn literal(name: &str) -> Pattern {
        Pattern {
            name: name.to_owned(),
            pattern: PatternType::Literal,
        }
    }

    pub fn prefixed(prefix: &str) -> Pattern {
        Pattern {
            name: prefix.to_owned(),
            pattern: PatternType::Prefixed,
        }
    }

    /// Every name (Kafka's literal `*`).
    pub fn all() -> Pattern {
        Pattern::literal("*")
    }

    /// `name`, or `prefix*` for every name starting with `prefix`.
    fn parse(text: &str) -> Pattern {
        match text.strip_suffix('*') {
            Some(prefix) if !prefix.is_empty() => Pattern::prefixed(prefix),
            _ => Pattern::literal(text),
        }
    }

    /// An application topic: a valid name (or prefix) that cannot match any of Retrace's own
    /// topics (`retrace.*`) or Kafka's internal ones (`__*`).
    pub fn application_topic(text: &str) -> Result<Pattern, AclPlanError> {
        let pattern = Pattern::parse(text.trim());
        let refuse = |why: &str| AclPlanError::NotAnApplicationTopic {
            topic: text.to_owned(),
            why: why.to_owned(),
        };
        if pattern.name == "*" {
            return Err(refuse("it names every topic, Retrace's own included"));
        }
        check_topic_name(&pattern.name).map_err(|e| refuse(&e.to_string()))?;
        let could_match = |reserved: &str| match pattern.pattern {
            PatternType::Literal => pattern.name.starts_with(reserved),
            PatternType::Prefixed => {
                pattern.name.starts_with(reserved) || reserved.starts_with(&pattern.name)
            }
        };
        if could_match(INTERNAL_TOPIC_PREFIX) {
            return Err(refuse(
                "Retrace's own topics (`retrace.*`) are written by its services only",
            ));
        }
        if could_match("__") {
            return Err(refuse("Kafka's internal topics (`__*`) are Kafka's"));
        }
        Ok(pattern)
    }

    /// A consumer group: any non-empty name, or `prefix*`.
    pub fn group(text: &str) -> Result<Pattern, AclPlanError> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Err(AclPlanError::BadGroup(text.to_owned()));
        }
        Ok(Pattern::parse(text))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pattern {
            PatternType::Literal => f.write_str(&self.name),
            PatternType::Prefixed => write!(f, "{}*", self.name),
        }
    }
}

/// One ACL: `principal` is allowed `operation` on the resources `pattern` matches, from any
/// host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub principal: String,
    pub resource: ResourceType,
    pub pattern: Pattern,
    pub operation: Operation,
}

/// An application that publishes straight to Kafka (with the SDK or any client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub principal: String,
    pub topics: Vec<Pattern>,
}

/// An application that consumes with the SDK's `consume` (so reports outcomes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub principal: String,
    pub group: Pattern,
    pub topics: Vec<Pattern>,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclPlanError {
    #[error("{principal:?} is not a Kafka principal: write it as TYPE:NAME, e.g. User:orders")]
    BadPrincipal { principal: String },
    #[error("topic {topic:?} cannot be given to an application: {why}")]
    NotAnApplicationTopic { topic: String, why: String },
    #[error("{0:?} is not a consumer group name (a name, or a prefix followed by `*`)")]
    BadGroup(String),
    #[error("{0:?} cannot name a job queue: {1}")]
    BadQueue(String, String),
    #[error(
        "{0:?} is not an application: write PRINCIPAL=TOPIC[,TOPIC…] for a producer, \
         PRINCIPAL=GROUP:TOPIC[,TOPIC…] for a consumer"
    )]
    BadApplication(String),
}

/// Who runs what: the principals of Retrace's services and of the applications around it,
/// and the names the ACLs are derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclPlan {
    pub archive: String,
    pub gateway: String,
    pub worker: String,
    /// `[auth] tokens_topic`.
    pub tokens_topic: String,
    /// `[archive] group`.
    pub archive_group: String,
    /// Application topics published through the gateway (and so replayed by the archive),
    /// besides those of the producers and consumers.
    pub topics: Vec<Pattern>,
    /// Job queues enqueued through the gateway (and replayed by the archive); none: every
    /// queue (`retrace.jobs.*`, retry and dead-letter topics included).
    pub queues: Vec<String>,
    pub producers: Vec<Producer>,
    pub consumers: Vec<Consumer>,
}

impl AclPlan {
    /// The default principals, tokens topic and archive group; no applications.
    pub fn new(tokens_topic: &str) -> AclPlan {
        AclPlan {
            archive: DEFAULT_ARCHIVE_PRINCIPAL.to_owned(),
            gateway: DEFAULT_GATEWAY_PRINCIPAL.to_owned(),
            worker: DEFAULT_WORKER_PRINCIPAL.to_owned(),
            tokens_topic: tokens_topic.to_owned(),
            archive_group: "retrace-archive".to_owned(),
            topics: Vec::new(),
            queues: Vec::new(),
            producers: Vec::new(),
            consumers: Vec::new(),
        }
    }

    /// Adds application topics (`name` or `prefix*`, comma-separated allowed).
    pub fn with_topics(mut self, topics: &str) -> Result<AclPlan, AclPlanError> {
        for topic in split(topics) {
            self.topics.push(Pattern::application_topic(topic)?);
        }
        Ok(self)
    }

    /// Adds a producer written `PRINCIPAL=TOPIC[,TOPIC…]`.
    pub fn with_producer(mut self, spec: &str) -> Result<AclPlan, AclPlanError> {
        let (principal, topics) = application(spec)?;
        self.producers.push(Producer { principal, topics });
        Ok(self)
    }

    /// Adds a consumer written `PRINCIPAL=GROUP:TOPIC[,TOPIC…]`.
    pub fn with_consumer(mut self, spec: &str) -> Result<AclPlan, AclPlanError> {
        let bad = || AclPlanError::BadApplication(spec.to_owned());
        let (principal, rest) = spec.split_once('=').ok_or_else(bad)?;
        let (group, topics) = rest.split_once(':').ok_or_else(bad)?;
        let (principal, topics) = application(&format!("{principal}={topics}"))?;
        self.consumers.push(Consumer {
            principal,
            group: Pattern::group(group)?,
            topics,
        });
        Ok(self)
    }

    /// Adds job queues (comma-separated allowed).
    pub fn with_queues(mut self, queues: &str) -> Result<AclPlan, AclPlanError> {
        for queue in split(queues) {
            let lane = QueueTopics::of(queue).dead_letter;
            check_topic_name(&lane)
                .map_err(|e| AclPlanError::BadQueue(queue.to_owned(), e.to_string()))?;
            self.queues.push(queue.to_owned());
        }
        Ok(self)
    }

    /// Checks the principals.
    pub fn check(&self) -> Result<(), AclPlanError> {
        let principals = [&self.archive, &self.gateway, &self.worker]
            .into_iter()
            .chain(self.producers.iter().map(|p| &p.principal))
            .chain(self.consumers.iter().map(|c| &c.principal));
        for principal in principals {
            check_principal(principal)?;
        }
        Ok(())
    }

    /// Every application topic: the ones named, then the producers' and consumers', once.
    pub fn application_topics(&self) -> Vec<Pattern> {
        let mut topics: Vec<Pattern> = Vec::new();
        let named = self.topics.iter();
        let produced = self.producers.iter().flat_map(|p| &p.topics);
        let consumed = self.consumers.iter().flat_map(|c| &c.topics);
        for topic in named.chain(produced).chain(consumed) {
            if !topics.contains(topic) {
                topics.push(topic.clone());
            }
        }
        topics
    }

    /// The job topics a job is enqueued on (and replayed to): the lanes of each queue named,
    /// or every job topic when none is.
    fn job_lanes(&self) -> Vec<Pattern> {
        if self.queues.is_empty() {
            return vec![Pattern::prefixed(JOB_TOPIC_PREFIX)];
        }
        self.queues
            .iter()
            .flat_map(|queue| {
                let topics = QueueTopics::of(queue);
                [topics.normal, topics.urgent, topics.bulk]
            })
            .map(|lane| Pattern::literal(&lane))
            .collect()
    }

    /// Every ACL of the plan, grouped by who holds it, each group with what it is for.
    pub fn grants(&self) -> Vec<Grant> {
        use Operation::{Create, Describe, Read, Write};
        let topic = |principal: &str, pattern: &Pattern, operation| Acl {
            principal: principal.to_owned(),
            resource: ResourceType::Topic,
            pattern: pattern.clone(),
            operation,
        };
        let group = |principal: &str, pattern: Pattern, operation| Acl {
            principal: principal.to_owned(),
            resource: ResourceType::Group,
            pattern,
            operation,
        };
        let tokens = Pattern::literal(&self.tokens_topic);
        let outcomes = Pattern::literal(OUTCOMES_TOPIC);
        let audit = Pattern::literal(AUDIT_TOPIC);
        let applications = self.application_topics();
        let lanes = self.job_lanes();
        // Every service creates the topics it needs at start when they are missing.
        let provisions = |principal: &str| {
            [&tokens, &outcomes, &audit]
                .into_iter()
                .map(|t| topic(principal, t, Create))
                .collect::<Vec<_>>()
        };

        let token_readers = Pattern::prefixed(TOKEN_READER_GROUP_PREFIX);
        let changes = Pattern::literal(ARCHIVE_CHANGES_TOPIC);
        let mut archive = vec![
            topic(&self.archive, &Pattern::all(), Read),
            // Replicas consume in groups named after it: `<group>.<replica id>`.
            group(&self.archive, Pattern::prefixed(&self.archive_group), Read),
            group(&self.archive, token_readers.clone(), Describe),
            group(&self.archive, Pattern::literal(REBUILD_GROUP), Describe),
            topic(&self.archive, &tokens, Write),
            topic(&self.archive, &audit, Write),
            topic(&self.archive, &changes, Write),
            topic(&self.archive, &changes, Create),
        ];
        archive.extend(applications.iter().map(|t| topic(&self.archive, t, Write)));
        archive.extend(lanes.iter().map(|t| topic(&self.archive, t, Write)));
        archive.extend(provisions(&self.archive));

        let mut gateway = vec![
            topic(&self.gateway, &tokens, Read),
            group(&self.gateway, token_readers.clone(), Describe),
            topic(&self.gateway, &audit, Write),
            topic(&self.gateway, &outcomes, Write),
        ];
        gateway.extend(applications.iter().map(|t| topic(&self.gateway, t, Write)));
        gateway.extend(lanes.iter().map(|t| topic(&self.gateway, t, Write)));
        gateway.extend(provisions(&self.gateway));

        let jobs = Pattern::prefixed(JOB_TOPIC_PREFIX);
        let mut worker = vec![
            topic(&self.worker, &tokens, Read),
            group(&self.worker, token_readers, Describe),
            topic(&self.worker, &audit, Write),
            topic(&self.worker, &outcomes, Write),
            topic(&self.worker, &jobs, Read),
            topic(&self.worker, &jobs, Write),
            topic(&self.worker, &jobs, Create),
            group(&self.worker, Pattern::prefixed(WORKER_GROUP_PREFIX), Read),
            topic(&self.worker, &Pattern::all(), Describe),
            group(&self.worker, Pattern::all(), Describe),
        ];
        worker.extend(provisions(&self.worker));

        let mut grants = vec![
            Grant {
                role: "archive",
                principal: self.archive.clone(),
                purpose: format!(
                    "consumes every topic (group {}, or {}.<replica id> per replica); is the \
                     token service (POST /v1/tokens writes {}); publishes its changes \
                     ({ARCHIVE_CHANGES_TOPIC}) and audit events; replays to application \
                     topics and job lanes; creates Retrace's topics when missing",
                    self.archive_group, self.archive_group, self.tokens_topic
                ),
                acls: archive,
            },
            Grant {
                role: "gateway",
                principal: self.gateway.clone(),
                purpose: "publishes to application topics, enqueues jobs, reports outcomes; \
                          reads API tokens; sends its audit events; creates Retrace's topics \
                          when missing"
                    .to_owned(),
                acls: gateway,
            },
            Grant {
                role: "worker",
                principal: self.worker.clone(),
                purpose: format!(
                    "consumes, retries, dead-letters and redrives jobs on {JOB_TOPIC_PREFIX}* \
                     (groups {WORKER_GROUP_PREFIX}*); reports outcomes; reads API tokens; \
                     sends its audit events; describes any topic and group for its gates' \
                     load signals (rate, lag)"
                ),
                acls: worker,
            },
        ];
        for producer in &self.producers {
            grants.push(Grant {
                role: "producer",
                principal: producer.principal.clone(),
                purpose: "publishes to its own topics, nothing of Retrace's".to_owned(),
                acls: producer
                    .topics
                    .iter()
                    .map(|t| topic(&producer.principal, t, Write))
                    .collect(),
            });
        }
        for consumer in &self.consumers {
            let mut acls: Vec<Acl> = consumer
                .topics
                .iter()
                .map(|t| topic(&consumer.principal, t, Read))
                .collect();
            acls.push(group(&consumer.principal, consumer.group.clone(), Read));
            acls.push(topic(&consumer.principal, &outcomes, Write));
            grants.push(Grant {
                role: "consumer",
                principal: consumer.principal.clone(),
                purpose: format!(
                    "consumes its topics in group {} and reports an outcome per event",
                    consumer.group
                ),
                acls,
            });
        }
        grants
    }

    /// Every ACL of the plan, once each.
    pub fn acls(&self) -> Vec<Acl> {
        let mut acls: Vec<Acl> = self.grants().into_iter().flat_map(|g| g.acls).collect();
        let mut seen = std::collections::BTreeSet::new();
        acls.retain(|acl| seen.insert(acl.clone()));
        acls
    }
}

/// The ACLs one principal holds, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `archive`, `gateway`, `worker`, `producer` or `consumer`.
    pub role: &'static str,
    pub principal: String,
    pub purpose: String,
    pub acls: Vec<Acl>,
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
        })
    }
}

impl fmt::Display for PatternType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Describe => "DESCRIBE",
        })
    }
}

impl fmt::Display for Acl {
    /// `ALLOW User:x READ TOPIC LITERAL orders HOST *`, in aligned columns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ALLOW  {:<24} {:<8} {} {:<8} {}",
            self.principal, self.operation, self.resource, self.pattern.pattern, self.pattern.name
        )
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn check_principal(principal: &str) -> Result<(), AclPlanError> {
    match principal.split_once(':') {
        Some((kind, name))
            if !kind.is_empty() && !name.is_empty() && !kind.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(AclPlanError::BadPrincipal {
            principal: principal.to_owned(),
        }),
    }
}

/// `PRINCIPAL=TOPIC[,TOPIC…]`.
fn application(spec: &str) -> Result<(String, Vec<Pattern>), AclPlanError> {
    let bad = || AclPlanError::BadApplication(spec.to_owned());
    let (principal, topics) = spec.split_once('=').ok_or_else(bad)?;
    let principal = principal.trim().to_owned();
    check_principal(&principal)?;
    let topics = split(topics)
        .map(Pattern::application_topic)
        .collect::<Result<Vec<_>, _>>()?;
    if topics.is_empty() {
        return Err(bad());
    }
    Ok((principal, topics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> AclPlan {
        AclPlan::new("retrace.tokens")
            .with_topics("registrations")
            .unwrap()
            .with_producer("User:civil-registry=registrations,births.*")
            .unwrap()
            .with_consumer("User:validation=validation:registrations")
            .unwrap()
    }

    fn holds(acls: &[Acl], principal: &str, operation: Operation, topic: &str) -> bool {
        acls.iter().any(|acl| {
            acl.principal == principal
                && acl.operation == operation
                && acl.resource == ResourceType::Topic
                && match acl.pattern.pattern {
                    PatternType::Literal => acl.pattern.name == topic || acl.pattern.name == "*",
                    PatternType::Prefixed => topic.starts_with(&acl.pattern.name),
                }
        })
    }

    #[test]
    fn only_the_archive_writes_tokens_and_only_services_write_audit() {
        let acls = plan().acls();
        let writers = |topic: &str| {
            let mut who: Vec<&str> = acls
                .iter()
                .filter(|a| {
                    holds(
                        std::slice::from_ref(a),
                        &a.principal,
                        Operation::Write,
                        topic,
                    )
                })
                .map(|a| a.principal.as_str())
                .collect();
            who.dedup();
            who
        };
        assert_eq!(writers("retrace.tokens"), ["User:retrace-archive"]);
        assert_eq!(
            writers("retrace.audit"),
            [
                "User:retrace-archive",
                "User:retrace-gateway",
                "User:retrace-worker"
            ]
        );
        assert_eq!(writers("retrace.archive.changes"), ["User:retrace-archive"]);
        assert_eq!(
            writers("retrace.outcomes"),
            [
                "User:retrace-gateway",
                "User:retrace-worker",
                "User:validation"
            ]
        );
        for topic in [
            "retrace.jobs.q.retry",
            "retrace.jobs.q.dlq",
            "retrace.audit",
        ] {
            assert!(!holds(
                &acls,
                "User:civil-registry",
                Operation::Write,
                topic
            ));
        }
        assert!(holds(
            &acls,
            "User:civil-registry",
            Operation::Write,
            "births.x"
        ));
        assert!(holds(
            &acls,
            "User:retrace-gateway",
            Operation::Write,
            "births.x"
        ));
        assert!(holds(
            &acls,
            "User:retrace-archive",
            Operation::Write,
            "births.x"
        ));
    }

    #[test]
    fn named_queues_narrow_the_enqueuers_to_their_lanes() {
        let acls = plan().with_queues("certificates").unwrap().acls();
        for lane in [
            "retrace.jobs.certificates",
            "retrace.jobs.certificates.urgent",
            "retrace.jobs.certificates.bulk",
        ] {
            assert!(holds(&acls, "User:retrace-gateway", Operation::Write, lane));
        }
        assert!(!holds(
            &acls,
            "User:retrace-gateway",
            Operation::Write,
            "retrace.jobs.certificates.dlq"
        ));
        assert!(holds(
            &acls,
            "User:retrace-worker",
            Operation::Write,
            "retrace.jobs.certificates.dlq"
        ));
    }

    #[test]
    fn applications_cannot_be_given_retraces_or_kafkas_topics() {
        for topic in [
            "retrace.tokens",
            "retrace.jobs.q",
            "retrace*",
            "ret*",
            "*",
            "__consumer_offsets",
            "_*",
            "bad topic",
        ] {
            assert!(
                AclPlan::new("retrace.tokens").with_topics(topic).is_err(),
                "{topic}"
            );
        }
        assert!(
            AclPlan::new("retrace.tokens")
                .with_producer("orders=orders")
                .is_err()
        );
        assert!(
            AclPlan::new("retrace.tokens")
                .with_consumer("User:x=orders")
                .is_err()
        );
    }

    #[test]
    fn an_acl_prints_as_one_aligned_line() {
        let acl = Acl {
            principal: "User:retrace-archive".into(),
            resource: ResourceType::Topic,
            pattern: Pattern::all(),
            operation: Operation::Read,
        };
        assert_eq!(
            acl.to_string(),
            "ALLOW  User:retrace-archive     READ     TOPIC LITERAL  *"
        );
    }
}
