//! Kafka's rule for topic names, checked before a name reaches the broker, so the caller
//! hears what is wrong instead of a broker error code; and Retrace's own rule: which topics
//! are Retrace's internal ones ([`internal_topic`]), never written on a caller's behalf.

/// Longest topic name Kafka accepts.
pub const MAX_TOPIC_LEN: usize = 249;

/// Why a topic name is not one Kafka accepts; the message completes "topic ... ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("is not a valid Kafka topic name")]
    Empty,
    #[error("is {0} characters long: Kafka allows {MAX_TOPIC_LEN}")]
    TooLong(usize),
    #[error("contains {0:?}: Kafka topic names use only a-z, A-Z, 0-9, '.', '_' and '-'")]
    BadCharacter(char),
}

pub fn check_topic_name(topic: &str) -> Result<(), TopicNameError> {
    if topic.is_empty() || topic == "." || topic == ".." {
        return Err(TopicNameError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicNameError::TooLong(topic.len()));
    }
    match topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(bad) => Err(TopicNameError::BadCharacter(bad)),
        None => Ok(()),
    }
}

/// Every topic whose name starts with this is Retrace's own: tokens, audit, outcomes, job
/// lanes and their retry and dead-letter topics, and whatever Retrace adds later.
pub const INTERNAL_TOPIC_PREFIX: &str = "retrace.";

/// One of Retrace's own topics, by what it carries: what a caller who tried to write it
/// should do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalTopic {
    /// `retrace.tokens`: API token records, written by the archive's `POST /v1/tokens`.
    Tokens,
    /// `retrace.audit`: audit events, written by Retrace's services themselves.
    Audit,
    /// `retrace.outcomes`: what consumers did with events.
    Outcomes,
    /// `retrace.jobs.<queue>` and its lanes, retry and dead-letter topics.
    Jobs,
    /// Any other `retrace.*` topic.
    Other,
}

impl InternalTopic {
    /// What the topic carries, completing "topic X is Retrace's own topic of ...".
    pub fn carries(self) -> &'static str {
        match self {
            InternalTopic::Tokens => "API token records",
            InternalTopic::Audit => "audit events",
            InternalTopic::Outcomes => "outcomes",
            InternalTopic::Jobs => "a job queue",
            InternalTopic::Other => "Retrace's internal records",
        }
    }

    /// Where a caller goes instead, as one sentence.
    pub fn instead(self) -> &'static str {
        match self {
            InternalTopic::Tokens => {
                "tokens are created and revoked through the archive's POST /v1/tokens \
                 (admin role)"
            }
            InternalTopic::Audit => "audit events are written by Retrace's services only",
            InternalTopic::Outcomes => "report outcomes through POST /v1/outcomes",
            InternalTopic::Jobs => "enqueue jobs through POST /v1/queues/{queue}/jobs",
            InternalTopic::Other => {
                "publish your events on your own topics (names not starting with `retrace.`)"
            }
        }
    }
}

/// Whether `topic` is one of Retrace's own topics, and which: the one rule for everything
/// that writes a topic a caller named (the gateway's events route, replay targets).
pub fn internal_topic(topic: &str) -> Option<InternalTopic> {
    let rest = topic.strip_prefix(INTERNAL_TOPIC_PREFIX)?;
    let first = rest.split('.').next().unwrap_or_default();
    Some(match first {
        "tokens" if rest == "tokens" => InternalTopic::Tokens,
        "audit" if rest == "audit" => InternalTopic::Audit,
        "outcomes" if rest == "outcomes" => InternalTopic::Outcomes,
        "jobs" => InternalTopic::Jobs,
        _ => InternalTopic::Other,
    })
}

/// Whether `topic` is one of Retrace's own topics ([`internal_topic`]).
pub fn is_internal_topic(topic: &str) -> bool {
    internal_topic(topic).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retraces_own_topics_are_internal() {
        for (topic, kind) in [
            ("retrace.tokens", InternalTopic::Tokens),
            ("retrace.audit", InternalTopic::Audit),
            ("retrace.outcomes", InternalTopic::Outcomes),
            ("retrace.jobs.certificates", InternalTopic::Jobs),
            ("retrace.jobs.certificates.urgent", InternalTopic::Jobs),
            ("retrace.jobs.certificates.dlq", InternalTopic::Jobs),
            ("retrace.replays", InternalTopic::Other),
            ("retrace.tokens.v2", InternalTopic::Other),
            ("retrace.", InternalTopic::Other),
        ] {
            assert_eq!(internal_topic(topic), Some(kind), "{topic}");
            assert!(is_internal_topic(topic), "{topic}");
        }
        for topic in [
            "registrations",
            "retrace",
            "retrace-tokens",
            "Retrace.tokens",
            "my.retrace.tokens",
        ] {
            assert_eq!(internal_topic(topic), None, "{topic}");
        }
    }

    #[test]
    fn kafkas_rule_for_topic_names() {
        for good in ["registrations", "civil.births_v2-eu", &"x".repeat(249)] {
            assert_eq!(check_topic_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_topic_name(""), Err(TopicNameError::Empty));
        assert_eq!(check_topic_name(".."), Err(TopicNameError::Empty));
        assert_eq!(
            check_topic_name(&"x".repeat(250)),
            Err(TopicNameError::TooLong(250))
        );
        assert_eq!(
            check_topic_name("has space"),
            Err(TopicNameError::BadCharacter(' '))
        );
        assert_eq!(
            check_topic_name("ünïcode"),
            Err(TopicNameError::BadCharacter('ü'))
        );
    }
}
