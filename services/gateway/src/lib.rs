//! The HTTP gateway: services not written in Rust publish Retrace events, and report what
//! they did with them, over HTTP instead of linking the SDK.
//!
//! - `POST /v1/topics/{topic}/events` takes one event as JSON, a JSON array of them (a
//!   batch), or one protobuf `retrace.v1.Envelope`, fills in a missing event id (UUIDv7) and
//!   transaction id (a new transaction), validates every event before publishing any, and
//!   answers `202` with each event's partition and offset only once Kafka acknowledged it
//!   (`acks=all`, through [`retrace_sdk::Publisher`]).
//! - `POST /v1/outcomes` takes a consumer's outcome as JSON and publishes it on
//!   `retrace.outcomes`.
//!
//! A repeated `Idempotency-Key`, or an event id already published on the same topic, is
//! answered with the first result instead of being published twice, for a configurable
//! window. That memory is per gateway instance, in memory: it does not survive a restart and
//! is not shared between instances.
//!
//! Errors are JSON, `{"error": "...", "field": "[2].transaction_id"}`, naming the field at
//! fault; `503` with `Retry-After` when Kafka did not acknowledge, listing which events of a
//! batch went through.

mod config;
mod convert;
mod events;
mod http;
mod idempotency;
mod publish;

use std::sync::Arc;

use axum::Router;
use retrace_auth::Guard;
use retrace_sdk::{PublishError, Publisher};
use retrace_service::{Host, Hosted, Reloader};
use retrace_telemetry::InternalEvent;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, GatewayArgs, GatewayConfig, IdempotencySettings};
pub use http::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, RETRY_AFTER_SECONDS};

use crate::events::GatewayStarted;
use crate::http::{EventResult, Remembered};
use crate::idempotency::Memory;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}. Check the bootstrap servers and the Kafka properties (a misspelt name?)")]
    Kafka(#[source] PublishError),
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] retrace_auth::ServiceAuthError),
    #[error(transparent)]
    Http(#[from] retrace_http::HttpError),
}

/// The gateway's routes and what they share. Cheap to clone; clones share one producer and
/// one idempotency memory.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    publisher: Publisher,
    guard: Guard,
    max_body_bytes: usize,
    /// `[auth] tokens_topic`: refused like Retrace's other own topics, whatever its name.
    tokens_topic: String,
    /// Event ids published, per topic, with their first result.
    events: Memory<EventResult>,
    /// `Idempotency-Key`s, per route (and topic), with their request and answer.
    requests: Memory<Remembered>,
}

impl Gateway {
    /// Creates the Kafka producer (it connects lazily: an unreachable Kafka shows as `503`s,
    /// not here), and registers the gateway's metrics. `guard` decides who may publish.
    pub fn new(config: &GatewayConfig, guard: Guard) -> Result<Gateway, GatewayError> {
        let topics: Vec<&str> = config
            .provisioning
            .extra
            .iter()
            .map(String::as_str)
            .collect();
        events::register_metrics(&topics);
        let publisher = Publisher::new(&config.kafka).map_err(GatewayError::Kafka)?;
        let idempotency = &config.idempotency;
        Ok(Gateway {
            shared: Arc::new(Shared {
                publisher,
                guard,
                max_body_bytes: config.max_body_bytes,
                tokens_topic: config.auth.tokens_topic.clone(),
                events: Memory::new(idempotency.window, idempotency.capacity),
                requests: Memory::new(idempotency.window, idempotency.capacity),
            }),
        })
    }

    /// The `/v1` routes only, to serve alone ([`run`]) or beside other services' routes.
    pub fn router(&self) -> Router {
        http::router(self.clone())
    }
}

/// Serves the gateway's routes, `/healthz` and `/metrics` on `config.http` until `shutdown`
/// is cancelled; requests in flight are answered first. `config` holds for good.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> Result<(), GatewayError> {
    serve(Reloader::fixed("gateway", config), shutdown).await
}

/// [`run`], answering `GET /v1/config` and reloading on SIGHUP and when the file changes:
/// the TLS certificate is read again, and `[auth]`'s role map and OIDC settings apply to the
/// next request.
pub async fn serve(
    reloader: Reloader<GatewayConfig>,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let host = Host::new("gateway", reloader, shutdown);
    host.serve(|start| async move {
        let config = start.config();
        let auth = start.service_auth().await?;
        let gateway = Gateway::new(config, auth.guard.clone())?;
        GatewayStarted {
            bootstrap: &config.kafka.bootstrap_servers,
            url: start.url(),
        }
        .emit();
        Ok(Hosted::with_auth(gateway.router(), auth))
    })
    .await
}
