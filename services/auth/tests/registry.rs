//! The token registry against real brokers (the mock cluster and tansu): tokens created on
//! one registry authenticate there and on a registry started later; revocation and expiry
//! refuse them.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use retrace_auth::{
    AuthConfig, AuthError, Authenticator, NewToken, Permission, Role, TokenRegistry,
};
use retrace_sdk::KafkaSettings;
use retrace_tests::{Broker, PATIENCE, eventually, on_every_broker, unique_topic};
use tokio_util::sync::CancellationToken;

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn spec(name: &str, role: Role, expires_in: Option<Duration>) -> NewToken {
    NewToken {
        name: name.into(),
        role,
        extra: vec![],
        topics: Some(vec!["births".into()]),
        expires_in,
    }
}

async fn start(
    broker: &Broker,
    topic: &str,
    shutdown: &CancellationToken,
) -> (TokenRegistry, Authenticator, tokio::task::JoinHandle<()>) {
    let kafka = broker.settings();
    let (registry, task) = TokenRegistry::start(&kafka, topic, keys(), shutdown.child_token())
        .await
        .expect("the registry starts");
    let config = AuthConfig {
        tokens_topic: topic.to_owned(),
        ..AuthConfig::default()
    };
    let authenticator = Authenticator::new(&config, Some(registry.clone()))
        .await
        .unwrap();
    (registry, authenticator, task)
}

fn keys() -> retrace_auth::SigningKeys {
    retrace_auth::SigningKeys::from_hex(&[retrace_tests::TEST_SIGNING_KEY], "in the test").unwrap()
}

async fn caught_up(registry: &TokenRegistry) {
    eventually("the registry to catch up", PATIENCE, || async {
        registry.caught_up().then_some(())
    })
    .await;
}

async fn tokens_live_on_the_topic(broker: Broker) {
    let topic = unique_topic("retrace.tokens");
    broker.create_topic(&topic, 1).await;
    let shutdown = CancellationToken::new();
    let (registry, auth, first_task) = start(&broker, &topic, &shutdown).await;
    caught_up(&registry).await;

    let (publisher, record) = registry
        .create(spec("billing", Role::Publisher, None), "admin")
        .await
        .unwrap();
    let caller = auth.authenticate(&bearer(&publisher), "o").await.unwrap();
    assert_eq!(caller.actor, "billing");
    assert!(caller.can_publish_to("births") && !caller.can(Permission::TraceRead));

    let (short_lived, _) = registry
        .create(
            spec("nightly", Role::Support, Some(Duration::from_secs(1))),
            "admin",
        )
        .await
        .unwrap();
    let error = registry
        .create(spec("billing", Role::Support, None), "admin")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("\"billing\""), "{error}");

    let (analyst, _) = registry
        .create(spec("reports", Role::Analyst, None), "admin")
        .await
        .unwrap();
    registry.revoke("reports", "admin").await.unwrap();
    let error = auth.authenticate(&bearer(&analyst), "o").await.unwrap_err();
    assert!(matches!(error, AuthError::Revoked { .. }), "{error}");

    // Expiry is checked at each request; the token above lives one second.
    eventually("the short-lived token to expire", PATIENCE, || async {
        matches!(
            auth.authenticate(&bearer(&short_lived), "o").await,
            Err(AuthError::Expired { .. })
        )
        .then_some(())
    })
    .await;

    // A registry started later reads every record from the beginning.
    let (later, later_auth, later_task) = start(&broker, &topic, &shutdown).await;
    caught_up(&later).await;
    let names: Vec<String> = later.list().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["billing", "nightly", "reports"]);
    let caller = later_auth
        .authenticate(&bearer(&publisher), "o")
        .await
        .unwrap();
    assert_eq!(caller.role, Role::Publisher);
    let error = later_auth
        .authenticate(&bearer(&analyst), "o")
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::Revoked { .. }), "{error}");

    // A revocation made on the later registry reaches the first one through the topic.
    later.revoke(&record.id, "admin").await.unwrap();
    eventually(
        "the revocation to reach the first registry",
        PATIENCE,
        || async {
            matches!(
                auth.authenticate(&bearer(&publisher), "o").await,
                Err(AuthError::Revoked { .. })
            )
            .then_some(())
        },
    )
    .await;

    shutdown.cancel();
    first_task.await.unwrap();
    later_task.await.unwrap();
}

async fn a_missing_topic_is_named(broker: Broker) {
    let topic = unique_topic("retrace.tokens.missing");
    // Tried again and again (it might have been created a moment ago) until the deadline.
    let kafka = KafkaSettings {
        startup_deadline: Duration::from_secs(2),
        ..broker.settings()
    };
    let error = TokenRegistry::start(&kafka, &topic, keys(), CancellationToken::new())
        .await
        .err()
        .expect("a missing topic is an error");
    assert!(error.to_string().contains(&topic), "{error}");
}

on_every_broker!(tokens_live_on_the_topic, a_missing_topic_is_named);
