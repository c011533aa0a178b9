//! Start-up that rides out a cluster's routine moments: a topic created a moment ago whose
//! leader is not yet known everywhere, a leader moving, a coordinator loading, a broker
//! restarting. Each service's start-up steps (reading the token topic, provisioning topics)
//! retry such answers with backoff until [`KafkaSettings::startup_deadline`], logging each
//! retry with its cause; past the deadline the step's own error stands, naming the topic and
//! what to check.
//!
//! [`KafkaSettings::startup_deadline`]: crate::KafkaSettings::startup_deadline

use std::future::Future;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use retrace_telemetry::InternalEvent;
use tokio::time::Instant;

use crate::events::StartupRetried;

/// The first wait between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether Kafka answered something that passes by itself within seconds: a leader or a
/// coordinator being elected or loaded, metadata not yet everywhere, a broker unreachable for
/// now. Anything else (authorisation, a bad configuration) is final at once.
pub fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    // rdkafka gives no code for a failed admin request, though it carries one.
    let code = match error {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(
            NotLeaderForPartition
                | LeaderNotAvailable
                | UnknownTopicOrPartition
                | UnknownPartition
                | UnknownTopic
                | CoordinatorLoadInProgress
                | CoordinatorNotAvailable
                | NotCoordinator
                | BrokerTransportFailure
                | AllBrokersDown
                | OperationTimedOut
                | RequestTimedOut
                | NetworkException
                | NotController
                | BrokerNotAvailable
                | ReplicaNotAvailable
                | NotEnoughReplicas
                | KafkaStorageError
                | FencedLeaderEpoch
                | UnknownLeaderEpoch
                | OffsetNotAvailable
        )
    )
}

/// Runs `attempt` until it succeeds, fails with an error `transient` does not accept, or
/// `deadline` has passed since the first attempt; the last error is returned then. `step`
/// names what is attempted in the log (e.g. "read API tokens from retrace.tokens").
pub async fn retry_at_start<T, E, F>(
    step: &str,
    deadline: Duration,
    transient: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if transient(&error) && started.elapsed() + backoff < deadline => {
                StartupRetried {
                    step,
                    attempt: attempts,
                    cause: &error,
                    retry_in: backoff,
                }
                .emit();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_retried_until_it_passes() {
        let calls = Cell::new(0);
        let result: Result<u32, String> = retry_at_start(
            "test step",
            Duration::from_secs(60),
            |e: &String| e == "not yet",
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 4 {
                        Err("not yet".to_owned())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(result, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_is_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), String> = retry_at_start(
            "test step",
            Duration::from_secs(60),
            |e: &String| e == "not yet",
            || {
                calls.set(calls.get() + 1);
                async { Err("denied".to_owned()) }
            },
        )
        .await;
        assert_eq!(result, Err("denied".to_owned()));
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_the_retries_with_the_last_error() {
        let started = tokio::time::Instant::now();
        let result: Result<(), String> = retry_at_start(
            "test step",
            Duration::from_secs(10),
            |_: &String| true,
            || async { Err("still not".to_owned()) },
        )
        .await;
        assert_eq!(result, Err("still not".to_owned()));
        let waited = started.elapsed();
        assert!(
            waited <= Duration::from_secs(10),
            "gave up after {waited:?}, past the deadline"
        );
        assert!(
            waited >= Duration::from_secs(8),
            "gave up early: {waited:?}"
        );
    }

    #[test]
    fn leader_and_metadata_moments_are_transient_and_authorisation_is_not() {
        let code = |c| KafkaError::MetadataFetch(c);
        assert!(is_transient(&code(RDKafkaErrorCode::NotLeaderForPartition)));
        assert!(is_transient(&code(RDKafkaErrorCode::LeaderNotAvailable)));
        assert!(is_transient(&code(
            RDKafkaErrorCode::CoordinatorLoadInProgress
        )));
        assert!(is_transient(&code(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_transient(&code(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        assert!(!is_transient(&code(RDKafkaErrorCode::InvalidConfig)));
        // An admin request's code counts too: a controller being elected passes.
        assert!(is_transient(&KafkaError::AdminOp(
            RDKafkaErrorCode::NotController
        )));
        assert!(!is_transient(&KafkaError::AdminOp(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
    }
}
