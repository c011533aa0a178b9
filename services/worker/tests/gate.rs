//! The gate against real brokers and a real HTTP target: it closes while a load generator
//! publishes above the threshold and reopens after the hysteresis; it follows a consumer
//! group's lag; it closes while a target is slow and reopens once it is fast again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use retrace_sdk::KafkaSettings;
use retrace_tests::{Broker, PATIENCE, eventually, on_every_broker, unique_topic};
use retrace_worker::gate::{Gate, GateConfig, GateHandle, GateSpec, GateState};
use tokio_util::sync::CancellationToken;

on_every_broker!(
    gate_closes_under_load_and_reopens_after_the_hysteresis,
    gate_follows_consumer_lag
);

fn spec(section: &str) -> GateSpec {
    let config: GateConfig = toml::from_str(section).expect("the test's gate section parses");
    config
        .validate("queues.test.gate")
        .expect("the test's gate section is valid")
}

/// Waits until the gate's state satisfies `accept`, returning it.
async fn state_where(
    handle: &GateHandle,
    what: &str,
    accept: impl Fn(&GateState) -> bool,
) -> GateState {
    eventually(what, PATIENCE, || {
        let state = handle.state();
        let found = accept(&state).then_some(state);
        async move { found }
    })
    .await
}

/// Publishes to `topic` as fast as the broker acknowledges, until `stop`.
fn generate_load(
    broker: &Broker,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let mut config = broker.client_config();
    config.set("linger.ms", "0");
    let producer: BaseProducer = config.create().expect("the load generator's producer");
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..20 {
                let record = BaseRecord::<(), _>::to(&topic).payload("peak traffic");
                if producer.send(record).is_ok() {
                    sent += 1;
                }
            }
            producer
                .flush(Duration::from_secs(10))
                .expect("the broker acknowledges the load");
        }
        sent
    })
}

async fn gate_closes_under_load_and_reopens_after_the_hysteresis(broker: Broker) {
    let topic = unique_topic("gate-load");
    broker.create_topic(&topic, 2).await;
    let spec = spec(&format!(
        r#"
        [[signals]]
        kind = "topic_rate"
        topics = ["{topic}"]
        max_rate = 50
        interval_ms = 200
        recover_after_ms = 1000
        "#
    ));
    let shutdown = CancellationToken::new();
    let (handle, gate) = Gate::spawn(
        "load-test",
        &spec,
        &KafkaSettings::new(broker.bootstrap()),
        shutdown.clone(),
    )
    .unwrap();

    let quiet = state_where(&handle, "the gate to open on a quiet topic", |s| s.open).await;
    assert_eq!(quiet.reason, "open: all signals below thresholds");
    assert!(quiet.open_for.is_some());

    let stop = Arc::new(AtomicBool::new(false));
    let generator = generate_load(&broker, &topic, Arc::clone(&stop));
    let peak = state_where(&handle, "the gate to close under load", |s| {
        !s.open && s.reason.starts_with("topic rate ")
    })
    .await;
    assert!(peak.reason.ends_with("/s > 50/s"), "{}", peak.reason);
    assert_eq!(peak.open_for, None);

    stop.store(true, Ordering::Relaxed);
    let sent = tokio::task::spawn_blocking(move || generator.join().unwrap())
        .await
        .unwrap();
    assert!(sent > 0);
    // Below the threshold again, but closed until it has stayed below for recover_after.
    let recovering = state_where(&handle, "the rate to fall below the threshold", |s| {
        s.open || s.reason.starts_with("topic rate recovering:")
    })
    .await;
    assert!(!recovering.open, "reopened without waiting: {recovering:?}");
    let reopened = state_where(&handle, "the gate to reopen after the hysteresis", |s| {
        s.open
    })
    .await;
    assert_eq!(reopened.reason, "open: all signals below thresholds");

    shutdown.cancel();
    gate.await.unwrap();
}

async fn gate_follows_consumer_lag(broker: Broker) {
    let topic = unique_topic("gate-lag");
    let group = unique_topic("gate-lag-group");
    broker.create_topic(&topic, 1).await;
    let producer: BaseProducer = broker.client_config().create().unwrap();
    for i in 0..30 {
        let key = i.to_string();
        producer
            .send(BaseRecord::to(&topic).key(&key).payload("backlog"))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let spec = spec(&format!(
        r#"
        [[signals]]
        kind = "consumer_lag"
        group = "{group}"
        topics = ["{topic}"]
        max_lag = 10
        interval_ms = 200
        recover_after_ms = 500
        "#
    ));
    let shutdown = CancellationToken::new();
    let (handle, gate) = Gate::spawn(
        "lag-test",
        &spec,
        &KafkaSettings::new(broker.bootstrap()),
        shutdown.clone(),
    )
    .unwrap();
    let behind = state_where(&handle, "the gate to close on the group's lag", |s| {
        s.reason.starts_with("lag of group")
    })
    .await;
    assert!(!behind.open);
    assert_eq!(behind.reason, format!("lag of group {group} 30 > 10"));

    // The group catches up: it commits offset 25 (lag 5) without joining.
    let member: BaseConsumer = broker
        .client_config()
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(25))
        .unwrap();
    tokio::task::spawn_blocking(move || member.commit(&offsets, CommitMode::Sync))
        .await
        .unwrap()
        .expect("the broker accepts the group's commit");
    let caught_up = state_where(
        &handle,
        "the gate to reopen once the group caught up",
        |s| s.open,
    )
    .await;
    assert_eq!(caught_up.reason, "open: all signals below thresholds");

    shutdown.cancel();
    gate.await.unwrap();
}

/// A health endpoint that answers after `delay_ms`.
async fn slow_target(
    delay_ms: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/healthz",
        axum::routing::get(move || {
            let delay = Duration::from_millis(delay_ms.load(Ordering::Relaxed));
            async move {
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .unwrap();
    });
    (addr, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_closes_while_the_target_is_slow_and_reopens_when_it_is_fast() {
    let shutdown = CancellationToken::new();
    let delay_ms = Arc::new(AtomicU64::new(0));
    let (addr, server) = slow_target(Arc::clone(&delay_ms), shutdown.clone()).await;
    let spec = spec(&format!(
        r#"
        [[signals]]
        kind = "target_latency"
        url = "http://{addr}/healthz"
        max_p95_ms = 150
        timeout_ms = 2000
        samples = 4
        interval_ms = 100
        recover_after_ms = 1000
        "#
    ));
    let (handle, gate) = Gate::spawn(
        "latency-test",
        &spec,
        &KafkaSettings::new("127.0.0.1:1"),
        shutdown.clone(),
    )
    .unwrap();

    state_where(&handle, "the gate to open while the target is fast", |s| {
        s.open
    })
    .await;
    delay_ms.store(400, Ordering::Relaxed);
    let slow = state_where(&handle, "the gate to close while the target is slow", |s| {
        !s.open && s.reason.starts_with("target p95 ")
    })
    .await;
    assert!(slow.reason.ends_with(" ms > 150 ms"), "{}", slow.reason);

    delay_ms.store(0, Ordering::Relaxed);
    let fast = state_where(&handle, "the gate to reopen once the target is fast", |s| {
        s.open
    })
    .await;
    assert_eq!(fast.reason, "open: all signals below thresholds");

    shutdown.cancel();
    gate.await.unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_counts_an_unreachable_target_as_its_timeout() {
    let port = retrace_tests::free_port();
    let spec = spec(&format!(
        r#"
        [[signals]]
        kind = "target_latency"
        url = "http://127.0.0.1:{port}/healthz"
        max_p95_ms = 100
        timeout_ms = 300
        interval_ms = 100
        "#
    ));
    let shutdown = CancellationToken::new();
    let (handle, gate) = Gate::spawn(
        "unreachable-test",
        &spec,
        &KafkaSettings::new("127.0.0.1:1"),
        shutdown.clone(),
    )
    .unwrap();
    let closed = state_where(&handle, "a reading of the unreachable target", |s| {
        s.reason.starts_with("target p95")
    })
    .await;
    assert!(!closed.open);
    assert_eq!(closed.reason, "target p95 300 ms > 100 ms");
    shutdown.cancel();
    gate.await.unwrap();
}
