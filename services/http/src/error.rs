//! [`ApiError`]: how every Retrace service answers a refusal, the HTTP side of
//! [`retrace_api::ErrorBody`].

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use retrace_api::{ErrorBody, ErrorCode, EventResult};
use serde::de::DeserializeOwned;

/// A refusal: the HTTP status and the error document answered with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    /// `error`, of kind `code`, answered with the code's status.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody::new(code, error),
        }
    }

    /// `error` answered with `status`, of the kind that status means.
    pub fn of_status(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(ErrorCode::of_status(status.as_u16()), error),
        }
    }

    /// 400: `field` (a parameter, a body field, a header) is not valid.
    pub fn invalid(field: &str, error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Invalid, error).with_field(field)
    }

    /// 403.
    pub fn forbidden(error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Forbidden, error)
    }

    /// 404.
    pub fn not_found(error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, error)
    }

    /// 409: nothing to do, or something in the way.
    pub fn conflict(error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Conflict, error)
    }

    /// 503: try again later.
    pub fn unavailable(error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unavailable, error)
    }

    /// 500.
    pub fn internal(error: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Internal, error)
    }

    /// This refusal, naming the request field or parameter at fault.
    pub fn with_field(mut self, field: &str) -> Self {
        self.body.field = Some(field.to_owned());
        self
    }

    /// This refusal with the gateway's per-event results.
    pub fn with_results(mut self, results: Vec<EventResult>) -> Self {
        self.body.results = results;
        self
    }

    /// This refusal's response, asking the client to retry after `seconds`.
    pub fn retry_after(self, seconds: u32) -> Response {
        let mut response = self.into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }
}

/// `body` as JSON of type `T`, or a refusal naming the field at fault (`body` when serde
/// names none): "the request body is not a valid {what}: ...".
pub fn json_body<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        // serde names the field in its message: "missing field `reason`".
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("body");
        ApiError::invalid(
            field,
            format!("the request body is not a valid {what}: {message}"),
        )
    })
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status, self.body.code, self.body.error
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn document(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_refusal_is_its_status_and_the_error_document() {
        let response = ApiError::invalid("limit", "limit 0 is out of range").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            document(response).await,
            serde_json::json!({"code": "invalid", "error": "limit 0 is out of range",
                               "field": "limit"})
        );
        let response = ApiError::of_status(StatusCode::UNPROCESSABLE_ENTITY, "key reused")
            .with_field("Idempotency-Key")
            .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(document(response).await["code"], "conflict");
    }

    #[test]
    fn a_request_body_error_names_the_field() {
        use retrace_api::ReplayRequest;
        let json_body = |body: &[u8]| json_body::<ReplayRequest>(body, "request");
        let missing: ApiError = json_body(b"{}").unwrap_err();
        assert_eq!(missing.body.field.as_deref(), Some("reason"));
        let unknown = json_body(br#"{"reason":"x","dryrun":true}"#).unwrap_err();
        assert_eq!(unknown.body.field.as_deref(), Some("dryrun"));
        let wrong_type = json_body(br#"{"reason":"x","dry_run":"yes"}"#).unwrap_err();
        assert_eq!(wrong_type.body.field.as_deref(), Some("body"));
        assert!(wrong_type.body.error.contains("invalid type"));
    }

    #[tokio::test]
    async fn a_retry_is_asked_for_in_seconds() {
        let response = ApiError::unavailable("Kafka is away").retry_after(5);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            document(response).await,
            serde_json::json!({"code": "unavailable", "error": "Kafka is away"})
        );
    }
}
