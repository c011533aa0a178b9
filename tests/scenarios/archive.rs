//! The archive end to end: what services publish is kept, traceable, and nothing is lost or
//! refused, whatever the input.

use std::collections::HashSet;
use std::time::Duration;

use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_archive::TopicSelection;
use retrace_log_store::RecordKind;
use retrace_proto::{Envelope, OUTCOMES_TOPIC, OutcomeStatus};
use retrace_sdk::{EventHandler, HandlerError, KafkaSettings, Publisher, ReceivedEvent, consume};
use retrace_tests::{Broker, RunningArchive, on_every_broker, start_archive, unique_topic};
use tokio_util::sync::CancellationToken;

/// Fails every event about beneficiary:3, as a buggy validation service would.
struct Validation;

impl EventHandler for Validation {
    async fn handle(&self, event: &ReceivedEvent) -> Result<(), HandlerError> {
        if event
            .envelope
            .subject_ids
            .iter()
            .any(|s| s == "beneficiary:3")
        {
            return Err(HandlerError::new("registry timeout"));
        }
        Ok(())
    }
}

async fn sdk_events_are_archived_and_traced_with_their_outcomes(broker: Broker) {
    broker.create_topic("registrations", 3).await;
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let archive = start_archive(&broker).await;
    let settings = KafkaSettings::new(broker.bootstrap());
    let publisher = Publisher::new(&settings).unwrap();

    let mut transactions = Vec::new();
    for beneficiary in 0..10 {
        let submitted = Envelope::root("registration", "registration.submitted.v1")
            .with_subject(format!("beneficiary:{beneficiary}"))
            .with_payload("application/json", br#"{"child":"Ada"}"#.to_vec());
        let checked = Envelope::caused_by(&submitted, "registration", "registration.checked.v1");
        publisher
            .publish("registrations", &submitted)
            .await
            .unwrap();
        publisher.publish("registrations", &checked).await.unwrap();
        transactions.push((submitted, checked));
    }

    let stop_consumer = CancellationToken::new();
    let (consumed, ()) = tokio::join!(
        consume(
            &settings,
            "validation",
            "validation",
            &["registrations"],
            &Validation,
            &publisher,
            &stop_consumer,
        ),
        async {
            archive.wait_for_records(OUTCOMES_TOPIC, 20).await;
            stop_consumer.cancel();
        }
    );
    consumed.unwrap();
    archive.wait_for_records("registrations", 20).await;
    let (store, _dir) = archive.stop().await;

    for (beneficiary, (submitted, checked)) in transactions.iter().enumerate() {
        let trace = store.transaction(&submitted.transaction_id).unwrap();
        let events: Vec<&str> = trace
            .iter()
            .filter(|r| r.kind == RecordKind::Envelope)
            .map(|r| r.ids.as_ref().unwrap().event_id.as_str())
            .collect();
        assert_eq!(
            events,
            [submitted.event_id.as_str(), checked.event_id.as_str()]
        );
        let outcomes = store.outcomes(&submitted.event_id).unwrap();
        assert_eq!(outcomes.len(), 1, "one outcome for {}", submitted.event_id);
        let outcome =
            retrace_proto::Outcome::decode(outcomes[0].value.as_deref().unwrap()).unwrap();
        let expected = if beneficiary == 3 {
            OutcomeStatus::Failed
        } else {
            OutcomeStatus::Processed
        };
        assert_eq!(outcome.status(), expected);
        assert_eq!(outcome.error.is_empty(), beneficiary != 3);
        assert_eq!(
            trace
                .iter()
                .filter(|r| r.kind == RecordKind::Outcome)
                .count(),
            2
        );
    }
    let touched = store
        .subject_transactions("beneficiary:3", (i64::MIN, i64::MAX), 10, None)
        .unwrap();
    let ids: Vec<&str> = touched
        .items
        .iter()
        .map(|t| t.transaction_id.as_str())
        .collect();
    assert_eq!(ids, [transactions[3].0.transaction_id.as_str()]);
    assert_eq!(
        store.check_consistency().unwrap().problems,
        Vec::<String>::new()
    );
}

async fn bad_input_is_kept_flagged_and_counted_and_the_archive_keeps_going(broker: Broker) {
    let intake = unique_topic("intake");
    broker.create_topic(&intake, 1).await;
    // This topic alone: the counts below are of records consumed, and a subscription that
    // follows topics other tests create would rebalance and deliver some records again.
    let archive = RunningArchive::start_with(&broker, |config| {
        config.topics = TopicSelection::Names(vec![intake.clone()]);
    })
    .await;
    let producer: FutureProducer = broker
        .client_config()
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    let valid = Envelope::root("intake", "intake.received.v1").with_subject("beneficiary:9");
    let encoded = valid.encode_to_vec();
    // Just under Apache Kafka's default message.max.bytes (1 MiB per record batch).
    let large = vec![b'x'; 1_000_000];
    let headers = |pairs: &[(&str, &[u8])]| {
        pairs.iter().fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(*value),
            })
        })
    };
    // (value, headers, expected kind), in publishing order.
    let inputs: Vec<(Vec<u8>, OwnedHeaders, RecordKind)> = vec![
        (
            vec![0xff, 0x00, 0x13, 0x37],
            OwnedHeaders::new(),
            RecordKind::Untraceable,
        ),
        (
            encoded[..encoded.len() / 2].to_vec(),
            OwnedHeaders::new(),
            RecordKind::Untraceable,
        ),
        (
            br#"{"legacy": true}"#.to_vec(),
            headers(&[
                ("retrace-event-id", b"legacy-1"),
                ("retrace-transaction-id", b"legacy-t"),
            ]),
            RecordKind::HeadersOnly,
        ),
        (
            b"plain".to_vec(),
            headers(&[("retrace-transaction-id", &[0xc3, 0x28])]),
            RecordKind::Malformed,
        ),
        (large.clone(), OwnedHeaders::new(), RecordKind::Untraceable),
        (encoded.clone(), OwnedHeaders::new(), RecordKind::Envelope),
    ];
    for (value, headers, _) in &inputs {
        producer
            .send(
                FutureRecord::to(&intake)
                    .key("k")
                    .payload(value)
                    .headers(headers.clone()),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    archive.wait_for_records(&intake, inputs.len() as i64).await;
    let metrics = archive.metrics().await;
    let counted = |kind: &str| {
        format!(r#"retrace_archive_records_consumed_total{{topic="{intake}",kind="{kind}"}}"#)
    };
    assert!(
        metrics.contains(&format!("{} 3", counted("untraceable"))),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("{} 1", counted("malformed"))),
        "{metrics}"
    );
    let (store, _dir) = archive.stop().await;

    for (offset, (value, _, kind)) in inputs.iter().enumerate() {
        let key = retrace_log_store::RecordKey {
            topic: intake.clone(),
            partition: 0,
            epoch: 0,
            offset: offset as i64,
        };
        let record = store.get(&key).unwrap().unwrap();
        assert_eq!(record.kind, *kind, "record {key}: {:?}", record.problem);
        assert_eq!(
            record.value.as_ref(),
            Some(value),
            "record {key} kept whole"
        );
    }
    assert_eq!(store.flagged(100, None).unwrap().items.len(), 4);
    assert_eq!(store.transaction("legacy-t").unwrap().len(), 1);
    assert_eq!(store.transaction(&valid.transaction_id).unwrap().len(), 1);
}

async fn a_topic_created_while_running_is_archived_from_its_first_message(broker: Broker) {
    broker.create_topic("before", 1).await;
    let archive = start_archive(&broker).await;
    let publisher = Publisher::new(&KafkaSettings::new(broker.bootstrap())).unwrap();
    publisher
        .publish("before", &Envelope::root("s", "t.v1"))
        .await
        .unwrap();
    archive.wait_for_records("before", 1).await;

    broker.create_topic("born-later", 2).await;
    let mut sent = HashSet::new();
    for _ in 0..5 {
        let event = Envelope::root("s", "t.v1");
        publisher.publish("born-later", &event).await.unwrap();
        sent.insert(event.event_id);
    }
    archive.wait_for_records("born-later", 5).await;
    let (store, _dir) = archive.stop().await;
    for event_id in sent {
        assert_eq!(store.event(&event_id).unwrap().len(), 1);
    }
}

// The bad-input scenario counts records per topic in the process' metrics: on the shared node
// its siblings' archives, which read every topic, would count its records too.
on_every_broker!(
    sdk_events_are_archived_and_traced_with_their_outcomes,
    a_topic_created_while_running_is_archived_from_its_first_message;
    private: bad_input_is_kept_flagged_and_counted_and_the_archive_keeps_going,
);
