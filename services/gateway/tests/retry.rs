//! A publish retried after its answer was lost (issue 28, item 4): the gateway SIGKILLed
//! around its answer, the same request (same body, same `Idempotency-Key`) sent again to the
//! restarted gateway and to a second gateway instance. Neither remembers the first, so the
//! topic holds the event three times; the archive keeps every record and shows them as one
//! event: one step of the trace with its records under it, one node of the tree. That is the
//! guarantee docs/reliability.md states: at-least-once records, one event per event id.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, ServiceProcess, Stop, eventually, free_port, on_every_broker,
    spawn_gateway_process, start_archive, unique_topic,
};
use serde_json::{Value, json};

fn spawn_gateway(broker: &Broker, http: &str, config: &std::path::Path) -> ServiceProcess {
    spawn_gateway_process(env!("CARGO_BIN_EXE_retrace-gateway"), broker, http, config)
}

fn records_in_kafka(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.client_config().create().unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("the broker reports watermarks");
    high
}

/// Sends `event` with `key` until a gateway at `http` answers 2xx (it may still be starting).
async fn publish(client: &reqwest::Client, http: &str, topic: &str, event: &Value, key: &str) {
    let url = format!("http://{http}/v1/topics/{topic}/events");
    eventually(&format!("{http} accepts the event"), PATIENCE, || async {
        let sent = client.post(&url).header("Idempotency-Key", key).json(event);
        let answer = sent.send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
}

async fn get(archive: &RunningArchive, path: &str) -> Value {
    let answer = reqwest::get(archive.url(path)).await.unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.json().await.unwrap()
}

async fn a_publish_retried_after_a_kill_and_on_another_gateway_is_one_event(broker: Broker) {
    let topic = unique_topic("gateway-retry");
    broker.create_topic(&topic, 1).await;
    let archive = start_archive(&broker).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[auth]\nenabled = false\n").unwrap();
    let (first_http, second_http) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let client = reqwest::Client::new();
    let event_id = retrace_proto::new_event_id();
    // No transaction id: the gateway names the transaction after the event, so every retry
    // of it is in the same transaction.
    let submitted = json!({
        "event_id": event_id, "type": "registration.submitted.v1", "source": "retry-test",
        "subject_ids": ["beneficiary:42"], "payload": {"child": "Amina"},
    });
    let key = format!("submit-{event_id}");

    // The first attempt: the gateway is SIGKILLed once the record is in Kafka, whether or not
    // its answer left; the client never reads it.
    let gateway = spawn_gateway(&broker, &first_http, config.path());
    let attempt = tokio::spawn({
        let (client, http, topic) = (client.clone(), first_http.clone(), topic.clone());
        let (submitted, key) = (submitted.clone(), key.clone());
        async move { publish(&client, &http, &topic, &submitted, &key).await }
    });
    eventually("the first attempt written", PATIENCE, || {
        let written = records_in_kafka(&broker, &topic) >= 1;
        async move { written.then_some(()) }
    })
    .await;
    gateway.stop(Stop::Kill);
    attempt.abort();

    // The retries: the restarted gateway, then a second instance beside it.
    let restarted = spawn_gateway(&broker, &first_http, config.path());
    publish(&client, &first_http, &topic, &submitted, &key).await;
    let second = spawn_gateway(&broker, &second_http, config.path());
    publish(&client, &second_http, &topic, &submitted, &key).await;
    let checked = json!({
        "transaction_id": event_id, "causation_id": event_id,
        "type": "registration.checked.v1", "source": "retry-test",
    });
    publish(&client, &second_http, &topic, &checked, "check-once").await;
    restarted.stop(Stop::Kill);
    second.stop(Stop::Kill);

    let written = records_in_kafka(&broker, &topic);
    assert!(
        written >= 4,
        "three records of the event and one of its child: {written}"
    );
    archive.wait_for_records(&topic, written).await;
    let copies = get(&archive, &format!("/v1/events/{event_id}")).await["copies"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(copies as i64, written - 1, "the archive keeps every record");
    let trace = get(&archive, &format!("/v1/transactions/{event_id}")).await;
    let steps: Vec<(&str, Vec<&str>)> = trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let records = e["records"].as_array().unwrap();
            let roles = records.iter().map(|r| r["role"].as_str().unwrap());
            (e["type"].as_str().unwrap(), roles.collect())
        })
        .collect();
    let mut written_again = vec!["republished"; copies - 1];
    written_again.insert(0, "published");
    assert_eq!(
        steps,
        [
            ("registration.submitted.v1", written_again),
            ("registration.checked.v1", vec!["published"])
        ],
        "one step per event, its records under it: {trace}"
    );
    assert_eq!(trace["tree"].as_array().unwrap().len(), 1, "{trace}");
    assert_eq!(trace["tree"][0]["children"].as_array().unwrap().len(), 1);
    assert_eq!(trace["status"], "ok");
    println!(
        "gateway retry: one event, {copies} records, on {}",
        broker.name()
    );
}

on_every_broker!(a_publish_retried_after_a_kill_and_on_another_gateway_is_one_event);
