//! `retrace-bench gateway`: events per second through the HTTP gateway, over a real loopback
//! socket, as a ratio to the SDK's `Publisher::publish` called directly in the same process
//! on the same mock cluster (the ceiling: the gateway publishes through it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use retrace_fixtures::{Broker, free_port};
use retrace_gateway::GatewayConfig;
use retrace_proto::Envelope;
use retrace_sdk::{KafkaSettings, Publisher};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::smoke;

const TOPIC: &str = "bench.gateway";

#[derive(clap::Args)]
pub struct Options {
    /// Events published by the baseline and by the batched run.
    #[arg(long, default_value_t = 100_000, default_value_ifs = smoke("2000"))]
    events: usize,
    /// Events sent one request each (slower, so fewer).
    #[arg(long, default_value_t = 20_000, default_value_ifs = smoke("500"))]
    single_events: usize,
    #[arg(long, default_value_t = 16, default_value_ifs = smoke("4"))]
    partitions: i32,
    /// Concurrent clients sending one event per request.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Events per batched request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent clients sending batches.
    #[arg(long, default_value_t = 8)]
    batch_clients: usize,
    /// Size of each event's JSON payload, in bytes.
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Events the baseline keeps in flight at once.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// A check that every phase runs, in seconds: 2,000 events (500 single) on 4 partitions
    /// unless set. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::mock();
    broker.create_topic(TOPIC, options.partitions).await;
    println!("events={}", options.events);
    println!("single_events={}", options.single_events);
    println!("partitions={}", options.partitions);
    println!("clients={}", options.clients);
    println!("batch={}", options.batch);
    println!("batch_clients={}", options.batch_clients);
    println!("payload_bytes={}", options.payload_bytes);

    let baseline = baseline(&broker, &options).await?;
    println!("baseline_publish_events_per_s={baseline:.0}");

    let port = free_port();
    let mut config = GatewayConfig::new(broker.bootstrap());
    config.http = ([127, 0, 0, 1], port).into();
    // Authentication as in production: every request carries the bootstrap admin token and
    // is checked, as a publisher's API token would be.
    let auth = crate::auth::secured(&broker).await;
    config.auth = auth.config;
    // The bench creates the topics; the mock cluster has no CreateTopics API.
    config.provisioning.create = false;
    let shutdown = CancellationToken::new();
    let mut server = tokio::spawn(retrace_gateway::run(config, shutdown.clone()));
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if server.is_finished() {
            (&mut server)
                .await?
                .context("the gateway failed to start")?;
            anyhow::bail!("the gateway stopped while starting");
        }
        let health = client.get(format!("{url}/healthz")).send().await;
        if health.is_ok_and(|h| h.status().is_success()) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the gateway did not serve /healthz within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events_url = format!("{url}/v1/topics/{TOPIC}/events");

    let single = send_all(
        &client,
        &events_url,
        &auth.token,
        options.clients,
        request_bodies(options.single_events, 1, options.payload_bytes),
    )
    .await?;
    println!("gateway_single_events_per_s={single:.0}");
    println!("single_ratio={:.2}", single / baseline);

    let batched = send_all(
        &client,
        &events_url,
        &auth.token,
        options.batch_clients,
        request_bodies(options.events, options.batch, options.payload_bytes),
    )
    .await?;
    println!("batched_ratio={:.2}", batched / baseline);

    shutdown.cancel();
    server.await?.context("the gateway failed")?;
    println!(
        "gateway_batched_events_per_s={batched:.0} gateway_single_events_per_s={single:.0} \
         baseline_publish_events_per_s={baseline:.0} ratio={:.2}",
        batched / baseline
    );
    Ok(())
}

fn event(payload: &Value) -> Value {
    json!({
        "type": "registration.submitted.v1",
        "source": "intake",
        "subject_ids": ["beneficiary:42"],
        "attributes": {"region": "north"},
        "payload": payload,
    })
}

fn payload(bytes: usize) -> Value {
    json!({"note": "x".repeat(bytes.saturating_sub(12))})
}

/// Request bodies carrying `events` events, `per_request` each (1: a single event object).
fn request_bodies(events: usize, per_request: usize, payload_bytes: usize) -> Vec<Vec<u8>> {
    let one = event(&payload(payload_bytes));
    let body = if per_request == 1 {
        serde_json::to_vec(&one)
    } else {
        serde_json::to_vec(&vec![one; per_request])
    }
    .expect("events serialize");
    vec![body; events.div_ceil(per_request)]
}

/// The ceiling: the same events through `Publisher::publish`, `in_flight` at a time.
async fn baseline(broker: &Broker, options: &Options) -> anyhow::Result<f64> {
    let publisher = Publisher::new(&KafkaSettings::new(broker.bootstrap()))?;
    let payload = serde_json::to_vec(&payload(options.payload_bytes))?;
    let started = Instant::now();
    let mut published = futures::stream::iter(0..options.events)
        .map(|_| {
            let mut envelope = Envelope::root("intake", "registration.submitted.v1")
                .with_subject("beneficiary:42")
                .with_payload("application/json", payload.clone());
            envelope
                .attributes
                .insert("region".to_owned(), "north".to_owned());
            let publisher = publisher.clone();
            async move { publisher.publish(TOPIC, &envelope).await }
        })
        .buffer_unordered(options.in_flight);
    let mut count = 0;
    while let Some(result) = published.next().await {
        result?;
        count += 1;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Sends every body from `clients` concurrent clients, each waiting for its answer before
/// its next request; returns events acknowledged per second.
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    clients: usize,
    bodies: Vec<Vec<u8>>,
) -> anyhow::Result<f64> {
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let queue = Arc::clone(&queue);
        let client = client.clone();
        let url = url.to_owned();
        let token = token.to_owned();
        tokio::spawn(async move {
            let mut events = 0;
            loop {
                let Some(body) = queue.lock().expect("not poisoned").pop() else {
                    return anyhow::Ok(events);
                };
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let answer: Value = response.json().await?;
                anyhow::ensure!(
                    status.as_u16() == 202,
                    "gateway answered {status}: {answer}"
                );
                events += answer["results"].as_array().map_or(1, Vec::len);
            }
        })
    });
    let mut events = 0;
    for worker in futures::future::join_all(workers).await {
        events += worker??;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}
