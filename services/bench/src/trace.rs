//! `retrace-bench trace`: how long a support person waits for a transaction's trace, in an
//! archive of a million messages. The baseline is the store read alone (the transaction's
//! records, no trace building, no HTTP), measured in the same run on the same transactions;
//! and, for the cost of the caller check and the audit trail, the same trace over HTTP from
//! a server that builds it exactly as the archive does but checks no token and writes no
//! audit record (`audit_overhead_ratio`). The archive runs with authentication on, as in
//! production; the bench's requests carry the bootstrap admin token.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use retrace_api::Trace;
use retrace_archive::{Archive, ArchiveConfig};
use retrace_fixtures::Broker;
use retrace_log_store::{
    ArchivedRecord, EventIds, LogStore, OutcomeRef, PreparedRecord, RecordKey, RecordKind,
    StoreOptions,
};
use retrace_proto::{Envelope, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use tokio_util::sync::CancellationToken;

use crate::smoke;

const TOPICS: [&str; 4] = [
    "registrations",
    "validations",
    "certificates",
    "notifications",
];
const PARTITIONS: i32 = 8;

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the archive (events and their outcomes).
    #[arg(long, default_value_t = 1_000_000, default_value_ifs = smoke("20000"))]
    messages: usize,
    /// Traces requested, each of a random transaction.
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("100"))]
    lookups: usize,
    /// Transactions are written this many at a time, interleaved, as they arrive in Kafka.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// A check that every phase runs, in seconds: 20,000 messages and 100 lookups unless
    /// set. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary archive directory")?;
    let started = Instant::now();
    let transactions = fill(dir.path(), &options)?;
    println!("messages={}", options.messages);
    println!("transactions={}", transactions.len());
    println!("fill_seconds={:.1}", started.elapsed().as_secs_f64());

    let mut sample = transactions.clone();
    sample.shuffle(&mut rand::rng());
    sample.truncate(options.lookups);

    let reader = LogStore::open(dir.path(), &StoreOptions::default())?;
    // One untimed pass first, for each of the two, so both are measured with a warm cache.
    for (transaction, _) in &sample {
        std::hint::black_box(reader.transaction(transaction)?);
    }
    let mut store_read = Vec::with_capacity(sample.len());
    for (transaction, _) in &sample {
        let began = Instant::now();
        let records = reader.transaction(transaction)?;
        store_read.push(began.elapsed());
        std::hint::black_box(records);
    }
    let client = reqwest::Client::new();
    let baseline = Server::start(unaudited_traces(reader.clone())).await?;
    let mut unaudited = time_traces(&client, &baseline.url, None, &sample).await?;
    // The archive opens the store next: every handle to it must be gone first.
    baseline.stop().await?;
    drop(reader);

    // The archive serves its API without consuming: nothing changes while it is measured.
    let broker = Broker::mock();
    let shutdown = CancellationToken::new();
    let mut config = ArchiveConfig::new(broker.bootstrap(), dir.path());
    // As in production: each request's token checked (the bootstrap admin's), each trace
    // read audited.
    let auth = crate::auth::secured(&broker).await;
    config.auth = auth.config;
    let archive = Archive::open(&config, shutdown.clone())
        .await
        .context("opening the filled archive")?;
    // Tokens are checked once the registry has read the tokens topic.
    let ready = archive.readiness();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.iter().all(|flag| flag.load(Ordering::Acquire)) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the archive's token registry did not catch up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server = Server::start(archive.router()).await?;
    let mut over_http = time_traces(&client, &server.url, Some(&auth.token), &sample).await?;
    server.stop().await?;
    shutdown.cancel();
    let (store_p50, store_p99) = percentiles(&mut store_read);
    let (unaudited_p50, unaudited_p99) = percentiles(&mut unaudited);
    let (http_p50, http_p99) = percentiles(&mut over_http);
    println!("lookups={}", sample.len());
    println!("store_read_p50_ms={:.3}", ms(store_p50));
    println!("store_read_p99_ms={:.3}", ms(store_p99));
    println!("trace_http_unaudited_p50_ms={:.3}", ms(unaudited_p50));
    println!("trace_http_unaudited_p99_ms={:.3}", ms(unaudited_p99));
    println!("trace_http_p50_ms={:.3}", ms(http_p50));
    println!(
        "ratio_p99_http_to_store={:.2}",
        ms(http_p99) / ms(store_p99)
    );
    println!(
        "audit_overhead_ratio={:.2}",
        ms(http_p99) / ms(unaudited_p99)
    );
    println!("trace_http_p99_ms={:.3}", ms(http_p99));
    Ok(())
}

/// A router served on a loopback port.
struct Server {
    url: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), retrace_http::HttpError>>,
}

impl Server {
    async fn start(router: axum::Router) -> anyhow::Result<Server> {
        let listener = retrace_http::bind(([127, 0, 0, 1], 0).into(), None).await?;
        let stop = CancellationToken::new();
        Ok(Server {
            url: listener.url(),
            task: tokio::spawn(listener.serve(router, stop.clone().cancelled_owned())),
            stop,
        })
    }

    /// Returns once the server, and with it the router, is gone.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        Ok(self.task.await??)
    }
}

/// `GET /v1/transactions/{id}` built as the archive builds it (the store's records and
/// replays, [`retrace_archive::trace`], JSON) but with no caller check and no audit record:
/// the baseline the audited API is compared with.
fn unaudited_traces(store: LogStore) -> axum::Router {
    axum::Router::new().route(
        "/v1/transactions/{id}",
        axum::routing::get(
            move |axum::extract::Path(id): axum::extract::Path<String>| async move {
                let built = tokio::task::spawn_blocking(move || {
                    let records = store.transaction(&id).ok()?;
                    let replays = store.transaction_replays(&id).ok()?;
                    retrace_archive::trace(&id, &records, &replays, false)
                })
                .await
                .ok()
                .flatten();
                built
                    .map(axum::Json)
                    .ok_or(axum::http::StatusCode::NOT_FOUND)
            },
        ),
    )
}

/// Requests each sampled transaction's trace from `base` once untimed (a warm cache), then
/// once timed; checks every trace holds all the transaction's messages.
async fn time_traces(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    sample: &[(String, usize)],
) -> anyhow::Result<Vec<Duration>> {
    let get = |transaction: &str| {
        let request = client.get(format!("{base}/v1/transactions/{transaction}"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    for (transaction, _) in sample {
        get(transaction).send().await?.error_for_status()?;
    }
    let mut timings = Vec::with_capacity(sample.len());
    for (transaction, messages) in sample {
        let began = Instant::now();
        let body = get(transaction)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        timings.push(began.elapsed());
        // Checked after the clock stops: the caller's JSON parsing is not the server's time.
        let trace: Trace = serde_json::from_slice(&body)?;
        let outcomes: usize = trace.events.iter().map(|e| e.outcomes().count()).sum();
        anyhow::ensure!(
            trace.events.len() + outcomes == *messages,
            "trace of {transaction} from {base} has {} events and {outcomes} outcomes, \
             expected {messages} messages",
            trace.events.len()
        );
    }
    Ok(timings)
}

/// Writes transactions of 10 to 25 events, each event with one outcome (20 to 50 messages
/// a transaction), `in_flight` transactions interleaved. Returns each transaction's id and
/// message count.
fn fill(dir: &std::path::Path, options: &Options) -> anyhow::Result<Vec<(String, usize)>> {
    let store = LogStore::open(dir, &StoreOptions::default())?;
    let mut rng = rand::rng();
    let mut offsets = vec![0_i64; TOPICS.len() * PARTITIONS as usize + PARTITIONS as usize];
    let mut done = Vec::new();
    let mut open: Vec<(Vec<Envelope>, usize, usize)> = Vec::new();
    let mut batch = Vec::with_capacity(5000);
    let mut written = 0;
    let mut time_ms = 1_790_000_000_000_i64;
    while written < options.messages {
        while open.len() < options.in_flight {
            open.push((Vec::new(), rng.random_range(10..=25), 0));
        }
        let slot = rng.random_range(0..open.len());
        let (events, wanted, messages) = &mut open[slot];
        let event = match events.last() {
            None => Envelope::root("registration", "birth.registration.submitted.v1")
                .with_subject(format!("beneficiary:{}", rng.random_range(0..100_000))),
            Some(parent) => Envelope::caused_by(parent, "validation", "birth.step.v1"),
        };
        let event = event.with_payload("application/json", vec![b'x'; 300]);
        time_ms += 1;
        let topic = events.len() % TOPICS.len();
        let partition = rng.random_range(0..PARTITIONS);
        let slot_offset = &mut offsets[topic * PARTITIONS as usize + partition as usize];
        batch.push(event_record(
            &event,
            TOPICS[topic],
            partition,
            *slot_offset,
            time_ms,
        ));
        *slot_offset += 1;
        let outcome_slot = &mut offsets[TOPICS.len() * PARTITIONS as usize + partition as usize];
        batch.push(outcome_record(
            &event,
            partition,
            *outcome_slot,
            time_ms + 1,
        ));
        *outcome_slot += 1;
        *messages += 2;
        written += 2;
        events.push(event);
        if events.len() == *wanted {
            let (events, _, messages) = open.swap_remove(slot);
            done.push((events[0].transaction_id.clone(), messages));
        }
        if batch.len() >= 5000 {
            store.append(&std::mem::take(&mut batch))?;
        }
    }
    store.append(&batch)?;
    store.flush()?;
    Ok(done)
}

fn event_record(
    event: &Envelope,
    topic: &str,
    partition: i32,
    offset: i64,
    time_ms: i64,
) -> PreparedRecord {
    let record = ArchivedRecord {
        key: RecordKey {
            topic: topic.to_owned(),
            partition,
            epoch: 0,
            offset,
        },
        message_key: Some(event.transaction_id.clone().into_bytes()),
        value: Some(event.encode_to_vec()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(time_ms),
        time_ms,
        kind: RecordKind::Envelope,
        problem: None,
        ids: Some(EventIds {
            event_id: event.event_id.clone(),
            transaction_id: event.transaction_id.clone(),
            causation_id: event.causation_id.clone(),
            subject_ids: event.subject_ids.clone(),
            source: event.source.clone(),
            event_type: event.r#type.clone(),
        }),
        outcome: None,
        archived_at_ms: time_ms,
        erased_at_ms: None,
        audit: None,
    };
    PreparedRecord::new(record).expect("bench records are indexable")
}

fn outcome_record(event: &Envelope, partition: i32, offset: i64, time_ms: i64) -> PreparedRecord {
    let outcome = Outcome::of(event, "certificates", OutcomeStatus::Processed, None, 1);
    let record = ArchivedRecord {
        key: RecordKey {
            topic: OUTCOMES_TOPIC.to_owned(),
            partition,
            epoch: 0,
            offset,
        },
        message_key: Some(event.transaction_id.clone().into_bytes()),
        value: Some(outcome.encode_to_vec()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(time_ms),
        time_ms,
        kind: RecordKind::Outcome,
        problem: None,
        ids: Some(EventIds {
            transaction_id: event.transaction_id.clone(),
            source: "certificates".into(),
            ..EventIds::default()
        }),
        outcome: Some(OutcomeRef {
            event_id: event.event_id.clone(),
            failed: false,
        }),
        archived_at_ms: time_ms,
        erased_at_ms: None,
        audit: None,
    };
    PreparedRecord::new(record).expect("bench records are indexable")
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
