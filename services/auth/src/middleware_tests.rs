//! The guard on a real socket: axum served on a loopback port, called with reqwest.

use std::sync::Mutex;

use axum::Router;
use axum::routing::get;
use jiff::Timestamp;

use super::*;
use crate::permissions::Role;
use crate::registry::TokenRegistry;
use crate::token::{NewToken, TokenRecord};
use crate::{AuthConfig, CredentialKind};

#[derive(Default)]
struct Recorded(Mutex<Vec<Denial>>);

impl DenialSink for Recorded {
    fn denied(&self, denial: &Denial) {
        self.0.lock().unwrap().push(denial.clone());
    }
}

fn issue(name: &str, role: Role) -> (String, TokenRecord) {
    TokenRecord::issue(
        NewToken {
            name: name.into(),
            role,
            extra: vec![],
            topics: None,
            expires_in: None,
        },
        "test",
        Timestamp::now(),
    )
    .unwrap()
}

async fn serve(config: AuthConfig, records: Vec<TokenRecord>, sink: Arc<Recorded>) -> String {
    let authenticator = Authenticator::new(&config, Some(TokenRegistry::detached(records)))
        .await
        .unwrap();
    let guard = Guard::new(Arc::new(authenticator), sink);
    let app = Router::new()
        .route(
            "/v1/transactions/{id}",
            get(|caller: Caller| async move { format!("{} {}", caller.actor, caller.origin) }),
        )
        .route_layer(guard.require(Permission::TraceRead))
        .merge(
            Router::new()
                .route("/metrics", get(|| async { "metrics" }))
                .route_layer(guard.metrics()),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

async fn get_with(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> serde_json::Value {
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["field"].is_null(), "{body}");
    body
}

#[tokio::test]
async fn the_guard_answers_401_403_and_200() {
    let (support, support_record) = issue("support-desk", Role::Support);
    let (publisher, publisher_record) = issue("billing", Role::Publisher);
    let sink = Arc::new(Recorded::default());
    let base = serve(
        AuthConfig::default(),
        vec![support_record, publisher_record],
        sink.clone(),
    )
    .await;
    let trace = format!("{base}/v1/transactions/t-1");

    let response = get_with(&trace, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"retrace\""
    );
    let body = error_of(response).await;
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    assert_eq!(body["code"], "unauthenticated", "{body}");

    let response = get_with(&trace, Some("rtk_nonsense")).await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let response = get_with(&trace, Some(&publisher)).await;
    assert_eq!(response.status(), 403);
    assert!(!response.headers().contains_key("www-authenticate"));
    let body = error_of(response).await;
    assert_eq!(body["code"], "forbidden", "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("billing") && message.contains("trace:read"),
        "{message}"
    );

    let response = get_with(&trace, Some(&support)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("support-desk 127.0.0.1:"), "{text}");

    assert_eq!(
        get_with(&format!("{base}/healthz"), None).await.status(),
        200
    );
    assert_eq!(
        get_with(&format!("{base}/metrics"), None).await.status(),
        200
    );

    let denials = sink.0.lock().unwrap().clone();
    let summary: Vec<(u16, &str, Option<&str>)> = denials
        .iter()
        .map(|d| (d.status, d.reason, d.actor.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (401, "missing", None),
            (401, "malformed", None),
            (403, "forbidden", Some("billing")),
        ]
    );
    for denial in &denials {
        assert_eq!(denial.path, "/v1/transactions/t-1");
        assert_eq!(denial.method, "GET");
        assert!(denial.origin.starts_with("127.0.0.1:"), "{denial:?}");
    }
    let forbidden = denials[2].caller.as_ref().unwrap();
    assert_eq!(forbidden.credential, CredentialKind::ApiToken);
}

#[tokio::test]
async fn metrics_can_be_closed() {
    let (publisher, record) = issue("scraper", Role::Publisher);
    let config = AuthConfig {
        metrics_public: false,
        ..AuthConfig::default()
    };
    let base = serve(config, vec![record], Arc::new(Recorded::default())).await;
    let metrics = format!("{base}/metrics");
    assert_eq!(get_with(&metrics, None).await.status(), 401);
    assert_eq!(get_with(&metrics, Some(&publisher)).await.status(), 200);
    assert_eq!(
        get_with(&format!("{base}/healthz"), None).await.status(),
        200
    );
}

#[tokio::test]
async fn disabled_auth_lets_everyone_in_as_anonymous() {
    let config = AuthConfig {
        enabled: false,
        ..AuthConfig::default()
    };
    let base = serve(config, vec![], Arc::new(Recorded::default())).await;
    let response = get_with(&format!("{base}/v1/transactions/t"), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().starts_with("anonymous "));
}

#[tokio::test]
async fn an_unguarded_route_reading_the_caller_is_a_server_error() {
    let app: Router = Router::new().route("/x", get(|caller: Caller| async move { caller.actor }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let response = get_with(&format!("http://{addr}/x"), None).await;
    assert_eq!(response.status(), 500);
}
