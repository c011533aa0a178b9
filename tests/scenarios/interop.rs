//! Java-client interop, on Apache Kafka only (a Java client has nothing to do with the mock
//! cluster): a Java service publishing with the official `KafkaProducer` and its default
//! partitioner (`tests/kafka/interop/JavaPublisher.java`) puts a transaction's events on the
//! partition where the Rust SDK, the gateway and replays put them, and its events, which
//! carry only `retrace-*` headers and a JSON value, are traced with theirs.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt as _;
use retrace_api::{Trace, TreeNode};
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, PATIENCE, eventually, kafka_launcher, start_archive, start_gateway_on, unique_topic,
};
use serde_json::{Value, json};

const PARTITIONS: i32 = 12;
const TRANSACTIONS: usize = 10_000;

/// `JavaPublisher.java`, compiled into a temporary folder of its own.
struct JavaPublisher {
    classes: tempfile::TempDir,
    lib: PathBuf,
}

fn java_source() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/interop/JavaPublisher.java")
}

/// The jars `kafka-local` resolves: `$RETRACE_KAFKA_LIB`, else
/// `~/.cache/retrace-kafka/lib-VERSION`, VERSION being the launcher's.
fn kafka_lib() -> PathBuf {
    if let Some(lib) = std::env::var_os("RETRACE_KAFKA_LIB").filter(|lib| !lib.is_empty()) {
        return PathBuf::from(lib);
    }
    let launcher = std::fs::read_to_string(kafka_launcher()).expect("the launcher is readable");
    let version = launcher
        .lines()
        .find_map(|line| line.strip_prefix("version="))
        .expect("the launcher names its Kafka version (`version=…`)");
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(format!(".cache/retrace-kafka/lib-{version}"))
}

fn holds_kafka_clients(lib: &Path) -> bool {
    std::fs::read_dir(lib).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("kafka-clients-") && name.ends_with(".jar")
        })
    })
}

impl JavaPublisher {
    async fn compile() -> JavaPublisher {
        let lib = kafka_lib();
        assert!(
            holds_kafka_clients(&lib),
            "no kafka-clients jar in {}: run `tests/kafka/kafka-local install` (or `tests/setup`) \
             to resolve Apache Kafka's jars there, or set RETRACE_KAFKA_LIB to a folder holding \
             them",
            lib.display()
        );
        let classes = tempfile::Builder::new()
            .prefix("retrace-interop-")
            .tempdir()
            .expect("a temporary folder for the Java classes");
        let output = tokio::process::Command::new("javac")
            .args(["--release", "17", "-encoding", "UTF-8", "-d"])
            .arg(classes.path())
            .arg("-cp")
            .arg(lib.join("*"))
            .arg(java_source())
            .output()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run javac ({error}): this test compiles {} and needs a JDK 17+ \
                     (`tests/setup` names what to install; Debian: apt-get install \
                     openjdk-17-jdk-headless)",
                    java_source().display()
                )
            });
        assert!(
            output.status.success(),
            "javac {} failed ({}):\n{}",
            java_source().display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        JavaPublisher { classes, lib }
    }

    /// Runs the program with `args`; its standard output once it exited 0.
    async fn run(&self, args: &[&str]) -> String {
        let classpath = format!(
            "{}:{}",
            self.classes.path().display(),
            self.lib.join("*").display()
        );
        let output = tokio::process::Command::new("java")
            .args(["-Xmx256m", "-XX:+UseSerialGC"])
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .args(["-cp", &classpath, "JavaPublisher"])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .expect("java runs");
        assert!(
            output.status.success(),
            "JavaPublisher {} exited {}:\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("JavaPublisher prints UTF-8")
    }
}

/// Publishes one root event per transaction with the SDK, 1,000 at a time; where each landed.
async fn sdk_placements(
    publisher: &Publisher,
    topic: &str,
    transactions: &[String],
) -> HashMap<String, i32> {
    futures::stream::iter(transactions)
        .map(|transaction| async move {
            let mut envelope = Envelope::root("interop", "interop.placed.v1");
            envelope.transaction_id = transaction.clone();
            let delivery = publisher
                .publish(topic, &envelope)
                .await
                .unwrap_or_else(|error| panic!("the SDK could not publish {transaction}: {error}"));
            (transaction.clone(), delivery.partition)
        })
        .buffer_unordered(1_000)
        .collect()
        .await
}

/// `key partition` lines, as `JavaPublisher place` prints them.
fn java_placements(printed: &str) -> HashMap<String, i32> {
    printed
        .lines()
        .map(|line| {
            let (key, partition) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("JavaPublisher printed {line:?}, not `key partition`"));
            (key.to_owned(), partition.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_the_sdk_place_every_transaction_on_the_same_partition() {
    let broker = Broker::real();
    let java = JavaPublisher::compile().await;
    let (java_topic, sdk_topic) = (unique_topic("interop-java"), unique_topic("interop-sdk"));
    broker.create_topic(&java_topic, PARTITIONS).await;
    broker.create_topic(&sdk_topic, PARTITIONS).await;
    // Transaction ids as the SDK makes them (uuid v7).
    let transactions: Vec<String> = (0..TRANSACTIONS)
        .map(|_| retrace_proto::new_event_id())
        .collect();
    let keys = java.classes.path().join("transactions.txt");
    std::fs::write(&keys, transactions.join("\n")).unwrap();
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let bootstrap = broker.bootstrap();

    let started = Instant::now();
    let ((by_java, java_took), (by_sdk, sdk_took)) = tokio::join!(
        async {
            let printed = java
                .run(&["place", &bootstrap, &java_topic, keys.to_str().unwrap()])
                .await;
            (java_placements(&printed), started.elapsed())
        },
        async {
            let placed = sdk_placements(&publisher, &sdk_topic, &transactions).await;
            (placed, started.elapsed())
        },
    );
    println!(
        "{TRANSACTIONS} transactions placed by Java in {java_took:?} (JVM start included), by \
         the SDK in {sdk_took:?}"
    );

    for (who, placed) in [("Java", &by_java), ("the SDK", &by_sdk)] {
        let missing = transactions.iter().filter(|t| !placed.contains_key(*t));
        assert_eq!(
            (placed.len(), missing.count()),
            (TRANSACTIONS, 0),
            "{who} reported placements other than the {TRANSACTIONS} transactions (how many, \
             how many missing)"
        );
    }
    // Agreement on one partition would prove nothing: the keys spread over all of them.
    let used: BTreeSet<i32> = by_java.values().copied().collect();
    assert_eq!(used, (0..PARTITIONS).collect(), "partitions Java used");
    let elsewhere: Vec<String> = transactions
        .iter()
        .filter(|t| by_java[*t] != by_sdk[*t])
        .map(|t| format!("{t}: Java {}, SDK {}", by_java[t], by_sdk[t]))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "{} of {TRANSACTIONS} transactions land on another partition when the SDK publishes them \
         than when Java does, e.g.\n{}",
        elsewhere.len(),
        elsewhere[..elsewhere.len().min(5)].join("\n")
    );
}

/// The chain of `tree` from its only root down its only children, as event ids.
fn chain(tree: &[TreeNode]) -> Vec<&str> {
    let mut ids = Vec::new();
    let mut level = tree;
    while let [only] = level {
        ids.push(only.event_id.as_str());
        level = &only.children;
    }
    assert!(level.is_empty(), "the causation tree branches: {tree:?}");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_mixing_java_sdk_and_gateway_events_traces_in_causal_order() {
    let broker = Broker::real();
    let java = JavaPublisher::compile().await;
    let topic = unique_topic("interop-registrations");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let subject = format!("beneficiary:{}", unique_topic("interop"));

    // 1. A Rust service starts the transaction.
    let root = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject(&subject)
        .with_payload("application/json", br#"{"child":"Amina"}"#.to_vec());
    let transaction = root.transaction_id.clone();
    let by_sdk = publisher.publish(&topic, &root).await.unwrap();

    // 2. A Java (DIGIT) service handles it and publishes the next step.
    let java_event = retrace_proto::new_event_id();
    let printed = java
        .run(&[
            "event",
            &broker.bootstrap(),
            &topic,
            &java_event,
            &transaction,
            &root.event_id,
            "digit-birth-registry",
            "birth.registration.validated.v1",
            &subject,
        ])
        .await;
    let (java_partition, java_offset) = printed
        .trim()
        .split_once(' ')
        .map(|(p, o)| (p.parse::<i32>().unwrap(), o.parse::<i64>().unwrap()))
        .unwrap_or_else(|| panic!("JavaPublisher printed {printed:?}, not `partition offset`"));

    // 3. A service in another language posts the step after that to the gateway.
    let posted = gateway
        .events(
            &topic,
            &json!({
                "type": "birth.certificate.requested.v1",
                "source": "certificates",
                "transaction_id": transaction,
                "causation_id": java_event,
                "subject_ids": [subject],
                "payload": {"format": "pdf"},
            }),
        )
        .await;
    assert_eq!(posted.status, 202, "{}", posted.body);
    let gateway_event = posted.body["event_id"].as_str().unwrap().to_owned();
    let gateway_partition = posted.body["partition"].as_i64().unwrap() as i32;
    let gateway_offset = posted.body["offset"].as_i64().unwrap();

    let trace: Trace = eventually("the archive to trace all three events", PATIENCE, || {
        let url = archive.url(&format!("/v1/transactions/{transaction}?payload=true"));
        async move {
            let response = reqwest::get(url).await.ok()?;
            if response.status() != 200 {
                return None;
            }
            let trace: Trace = response.json().await.unwrap();
            (trace.events.len() == 3).then_some(trace)
        }
    })
    .await;

    let events: Vec<_> = trace.events.iter().map(|e| &e.message).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            root.event_id.as_str(),
            java_event.as_str(),
            gateway_event.as_str()
        ],
        "the trace's events in time order"
    );
    let causes: Vec<&str> = events.iter().map(|e| e.causation_id.as_str()).collect();
    assert_eq!(causes, ["", root.event_id.as_str(), java_event.as_str()]);
    assert_eq!(
        chain(&trace.tree),
        ids,
        "the causation tree: root → Java → gateway"
    );
    let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(
        sources,
        ["registration", "digit-birth-registry", "certificates"]
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["envelope", "headers_only", "envelope"]);
    for event in &events {
        assert_eq!(event.transaction_id, transaction);
        assert_eq!(event.subject_ids, [subject.as_str()]);
    }
    // The Java service's JSON value is kept as it sent it, and shown without a warning.
    assert_eq!(events[1].problem, None, "{:?}", events[1]);
    let java_value = events[1]
        .payload
        .as_ref()
        .and_then(|p| p.json.clone())
        .unwrap_or_else(|| panic!("the Java event's payload is not JSON: {:?}", events[1]));
    assert_eq!(java_value["event_id"], Value::from(java_event.as_str()));
    assert_eq!(java_value["type"], "birth.registration.validated.v1");

    // One partition for the whole transaction, whoever published, in causal order there; and
    // where each publisher said it put its event is where the archive read it.
    assert!(
        by_sdk.partition == java_partition && java_partition == gateway_partition,
        "the SDK put the transaction on partition {}, Java on {java_partition}, the gateway on \
         {gateway_partition}",
        by_sdk.partition
    );
    assert!(
        by_sdk.offset < java_offset && java_offset < gateway_offset,
        "offsets on partition {java_partition}: SDK {}, Java {java_offset}, gateway \
         {gateway_offset}",
        by_sdk.offset
    );
    let placed: Vec<(&str, i32, i64)> = events
        .iter()
        .map(|e| (e.topic.as_str(), e.partition, e.offset))
        .collect();
    assert_eq!(
        placed,
        [
            (topic.as_str(), by_sdk.partition, by_sdk.offset),
            (topic.as_str(), java_partition, java_offset),
            (topic.as_str(), gateway_partition, gateway_offset),
        ]
    );
    gateway.stop().await;
}
