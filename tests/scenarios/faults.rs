//! Broker outages: every broker taken down for a few seconds (the mock cluster's fault
//! injection; tansu cut off behind its relay) while services publish, archive, replay and run
//! jobs. Afterwards: every event that was acknowledged (an SDK ack, a 2xx) is on Kafka and in
//! the archive exactly once, nothing is archived twice, the services carried on without a
//! restart, and the outage shows in their metrics.
//!
//! An outage lasts [`OUTAGE`]: long enough for every client to see its connections fail and
//! retry (librdkafka reconnects within a second), short enough for CI. The duration is a
//! property of the scenario; everything else waits on a condition.
//!
//! Also here: records Kafka deleted (retention) before the archive could read them are
//! reported, not silently skipped; and a partition's log replaced by a shorter one (topic
//! recreated, another cluster) is archived anew under a new epoch, and reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, check_exactly_once, eventually, in_archive, messages_on,
    metric_sum, on_every_broker, spawn_gateway, start_archive, start_gateway_on, unique_topic,
    wait_until_archived,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const OUTAGE: Duration = Duration::from_secs(5);
const PARTITIONS: i32 = 3;

/// What a publishing loop saw: the events acknowledged, and how many attempts failed.
#[derive(Default)]
struct Published {
    acked: Vec<String>,
    failed: usize,
    last_error: Option<String>,
}

impl Published {
    /// A client backs off after a failure rather than spinning.
    async fn failed(tally: &Tally, error: String) {
        {
            let mut seen = tally.lock().unwrap();
            seen.failed += 1;
            seen.last_error = Some(error);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Tally = Arc<Mutex<Published>>;

fn acked(tally: &Tally) -> usize {
    tally.lock().unwrap().acked.len()
}

/// Publishes events through the SDK, one after the other, until `stop`.
fn publish_with_sdk(broker: &Broker, topic: &str, stop: CancellationToken) -> Tally {
    let tally = Tally::default();
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let (topic, seen) = (topic.to_owned(), tally.clone());
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let event = Envelope::root("sdk-loop", "fault.published.v1");
            match publisher.publish(&topic, &event).await {
                Ok(_) => seen.lock().unwrap().acked.push(event.event_id),
                Err(error) => Published::failed(&seen, error.to_string()).await,
            }
        }
    });
    tally
}

/// Posts events to the gateway, one after the other, until `stop`; a 2xx is an ack.
fn publish_with_gateway(url: String, topic: &str, stop: CancellationToken) -> Tally {
    let tally = Tally::default();
    let (topic, seen) = (topic.to_owned(), tally.clone());
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.is_cancelled() {
            let event_id = retrace_proto::new_event_id();
            let answer = client
                .post(format!("{url}/v1/topics/{topic}/events"))
                .json(&json!({"event_id": event_id, "type": "fault.posted.v1",
                              "source": "gateway-loop"}))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    seen.lock().unwrap().acked.push(event_id)
                }
                Ok(answer) => {
                    let status = answer.status();
                    let body = answer.text().await.unwrap_or_default();
                    Published::failed(&seen, format!("{status} {body}")).await
                }
                Err(error) => Published::failed(&seen, error.to_string()).await,
            }
        }
    });
    tally
}

/// Waits until every tally has `more` acks beyond what it had: publishing has resumed.
async fn wait_for_acks(what: &str, tallies: &[&Tally], more: usize) {
    let from: Vec<usize> = tallies.iter().map(|t| acked(t)).collect();
    let started = std::time::Instant::now();
    eventually(what, PATIENCE, || async {
        if started.elapsed() > PATIENCE - Duration::from_secs(1) {
            for tally in tallies {
                let seen = tally.lock().unwrap();
                eprintln!(
                    "{what}: {} acked, {} failed, last error {:?}",
                    seen.acked.len(),
                    seen.failed,
                    seen.last_error
                );
            }
        }
        tallies
            .iter()
            .zip(&from)
            .all(|(tally, from)| acked(tally) >= from + more)
            .then_some(())
    })
    .await;
}

async fn publishing_and_archiving_survive_a_broker_outage(broker: Broker) {
    let topic = unique_topic("outage");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let stop = CancellationToken::new();
    let sdk = publish_with_sdk(&broker, &topic, stop.clone());
    let posted = publish_with_gateway(gateway.url.clone(), &topic, stop.clone());
    wait_for_acks("publishing before the outage", &[&sdk, &posted], 20).await;

    if !broker.take_down().await {
        eprintln!("skipped: an external Kafka cannot be taken down by the test");
        return;
    }
    tokio::time::sleep(OUTAGE).await;
    broker.bring_up().await;

    // The same clients, the same archive: no restart.
    wait_for_acks("publishing after the outage", &[&sdk, &posted], 20).await;
    stop.cancel();
    wait_until_archived(&broker, &archive, &topic, PARTITIONS).await;
    let archive_metrics = archive.metrics().await;
    let gateway_metrics = gateway.metrics().await;
    let stopping = std::time::Instant::now();
    gateway.stop().await;
    eprintln!("gateway stopped in {:?}", stopping.elapsed());
    let (store, _dir) = archive.stop().await;

    let on_kafka = messages_on(&broker, &topic, PARTITIONS).await;
    let archived = in_archive(&store, &topic, on_kafka);
    let (sdk, posted) = (sdk.lock().unwrap(), posted.lock().unwrap());
    let acked: Vec<String> = sdk.acked.iter().chain(&posted.acked).cloned().collect();
    check_exactly_once(&acked, &archived);
    assert!(
        metric_sum(&archive_metrics, "retrace_archive_kafka_errors_total", "") > 0.0,
        "the archive's metrics show the outage:\n{archive_metrics}"
    );
    eprintln!(
        "outage of {OUTAGE:?}: {} events acked ({} by the SDK, {} through the gateway), {} \
         attempts failed, {on_kafka} on Kafka and archived, lost 0, duplicates 0; gateway \
         metrics:\n{}",
        acked.len(),
        sdk.acked.len(),
        posted.acked.len(),
        sdk.failed + posted.failed,
        gateway_metrics
            .lines()
            .filter(|l| l.starts_with("retrace_gateway_events"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

/// A replay started while every broker is down: it is recorded at once (202), waits out the
/// outage, and finishes by itself; every message of the transaction then has exactly one
/// replayed copy on Kafka and in the archive.
async fn a_replay_started_during_an_outage_finishes_once_the_brokers_are_back(broker: Broker) {
    const EVENTS: usize = 5;
    let topic = unique_topic("replayed");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let root = Envelope::root("replay-loop", "fault.root.v1");
    publisher.publish(&topic, &root).await.unwrap();
    for _ in 1..EVENTS {
        let event = Envelope::caused_by(&root, "replay-loop", "fault.caused.v1");
        publisher.publish(&topic, &event).await.unwrap();
    }
    archive.wait_for_records(&topic, EVENTS as i64).await;

    if !broker.take_down().await {
        eprintln!("skipped: an external Kafka cannot be taken down by the test");
        return;
    }
    let client = reqwest::Client::new();
    let url = archive.url(&format!("/v1/transactions/{}/replay", root.transaction_id));
    // Asked with a key, as the CLI does: a replay is claimed on Kafka (the archive's change
    // log), so during the outage the answer waits for Kafka, and may be a 503 saying to ask
    // again with the same key, which then starts the one replay.
    let ask = || {
        client
            .post(&url)
            .header("Idempotency-Key", "outage-drill")
            .json(&json!({"reason": "broker outage drill"}))
            .send()
    };
    let during = tokio::spawn(ask());
    tokio::time::sleep(OUTAGE).await;
    broker.bring_up().await;
    let first = during.await.unwrap().unwrap().status().as_u16();
    assert!(
        [202, 503].contains(&first),
        "asked during the outage: {first}"
    );
    let started: serde_json::Value = eventually("the replay to be accepted", PATIENCE, || async {
        let response = ask().await.ok()?;
        [200, 202]
            .contains(&response.status().as_u16())
            .then_some(response.json().await.ok()?)
    })
    .await;
    let replay_id = started["replay"]["replay_id"].as_str().unwrap().to_owned();

    let done: serde_json::Value = eventually("the replay to finish", PATIENCE, || async {
        let view: serde_json::Value = client
            .get(archive.url(&format!("/v1/replays/{replay_id}")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (view["state"] != "running").then_some(view)
    })
    .await;
    assert_eq!(
        (done["state"].as_str(), done["published"].as_u64()),
        (Some("done"), Some(EVENTS as u64)),
        "{done}"
    );
    wait_until_archived(&broker, &archive, &topic, PARTITIONS).await;
    let (store, _dir) = archive.stop().await;
    let on_kafka = messages_on(&broker, &topic, PARTITIONS).await;
    let archived = in_archive(&store, &topic, on_kafka);
    // Each event twice: the original and its one replayed copy (a replay keeps event ids).
    assert_eq!(archived.len(), EVENTS);
    assert!(archived.values().all(|n| *n == 2), "{archived:?}");
    eprintln!(
        "replay through an outage of {OUTAGE:?}: {EVENTS} replayed, {on_kafka} on Kafka and archived"
    );
}

/// A gateway started while Kafka is down (it must read its API tokens from Kafka) answers
/// "starting" on `/healthz` from the first moment, not a refused connection, so an
/// orchestrator's probe sees it alive; once Kafka is back, within the start-up deadline, it
/// comes up by itself and answers with its own routes.
async fn a_service_started_during_an_outage_says_starting_then_comes_up(broker: Broker) {
    // Apache Kafka has it created by the gateway once it is back; the mock cannot.
    if let Broker::Mock(_) = broker {
        broker
            .create_topic(retrace_auth::DEFAULT_TOKENS_TOPIC, 1)
            .await;
    }
    if !broker.take_down().await {
        return;
    }
    let gateway = spawn_gateway(&broker.bootstrap(), &[], |config| {
        config.auth.enabled = true;
    });
    let starting = eventually("the gateway to answer /healthz", PATIENCE, || {
        gateway.health()
    })
    .await;
    assert_eq!(starting, (503, "starting\n".to_owned()));
    let early = gateway
        .events("registrations", &json!({"type": "t.v1", "source": "s"}))
        .await;
    assert_eq!(early.status, 503, "{}", early.body);
    assert!(
        early.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("the gateway is starting")),
        "{}",
        early.body
    );

    broker.bring_up().await;
    eventually("the gateway to come up", PATIENCE, || async {
        let (status, _) = gateway.health().await?;
        (status == 200).then_some(())
    })
    .await;
    // Its own routes now: with authentication on, a caller without a token is refused.
    let unauthenticated = gateway
        .events("registrations", &json!({"type": "t.v1", "source": "s"}))
        .await;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);
    gateway.stop().await;
}

/// Publishes `count` events to `topic` (one partition), answering their ids in order.
async fn publish_events(broker: &Broker, topic: &str, count: usize) -> Vec<String> {
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..count {
        let event = Envelope::root("log-reset-test", "registration.submitted.v1");
        publisher.publish(topic, &event).await.unwrap();
        ids.push(event.event_id);
    }
    ids
}

/// The archive's positions ran ahead of the partition's log: on Apache Kafka the topic is
/// deleted and recreated while the archive runs; the mock cluster cannot delete topics, so
/// there the archive is restarted on another cluster that has a topic of the same name (as
/// an archive pointed at the wrong cluster would be). Before the fix, the new log's records
/// were counted as already archived and never stored. Now each is archived under epoch 1 and
/// findable by its event id, the old ones still are, and the reset shows in
/// `retrace_archive_log_resets_total` and `/v1/positions`.
async fn a_log_replaced_by_a_shorter_one_is_archived_under_a_new_epoch(broker: Broker) {
    const OLD: usize = 10;
    const NEW: usize = 4;
    let topic = unique_topic("log-reset");
    broker.create_topic(&topic, 1).await;
    let archive = start_archive(&broker).await;
    let old_ids = publish_events(&broker, &topic, OLD).await;
    archive.wait_for_records(&topic, OLD as i64).await;

    let (archive, new_broker) = match broker {
        Broker::Mock(_) => {
            let dir = archive.shut_down().await;
            let other = Broker::mock();
            other.create_topic(&topic, 1).await;
            (RunningArchive::start_in(&other, dir, |_| {}).await, other)
        }
        _ => {
            broker.delete_topic(&topic).await;
            broker.create_topic(&topic, 1).await;
            (archive, broker)
        }
    };
    let new_ids = publish_events(&new_broker, &topic, NEW).await;

    let position = eventually("the new log archived under epoch 1", PATIENCE, || async {
        let positions = archive.positions().await?;
        let position = positions.into_iter().find(|p| p.topic == topic)?;
        (position.epoch == 1 && position.next_offset == NEW as i64).then_some(position)
    })
    .await;
    assert_eq!(
        position.previous_next_offset,
        Some(OLD as i64),
        "{position:?}"
    );
    assert!(position.reset_at.is_some(), "{position:?}");
    let resets = metric_sum(
        &archive.metrics().await,
        "retrace_archive_log_resets_total",
        &format!("topic=\"{topic}\""),
    );
    assert_eq!(resets, 1.0, "the reset is counted once");

    let (store, _dir) = archive.stop().await;
    for (epoch, ids) in [(0, &old_ids), (1, &new_ids)] {
        for (offset, id) in ids.iter().enumerate() {
            let found = store.event(id).unwrap();
            assert_eq!(found.len(), 1, "event {id} archived once");
            assert_eq!(
                (found[0].key.epoch, found[0].key.offset),
                (epoch, offset as i64),
                "event {id}"
            );
        }
    }
    let report = store.check_consistency().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    eprintln!(
        "log reset on {}: {OLD} old and {NEW} new events archived",
        new_broker.name()
    );
}

on_every_broker!(;
    private: a_log_replaced_by_a_shorter_one_is_archived_under_a_new_epoch,
    publishing_and_archiving_survive_a_broker_outage,
    a_replay_started_during_an_outage_finishes_once_the_brokers_are_back,
    a_service_started_during_an_outage_says_starting_then_comes_up,
);

/// Faults only the mock cluster injects: a slow broker (one second a round trip) and a
/// produce request refused with an error that is fatal to an idempotent producer. The SDK's
/// publisher replaces the failed producer and carries on: the same `Publisher` keeps
/// publishing, and each acknowledged event is archived exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_recovers_from_a_fatal_producer_error_and_a_slow_broker() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let broker = Broker::mock();
    let cluster = broker.mock_cluster().expect("the mock cluster");
    let topic = unique_topic("fatal");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut publish = async |acked: &mut Vec<String>| {
        let event = Envelope::root("fatal-loop", "fault.published.v1");
        match publisher.publish(&topic, &event).await {
            Ok(_) => acked.push(event.event_id),
            Err(_) => failed += 1,
        }
    };
    for _ in 0..10 {
        publish(&mut acked).await;
    }
    for broker_id in 1..=3 {
        cluster
            .broker_round_trip_time(broker_id, Duration::from_secs(1))
            .unwrap();
    }
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    for _ in 0..5 {
        publish(&mut acked).await;
    }
    for broker_id in 1..=3 {
        cluster
            .broker_round_trip_time(broker_id, Duration::ZERO)
            .unwrap();
    }
    for _ in 0..10 {
        publish(&mut acked).await;
    }
    assert!(failed >= 1, "the injected error failed a publish");
    assert!(
        acked.len() >= 20,
        "publishing resumed: {} acked",
        acked.len()
    );
    wait_until_archived(&broker, &archive, &topic, PARTITIONS).await;
    let (store, _dir) = archive.stop().await;
    let on_kafka = messages_on(&broker, &topic, PARTITIONS).await;
    check_exactly_once(&acked, &in_archive(&store, &topic, on_kafka));
    eprintln!(
        "fatal producer error: {} acked, {failed} failed, {on_kafka} on Kafka and archived",
        acked.len()
    );
}

/// Kafka deleted records (retention) before the archive read them: the archive cannot
/// have them, but it says so, naming the offsets, and counts them in
/// `retrace_archive_retention_gap_offsets_total`; what Kafka still holds is archived. The
/// mock cluster keeps about 5 MB of a partition, so 7 MB published before the archive starts
/// lose their oldest records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_by_retention_before_they_were_archived_are_reported() {
    const PAYLOAD_BYTES: usize = 100_000;
    let broker = Broker::mock();
    let topic = unique_topic("retention");
    broker.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    for _ in 0..70 {
        let event = Envelope::root("retention-test", "scan.uploaded.v1")
            .with_payload("application/octet-stream", vec![7; PAYLOAD_BYTES]);
        publisher.publish(&topic, &event).await.unwrap();
    }
    let consumer: rdkafka::consumer::BaseConsumer = broker.client_config().create().unwrap();
    let (log_start, high) = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer as _;
            consumer.fetch_watermarks(&topic, 0, Duration::from_secs(30))
        })
        .await
        .unwrap()
        .unwrap()
    };
    assert!(
        log_start > 0,
        "the mock cluster kept all {high} records; publish more to make it delete some"
    );

    let archive = start_archive(&broker).await;
    archive.wait_for_records(&topic, high).await;
    let label = format!("topic=\"{topic}\"");
    let reported = metric_sum(
        &archive.metrics().await,
        "retrace_archive_retention_gap_offsets_total",
        &label,
    );
    assert_eq!(
        reported, log_start as f64,
        "offsets 0..{log_start} were deleted before the archive read them"
    );
    let (store, _dir) = archive.stop().await;
    let archived = (0..high)
        .filter(|offset| {
            let key = retrace_log_store::RecordKey {
                topic: topic.clone(),
                partition: 0,
                epoch: 0,
                offset: *offset,
            };
            store.get(&key).unwrap().is_some()
        })
        .count() as i64;
    assert_eq!(archived, high - log_start, "everything Kafka still held");
    eprintln!("retention gap: offsets 0..{log_start} of {high} reported, the rest archived");
}
