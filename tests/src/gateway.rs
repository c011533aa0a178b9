//! A gateway running in the test's process, on a free port, with authentication off unless a
//! scenario turns it on.

use retrace_gateway::{GatewayConfig, GatewayError};
use serde_json::Value;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{Broker, PATIENCE, eventually, free_port};

pub struct RunningGateway {
    pub url: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    /// A test that panics drops the gateway without stopping it: this stops it, so its
    /// blocking token reader ends and the test's runtime can close (it hung otherwise).
    _stop_on_drop: DropGuard,
    task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

/// A response as a test looks at it.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn start_gateway(
    bootstrap: &str,
    properties: &[&str],
    configure: impl FnOnce(&mut GatewayConfig),
) -> RunningGateway {
    let gateway = spawn_gateway(bootstrap, properties, configure);
    eventually("the gateway to serve /healthz", PATIENCE, || async {
        let (status, _) = gateway.health().await?;
        (status == 200).then_some(())
    })
    .await;
    gateway
}

/// A gateway that may still be starting: [`start_gateway`] without waiting for it.
pub fn spawn_gateway(
    bootstrap: &str,
    properties: &[&str],
    configure: impl FnOnce(&mut GatewayConfig),
) -> RunningGateway {
    let mut config = GatewayConfig::new(bootstrap);
    config.kafka = config
        .kafka
        .clone()
        .with_properties(properties.iter().copied())
        .unwrap();
    let port = free_port();
    config.http = ([127, 0, 0, 1], port).into();
    // Most scenarios are about publishing; `callers_need_a_token_and_a_topic_on_its_list`
    // turns authentication on.
    config.auth.enabled = false;
    config.auth.signing_keys = vec![crate::TEST_SIGNING_KEY.to_owned()];
    configure(&mut config);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(retrace_gateway::run(config, shutdown.clone()));
    RunningGateway {
        url: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        _stop_on_drop: shutdown.clone().drop_guard(),
        shutdown,
        task,
    }
}

pub async fn start_gateway_on(
    broker: &Broker,
    configure: impl FnOnce(&mut GatewayConfig),
) -> RunningGateway {
    start_gateway(&broker.bootstrap(), &[], configure).await
}

impl RunningGateway {
    /// `/healthz`'s status and body, once the port answers.
    pub async fn health(&self) -> Option<(u16, String)> {
        let response = self
            .client
            .get(format!("{}/healthz", self.url))
            .send()
            .await
            .ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    pub async fn post(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        self.post_with(path, content_type, body, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.client.post(format!("{}{path}", self.url)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn events(&self, topic: &str, body: &Value) -> Answer {
        self.events_with(topic, body, &[]).await
    }

    pub async fn events_with(&self, topic: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.post_with(
            &format!("/v1/topics/{topic}/events"),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
            headers,
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}
