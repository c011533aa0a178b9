//! Who is calling Retrace, and may they do this.
//!
//! - [`Permission`]s and the [`Role`]s that bundle them; deny by default.
//! - [`Caller`]: the actor, its role and extra permissions, its publish allow-list, where it
//!   called from and with which [`CredentialKind`].
//! - API tokens for services and scripts (`rtk_<id>_<secret>`, kept only as a SHA-256 of the
//!   secret in a [`TokenRecord`]), held on a compacted Kafka topic that every service reads
//!   into its [`TokenRegistry`]; a bootstrap admin token made offline with [`generate`].
//! - OIDC bearer tokens (JWTs) for people, verified against the provider's JWKS, with a claim
//!   mapped to roles (`[auth.oidc]` in [`AuthConfig`]).
//! - Token records and audit events signed (HMAC-SHA256, header `retrace-signature`) with the
//!   [`SigningKeys`] Retrace's services share, and verified by every reader.
//! - [`Authenticator`]: headers → [`Caller`] or [`AuthError`]; [`Guard`]: the axum layer that
//!   puts a route behind a permission and reports every denial to a [`DenialSink`].
//!
//! ```no_run
//! # async fn example(registry: retrace_auth::TokenRegistry) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use retrace_auth::{AuthConfig, Authenticator, Caller, Guard, LogOnly, Permission};
//!
//! let authenticator = Authenticator::new(&AuthConfig::default(), Some(registry)).await?;
//! let guard = Guard::new(Arc::new(authenticator), Arc::new(LogOnly));
//! let app: Router = Router::new()
//!     .route("/v1/transactions/{id}", get(|caller: Caller| async move { caller.actor }))
//!     .route_layer(guard.require(Permission::TraceRead));
//! # Ok(()) }
//! ```
//!
//! Serve with `into_make_service_with_connect_info::<SocketAddr>()` so denials name the
//! remote address.

mod authenticator;
mod caller;
mod config;
mod events;
mod flood;
mod middleware;
mod oidc;
mod permissions;
mod registry;
mod service;
mod signing;
mod token;

pub use authenticator::{
    ANONYMOUS_ACTOR, AuthError, AuthSetupError, Authenticator, BOOTSTRAP_ACTOR,
};
pub use caller::{Caller, CredentialKind};
pub use config::{AuthConfig, AuthConfigError, DEFAULT_TOKENS_TOPIC, OidcConfig};
pub use events::register_metrics;
pub use flood::{FLOOD_WINDOW, MAX_TARGET};
pub use middleware::{Denial, DenialSink, Guard, LogOnly, Require, RequireLayer};
pub use oidc::{JwksError, OidcSetupError};
pub use permissions::{Grant, GrantError, Permission, Role};
pub use registry::{RegistryError, TokenRegistry};
pub use service::{AuditSender, ServiceAuth, ServiceAuthError};
pub use signing::{MIN_KEY_BYTES, SIGNATURE_HEADER, SigningKeyError, SigningKeys, Verdict};
pub use token::{NewToken, TOKEN_PREFIX, TokenFormatError, TokenRecord, generate, sha256_hex};
