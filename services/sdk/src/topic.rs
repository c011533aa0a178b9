//! Kafka's rule for topic names, checked before a name reaches the broker, so the caller
//! hears what is wrong instead of a broker error code.

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

#[cfg(test)]
mod tests {
    use super::*;

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
