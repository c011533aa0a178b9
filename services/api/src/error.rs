//! The one error document every Retrace service answers with: a stable `code`, the `error`
//! in words, the `field` at fault when one is, and what else the answer knows (`behind`,
//! the gateway's per-event `results`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Behind;

/// What kind of refusal an error is: stable, for programs to branch on (the `error` text
/// is for people and may change). Each is answered with one HTTP status, [`status`](Self::status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is not valid; `field` names the parameter or body field at fault.
    Invalid,
    /// 401: no credential, or one that is not accepted (unknown, expired, revoked, badly
    /// signed).
    Unauthenticated,
    /// 403: the caller may not do this.
    Forbidden,
    /// 404: no such thing (on the archive, `behind` says where it may still come from).
    NotFound,
    /// 409: the request contradicts what is there: nothing to replay or erase, a name taken,
    /// an `Idempotency-Key` already used with another request (the gateway answers that one
    /// 422).
    Conflict,
    /// 413: the body or a message is larger than the limit.
    TooLarge,
    /// 415: the body's `Content-Type` is not one the route takes.
    UnsupportedMediaType,
    /// 503: a dependency (Kafka, the token registry, the audit trail) cannot be reached, or
    /// the service is starting; try again later (`Retry-After` where given).
    Unavailable,
    /// 500: the service failed.
    Internal,
    /// Never answered: what a client reads for a code it does not know (a newer server's)
    /// or for none (an older server's answer); [`ErrorCode::of_status`] then says more.
    #[default]
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a service answers with.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::Invalid,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it is written in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Invalid => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }

    /// The code an answer with HTTP status `status` has (422 is the gateway's reused
    /// `Idempotency-Key`, a conflict).
    pub fn of_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            409 | 422 => ErrorCode::Conflict,
            413 => ErrorCode::TooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            503 => ErrorCode::Unavailable,
            400..=499 => ErrorCode::Invalid,
            _ => ErrorCode::Internal,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error document: `{"code": "invalid", "error": "...", "field": "limit"}`. Every
/// member but `code` and `error` is absent when there is nothing to say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What kind of refusal: stable, for programs to branch on (`error` is for people and
    /// may change). A client reading a code it does not know treats it by the HTTP status.
    #[serde(default)]
    #[schema(required = true)]
    pub code: ErrorCode,
    /// What is wrong, in words, and what to do about it.
    pub error: String,
    /// The parameter, body field or header at fault; absent when no one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// On a 404 of a transaction or event: the partitions the archive is behind on, where it
    /// may still be (see [`Behind`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
    /// The gateway's events that reached Kafka (or not) before the request failed, one per
    /// event of the request, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<EventResult>,
}

impl ErrorBody {
    /// `error`, of kind `code`, with nothing more to say.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        ErrorBody {
            code,
            error: error.into(),
            field: None,
            behind: Vec::new(),
            results: Vec::new(),
        }
    }
}

/// One event the gateway was asked to publish: where Kafka put it, or why it is not there.
/// A request's answer (`results` of a batch, of an error) has one per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventResult {
    pub event_id: String,
    pub transaction_id: String,
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This event id was already published on this topic: this is that first result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_carries_either_an_offset_or_an_error() {
        let mut result = EventResult {
            event_id: "e".into(),
            transaction_id: "t".into(),
            topic: "registrations".into(),
            partition: Some(2),
            offset: Some(41),
            error: None,
            replayed: false,
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"event_id": "e", "transaction_id": "t",
                               "topic": "registrations", "partition": 2, "offset": 41})
        );
        result.partition = None;
        result.offset = None;
        result.error = Some("timed out".into());
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({"event_id": "e", "transaction_id": "t",
                               "topic": "registrations", "error": "timed out"})
        );
    }

    #[test]
    fn what_is_not_known_is_absent() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no such replay");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"code": "not_found", "error": "no such replay"})
        );
        let bad = ErrorBody {
            field: Some("limit".into()),
            ..ErrorBody::new(ErrorCode::Invalid, "limit 0 is out of range")
        };
        assert_eq!(
            serde_json::to_value(&bad).unwrap(),
            serde_json::json!({"code": "invalid", "error": "limit 0 is out of range",
                               "field": "limit"})
        );
    }

    #[test]
    fn codes_are_snake_case_each_with_its_status() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            assert_eq!(ErrorCode::of_status(code.status()), code, "{code}");
        }
        assert_eq!(ErrorCode::of_status(422), ErrorCode::Conflict);
    }

    #[test]
    fn a_client_reads_an_answer_without_a_code_or_with_a_new_one() {
        let old: ErrorBody = serde_json::from_str(r#"{"error":"x","field":"limit"}"#).unwrap();
        assert_eq!(
            (old.code, old.field.as_deref()),
            (ErrorCode::Unknown, Some("limit"))
        );
        let newer: ErrorBody = serde_json::from_str(r#"{"code":"teapot","error":"x"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Unknown);
    }
}
