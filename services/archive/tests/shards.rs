//! Three shards of one archive (`[archive] shard = "i/3"`, one replica each) as separate
//! processes beside a single archive of the same topics, with authentication on. The
//! workload spreads every transaction over partitions owned by different shards (as
//! producers with other partitioners do), fails some of them, and names a dozen subjects.
//!
//! Asked through any shard, every trace, every event, every page of every subject's listing
//! and of the failed and started listings equals the single archive's, for an admin and (masked) for an
//! analyst. With one shard killed, answers are 206 and name it in `incomplete`, and hold
//! nothing the single archive does not; restarted, they are whole again. A replay and an
//! erasure asked of a shard that holds none of the records reach the shards that do.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_tests::{
    Broker, KafkaCluster, ServiceProcess, Stop, TEST_SIGNING_KEY, archive_process, archived_count,
    create_archive_topics, eventually, free_port, messages_on, request_json, unique_topic,
};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(120);
const SHARDS: usize = 3;
/// Two partitions per shard, of the topic and of the outcomes topic.
const PARTITIONS: i32 = 6;
const TRANSACTIONS: usize = 240;
/// Events name one of this many subjects: 20 transactions each, three pages of 7.
const SUBJECTS: usize = 12;

/// One archive process: a shard (`Some(i)`) or the single archive (`None`).
struct Node {
    shard: Option<usize>,
    http: String,
    data: tempfile::TempDir,
    process: Option<ServiceProcess>,
}

impl Node {
    fn new(shard: Option<usize>) -> Node {
        Node {
            shard,
            http: format!("127.0.0.1:{}", free_port()),
            data: tempfile::tempdir().unwrap(),
            process: None,
        }
    }

    fn name(&self) -> String {
        match self.shard {
            Some(index) => format!("shard {index}/{SHARDS}"),
            None => "the single archive".to_owned(),
        }
    }

    fn start(&mut self, broker: &Broker, topic: &str, config: &Path, map: &str) {
        let built = env!("CARGO_BIN_EXE_retrace-archive");
        let mut command =
            archive_process(built, broker, topic, self.data.path(), &self.http, config);
        command.env(
            "RETRACE_ARCHIVE_TOPICS",
            format!("{topic},{OUTCOMES_TOPIC}"),
        );
        match self.shard {
            Some(index) => command
                .env("RETRACE_ARCHIVE_GROUP", format!("{topic}-sharded"))
                .env("RETRACE_ARCHIVE_SHARD", format!("{index}/{SHARDS}"))
                .env("RETRACE_ARCHIVE_SHARD_URLS", map),
            None => command.env("RETRACE_ARCHIVE_GROUP", format!("{topic}-single")),
        };
        self.process = Some(ServiceProcess::spawn(&mut command));
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn wait_ready(&self) {
        eventually(
            &format!("{} to be ready", self.name()),
            PATIENCE,
            || async {
                let health = reqwest::get(self.url("/healthz")).await.ok()?;
                health.status().is_success().then_some(())
            },
        )
        .await;
    }
}

/// The workload: transaction k has a root event on partition k mod 6 and two events it
/// caused on partitions k+1 and k+3 (other shards'); every fifth fails at its second event,
/// every tenth a second time later. Returns the transaction ids.
async fn publish(broker: &Broker, topic: &str) -> Vec<String> {
    let producer: FutureProducer = broker.client_config().create().unwrap();
    let mut transactions = Vec::new();
    let mut sends = Vec::new();
    let mut send = |topic: &str, partition: i32, value: Vec<u8>| {
        let producer = producer.clone();
        let topic = topic.to_owned();
        sends.push(async move {
            let record = FutureRecord::<(), _>::to(&topic)
                .partition(partition)
                .payload(&value);
            producer
                .send(record, Duration::from_secs(30))
                .await
                .unwrap();
        });
    };
    for k in 0..TRANSACTIONS {
        let subject = format!("beneficiary:{}", k % SUBJECTS);
        let root = Envelope::root("registration", "registration.submitted.v1")
            .with_subject(subject)
            .with_payload(
                "application/json",
                format!(r#"{{"child":{{"given_name":"Ada {k}"}},"phone":"555-{k}"}}"#).into_bytes(),
            );
        let checked = Envelope::caused_by(&root, "validation", "registration.checked.v1");
        let recorded = Envelope::caused_by(&checked, "registry", "registration.recorded.v1");
        let p = k as i32;
        send(topic, p % PARTITIONS, root.encode_to_vec());
        send(topic, (p + 1) % PARTITIONS, checked.encode_to_vec());
        send(topic, (p + 3) % PARTITIONS, recorded.encode_to_vec());
        let failures = match k % 10 {
            0 => 2,
            5 => 1,
            _ => 0,
        };
        for attempt in 1..=failures {
            let outcome = Outcome {
                event_id: checked.event_id.clone(),
                transaction_id: root.transaction_id.clone(),
                consumer: "registry".to_owned(),
                status: OutcomeStatus::Failed as i32,
                error: format!("registry timeout for child Ada {k}"),
                attempt,
                topic: topic.to_owned(),
                ..Outcome::default()
            };
            send(
                OUTCOMES_TOPIC,
                (p + 2 + attempt as i32) % PARTITIONS,
                outcome.encode_to_vec(),
            );
        }
        transactions.push(root.transaction_id.clone());
    }
    futures::future::join_all(sends).await;
    transactions
}

/// `GET path` of `node` as `token`: the status and the document, `behind` left out (each
/// archive is behind on its own partitions at its own moments).
async fn get(node: &Node, path: &str, token: &str) -> (u16, Value) {
    let (status, mut body) = request_json("GET", node.url(path), Some(token), None).await;
    if let Some(fields) = body.as_object_mut() {
        fields.remove("behind");
    }
    (status, body)
}

/// Every page of the listing at `path` (which has a `?`), `limit` items a page.
async fn all_pages(node: &Node, path: &str, limit: usize, token: &str) -> (u16, Vec<Value>) {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    let mut worst = 200;
    loop {
        let paged = match &cursor {
            Some(cursor) => format!("{path}&limit={limit}&cursor={cursor}"),
            None => format!("{path}&limit={limit}"),
        };
        let (status, page) = get(node, &paged, token).await;
        assert!(
            matches!(status, 200 | 206),
            "{paged} on {}: {status} {page}",
            node.name()
        );
        worst = worst.max(status);
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        if cursor.is_none() {
            return (worst, pages);
        }
    }
}

/// Asks `asked` and the single archive the same questions as `token`; asserts equal answers.
/// Returns how many documents were compared.
async fn assert_same_answers(
    asked: &Node,
    single: &Node,
    transactions: &[String],
    token: &str,
) -> usize {
    let mut compared = 0;
    for (n, transaction) in transactions.iter().enumerate() {
        let path = format!("/v1/transactions/{transaction}?payload=true");
        let (expected, got) = (
            get(single, &path, token).await,
            get(asked, &path, token).await,
        );
        assert_eq!(expected.0, 200, "{path}: {}", expected.1);
        assert_eq!(got, expected, "{path} through {}", asked.name());
        compared += 1;
        // The events of every fourth transaction: the same shards hold them.
        let events = expected.1["events"].as_array().unwrap();
        for event in events.iter().filter(|_| n % 4 == 0) {
            let path = format!(
                "/v1/events/{}?payload=true",
                event["event_id"].as_str().unwrap()
            );
            let (expected, got) = (
                get(single, &path, token).await,
                get(asked, &path, token).await,
            );
            assert_eq!(expected.0, 200, "{path}: {}", expected.1);
            assert_eq!(got, expected, "{path} through {}", asked.name());
            compared += 1;
        }
    }
    let listings = (0..SUBJECTS)
        .map(|s| {
            (
                format!("/v1/subjects/beneficiary:{s}/transactions?since=30d"),
                7,
            )
        })
        .chain([
            ("/v1/transactions?status=failed".to_owned(), 9),
            ("/v1/transactions?status=ok".to_owned(), 50),
            ("/v1/transactions?since=30d".to_owned(), 64),
        ]);
    for (path, limit) in listings {
        let expected = all_pages(single, &path, limit, token).await;
        let got = all_pages(asked, &path, limit, token).await;
        assert!(
            expected
                .1
                .iter()
                .map(|page| page["items"].as_array().unwrap().len())
                .sum::<usize>()
                > 0,
            "{path} lists something"
        );
        assert_eq!(got, expected, "{path} through {}", asked.name());
        compared += expected.1.len();
    }
    compared
}

/// With a shard down: every answer is flagged, and holds nothing the single archive's does
/// not. Returns how many answers were checked.
async fn assert_flagged_never_wrong(
    asked: &Node,
    single: &Node,
    transactions: &[String],
    down: &str,
    token: &str,
) -> usize {
    let mut checked = 0;
    for transaction in transactions.iter().take(30) {
        let path = format!("/v1/transactions/{transaction}");
        let (_, whole) = get(single, &path, token).await;
        let (status, partial) = get(asked, &path, token).await;
        assert_eq!(status, 206, "{path} with {down} down: {partial}");
        assert_eq!(partial["incomplete"], json!([down]), "{partial}");
        // What an event is, not what the trace around it makes of it (gaps, durations).
        let events = |trace: &Value| -> BTreeSet<String> {
            trace["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| {
                    let fields = ["event_id", "type", "source", "topic", "partition", "offset"];
                    fields.map(|field| event[field].to_string()).join(" ")
                })
                .collect()
        };
        assert!(
            events(&partial).is_subset(&events(&whole)),
            "{path}: every event shown is the whole trace's"
        );
        checked += 1;
    }
    let path = "/v1/transactions?status=failed";
    let (status, pages) = all_pages(asked, path, 9, token).await;
    assert_eq!(status, 206, "{path} with {down} down");
    let (_, whole) = all_pages(single, path, 9, token).await;
    let listed = |pages: &[Value]| -> BTreeSet<String> {
        pages
            .iter()
            .flat_map(|page| page["items"].as_array().unwrap().clone())
            .map(|item| item["transaction_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        listed(&pages).is_subset(&listed(&whole)),
        "every transaction listed as failed failed"
    );
    for page in &pages {
        assert_eq!(page["incomplete"], json!([down]), "{page}");
    }
    checked + pages.len()
}

async fn shards_answer_as_one_archive(broker: Broker) {
    let topic = unique_topic("registrations");
    broker.create_topic(&topic, PARTITIONS).await;
    broker.create_topic(OUTCOMES_TOPIC, PARTITIONS).await;
    broker
        .create_topic(retrace_auth::DEFAULT_TOKENS_TOPIC, 1)
        .await;
    create_archive_topics(&broker).await;
    let (admin, digest) = retrace_auth::generate();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[auth]\nbootstrap_admin_sha256 = \"{digest}\"\nsigning_keys = [\"{TEST_SIGNING_KEY}\"]\n\n\
             [masking]\njson_paths = [\"child.given_name\"]\n"
        ),
    )
    .unwrap();
    let mut single = Node::new(None);
    let mut shards: Vec<Node> = (0..SHARDS).map(|i| Node::new(Some(i))).collect();
    let map = shards
        .iter()
        .map(|s| format!("http://{}", s.http))
        .collect::<Vec<_>>()
        .join(",");
    single.start(&broker, &topic, config.path(), &map);
    for shard in &mut shards {
        shard.start(&broker, &topic, config.path(), &map);
    }
    let transactions = publish(&broker, &topic).await;

    // Every node holds its share of everything Kafka holds.
    for read in [topic.as_str(), OUTCOMES_TOPIC] {
        let end = messages_on(&broker, read, PARTITIONS).await;
        eventually(
            &format!("every node to archive {end} records of {read}"),
            PATIENCE,
            || async {
                let whole = archived_count(&single.http, Some(&admin), read).await?;
                let mut sharded = 0;
                for shard in &shards {
                    sharded += archived_count(&shard.http, Some(&admin), read).await?;
                }
                (whole == end && sharded == end).then_some(())
            },
        )
        .await;
    }
    for node in shards.iter().chain([&single]) {
        node.wait_ready().await;
    }
    // An analyst, known to every node through the tokens topic: its answers are masked.
    let body = json!({"name": "analyst", "role": "analyst", "expires_in_s": 3600});
    let (status, created) =
        request_json("POST", single.url("/v1/tokens"), Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let analyst = created["token"].as_str().unwrap().to_owned();
    for node in shards.iter().chain([&single]) {
        eventually(
            &format!("{} to know the analyst", node.name()),
            PATIENCE,
            || async {
                let (status, _) = get(node, "/v1/whoami", &analyst).await;
                (status == 200).then_some(())
            },
        )
        .await;
    }

    let mut compared = 0;
    for (asked, token) in [(&shards[0], &admin), (&shards[2], &analyst)] {
        compared += assert_same_answers(asked, &single, &transactions, token).await;
    }
    // What a shard answers from its own partitions alone says so.
    let (status, incidents) = get(&shards[0], "/v1/incidents", &admin).await;
    assert_eq!(
        (status, &incidents["incomplete"]),
        (206, &json!(["1/3", "2/3"])),
        "{incidents}"
    );
    let (status, refused) = get(
        &shards[0],
        &format!("/v1/messages?topic={topic}&partition=1"),
        &admin,
    )
    .await;
    assert_eq!(
        (status, &refused["field"]),
        (400, &json!("partition")),
        "{refused}"
    );
    assert!(
        refused["error"].as_str().unwrap().contains("shard 1/3"),
        "{refused}"
    );
    let (status, _) = get(
        &shards[0],
        &format!("/v1/messages?topic={topic}&partition=3"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "partition 3 is shard 0's");

    let (_, masked) = get(
        &shards[1],
        &format!("/v1/transactions/{}?payload=true", transactions[4]),
        &analyst,
    )
    .await;
    let submitted = masked["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "registration.submitted.v1")
        .unwrap_or_else(|| panic!("the root event: {masked}"));
    assert_eq!(
        submitted["payload"]["json"]["child"]["given_name"], "***",
        "an analyst's trace is masked: {submitted}"
    );
    assert_eq!(
        submitted["payload"]["json"]["phone"],
        json!(format!("555-4")),
        "{submitted}"
    );

    // Shard 2 killed: flagged, never wrong; its own metrics say so.
    let down = shards[2].process.take().unwrap();
    down.stop(Stop::Kill);
    let flagged =
        assert_flagged_never_wrong(&shards[0], &single, &transactions, "2/3", &admin).await;
    let metrics = reqwest::get(shards[0].url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("retrace_archive_shard_answering{shard=\"2/3\"} 0"),
        "shard 0 reports shard 2 not answering"
    );

    // Restarted: whole again.
    shards[2].start(&broker, &topic, config.path(), &map);
    shards[2].wait_ready().await;
    compared += assert_same_answers(&shards[1], &single, &transactions, &admin).await;

    // A replay asked of shard 0, which holds none of the transaction's records (transaction
    // 7's events sit on partitions 1, 2 and 4: shards 1 and 2), publishes all three, once.
    let replay = |key: &'static str| {
        let url = shards[0].url(&format!("/v1/transactions/{}/replay", transactions[7]));
        let admin = admin.clone();
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .bearer_auth(admin)
                .header("Idempotency-Key", key)
                .json(&json!({"reason": "shards test"}))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap();
            (
                status,
                body["replay"]["replay_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    let (status, replay_id) = replay("shards-7").await;
    assert_eq!(status, 202, "a replay across shards starts");
    assert_eq!(
        replay("shards-7").await,
        (200, replay_id.clone()),
        "asked again: the same"
    );
    eventually("the replay done", PATIENCE, || async {
        let (_, view) = get(&shards[2], &format!("/v1/replays/{replay_id}"), &admin).await;
        (view["state"] == "done").then_some(view)
    })
    .await;
    let (_, view) = get(&shards[2], &format!("/v1/replays/{replay_id}"), &admin).await;
    assert_eq!(
        (&view["planned"], &view["published"]),
        (&json!(3), &json!(3)),
        "{view}"
    );

    // An erasure asked of shard 1, which holds none of the subject's records (they sit on
    // partitions 5, 0 and 2: shards 2 and 0), reaches them all.
    let erased = format!("beneficiary:{}", SUBJECTS - 1);
    let (status, erasure) = request_json(
        "POST",
        shards[1].url(&format!("/v1/subjects/{erased}/erase")),
        Some(&admin),
        Some(&json!({"reason": "request 7"})),
    )
    .await;
    assert_eq!(status, 200, "{erasure}");
    let listing = format!("/v1/subjects/{erased}/transactions?since=30d");
    let (_, pages) = all_pages(&shards[0], &listing, 50, &admin).await;
    let of_subject: Vec<String> = pages
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().clone())
        .map(|item| item["transaction_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        of_subject.len(),
        TRANSACTIONS / SUBJECTS,
        "{erased}'s transactions"
    );
    for transaction in &of_subject {
        let path = format!("/v1/transactions/{transaction}?payload=true");
        eventually(
            &format!("{path} erased on every shard"),
            PATIENCE,
            || async {
                let (_, trace) = get(&shards[0], &path, &admin).await;
                let events = trace["events"].as_array()?;
                (events.len() == 3 && events.iter().all(|event| event["erased_at"].is_string()))
                    .then_some(())
            },
        )
        .await;
    }
    for node in shards.iter_mut().chain([&mut single]) {
        node.process.take().unwrap().stop(Stop::Terminate);
    }
    println!(
        "shards: shards={SHARDS} transactions={} documents_compared_equal={compared} \
         answers_flagged_with_a_shard_down={flagged} on {}",
        transactions.len(),
        broker.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_answer_as_one_archive_on_the_mock_cluster() {
    shards_answer_as_one_archive(Broker::mock()).await;
}

/// As deployed: three Apache Kafka nodes of the test's own, topics replicated three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_answer_as_one_archive_on_three_nodes() {
    let broker = Broker::Kafka {
        cluster: Arc::new(KafkaCluster::start(3)),
        private: true,
    };
    shards_answer_as_one_archive(broker).await;
}
