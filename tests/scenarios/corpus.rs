//! Bad input at volume: 10,000 malformed Kafka messages of every kind (random bytes, cut
//! protobuf, missing and oversized ids, wrong types, bad headers, empty values) mixed into
//! valid traffic on a topic the archive consumes. Every one is archived whole, flagged with
//! its problem, and counted; the valid traffic is archived in full and traceable.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_log_store::RecordKind;
use retrace_proto::{Envelope, Outcome, OutcomeStatus};
use retrace_tests::{Broker, json_answer, on_every_broker, start_archive, unique_topic};

const MALFORMED: usize = 10_000;
/// One valid message after every `MIX` malformed ones.
const MIX: usize = 10;
/// Events per valid transaction: a root and the events it caused.
const EVENTS_PER_TRANSACTION: usize = 4;

/// One malformed message: value (none for a tombstone), headers, and how the archive must
/// flag it.
struct Bad {
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Vec<u8>)>,
    kind: RecordKind,
}

/// The `n`th malformed message; the kinds take turns. Random parts come from `runner`, which
/// is deterministic, so a failure reproduces.
fn malformed(n: usize, runner: &mut TestRunner) -> Bad {
    let mut random = |range: std::ops::Range<usize>| {
        prop::collection::vec(any::<u8>(), range)
            .new_tree(runner)
            .expect("bytes generate")
            .current()
    };
    let valid = || Envelope::root("corpus", "corpus.valid.v1").with_subject("beneficiary:1");
    let bad = |value: Vec<u8>, kind| Bad {
        value: Some(value),
        headers: Vec::new(),
        kind,
    };
    match n % 9 {
        // Random bytes: a leading 0xff is never a valid protobuf tag.
        0 => {
            let mut bytes = random(1..200);
            bytes[0] = 0xff;
            bad(bytes, RecordKind::Untraceable)
        }
        // A protobuf envelope cut inside its event id.
        1 => {
            let bytes = valid().encode_to_vec();
            bad(bytes[..3 + n % 30].to_vec(), RecordKind::Untraceable)
        }
        // Missing transaction id.
        2 => {
            let mut envelope = valid();
            envelope.transaction_id.clear();
            bad(envelope.encode_to_vec(), RecordKind::Malformed)
        }
        // An oversized id (over 512 bytes); every 500th, a 256 KiB value of noise instead.
        3 if n % 500 == 3 => bad(random(256 << 10..(256 << 10) + 1), RecordKind::Untraceable),
        3 => {
            let mut envelope = valid();
            envelope.source = "s".repeat(600 + n % 100);
            bad(envelope.encode_to_vec(), RecordKind::Malformed)
        }
        // Wrong types: an outcome where an envelope belongs (its field 4 is a number, the
        // envelope's a string), or JSON.
        4 if n.is_multiple_of(2) => {
            let outcome = Outcome::of(&valid(), "c", OutcomeStatus::Failed, None, 1);
            bad(outcome.encode_to_vec(), RecordKind::Untraceable)
        }
        4 => bad(
            format!(r#"{{"event_id": {n}, "transaction_id": ["t"]}}"#).into_bytes(),
            RecordKind::Untraceable,
        ),
        // A transaction id header that is not text.
        5 => Bad {
            value: Some(b"legacy payload".to_vec()),
            headers: vec![
                ("retrace-event-id", format!("legacy-{n}").into_bytes()),
                ("retrace-transaction-id", vec![0xc3, 0x28, n as u8]),
            ],
            kind: RecordKind::Malformed,
        },
        // A header id with a control character.
        6 => Bad {
            value: Some(random(0..50)),
            headers: vec![
                ("retrace-event-id", format!("legacy-{n}").into_bytes()),
                ("retrace-transaction-id", format!("t\u{7}{n}").into_bytes()),
            ],
            kind: RecordKind::Malformed,
        },
        // A damaged valid envelope: one byte of its event id made a control character.
        7 => {
            let mut bytes = valid().encode_to_vec();
            bytes[2 + n % 36] = 0x01;
            bad(bytes, RecordKind::Malformed)
        }
        // A tombstone: no value, no headers.
        _ => Bad {
            value: None,
            headers: Vec::new(),
            kind: RecordKind::Untraceable,
        },
    }
}

fn headers(pairs: &[(&'static str, Vec<u8>)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |all, (key, value)| {
        all.insert(Header {
            key,
            value: Some(value.as_slice()),
        })
    })
}

/// `name{topic="…",kind="…"} N` from a Prometheus text page.
fn counted(metrics: &str, topic: &str, kind: &str) -> u64 {
    let series =
        format!(r#"retrace_archive_records_consumed_total{{topic="{topic}",kind="{kind}"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().expect("a counter is a number"))
}

async fn malformed_messages_are_kept_flagged_and_counted_beside_valid_traffic(broker: Broker) {
    let topic = unique_topic("corpus");
    broker.create_topic(&topic, 3).await;
    let archive = start_archive(&broker).await;
    let producer: FutureProducer = broker.client_config().create().unwrap();

    let mut runner = TestRunner::deterministic();
    let mut expected: HashMap<RecordKind, usize> = HashMap::new();
    let mut transactions: Vec<Envelope> = Vec::new();
    let mut deliveries = Vec::new();
    let mut root = None;
    for n in 0..MALFORMED + MALFORMED / MIX {
        let (value, headers, key) = if n % (MIX + 1) == MIX {
            // Valid traffic: transactions of a root and the events it caused.
            let envelope = match &root {
                Some(root) if !transactions.len().is_multiple_of(EVENTS_PER_TRANSACTION) => {
                    Envelope::caused_by(root, "corpus", "corpus.caused.v1")
                }
                _ => {
                    let new =
                        Envelope::root("corpus", "corpus.valid.v1").with_subject("beneficiary:1");
                    root = Some(new.clone());
                    new
                }
            };
            transactions.push(envelope.clone());
            *expected.entry(RecordKind::Envelope).or_default() += 1;
            (
                Some(envelope.encode_to_vec()),
                OwnedHeaders::new(),
                envelope.transaction_id,
            )
        } else {
            let bad = malformed(n, &mut runner);
            *expected.entry(bad.kind).or_default() += 1;
            (bad.value, headers(&bad.headers), format!("bad-{n}"))
        };
        let mut record = FutureRecord::to(&topic).key(&key).headers(headers);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| error)
            .expect("the producer's queue has room");
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("the producer answers")
            .expect("the broker acknowledges");
    }
    let total = MALFORMED + MALFORMED / MIX;
    archive.wait_for_records(&topic, total as i64).await;

    let metrics = archive.metrics().await;
    for kind in [
        RecordKind::Envelope,
        RecordKind::Untraceable,
        RecordKind::Malformed,
    ] {
        let want = expected.get(&kind).copied().unwrap_or_default() as u64;
        assert_eq!(
            counted(&metrics, &topic, kind.as_str()),
            want,
            "{kind:?} counted"
        );
    }
    // Traceable through the API while running.
    let client = reqwest::Client::new();
    for root in transactions.iter().step_by(EVENTS_PER_TRANSACTION * 10) {
        let url = archive.url(&format!("/v1/transactions/{}", root.transaction_id));
        let trace: serde_json::Value = json_answer(client.get(url)).await;
        assert_eq!(
            trace["events"].as_array().map(Vec::len),
            Some(EVENTS_PER_TRANSACTION),
            "{trace}"
        );
    }
    let (store, _dir) = archive.stop().await;

    // Every malformed message is flagged, with its problem.
    let mut flagged = 0;
    let mut cursor = None;
    loop {
        let page = store.flagged(500, cursor.as_deref()).unwrap();
        for record in page.items.iter().filter(|r| r.key.topic == topic) {
            assert!(
                record.problem.is_some(),
                "{} flagged without a problem",
                record.key
            );
            flagged += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(flagged, MALFORMED);
    // The valid traffic, every event once, in its transaction.
    for event in &transactions {
        let copies = store.event(&event.event_id).unwrap();
        assert_eq!(copies.len(), 1, "event {} archived once", event.event_id);
        assert_eq!(copies[0].kind, RecordKind::Envelope);
    }
    for root in transactions.iter().step_by(EVENTS_PER_TRANSACTION) {
        let trace = store.transaction(&root.transaction_id).unwrap();
        assert_eq!(trace.len(), EVENTS_PER_TRANSACTION);
    }
}

on_every_broker!(malformed_messages_are_kept_flagged_and_counted_beside_valid_traffic);
