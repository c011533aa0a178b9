//! The axum side: [`Guard::require`] puts a route behind a permission, answers 401/403/503
//! as JSON, puts the [`Caller`] in the request's extensions (and [`Caller`] is an extractor),
//! and reports every denial: a `category="security"` log line, a metric, and the service's
//! [`DenialSink`] (the archive appends it to its audit trail).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use retrace_http::ApiError;
use retrace_telemetry::InternalEvent;
use tower::{Layer, Service};

use crate::authenticator::{AuthError, AuthSetupError, Authenticator};
use crate::caller::Caller;
use crate::config::AuthConfig;
use crate::events::RequestDenied;
use crate::flood::FloodGate;
use crate::permissions::Permission;

/// The `reason` of a request refused because the caller may not do it.
pub(crate) const FORBIDDEN: &str = "forbidden";

/// One refused request, as handed to a [`DenialSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The caller, when it was authenticated (a 403).
    pub caller: Option<Caller>,
    /// Who it was, when known even without a role (a person with no mapped role).
    pub actor: Option<String>,
    pub origin: String,
    pub method: String,
    pub path: String,
    /// 401, 403 or 503.
    pub status: u16,
    /// Short and fixed: `missing`, `expired`, `forbidden`, ... (the metric's label).
    pub reason: &'static str,
    /// The sentence the caller was answered with.
    pub message: String,
}

/// Where a service records denials, beyond the log line and metric the guard emits itself.
/// Called on the request's task: keep it quick (queue the work if it is slow).
pub trait DenialSink: Send + Sync + 'static {
    fn denied(&self, denial: &Denial);
}

/// Records nothing more than the guard's own log line and metric.
pub struct LogOnly;

impl DenialSink for LogOnly {
    fn denied(&self, _denial: &Denial) {}
}

/// Checks callers for a service's routes. Cheap to clone; clones share the authenticator,
/// which [`Guard::reload`] replaces for all of them.
#[derive(Clone)]
pub struct Guard {
    authenticator: Arc<RwLock<Arc<Authenticator>>>,
    sink: Arc<dyn DenialSink>,
    /// Which denials reach the sink: failed authentication at most once per origin and
    /// reason a minute.
    flood: Arc<FloodGate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    Caller,
    Permission(Permission),
}

impl Guard {
    pub fn new(authenticator: Arc<Authenticator>, sink: Arc<dyn DenialSink>) -> Guard {
        Guard {
            authenticator: Arc::new(RwLock::new(authenticator)),
            sink,
            flood: Arc::default(),
        }
    }

    /// The authenticator checking requests now.
    pub fn authenticator(&self) -> Arc<Authenticator> {
        Arc::clone(
            &self
                .authenticator
                .read()
                .expect("the authenticator lock is never poisoned"),
        )
    }

    /// Checks the next requests with `config` (a reloaded `[auth]`: its OIDC role map, issuer,
    /// keys, bootstrap hash), keeping the token registry; requests being checked finish with
    /// the authenticator they started with. On an error the current one stays.
    pub async fn reload(&self, config: &AuthConfig) -> Result<(), AuthSetupError> {
        let registry = self.authenticator().registry().cloned();
        let fresh = Arc::new(Authenticator::new(config, registry).await?);
        *self
            .authenticator
            .write()
            .expect("the authenticator lock is never poisoned") = fresh;
        Ok(())
    }

    /// A layer admitting only callers holding `permission`.
    pub fn require(&self, permission: Permission) -> RequireLayer {
        self.layer(Need::Permission(permission))
    }

    /// A layer admitting any authenticated caller.
    pub fn authenticated(&self) -> RequireLayer {
        self.layer(Need::Caller)
    }

    /// The layer for `/metrics`: open when `auth.metrics_public`, else any authenticated
    /// caller. (`/healthz` stays open: put no layer on it.)
    pub fn metrics(&self) -> RequireLayer {
        if self.authenticator().metrics_public() {
            self.layer(Need::Nothing)
        } else {
            self.layer(Need::Caller)
        }
    }

    fn layer(&self, need: Need) -> RequireLayer {
        RequireLayer {
            guard: self.clone(),
            need,
        }
    }

    /// Refuses a request a handler found not allowed (a topic off the caller's allow-list, a
    /// bulk replay above the size needing admin): reports it like the guard's own denials and
    /// returns the 403 to answer.
    pub fn forbid(&self, caller: &Caller, method: &str, path: &str, message: String) -> Response {
        self.forbid_because(caller, method, path, FORBIDDEN, message)
    }

    /// [`Guard::forbid`] with a `reason` of its own (short and fixed: the metric's label and
    /// the answer's `error`), e.g. `internal_topic`.
    pub fn forbid_because(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        reason: &'static str,
        message: String,
    ) -> Response {
        self.deny(Denial {
            actor: Some(caller.actor.clone()),
            caller: Some(caller.clone()),
            origin: caller.origin.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
            status: StatusCode::FORBIDDEN.as_u16(),
            reason,
            message,
        })
    }

    fn deny(&self, denial: Denial) -> Response {
        RequestDenied {
            caller: denial.caller.as_ref(),
            actor: denial.actor.as_deref(),
            origin: &denial.origin,
            method: &denial.method,
            path: &denial.path,
            reason: denial.reason,
            detail: &denial.message,
        }
        .emit();
        let response = error_response(
            StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN),
            &denial.message,
            denial.reason,
        );
        if let Some(denial) = self.flood.admit(denial, Instant::now()) {
            self.sink.denied(&denial);
        }
        response
    }

    async fn check(&self, need: Need, request: &mut Request) -> Result<(), Response> {
        if need == Need::Nothing {
            return Ok(());
        }
        let origin = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let authenticator = self.authenticator();
        match authenticator.authenticate(request.headers(), &origin).await {
            Ok(caller) => {
                if let Need::Permission(permission) = need
                    && !caller.can(permission)
                {
                    let message = format!(
                        "{} (role {}) may not do this: it needs the `{permission}` permission",
                        caller.actor, caller.role
                    );
                    return Err(self.forbid(&caller, &method, &path, message));
                }
                request.extensions_mut().insert(caller);
                Ok(())
            }
            Err(error) => Err(self.deny(Denial {
                caller: None,
                actor: match &error {
                    AuthError::NoRole { actor, .. } => Some(actor.clone()),
                    _ => None,
                },
                origin,
                method,
                path,
                status: error.status().as_u16(),
                reason: error.reason(),
                message: error.to_string(),
            })),
        }
    }
}

/// The error document answered with `status`, with the headers that status calls for.
fn error_response(status: StatusCode, message: &str, reason: &str) -> Response {
    let mut response = ApiError::of_status(status, message).into_response();
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6750: a presented but unacceptable token is `invalid_token`.
        let challenge = if reason == "missing" {
            HeaderValue::from_static("Bearer realm=\"retrace\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"retrace\", error=\"invalid_token\"")
        };
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A [`tower::Layer`] from [`Guard::require`], [`Guard::authenticated`] or [`Guard::metrics`].
#[derive(Clone)]
pub struct RequireLayer {
    guard: Guard,
    need: Need,
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Require<S> {
        Require {
            inner,
            guard: self.guard.clone(),
            need: self.need,
        }
    }
}

/// The service [`RequireLayer`] wraps a route in.
#[derive(Clone)]
pub struct Require<S> {
    inner: S,
    guard: Guard,
    need: Need,
}

impl<S> Service<Request> for Require<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was polled ready is the one called.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let guard = self.guard.clone();
        let need = self.need;
        Box::pin(async move {
            match guard.check(need, &mut request).await {
                Ok(()) => inner.call(request).await,
                Err(refused) => Ok(refused),
            }
        })
    }
}

/// A handler behind the guard takes the [`Caller`] as an argument.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this route reads the caller but is not behind retrace_auth's guard; \
                 add `.route_layer(guard.require(...))`",
                "unguarded",
            )
        })
    }
}

#[cfg(test)]
#[path = "middleware_tests.rs"]
mod tests;
