//! What runs a job: an in-process [`JobHandler`], or an HTTP webhook ([`Webhook`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use retrace_proto::{Envelope, Job};

/// A job handed to a handler: its envelope, and where it is in its life.
#[derive(Debug, Clone)]
pub struct ReceivedJob {
    pub envelope: Envelope,
    /// The envelope's `job`, always present (a message without one is not handed out).
    pub job: Job,
    pub queue: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Errors of the earlier attempts, oldest first.
    pub errors: Vec<String>,
    /// Who moved it back from the dead-letter topic, if someone did.
    pub redriven_by: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl ReceivedJob {
    /// The job id (= event id), also the idempotency key: an attempt may run twice after a
    /// crash (at-least-once), and a handler should make a repeat harmless.
    pub fn id(&self) -> &str {
        &self.envelope.event_id
    }
}

/// Why an attempt did not complete the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again after the queue's backoff.
    #[error("{0}")]
    Retry(String),
    /// Try again after this long at the earliest, and slow the whole queue down for as long
    /// (the target said it is overloaded).
    #[error("{1} (retry after {0:?})")]
    RetryAfter(Duration, String),
    /// Retrying would not help: dead-letter the job now.
    #[error("{0}")]
    Permanent(String),
    /// One of the above with a stable code for its cause: see [`JobError::with_code`].
    #[error("{error}")]
    Coded { code: String, error: Box<JobError> },
}

impl JobError {
    /// This error with a stable code for its cause, e.g. `population_register_timeout`:
    /// failed attempts of one queue with the same code form one incident whatever their text
    /// (docs/incidents.md). ASCII letters, digits, `_`, `.` and `-`, at most 64
    /// ([`retrace_proto::check_error_code`]); a code that breaks the rule is left out of the
    /// outcome, and its error text says so. A webhook's HTTP failures carry `http_<status>`.
    pub fn with_code(self, code: impl Into<String>) -> Self {
        JobError::Coded {
            code: code.into(),
            error: Box::new(self.uncoded().clone()),
        }
    }

    /// The code given with [`JobError::with_code`], if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            JobError::Coded { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The error text, without the retry delay.
    pub fn text(&self) -> &str {
        match self.uncoded() {
            JobError::Retry(text) | JobError::RetryAfter(_, text) | JobError::Permanent(text) => {
                text
            }
            JobError::Coded { .. } => unreachable!("uncoded() is never Coded"),
        }
    }

    /// How long the target asked to be left alone, for [`JobError::RetryAfter`].
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self.uncoded() {
            JobError::RetryAfter(after, _) => Some(*after),
            _ => None,
        }
    }

    pub(crate) fn is_permanent(&self) -> bool {
        matches!(self.uncoded(), JobError::Permanent(_))
    }

    /// The error under its codes.
    fn uncoded(&self) -> &JobError {
        match self {
            JobError::Coded { error, .. } => error.uncoded(),
            other => other,
        }
    }
}

/// An in-process handler (dev mode, benchmarks, tests).
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, job: &ReceivedJob) -> impl Future<Output = Result<(), JobError>> + Send;
}

pub(crate) type BoxedRun<'a> = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send + 'a>>;

/// [`JobHandler`] made object-safe, so one map can hold handlers of several types.
pub(crate) trait DynHandler: Send + Sync {
    fn run_boxed<'a>(&'a self, job: &'a ReceivedJob) -> BoxedRun<'a>;
}

impl<H: JobHandler> DynHandler for H {
    fn run_boxed<'a>(&'a self, job: &'a ReceivedJob) -> BoxedRun<'a> {
        Box::pin(self.run(job))
    }
}

pub(crate) type SharedHandler = Arc<dyn DynHandler>;

/// The header carrying the job id to a webhook.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// POSTs each job as JSON to a URL. 2xx: done; 4xx but 429: permanent failure; 5xx, a
/// timeout or a connection error: retry; 429 or 503 with `Retry-After` (seconds): retry
/// after that long, and slow the queue.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    client: reqwest::Client,
}

/// The JSON body a webhook receives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookBody {
    pub job_id: String,
    pub kind: String,
    pub attempt: u32,
    pub transaction_id: String,
    pub subject_ids: Vec<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub content_type: String,
    /// The payload as JSON when its content type is JSON (and it parses), else a base64
    /// string (`payload_encoding` = `base64`).
    pub payload: serde_json::Value,
    pub payload_encoding: String,
}

impl WebhookBody {
    pub fn of(job: &ReceivedJob) -> Self {
        let envelope = &job.envelope;
        let json = envelope
            .content_type
            .contains("json")
            .then(|| serde_json::from_slice(&envelope.payload).ok())
            .flatten();
        let (payload, payload_encoding) = match json {
            Some(value) => (value, "json"),
            None => (
                serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(&envelope.payload),
                ),
                "base64",
            ),
        };
        WebhookBody {
            job_id: envelope.event_id.clone(),
            kind: job.job.kind.clone(),
            attempt: job.attempt,
            transaction_id: envelope.transaction_id.clone(),
            subject_ids: envelope.subject_ids.clone(),
            event_type: envelope.r#type.clone(),
            content_type: envelope.content_type.clone(),
            payload,
            payload_encoding: payload_encoding.to_owned(),
        }
    }
}

impl Webhook {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a reqwest client without TLS settings builds");
        Webhook {
            url: url.into(),
            client,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl JobHandler for Webhook {
    async fn run(&self, job: &ReceivedJob) -> Result<(), JobError> {
        let response = self
            .client
            .post(&self.url)
            .header(IDEMPOTENCY_KEY, job.id())
            .json(&WebhookBody::of(job))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return Err(JobError::Retry(format!("timed out calling {}", self.url)));
            }
            Err(error) => {
                return Err(JobError::Retry(format!(
                    "cannot call {}: {}",
                    self.url,
                    error_chain(&error)
                )));
            }
        };
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        classify(response.status(), retry_after, &self.url)
    }
}

/// What a webhook's answer means for the job. A failure's code is `http_<status>`: the
/// status is the cause the target named, and error texts have their numbers normalised away
/// when failures are grouped, which would put a 422 and a 503 from one URL in one incident.
pub(crate) fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    url: &str,
) -> Result<(), JobError> {
    let text = format!("HTTP {} from {url}", status.as_u16());
    let error = match (status, retry_after) {
        (s, _) if s.is_success() => return Ok(()),
        (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, Some(after)) => {
            JobError::RetryAfter(after, text)
        }
        (StatusCode::TOO_MANY_REQUESTS, None) => JobError::Retry(text),
        (s, _) if s.is_client_error() => JobError::Permanent(text),
        _ => JobError::Retry(text),
    };
    Err(error.with_code(format!("http_{}", status.as_u16())))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_done_retry_or_permanent_coded_by_status() {
        let url = "http://t/";
        assert_eq!(classify(StatusCode::NO_CONTENT, None, url), Ok(()));
        assert_eq!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, None, url),
            Err(JobError::Permanent("HTTP 422 from http://t/".into()).with_code("http_422"))
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, None, url),
            Err(JobError::Retry("HTTP 502 from http://t/".into()).with_code("http_502"))
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, url),
            Err(JobError::Retry("HTTP 429 from http://t/".into()).with_code("http_429"))
        );
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(3)),
                url
            ),
            Err(
                JobError::RetryAfter(Duration::from_secs(3), "HTTP 503 from http://t/".into())
                    .with_code("http_503")
            )
        );
    }

    #[test]
    fn a_code_is_worn_over_the_error_and_a_second_replaces_the_first() {
        let after = Duration::from_secs(3);
        let coded = JobError::RetryAfter(after, "busy".into())
            .with_code("first")
            .with_code("renderer_busy");
        assert_eq!(coded.code(), Some("renderer_busy"));
        assert_eq!(coded.text(), "busy");
        assert_eq!(coded.retry_after(), Some(after));
        assert!(!coded.is_permanent());
        assert_eq!(coded.to_string(), "busy (retry after 3s)");
        assert_eq!(
            coded,
            JobError::RetryAfter(after, "busy".into()).with_code("renderer_busy")
        );
        let permanent = JobError::Permanent("no such form".into()).with_code("form_unknown");
        assert!(permanent.is_permanent());
        assert_eq!(JobError::Retry("x".into()).code(), None);
    }

    #[test]
    fn a_json_payload_is_sent_as_json_and_anything_else_as_base64() {
        let envelope =
            Envelope::root("svc", "t.v1").with_payload("application/json", b"{\"a\":1}".to_vec());
        let mut job = ReceivedJob {
            envelope,
            job: Job {
                kind: "k".into(),
                ..Job::default()
            },
            queue: "q".into(),
            attempt: 1,
            errors: vec![],
            redriven_by: None,
            topic: "t".into(),
            partition: 0,
            offset: 0,
        };
        assert_eq!(WebhookBody::of(&job).payload, serde_json::json!({"a": 1}));
        job.envelope.content_type = "application/pdf".into();
        let body = WebhookBody::of(&job);
        assert_eq!(body.payload, serde_json::json!("eyJhIjoxfQ=="));
        assert_eq!(body.payload_encoding, "base64");
    }
}
