//! Apache Kafka on three nodes (KRaft, replication 3, `min.insync.replicas` 2) while nodes
//! fail: a partition leader SIGKILLed under load and started again, a rolling restart of
//! every node, a leader change under a worker queue, and a node that stays down. Each test
//! starts a cluster of its own (`KafkaCluster::start(3)`), one test at a time.
//!
//! The load is about 200 events a second through the gateway, over HTTP, by a client that
//! sends an event again with the same event id when the answer is a 5xx (the gateway's 503
//! says that is safe), as a real client would. Afterwards: every event answered 202 is in the
//! archive; the archive is a copy of the topic (each partition's offsets 0..end, each Kafka
//! record once); an event id stored twice must be one the client sent twice after a 5xx (a
//! publish that timed out but was written; issue 28, item 4), and those are counted.
//!
//! Each test prints its figures (`cluster figures: …`), which docs/reliability.md ("Three
//! nodes under faults") records.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use retrace_api::EventView;
use retrace_proto::{Envelope, OUTCOMES_TOPIC};
use retrace_sdk::{Publisher, QueueTopics, enqueue};
use retrace_telemetry::{FileSink, LogFormat, LogSink, LogSinks, Rotation};
use retrace_tests::{
    Broker, Generator, KafkaCluster, PATIENCE, RunningArchive, RunningGateway, WebhookTarget,
    archived_copy, eventually, eventually_explained, free_port, in_archive, job, json_answer,
    messages_on, metric_sum, start_archive, start_gateway_on, unique_topic, wait_until_archived,
    webhook_queue,
};
use serde_json::json;

/// The load's topic: several partitions, so a node leads some and follows others.
const PARTITIONS: i32 = 6;
/// About 200 events a second: 20 requests in flight, each slot pausing 100 ms after its
/// answer (a 5 ms answer makes 20 / 0.105 s).
const IN_FLIGHT: usize = 20;
const PACE: Duration = Duration::from_millis(100);
/// Events answered 202 in each phase of a scenario (before, during and after a fault).
const PHASE: usize = 1_500;
/// How often the client sends one event before it gives up.
const ATTEMPTS: u32 = 10;
/// What the client waits between two attempts of one event.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Three JVMs per test on a small machine: the tests of this binary take turns.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A three-node cluster of the test's own.
fn three_nodes() -> Broker {
    Broker::Kafka {
        cluster: Arc::new(KafkaCluster::start(3)),
        private: true,
    }
}

fn cluster(broker: &Broker) -> &KafkaCluster {
    broker.kafka_cluster().expect("a cluster the test started")
}

/// Node ids are 1..=3; Kafka's broker ids are the same numbers.
fn node(broker_id: i32) -> u8 {
    u8::try_from(broker_id).expect("a node id of the harness' cluster")
}

/// The warnings and errors of every service these tests run in-process, as JSON lines, as an
/// operator would read them: the scenario of a node that stays down reads it, and a person
/// reads it after a failure. Set up once per process.
fn service_log() -> &'static Path {
    static LOG: OnceLock<PathBuf> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cluster-{}-services.log", std::process::id()));
        let file = LogSink::File(FileSink {
            path: path.clone(),
            rotation: Rotation::Never,
            max_files: None,
        });
        let sinks = LogSinks {
            debug: file.clone(),
            app: file.clone(),
            audit: file.clone(),
            security: file,
        };
        retrace_telemetry::init_logging_to(LogFormat::Json, "warn", &sinks)
            .expect("the services' log is set up once");
        eprintln!("the services' warnings: {}", path.display());
        path
    })
}

/// What the load's client saw.
#[derive(Debug, Default)]
struct Tally {
    /// Distinct events sent.
    events: usize,
    /// Answers 500..=599, each attempt counted.
    server_errors: usize,
    /// Attempts without an answer, or answered with another status.
    other_failures: usize,
    /// Events sent more than once.
    retried: BTreeSet<String>,
    /// Events the client gave up on after [`ATTEMPTS`].
    gave_up: usize,
    /// From an event's first send to its 202, retries included.
    max_latency: Duration,
    last_error: Option<String>,
}

/// The gateway's client at about 200 events a second, until finished.
struct Load {
    generator: Generator,
    tally: Arc<Mutex<Tally>>,
}

impl Load {
    fn start(gateway: &RunningGateway, topic: &str) -> Load {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let url = format!("{}/v1/topics/{topic}/events", gateway.url);
        let seen = Arc::clone(&tally);
        let generator = Generator::start(IN_FLIGHT, PACE, move |_| {
            let (client, url, seen) = (client.clone(), url.clone(), Arc::clone(&seen));
            async move { post_until_accepted(&client, &url, &seen).await }
        });
        Load { generator, tally }
    }

    fn accepted(&self) -> usize {
        self.generator.acknowledged_count()
    }

    /// Waits until `more` events beyond those accepted so far are answered 202.
    async fn until_accepted(&self, more: usize, what: &str) {
        let target = self.accepted() + more;
        eventually_explained(
            PATIENCE,
            || async { (self.accepted() >= target).then_some(()) },
            || {
                format!(
                    "{what}: {} of {target} accepted; {:?}",
                    self.accepted(),
                    self.tally.lock().unwrap()
                )
            },
        )
        .await;
    }

    /// Stops sending new events, lets those in flight finish, and hands over the ids
    /// answered 202 and the tally.
    async fn finish(self) -> (BTreeSet<String>, Tally) {
        let accepted = self.generator.finish().await;
        let tally = std::mem::take(&mut *self.tally.lock().unwrap());
        (accepted, tally)
    }
}

/// Posts one new event until it is answered 202, sending it again with the same event id
/// (and transaction id, so the same partition) after a 5xx or no answer; `None` when it gave
/// up, or was refused for good (a 4xx).
async fn post_until_accepted(
    client: &reqwest::Client,
    url: &str,
    seen: &Mutex<Tally>,
) -> Option<String> {
    let event_id = retrace_proto::new_event_id();
    let body = json!({
        "event_id": event_id,
        "transaction_id": retrace_proto::new_event_id(),
        "type": "cluster.load.v1",
        "source": "cluster-test",
    });
    seen.lock().unwrap().events += 1;
    let first_sent = Instant::now();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            seen.lock().unwrap().retried.insert(event_id.clone());
        }
        let failure = match client.post(url).json(&body).send().await {
            Ok(answer) if answer.status().is_success() => {
                let mut seen = seen.lock().unwrap();
                seen.max_latency = seen.max_latency.max(first_sent.elapsed());
                return Some(event_id);
            }
            Ok(answer) => {
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                seen.last_error = Some(format!("{status} {text}"));
                if status.is_server_error() {
                    seen.server_errors += 1;
                } else {
                    seen.other_failures += 1;
                    if status.is_client_error() {
                        return None;
                    }
                }
                status.to_string()
            }
            Err(error) => {
                let mut seen = seen.lock().unwrap();
                seen.other_failures += 1;
                seen.last_error = Some(error.to_string());
                error.to_string()
            }
        };
        if attempt == ATTEMPTS {
            eprintln!("gave up on {event_id} after {ATTEMPTS} attempts, the last: {failure}");
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    seen.lock().unwrap().gave_up += 1;
    None
}

/// Waits until the archive holds every record of `topic`, stops the gateway and the archive,
/// and checks what the archive holds against what was accepted; prints the figures.
async fn check_archived(
    scenario: &str,
    started: Instant,
    broker: &Broker,
    archive: RunningArchive,
    gateway: RunningGateway,
    topic: &str,
    (accepted, tally): (BTreeSet<String>, Tally),
) {
    wait_until_archived(broker, &archive, topic, PARTITIONS).await;
    gateway.stop().await;
    let (store, _dir) = archive.stop().await;
    let on_kafka = messages_on(broker, topic, PARTITIONS).await;
    // Gap-free offsets, each Kafka record once.
    let archived = in_archive(&store, topic, on_kafka);
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !archived.contains_key(*id))
        .collect();
    let twice: HashMap<&String, &usize> = archived.iter().filter(|(_, n)| **n > 1).collect();
    let extra_records: usize = twice.values().map(|n| **n - 1).sum();
    let retried_stored_twice = twice.keys().filter(|id| tally.retried.contains(**id));
    let retried_stored_twice = retried_stored_twice.count();
    eprintln!(
        "cluster figures: {scenario}: events {}, accepted (202) {}, 5xx answers {}, other \
         failed attempts {}, events retried {}, given up {}, max publish latency {:?}, on \
         Kafka {on_kafka}, archived {on_kafka} (offsets gap-free, each record once), lost {}, \
         event ids stored twice {} ({extra_records} extra records; {retried_stored_twice} of \
         them retried after a 5xx), took {:?}",
        tally.events,
        accepted.len(),
        tally.server_errors,
        tally.other_failures,
        tally.retried.len(),
        tally.gave_up,
        tally.max_latency,
        lost.len(),
        twice.len(),
        started.elapsed(),
    );
    assert!(lost.is_empty(), "accepted but not archived: {lost:?}");
    assert_eq!(
        tally.server_errors, 0,
        "a routine failover answered clients with errors: {:?}",
        tally.last_error
    );
    assert_eq!(
        retried_stored_twice,
        twice.len(),
        "an event id twice on Kafka that the client sent once: {twice:?}"
    );
    assert_eq!(
        tally.gave_up, 0,
        "the client gave up on events: {:?}",
        tally.last_error
    );
}

/// How a scenario names a faulted node: whether it was also the active controller.
fn controller_or_not(node: u8, controller: u8) -> &'static str {
    if node == controller {
        "the active controller"
    } else {
        "not the controller"
    }
}

/// Which node [`leader_killed_under_load`] kills.
#[derive(Clone, Copy)]
enum Victim {
    /// The leader of partition 0 of the loaded topic.
    LeaderOfPartition0,
    /// The active controller (the KRaft quorum leader), which also leads some of the topic's
    /// partitions: its death adds a controller election to the fencing, the worst case.
    ActiveController,
}

/// SIGKILL of a node that leads partitions of the loaded topic, mid-run, then the node
/// started again. librdkafka waits for the new leader (Kafka fences a dead broker after
/// `broker.session.timeout.ms`, 9 s, plus an election when the controller died): requests
/// stall meanwhile, within the publishers' `message.timeout.ms` (30 s), so every one is
/// answered 202.
async fn leader_killed_under_load(victim: Victim) {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    service_log();
    let started = Instant::now();
    let broker = three_nodes();
    let topic = unique_topic("cluster-kill");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let controller = cluster(&broker).quorum_leader().await;
    let load = Load::start(&gateway, &topic);
    load.until_accepted(PHASE, "the load before the kill").await;

    let killed = match victim {
        Victim::LeaderOfPartition0 => node(broker.leader_of(&topic, 0).await),
        Victim::ActiveController => controller,
    };
    eprintln!("killing node {killed} (the active controller is node {controller})");
    cluster(&broker).kill_node(killed).await;
    load.until_accepted(PHASE, "the load on two nodes").await;
    cluster(&broker).start_node(killed).await;
    load.until_accepted(PHASE, "the load after the node's restart")
        .await;
    let outcome = load.finish().await;
    let scenario = format!(
        "node {killed} killed ({})",
        controller_or_not(killed, controller)
    );
    check_archived(
        &scenario, started, &broker, archive, gateway, &topic, outcome,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_under_load_loses_nothing_and_fails_no_request() {
    leader_killed_under_load(Victim::LeaderOfPartition0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_controller_killed_under_load_loses_nothing_and_fails_no_request() {
    leader_killed_under_load(Victim::ActiveController).await;
}

/// Every node in turn: SIGTERM (a controlled shutdown, which hands its leaderships over),
/// started again, and the next only once every partition is fully replicated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_nodes_loses_nothing() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    service_log();
    let started = Instant::now();
    let broker = three_nodes();
    let topic = unique_topic("cluster-rolling");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let load = Load::start(&gateway, &topic);
    load.until_accepted(PHASE / 3, "the load before the restarts")
        .await;
    for node in 1..=3 {
        let restart = Instant::now();
        cluster(&broker).stop_node(node).await;
        let stopped = restart.elapsed();
        cluster(&broker).start_node(node).await;
        let serving = restart.elapsed();
        broker.wait_until_fully_replicated(3).await;
        eprintln!(
            "node {node}: stopped after {stopped:?}, serving after {serving:?}, every \
             partition in sync after {:?}; {} accepted so far",
            restart.elapsed(),
            load.accepted()
        );
        load.until_accepted(PHASE / 3, &format!("the load after node {node}'s restart"))
            .await;
    }
    let outcome = load.finish().await;
    check_archived(
        "rolling restart (SIGTERM) of nodes 1, 2, 3",
        started,
        &broker,
        archive,
        gateway,
        &topic,
        outcome,
    )
    .await;
}

/// A node SIGKILLed while the load runs and left down: on the two others (still
/// `min.insync.replicas`), the gateway keeps answering 202 and the archive keeps archiving;
/// the gateway's producer says a broker is unreachable, in `retrace_kafka_broker_errors_total`
/// and in a warning naming the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stays_down_leaves_the_pipeline_working() {
    const DOWN: u8 = 3;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let log = service_log();
    let started = Instant::now();
    let broker = three_nodes();
    let down_address = broker
        .bootstrap()
        .split(',')
        .nth(usize::from(DOWN) - 1)
        .expect("node 3 in the bootstrap list (node order)")
        .to_owned();
    let topic = unique_topic("cluster-down");
    broker.create_topic(&topic, PARTITIONS).await;
    let archive = start_archive(&broker).await;
    let gateway = start_gateway_on(&broker, |_| {}).await;
    let controller = cluster(&broker).quorum_leader().await;
    let load = Load::start(&gateway, &topic);
    load.until_accepted(PHASE / 3, "the load before the node goes down")
        .await;
    // The recorder is the process's: other tests' services count into it too. (`+ 0.0`: an
    // empty sum is -0.)
    let broker_errors = |metrics: &str| {
        metric_sum(
            metrics,
            "retrace_kafka_broker_errors_total",
            "client=\"producer\"",
        ) + 0.0
    };
    let archive_errors =
        |metrics: &str| metric_sum(metrics, "retrace_archive_kafka_errors_total", "") + 0.0;
    let errors_before = broker_errors(&gateway.metrics().await);
    let archive_errors_before = archive_errors(&archive.metrics().await);

    cluster(&broker).kill_node(DOWN).await;
    eprintln!("node {DOWN} ({down_address}) killed and left down; the controller was {controller}");
    load.until_accepted(2 * PHASE, "the load on two nodes")
        .await;
    let outcome = load.finish().await;
    wait_until_archived(&broker, &archive, &topic, PARTITIONS).await;

    let gateway_metrics = gateway.metrics().await;
    let errors_after = broker_errors(&gateway_metrics);
    let archive_errors_after = archive_errors(&archive.metrics().await);
    let named = format!("{down_address}/{DOWN}");
    let warnings: Vec<String> = std::fs::read_to_string(log)
        .expect("the services' log")
        .lines()
        .filter(|line| line.contains("Kafka broker unreachable") && line.contains(&named))
        .map(str::to_owned)
        .collect();
    eprintln!(
        "node {DOWN} down: retrace_kafka_broker_errors_total{{client=\"producer\"}} {errors_before} \
         -> {errors_after}, retrace_archive_kafka_errors_total {archive_errors_before} -> \
         {archive_errors_after}, {} warnings naming {named}, the first: {}",
        warnings.len(),
        warnings.first().map_or("none", String::as_str)
    );
    assert!(
        errors_after > errors_before,
        "the gateway's metrics show the broker down:\n{gateway_metrics}"
    );
    assert!(
        !warnings.is_empty(),
        "a warning names the unreachable broker {named} in {}",
        log.display()
    );
    let scenario = format!(
        "node {DOWN} killed and left down ({})",
        controller_or_not(DOWN, controller)
    );
    check_archived(
        &scenario, started, &broker, archive, gateway, &topic, outcome,
    )
    .await;
}

/// Jobs enqueued (SDK, acknowledged) before and while the node leading partition 0 of the
/// queue's normal lane is SIGKILLed, then started again. Every acknowledged job is run (the
/// webhook called at least once) and its outcome is in the archive's trace once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_keeps_at_least_once_through_a_leader_change() {
    const BEFORE: usize = 100;
    const DURING: usize = 200;
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    service_log();
    let started = Instant::now();
    let broker = three_nodes();
    let target = WebhookTarget::default();
    let (queue, worker, server) = webhook_queue(&broker, "cluster-jobs", &target).await;
    let lane = QueueTopics::of(&queue).normal;
    let archive = start_archive(&broker).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();

    let before: Vec<Envelope> = (0..BEFORE).map(|_| job("cluster-test", "ok")).collect();
    let mut acked: BTreeSet<String> = before.iter().map(|job| job.event_id.clone()).collect();
    futures::future::try_join_all(
        before
            .into_iter()
            .map(|job| enqueue(&publisher, &queue, job)),
    )
    .await
    .unwrap();
    worker
        .status_when("the first jobs done", |s| s.done as usize >= BEFORE)
        .await;

    // About 50 jobs a second, each enqueue returning once Kafka acknowledged it.
    let max_enqueue = Arc::new(Mutex::new(Duration::ZERO));
    let enqueuer = Generator::start(5, PACE, {
        let (publisher, queue, max_enqueue) =
            (publisher.clone(), queue.clone(), max_enqueue.clone());
        move |_| {
            let (publisher, queue, max_enqueue) =
                (publisher.clone(), queue.clone(), Arc::clone(&max_enqueue));
            async move {
                let job = job("cluster-test", "ok");
                let id = job.event_id.clone();
                let sent = Instant::now();
                let acked = enqueue(&publisher, &queue, job).await;
                let mut max = max_enqueue.lock().unwrap();
                *max = (*max).max(sent.elapsed());
                acked.ok().map(|_| id)
            }
        }
    });
    let enqueued = |more: usize, what: &'static str| {
        let target = enqueuer.acknowledged_count() + more;
        let enqueuer = &enqueuer;
        async move {
            eventually(what, PATIENCE, || async {
                (enqueuer.acknowledged_count() >= target).then_some(())
            })
            .await
        }
    };
    enqueued(DURING / 2, "jobs enqueued before the kill").await;
    let leader = node(broker.leader_of(&lane, 0).await);
    let outcomes_leader = broker.leader_of(OUTCOMES_TOPIC, 0).await;
    let controller = cluster(&broker).quorum_leader().await;
    eprintln!(
        "killing node {leader}, leader of {lane}/0 (of {OUTCOMES_TOPIC}: {outcomes_leader}; the \
         active controller: {controller})"
    );
    cluster(&broker).kill_node(leader).await;
    enqueued(DURING, "jobs enqueued on two nodes").await;
    cluster(&broker).start_node(leader).await;
    enqueued(DURING / 2, "jobs enqueued after the node's restart").await;
    acked.extend(enqueuer.finish().await);

    let status = worker
        .status_when("every acknowledged job done", |s| {
            s.done as usize >= acked.len()
        })
        .await;
    let calls = target.calls.lock().unwrap().clone();
    let never_ran: Vec<&String> = acked.iter().filter(|id| !calls.contains_key(*id)).collect();
    let ran_twice = acked
        .iter()
        .filter(|id| calls.get(*id).is_some_and(|n| *n > 1))
        .count();

    // The archive's trace: each job's outcomes, as support would read them.
    wait_until_archived(&broker, &archive, OUTCOMES_TOPIC, 1).await;
    let client = reqwest::Client::new();
    let mut outcomes_per_job: HashMap<String, Vec<String>> = HashMap::new();
    for id in &acked {
        let view: EventView =
            json_answer(client.get(archive.url(&format!("/v1/events/{id}")))).await;
        assert_eq!(view.copies.len(), 1, "job {id} enqueued once: {view:?}");
        let statuses = view.outcomes.iter().map(|o| o.status.clone()).collect();
        outcomes_per_job.insert(id.clone(), statuses);
    }
    worker.stop().await;
    server.abort();
    let (store, _dir) = archive.stop().await;
    // The lane and the outcomes topic archived as copies of Kafka (each record once).
    let on_lane = messages_on(&broker, &lane, 2).await;
    let jobs_archived = in_archive(&store, &lane, on_lane);
    let outcomes_on_kafka = messages_on(&broker, OUTCOMES_TOPIC, 1).await;
    let outcome_records = archived_copy(&store, OUTCOMES_TOPIC, outcomes_on_kafka);
    let not_once: Vec<(&String, &Vec<String>)> = outcomes_per_job
        .iter()
        .filter(|(_, statuses)| statuses.as_slice() != ["processed"])
        .collect();
    eprintln!(
        "cluster figures: worker, leader node {leader} of {lane}/0 killed ({}): jobs acked {} \
         ({BEFORE} before, {} while the node was killed and restarted), done {}, webhook calls \
         {}, jobs run twice {ran_twice}, never run {}, max enqueue latency {:?}, jobs on Kafka \
         {on_lane} (archived, {} ids), outcome records on Kafka {outcomes_on_kafka} (archived \
         {}), jobs whose trace has not exactly one outcome {}, took {:?}",
        controller_or_not(leader, controller),
        acked.len(),
        acked.len() - BEFORE,
        status.done,
        calls.values().sum::<u32>(),
        never_ran.len(),
        *max_enqueue.lock().unwrap(),
        jobs_archived.len(),
        outcome_records.len(),
        not_once.len(),
        started.elapsed(),
    );
    assert!(
        never_ran.is_empty(),
        "acknowledged jobs never run: {never_ran:?}"
    );
    assert!(
        not_once.is_empty(),
        "jobs whose trace has not exactly one `processed` outcome: {not_once:?}"
    );
    for id in &acked {
        assert_eq!(jobs_archived.get(id), Some(&1), "job {id} archived once");
    }
}

/// The archive, the gateway and the worker, each with its defaults (authentication on, so
/// each reads the token topic; topics created by whoever comes first), started the moment a
/// fresh cluster serves: Retrace's topics are new and their leaders not yet known to every
/// broker. Every start succeeds, every round: start-up retries what Kafka answers meanwhile.
/// Ten rounds, each on a new cluster (`RETRACE_TEST_FRESH_STARTS` sets how many).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_starts_on_a_cluster_that_has_just_come_up() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    service_log();
    let rounds: usize = std::env::var("RETRACE_TEST_FRESH_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    for round in 1..=rounds {
        let broker = three_nodes();
        let started = Instant::now();
        let worker_http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut worker_config = retrace_worker::WorkerConfig::new(broker.bootstrap());
        worker_config.http = worker_http;
        worker_config.queues.insert(
            unique_topic("fresh-jobs"),
            retrace_worker::QueueConfig {
                webhook: Some("http://127.0.0.1:9/never-called".into()),
                ..retrace_worker::QueueConfig::default()
            },
        );
        let stop_worker = tokio_util::sync::CancellationToken::new();
        let worker = tokio::spawn(retrace_worker::run(worker_config, stop_worker.clone()));
        let (archive, gateway) = tokio::join!(
            RunningArchive::start_with(&broker, |config| config.auth.enabled = true),
            start_gateway_on(&broker, |config| config.auth.enabled = true),
        );
        eventually(
            &format!("round {round}: the worker to come up"),
            PATIENCE,
            || async {
                let health = reqwest::get(format!("http://{worker_http}/healthz")).await;
                health.ok()?.status().is_success().then_some(())
            },
        )
        .await;
        eprintln!(
            "round {round} of {rounds}: archive, gateway and worker up {:?} after the cluster",
            started.elapsed()
        );
        stop_worker.cancel();
        worker
            .await
            .expect("the worker does not panic")
            .expect("the worker stops cleanly");
        gateway.stop().await;
        archive.stop().await;
    }
}
