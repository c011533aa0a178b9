//! Authentication as production runs it, for the services a bench starts in its process:
//! on, with a bootstrap admin token made offline (`retrace_auth::generate`) that the bench's
//! own requests carry, and a signing key for the token records and audit events.

use retrace_auth::{AuthConfig, DEFAULT_TOKENS_TOPIC, SigningKeys};
use retrace_fixtures::Broker;

/// `[auth]` of a service the bench starts, and the token its requests send.
pub struct Secured {
    pub config: AuthConfig,
    /// Sent as `Authorization: Bearer …`: the bootstrap admin.
    pub token: String,
}

/// Authentication on, with a fresh bootstrap admin token and signing key. Creates the tokens
/// topic first: the mock cluster has no admin API, so the services cannot.
pub async fn secured(broker: &Broker) -> Secured {
    broker.create_topic(DEFAULT_TOKENS_TOPIC, 1).await;
    let (token, digest) = retrace_auth::generate();
    Secured {
        config: AuthConfig {
            enabled: true,
            bootstrap_admin_sha256: Some(digest),
            signing_keys: vec![SigningKeys::generate_hex()],
            ..AuthConfig::default()
        },
        token,
    }
}
