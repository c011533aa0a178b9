//! Two replicas of one archive (`[archive] replica_id` a and b, each consuming every topic
//! in its own group) as separate processes, while a gateway takes events over HTTP: the
//! replicas are SIGKILLed by turns, again and again at random moments, while the other
//! serves traces and replays; then both are asked for the same replay at once with one
//! Idempotency-Key, and b for an erasure. Afterwards both hold the same archive: every
//! partition's digest equal over the API (as `retrace archive compare` asks) and in the
//! stores, every acknowledged event in each, each replay published exactly once, the erasure
//! applied on both and audited once in each trail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use retrace_log_store::{AuditFilter, LogStore, StoreOptions};
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
use retrace_tests::{
    Broker, Generator, KafkaCluster, ServiceProcess, Stop, TEST_SIGNING_KEY, archive_process,
    archived_count, create_archive_topics, eventually, free_port, messages_on, next_kill_at,
    on_every_broker, start_gateway_on, unique_topic,
};
use serde_json::{Value, json};

const KILLS: usize = 10;
/// Kills land after 1 to this many records newly archived by the replica.
const KILL_SPREAD: i64 = 200;
const PATIENCE: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 4;
/// Events name one of this many subjects.
const SUBJECTS: u64 = 50;

/// One replica: its process (absent while killed), address and data directory.
struct Replica {
    id: &'static str,
    http: String,
    data: tempfile::TempDir,
    process: Option<ServiceProcess>,
}

impl Replica {
    fn new(id: &'static str) -> Replica {
        Replica {
            id,
            http: format!("127.0.0.1:{}", free_port()),
            data: tempfile::tempdir().unwrap(),
            process: None,
        }
    }

    fn start(&mut self, broker: &Broker, topic: &str, config: &Path) {
        let built = env!("CARGO_BIN_EXE_retrace-archive");
        let data = self.data.path();
        self.process = Some(ServiceProcess::spawn(
            // One archive of this test's own (tests of one binary share a Kafka node), each
            // replica consuming in `<group>.<replica id>`.
            archive_process(built, broker, topic, data, &self.http, config)
                .env("RETRACE_ARCHIVE_GROUP", format!("{topic}-archive"))
                .env("RETRACE_ARCHIVE_REPLICA_ID", self.id),
        ));
    }

    fn running(&self) -> bool {
        self.process.is_some()
    }

    fn stop(&mut self, how: Stop) {
        self.process.take().expect("running").stop(how);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn archived(&self, topic: &str) -> Option<i64> {
        archived_count(&self.http, None, topic).await
    }

    /// Waits until the replica has archived `count` records of `topic`.
    async fn wait_for(&self, topic: &str, count: i64) {
        eventually(
            &format!("replica {} to archive {count} records", self.id),
            PATIENCE,
            || async { (self.archived(topic).await? >= count).then_some(()) },
        )
        .await;
    }

    /// Waits until `/healthz` says ready: consuming, and caught up with Kafka.
    async fn wait_ready(&self) {
        eventually(
            &format!("replica {} to be ready", self.id),
            PATIENCE,
            || async {
                let health = reqwest::get(self.url("/healthz")).await.ok()?;
                health.status().is_success().then_some(())
            },
        )
        .await;
    }

    fn store(&self) -> LogStore {
        LogStore::open(self.data.path(), &StoreOptions::default()).unwrap()
    }
}

/// `POST /v1/transactions/{transaction}/replay` with `key`: the status and the replay's id.
async fn replay(
    http: &reqwest::Client,
    replica: &Replica,
    transaction: &str,
    key: &str,
) -> (u16, String) {
    let answer = http
        .post(replica.url(&format!("/v1/transactions/{transaction}/replay")))
        .header("Idempotency-Key", key)
        .json(&json!({"reason": "replica test"}))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap();
    let id = body["replay"]["replay_id"].as_str().unwrap_or_default();
    assert!(!id.is_empty(), "{status}: {body}");
    (status, id.to_owned())
}

async fn replicas_converge_while_one_is_killed_again_and_again(broker: Broker) {
    let topic = unique_topic("registrations");
    broker.create_topic(&topic, PARTITIONS).await;
    create_archive_topics(&broker).await;
    let gateway = Arc::new(start_gateway_on(&broker, |_| {}).await);
    let config = tempfile::NamedTempFile::new().unwrap();
    // The replicas sign and verify their changes with one key; callers are not what this
    // test is about.
    std::fs::write(
        config.path(),
        format!("[auth]\nenabled = false\nsigning_keys = [\"{TEST_SIGNING_KEY}\"]\n"),
    )
    .unwrap();
    // Events through the gateway, over HTTP; acknowledged means answered 2xx.
    let generator = Generator::start(2, Duration::from_millis(10), {
        let (gateway, topic) = (Arc::clone(&gateway), topic.clone());
        move |n| {
            let (gateway, topic) = (Arc::clone(&gateway), topic.clone());
            async move {
                let transaction_id = retrace_proto::new_event_id();
                let event = json!({
                    "transaction_id": transaction_id,
                    "type": "registration.created.v1",
                    "source": "replica-test",
                    "subject_ids": [format!("beneficiary:{}", n % SUBJECTS)],
                });
                let answer = gateway.events(&topic, &event).await;
                (answer.status / 100 == 2).then_some(transaction_id)
            }
        }
    });
    let mut replicas = [Replica::new("a"), Replica::new("b")];
    replicas[0].start(&broker, &topic, config.path());
    replicas[0].wait_for(&topic, 1).await;
    let http = reqwest::Client::new();
    let mut replays = BTreeSet::new();
    for kill in 0..KILLS {
        // b, a, b, a…: the one killed last round is back and ready before the other goes.
        let (victim, survivor) = if kill % 2 == 0 { (1, 0) } else { (0, 1) };
        for replica in &mut replicas {
            if !replica.running() {
                replica.start(&broker, &topic, config.path());
            }
        }
        replicas[survivor].wait_ready().await;
        let (victim, survivor) = {
            let [a, b] = &mut replicas;
            if victim == 1 { (b, &*a) } else { (a, &*b) }
        };
        let first = eventually("the replica's API to answer", PATIENCE, || {
            victim.archived(&topic)
        })
        .await;
        victim.wait_for(&topic, first + 1).await;
        victim
            .wait_for(&topic, next_kill_at(first + 1, KILL_SPREAD))
            .await;
        victim.stop(Stop::Kill);
        // While one is down, the other serves: a trace, and a replay of a transaction it
        // archived.
        let transaction = newest_transaction(survivor, &topic).await;
        let trace = http
            .get(survivor.url(&format!("/v1/transactions/{transaction}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            trace.status(),
            200,
            "replica {} traces while {} is down",
            survivor.id,
            victim.id
        );
        let key = format!("kill-{kill}");
        let (status, id) = replay(&http, survivor, &transaction, &key).await;
        assert_eq!(status, 202, "a new replay starts");
        let (again, same) = replay(&http, survivor, &transaction, &key).await;
        assert_eq!((again, &same), (200, &id), "asked again: the same replay");
        replays.insert(id);
    }
    for replica in &mut replicas {
        if !replica.running() {
            replica.start(&broker, &topic, config.path());
        }
    }
    let acknowledged = generator.finish().await;
    let [mut a, mut b] = replicas;
    for replica in [&a, &b] {
        replica.wait_ready().await;
    }

    // Both asked for one replay at the same moment, with one key: one replay, published once.
    let transaction = newest_transaction(&a, &topic).await;
    let (on_a, on_b) = tokio::join!(
        replay(&http, &a, &transaction, "asked-twice"),
        replay(&http, &b, &transaction, "asked-twice")
    );
    assert_eq!(on_a.1, on_b.1, "both replicas answer the same replay");
    let statuses = BTreeSet::from([on_a.0, on_b.0]);
    assert_eq!(
        statuses,
        BTreeSet::from([200, 202]),
        "one started it, one found it"
    );
    replays.insert(on_a.1);

    // An erasure asked of b is applied by both.
    let erased = format!("beneficiary:{}", SUBJECTS - 1);
    let erasure = http
        .post(b.url(&format!("/v1/subjects/{erased}/erase")))
        .json(&json!({"reason": "request 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(erasure.status(), 200, "{}", erasure.text().await.unwrap());

    // Both catch up with everything, replays' copies included, then stop cleanly.
    for replica in [&a, &b] {
        eventually("every replay done", PATIENCE, || async {
            for id in &replays {
                let view: Value = http
                    .get(replica.url(&format!("/v1/replays/{id}")))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (view["state"] == "done").then_some(())?;
            }
            Some(())
        })
        .await;
    }
    // Everything Kafka holds by now: the topic with the replays' copies, the change log, and
    // the audit events of the erasure and of the reads so far.
    for (read, partitions) in [
        (&*topic, PARTITIONS),
        (ARCHIVE_CHANGES_TOPIC, 3),
        (AUDIT_TOPIC, 3),
    ] {
        let end = messages_on(&broker, read, partitions).await;
        a.wait_for(read, end).await;
        b.wait_for(read, end).await;
    }
    // What `retrace archive compare` asks of both: every partition's digest, up to where
    // both have reached.
    let digested = assert_same_digests(&http, &a, &b).await;
    a.stop(Stop::Terminate);
    b.stop(Stop::Terminate);

    let (store_a, store_b) = (a.store(), b.store());
    for store in [&store_a, &store_b] {
        for transaction in &acknowledged {
            assert!(
                !store.transaction(transaction).unwrap().is_empty(),
                "acknowledged transaction {transaction} archived by both replicas"
            );
        }
        let about_subject = store
            .audit(
                &AuditFilter {
                    target: Some(erased.clone()),
                    ..AuditFilter::default()
                },
                100,
                None,
            )
            .unwrap();
        let erasures = about_subject
            .items
            .iter()
            .filter(|record| record.action == "subject.erase")
            .count();
        assert_eq!(
            erasures, 1,
            "one erasure in each replica's trail: {:?}",
            about_subject.items
        );
    }
    for data in [&topic, ARCHIVE_CHANGES_TOPIC] {
        let positions = |store: &LogStore| {
            let mut positions = store.positions().unwrap();
            positions.retain(|p| p.topic == data);
            positions
        };
        assert_eq!(
            positions(&store_a),
            positions(&store_b),
            "both hold all of {data}"
        );
    }
    let compared = assert_same_records(&store_a, &store_b);
    for id in &replays {
        let replay = store_a.replay(id).unwrap().unwrap();
        let copies = copies_of(&store_a, &replay.transaction_ids[0], id);
        assert_eq!(copies, replay.planned, "replay {id} published exactly once");
    }
    for store in [&store_a, &store_b] {
        let payloads = store
            .subject_transactions(&erased, (i64::MIN, i64::MAX), 1000, None)
            .unwrap()
            .items
            .into_iter()
            .flat_map(|t| store.transaction(&t.transaction_id).unwrap())
            .filter(|r| {
                r.value.is_some()
                    && r.ids
                        .as_ref()
                        .is_some_and(|ids| ids.subject_ids.contains(&erased))
            })
            .count();
        assert_eq!(
            payloads, 0,
            "the erased subject's payloads are gone on both replicas"
        );
    }
    println!(
        "replicas: kills={KILLS} events={} replays={} erasures=1 records_compared={compared} \
         partitions_digested={digested} equal on {}",
        acknowledged.len(),
        replays.len(),
        broker.name()
    );
}

/// A transaction `replica` archived lately: one of the newest records of the topic.
async fn newest_transaction(replica: &Replica, topic: &str) -> String {
    let page: Value = reqwest::get(replica.url(&format!("/v1/transactions?topic={topic}&limit=1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["items"][0]["transaction_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a transaction of {topic}: {page}"))
        .to_owned()
}

/// Checks that `a` and `b` hold the same records in every partition either holds, up to
/// the offset both reached (the audit topic grows with every read until they stop), as
/// `retrace archive compare` does; returns how many records were compared.
fn assert_same_records(a: &LogStore, b: &LogStore) -> i64 {
    let next = |store: &LogStore| -> BTreeMap<(String, i32), i64> {
        store
            .positions()
            .unwrap()
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.next_offset))
            .collect()
    };
    let (next_a, next_b) = (next(a), next(b));
    let partitions: BTreeSet<&(String, i32)> = next_a.keys().chain(next_b.keys()).collect();
    let mut compared = 0;
    for (topic, partition) in partitions {
        let key = (topic.clone(), *partition);
        let until = next_a.get(&key).min(next_b.get(&key)).copied().unwrap_or(0);
        let digest = |store: &LogStore| store.partition_digest(topic, *partition, until).unwrap();
        assert_eq!(digest(a), digest(b), "{topic}/{partition} below {until}");
        compared += until;
    }
    compared
}

/// Compares `a`'s and `b`'s digest of every partition either holds over the API, up to the
/// offset both reached, as `retrace archive compare` does; returns how many partitions.
async fn assert_same_digests(http: &reqwest::Client, a: &Replica, b: &Replica) -> usize {
    let get = |url: String| async move {
        let answer = http.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{url}");
        answer.json::<Value>().await.unwrap()
    };
    let held = |list: Value| -> BTreeMap<(String, i64), i64> {
        list.as_array()
            .unwrap_or_else(|| panic!("a list of partitions: {list}"))
            .iter()
            .map(|p| {
                let key = (
                    p["topic"].as_str().unwrap().to_owned(),
                    p["partition"].as_i64().unwrap(),
                );
                (key, p["next_offset"].as_i64().unwrap())
            })
            .collect()
    };
    let (on_a, on_b) = (
        held(get(a.url("/v1/digests")).await),
        held(get(b.url("/v1/digests")).await),
    );
    assert_eq!(
        on_a.keys().collect::<Vec<_>>(),
        on_b.keys().collect::<Vec<_>>(),
        "both hold the same partitions"
    );
    for ((topic, partition), next_a) in &on_a {
        let until = (*next_a).min(on_b[&(topic.clone(), *partition)]);
        let path = format!("/v1/digests/{topic}/{partition}?until={until}");
        let (digest_a, digest_b) = (get(a.url(&path)).await, get(b.url(&path)).await);
        assert_eq!(
            (&digest_a["digest"], &digest_a["records"]),
            (&digest_b["digest"], &digest_b["records"]),
            "{topic}/{partition} below {until}: {digest_a} against {digest_b}"
        );
    }
    on_a.len()
}

/// How many copies replay `replay_id` published of `transaction`'s events.
fn copies_of(store: &LogStore, transaction: &str, replay_id: &str) -> u64 {
    store
        .transaction(transaction)
        .unwrap()
        .iter()
        .filter(|record| {
            record.headers.iter().any(|h| {
                h.name == "retrace-replay-id" && h.value.as_deref() == Some(replay_id.as_bytes())
            })
        })
        .count() as u64
}

on_every_broker!(replicas_converge_while_one_is_killed_again_and_again);

/// The same on three Apache Kafka nodes, as an archive is deployed: a cluster of the test's
/// own, its topics replicated three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_on_three_nodes() {
    let broker = Broker::Kafka {
        cluster: Arc::new(KafkaCluster::start(3)),
        private: true,
    };
    replicas_converge_while_one_is_killed_again_and_again(broker).await;
}
