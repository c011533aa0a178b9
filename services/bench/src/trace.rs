//! `retrace-bench trace`: how long a support person waits for a transaction's trace, in an
//! archive of a million messages. The baseline is the store read alone (the transaction's
//! records, no trace building, no HTTP), measured in the same run on the same transactions;
//! and, for the cost of the caller check and the audit trail, the same trace over HTTP from
//! a server that builds it exactly as the archive does but checks no token and writes no
//! audit record (`audit_overhead_ratio`). The archive runs with authentication on, as in
//! production; the bench's requests carry the bootstrap admin token.

use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use retrace_api::Trace;
use retrace_log_store::{LogStore, PreparedRecord, StoreOptions};
use retrace_proto::{Envelope, Outcome, OutcomeStatus};

use crate::records::{Records, Writer};
use crate::served::{ServedArchive, Server, ms, percentiles};
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

    let archive = ServedArchive::start(dir.path()).await?;
    let mut over_http = time_traces(&client, &archive.url, Some(&archive.token), &sample).await?;
    archive.stop().await?;
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
pub(crate) async fn time_traces(
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

/// Writes [`generate`]'s transactions into a store in `dir` through [`Writer`]. Returns each
/// transaction's id and message count.
fn fill(dir: &std::path::Path, options: &Options) -> anyhow::Result<Vec<(String, usize)>> {
    let mut writer = Writer::new(LogStore::open(dir, &StoreOptions::default())?);
    let done = generate(options.messages, options.in_flight, |record| {
        writer.push(record)
    })?;
    writer.finish()?;
    Ok(done)
}

/// Makes at least `messages` records, transactions of 10 to 25 events, each event with one
/// outcome (20 to 50 messages a transaction), `in_flight` transactions interleaved, as the
/// archive would have archived them ([`crate::records`]), and hands each to `push`. Returns
/// each finished transaction's id and message count.
pub(crate) fn generate(
    messages: usize,
    in_flight: usize,
    mut push: impl FnMut(PreparedRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut records = Records::default();
    let mut rng = rand::rng();
    let mut done = Vec::new();
    let mut open: Vec<(Vec<Envelope>, usize, usize)> = Vec::new();
    let mut time_ms = 1_790_000_000_000_i64;
    let mut written = 0;
    while written < messages {
        while open.len() < in_flight {
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
        let partition = rng.random_range(0..PARTITIONS);
        push(records.event(
            &event,
            TOPICS[events.len() % TOPICS.len()],
            partition,
            time_ms,
        ))?;
        let outcome = Outcome::of(&event, "certificates", OutcomeStatus::Processed, None, 1);
        push(records.outcome(&outcome, partition, time_ms + 1))?;
        *messages += 2;
        written += 2;
        events.push(event);
        if events.len() == *wanted {
            let (events, _, messages) = open.swap_remove(slot);
            done.push((events[0].transaction_id.clone(), messages));
        }
    }
    Ok(done)
}
