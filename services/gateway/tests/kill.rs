//! The gateway binary, SIGKILLed at random moments while a client publishes through it:
//! every event it answered 2xx for is in Kafka and archived exactly once, and no event is
//! archived twice.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use retrace_log_store::RecordKey;
use retrace_tests::{
    Broker, Generator, PATIENCE, ServiceProcess, Stop, eventually, free_port, next_kill_at,
    on_every_broker, spawn_gateway_process, start_archive, unique_topic,
};

const KILLS: usize = 50;
/// Kills land after 1 to this many newly acknowledged events.
const KILL_SPREAD: i64 = 100;
const PARTITIONS: i32 = 2;

fn spawn_gateway(broker: &Broker, http: &str, config: &std::path::Path) -> ServiceProcess {
    spawn_gateway_process(env!("CARGO_BIN_EXE_retrace-gateway"), broker, http, config)
}

/// How many records `topic` holds in Kafka: acknowledged or not, whatever reached it.
fn records_in_kafka(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    (0..PARTITIONS)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("the broker reports watermarks");
            high
        })
        .sum()
}

async fn sigkilled_gateway_loses_no_acknowledged_event(broker: Broker) {
    let topic = unique_topic("gateway-kill");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[auth]\nenabled = false\n").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let generator = Generator::start(4, Duration::from_millis(5), {
        let url = format!("http://{http}/v1/topics/{topic}/events");
        move |n| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let event_id = retrace_proto::new_event_id();
                let event = serde_json::json!({
                    "event_id": event_id, "type": "stream.event.v1", "source": "kill-test",
                    "subject_ids": [format!("beneficiary:{n}")],
                });
                let answer = client.post(&url).json(&event).send().await.ok()?;
                answer.status().is_success().then_some(event_id)
            }
        }
    });

    for _ in 0..KILLS {
        // The previous process is gone: every acknowledgement from now on comes from this one.
        let kill_at = next_kill_at(generator.acknowledged_count() as i64, KILL_SPREAD);
        let gateway = spawn_gateway(&broker, &http, config.path());
        eventually(&format!("{kill_at} events acknowledged"), PATIENCE, || {
            let count = generator.acknowledged_count() as i64;
            async move { (count >= kill_at).then_some(()) }
        })
        .await;
        gateway.stop(Stop::Kill);
    }
    let acknowledged = generator.finish().await;

    let in_kafka = records_in_kafka(&broker, &topic);
    assert!(
        in_kafka >= acknowledged.len() as i64,
        "Kafka holds {in_kafka} records, fewer than the {} acknowledged",
        acknowledged.len()
    );
    archive.wait_for_records(&topic, in_kafka).await;
    let (store, _dir) = archive.stop().await;
    let mut copies = BTreeMap::<String, usize>::new();
    for partition in 0..PARTITIONS {
        let next = store.next_offset(&topic, partition).unwrap_or(0);
        for offset in 0..next {
            let key = RecordKey {
                topic: topic.clone(),
                partition,
                epoch: 0,
                offset,
            };
            let record = store.get(&key).unwrap().expect("no offset missing");
            let ids = record.ids.expect("the gateway publishes traceable events");
            *copies.entry(ids.event_id).or_default() += 1;
        }
    }
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "events archived twice: {doubled:?}");
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not archived: {lost:?}");
    println!(
        "gateway kill loop: kills={KILLS} acknowledged={} in_kafka={in_kafka} lost=0 \
         duplicates=0 on {}",
        acknowledged.len(),
        broker.name()
    );
}

on_every_broker!(sigkilled_gateway_loses_no_acknowledged_event);
