//! `retrace-bench trace`: how long a support person waits for a transaction's trace and for
//! the failed-transactions listing, and how that changes as the archive grows. The archive
//! is filled straight through the store (the archiver's batches, its incident rule), then
//! measured at `--points` sizes, each time served with authentication on while it archives a
//! concurrent ingest from Kafka (`--ingest-rate`, published through the mock cluster). The
//! baselines, at the last size: the store read alone (the transaction's records, no trace
//! building, no HTTP), and, for the cost of the caller check and the audit trail, the same
//! trace from a server that builds it exactly as the archive does but checks no token and
//! writes no audit record (`audit_overhead_ratio`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use rand::Rng as _;
use rand::rngs::ThreadRng;
use rand::seq::SliceRandom as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use retrace_api::{Page, Trace, TransactionStatus, TransactionSummary};
use retrace_log_store::{LogStore, PreparedRecord, StoreOptions};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{Envelope, Outcome, OutcomeStatus};

use crate::archive::archived_count;
use crate::plot::{Chart, Series};
use crate::records::{Records, Writer, kafka_headers};
use crate::served::{ServedArchive, Server, ms, percentiles, time_gets};
use crate::smoke;

const TOPICS: [&str; 4] = [
    "registrations",
    "validations",
    "certificates",
    "notifications",
];
const PARTITIONS: i32 = 8;
/// The topic of the concurrent ingest while size `n` is measured: a new one each time, as
/// each measurement has its own mock cluster, whose offsets start again at 0.
fn live_topic(point: usize) -> String {
    format!("bench.live.{point}")
}
/// The mock cluster keeps about 5 MiB a partition (18 s of the ingest over 16), and finds a
/// fetch's offset by walking the partition's produce batches one by one: with many
/// partitions, each batch held one message, and that walk took a third of the CPU and grew
/// with the measurement's length. Few partitions and a long linger keep batches large.
const LIVE_PARTITIONS: i32 = 16;
/// One transaction in this many fails at its last step.
const FAILING_ONE_IN: usize = 20;
/// What fails them: the consumer's error texts.
const CAUSES: [&str; 4] = [
    "population register did not answer within 2 s",
    "certificate renderer unavailable: HTTP 503",
    "duplicate registration number",
    "address lookup failed",
];
const LISTING_PAGE: usize = 50;
const TRACE_GOAL_MS: f64 = 2.0;
const LISTING_GOAL_MS: f64 = 20.0;
const GROWTH_GOAL: f64 = 1.3;

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the archive at the last size measured (events and their outcomes).
    #[arg(long, default_value_t = 1_000_000, default_value_ifs = smoke("20000"))]
    messages: usize,
    /// Sizes measured: every `messages / points` messages (10 with 10,000,000 messages
    /// measures at 1 M, 2 M, … 10 M).
    #[arg(long, default_value_t = 1, default_value_ifs = smoke("2"))]
    points: usize,
    /// Traces requested at each size, each of a random transaction.
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("100"))]
    lookups: usize,
    /// Failed listings requested at each size, of each of the two pages.
    #[arg(long, default_value_t = 200, default_value_ifs = smoke("20"))]
    listings: usize,
    /// Messages per second published for the archive to ingest while it is measured; 0 for
    /// none.
    #[arg(long, default_value_t = 10_000, default_value_ifs = smoke("1000"))]
    ingest_rate: u32,
    /// Transactions are written this many at a time, interleaved, as they arrive in Kafka.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// Writes an SVG plot of the figures against the archive's size here.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// A check that every phase runs, in seconds: 20,000 messages measured at 2 sizes unless
    /// set. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

/// The figures at one size.
struct Point {
    messages: usize,
    fill_msgs_per_s: f64,
    /// How long the engine's flushes and compactions ran on after the fill.
    settle_seconds: f64,
    trace: (f64, f64),
    failed_first: (f64, f64),
    failed_deep: (f64, f64),
    live_ingest_msgs_per_s: f64,
    rss_bytes: u64,
    disk_bytes: u64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.points >= 1, "--points must be at least 1");
    let dir = tempfile::tempdir().context("creating a temporary archive directory")?;
    println!("fill=log_store_append_with_archive_store_options");
    println!("messages={}", options.messages);
    println!("ingest_rate={}", options.ingest_rate);
    let mut mix = Mix::new(options.in_flight);
    let mut store = LogStore::open(dir.path(), &archive_store_options())?;
    let mut points = Vec::new();
    for point in 1..=options.points {
        let size = options.messages * point / options.points;
        let (began, before) = (Instant::now(), mix.written);
        eprintln!("filling to {size} messages");
        let mut writer = Writer::new(store);
        mix.write(size, |record| writer.push(record))?;
        let filled = writer.finish()?;
        let fill_msgs_per_s = (mix.written - before) as f64 / began.elapsed().as_secs_f64();
        let settle_seconds = settle(&filled)?;
        drop(filled);
        eprintln!("measuring at {} messages", mix.written);
        let measured = measure(dir.path(), &mix, &options, point).await?;
        store = LogStore::open(dir.path(), &archive_store_options())?;
        let point = Point {
            messages: mix.written,
            fill_msgs_per_s,
            settle_seconds,
            disk_bytes: store.disk_space()?,
            ..measured
        };
        print_point(&point);
        points.push(point);
    }

    let sample = mix.sample(options.lookups);
    let baselines = baselines(store, dir.path(), &sample).await?;

    let (first, last) = (&points[0], &points[points.len() - 1]);
    let trace_p99 = last.trace.1;
    println!("transactions={}", mix.done.len());
    println!("failed_transactions={}", mix.failed);
    println!("store_read_p50_ms={:.3}", baselines.store.0);
    println!("store_read_p99_ms={:.3}", baselines.store.1);
    println!("trace_http_unaudited_p50_ms={:.3}", baselines.unaudited.0);
    println!("trace_http_unaudited_p99_ms={:.3}", baselines.unaudited.1);
    println!("trace_http_idle_p50_ms={:.3}", baselines.idle.0);
    println!("trace_http_idle_p99_ms={:.3}", baselines.idle.1);
    println!("trace_http_p50_ms={:.3}", last.trace.0);
    println!(
        "ratio_p99_under_ingest_to_idle={:.2}",
        trace_p99 / baselines.idle.1
    );
    // Both without ingest, as their baselines are.
    println!(
        "ratio_p99_http_to_store={:.2}",
        baselines.idle.1 / baselines.store.1
    );
    println!(
        "audit_overhead_ratio={:.2}",
        baselines.idle.1 / baselines.unaudited.1
    );
    println!("rss_bytes={}", last.rss_bytes);
    println!("disk_bytes={}", last.disk_bytes);
    println!(
        "disk_bytes_per_message={:.0}",
        last.disk_bytes as f64 / last.messages as f64
    );
    goal(
        "trace_goal_max_p99_ms",
        TRACE_GOAL_MS,
        "trace_http_p99_ms",
        trace_p99,
    );
    let failed_p99 = last.failed_first.1.max(last.failed_deep.1);
    goal(
        "failed_listing_goal_max_p99_ms",
        LISTING_GOAL_MS,
        "failed_listing_p99_ms",
        failed_p99,
    );
    if points.len() > 1 {
        let growth = |of: fn(&Point) -> f64| of(last) / of(first);
        let trace_growth = growth(|p| p.trace.1);
        let listing_growth = growth(|p| p.failed_first.1.max(p.failed_deep.1));
        println!("growth_from_messages={}", first.messages);
        goal(
            "growth_goal_max",
            GROWTH_GOAL,
            "trace_p99_growth",
            trace_growth,
        );
        goal(
            "growth_goal_max",
            GROWTH_GOAL,
            "failed_listing_p99_growth",
            listing_growth,
        );
    }
    if let Some(path) = &options.plot {
        std::fs::write(path, plot(&points))
            .with_context(|| format!("writing the plot to {}", path.display()))?;
        println!("plot={}", path.display());
    }
    println!("trace_http_p99_ms={trace_p99:.3}");
    Ok(())
}

/// One line of `name=limit value_name=value met=…`: a goal of the issue, and whether it is
/// met. `value` at most `limit` meets it.
fn goal(name: &str, limit: f64, value_name: &str, value: f64) {
    println!(
        "{name}={limit} {value_name}={value:.3} met={}",
        value <= limit
    );
}

fn print_point(point: &Point) {
    println!(
        "at_messages={} fill_msgs_per_s={:.0} settle_seconds={:.1} trace_p50_ms={:.3} \
         trace_p99_ms={:.3} \
         failed_first_page_p50_ms={:.3} failed_first_page_p99_ms={:.3} \
         failed_deep_page_p50_ms={:.3} failed_deep_page_p99_ms={:.3} \
         live_ingest_msgs_per_s={:.0} rss_bytes={} disk_bytes={}",
        point.messages,
        point.fill_msgs_per_s,
        point.settle_seconds,
        point.trace.0,
        point.trace.1,
        point.failed_first.0,
        point.failed_first.1,
        point.failed_deep.0,
        point.failed_deep.1,
        point.live_ingest_msgs_per_s,
        point.rss_bytes,
        point.disk_bytes,
    );
}

/// The archive in `dir` served while it ingests `--ingest-rate` messages a second: traces of
/// random transactions, and the failed listing's first page and a page from the middle of
/// the archive's time range (`until`), each checked; the rate the archive kept up with, and
/// the process's RSS.
async fn measure(
    dir: &std::path::Path,
    mix: &Mix,
    options: &Options,
    point: usize,
) -> anyhow::Result<Point> {
    let topic = live_topic(point);
    let archive = ServedArchive::ingesting(dir, &topic, LIVE_PARTITIONS).await?;
    let client = reqwest::Client::new();
    let positions = format!("{}/v1/positions", archive.url);
    let archived = || archived_count(&client, &positions, &archive.token, &topic);
    let load = match options.ingest_rate {
        0 => None,
        rate => Some(Load::start(&archive, &topic, rate)?),
    };
    // Measured once the ingest flows: the archive's consumer has joined and archived some.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (ingest_began, archived_before) = loop {
        match archived().await? {
            Some(count) if count > 0 || load.is_none() => break (Instant::now(), count),
            _ => anyhow::ensure!(
                Instant::now() < deadline,
                "the archive archived nothing of {topic} within 300 s"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sample = mix.sample(options.lookups);
    let mut traces = time_traces(&client, &archive.url, Some(&archive.token), &sample).await?;
    let first_page = format!("/v1/transactions?status=failed&limit={LISTING_PAGE}");
    let mut failed_first = time_gets(
        &client,
        &archive,
        options.listings,
        |_| first_page.clone(),
        |body, _| check_failed_page(body, LISTING_PAGE.min(mix.failed)),
    )
    .await?;
    let middle = jiff::Timestamp::from_millisecond((START_MS + mix.time_ms) / 2)?;
    let deep_page = format!("{first_page}&until={middle}");
    let mut failed_deep = time_gets(
        &client,
        &archive,
        options.listings,
        |_| deep_page.clone(),
        |body, _| check_failed_page(body, 1.min(mix.failed)),
    )
    .await?;
    let archived_after = archived()
        .await?
        .context("the archive stopped answering /v1/positions")?;
    let live_ingest_msgs_per_s =
        (archived_after - archived_before) as f64 / ingest_began.elapsed().as_secs_f64();
    let sent = load.map_or(Ok(0), Load::stop)?;
    anyhow::ensure!(
        archived_after <= sent,
        "the archive holds {archived_after} records of {topic}, more than the {sent} published"
    );
    let rss_bytes = crate::soak::rss_kib(std::process::id()).unwrap_or(0) * 1024;
    archive.stop().await?;
    Ok(Point {
        messages: 0,
        fill_msgs_per_s: 0.0,
        settle_seconds: 0.0,
        trace: p50_p99(&mut traces),
        failed_first: p50_p99(&mut failed_first),
        failed_deep: p50_p99(&mut failed_deep),
        live_ingest_msgs_per_s,
        rss_bytes,
        disk_bytes: 0,
    })
}

/// Waits until the engine has flushed and compacted what the fill left it: an archive that
/// ingests 10 k msg/s all along carries no fill's backlog. Answers the seconds it took.
fn settle(store: &LogStore) -> anyhow::Result<f64> {
    let began = Instant::now();
    while store.background_work() > 0 {
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(1800),
            "the store was still flushing or compacting 30 min after the fill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(began.elapsed().as_secs_f64())
}

/// A failed listing's page holds at least `at_least` transactions, all failed.
fn check_failed_page(body: &[u8], at_least: usize) -> anyhow::Result<()> {
    let page: Page<TransactionSummary> = serde_json::from_slice(body)?;
    anyhow::ensure!(
        page.items.len() >= at_least,
        "the page lists {} transactions, expected at least {at_least}",
        page.items.len()
    );
    if let Some(other) = page
        .items
        .iter()
        .find(|t| t.status != TransactionStatus::Failed)
    {
        anyhow::bail!(
            "{} is listed as failed but is {:?}",
            other.transaction_id,
            other.status
        );
    }
    Ok(())
}

/// Publishes one-event transactions onto a topic at a steady rate from a thread of its own,
/// as services would while support staff read the archive.
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<usize>>,
}

impl Load {
    fn start(archive: &ServedArchive, topic: &str, per_second: u32) -> anyhow::Result<Load> {
        let producer: ThreadedProducer<DefaultProducerContext> = archive
            .broker
            .client_config()
            .set("linger.ms", "50")
            .create()?;
        let (stop, topic) = (Arc::new(AtomicBool::new(false)), topic.to_owned());
        let stopping = Arc::clone(&stop);
        // Sent in ticks of 10 ms: the rate holds over any window longer than a tick.
        let per_tick = (per_second as usize).div_ceil(100);
        let thread = std::thread::spawn(move || {
            let began = Instant::now();
            let mut sent = 0;
            while !stopping.load(Ordering::Acquire) {
                for _ in 0..per_tick {
                    let event = Envelope::root("registration", "birth.registration.submitted.v1")
                        .with_payload("application/json", vec![b'x'; 300]);
                    let value = event.encode_to_vec();
                    let mut record = BaseRecord::to(&topic)
                        .key(&event.transaction_id)
                        .payload(&value)
                        .headers(kafka_headers(&TraceHeaders::of(&event)));
                    // A broker that falls behind fills the producer's queue: the publisher
                    // waits for room, as a service's SDK would, and the rate drops.
                    while let Err((error, back)) = producer.send(record) {
                        let KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) = error
                        else {
                            return Err(error.into());
                        };
                        record = back;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    sent += 1;
                }
                let next_tick = Duration::from_millis(10) * (sent / per_tick) as u32;
                std::thread::sleep(next_tick.saturating_sub(began.elapsed()));
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(sent)
        });
        Ok(Load { stop, thread })
    }

    /// Stops publishing; answers the messages sent.
    fn stop(self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the load's publisher panicked"))?
    }
}

/// The baselines at the last size, with no concurrent ingest: the store read alone, the
/// unaudited server, and the archive itself.
struct Baselines {
    store: (f64, f64),
    unaudited: (f64, f64),
    idle: (f64, f64),
}

async fn baselines(
    reader: LogStore,
    dir: &std::path::Path,
    sample: &[(String, usize)],
) -> anyhow::Result<Baselines> {
    // One untimed pass first, so it is measured with a warm cache as the archive was.
    for (transaction, _) in sample {
        std::hint::black_box(reader.transaction(transaction)?);
    }
    let mut store_read = Vec::with_capacity(sample.len());
    for (transaction, _) in sample {
        let began = Instant::now();
        let records = reader.transaction(transaction)?;
        store_read.push(began.elapsed());
        std::hint::black_box(records);
    }
    let client = reqwest::Client::new();
    let baseline = Server::start(unaudited_traces(reader)).await?;
    let mut unaudited = time_traces(&client, &baseline.url, None, sample).await?;
    // The archive opens the store next: every handle to it must be gone first.
    baseline.stop().await?;
    let archive = ServedArchive::start(dir).await?;
    let mut idle = time_traces(&client, &archive.url, Some(&archive.token), sample).await?;
    archive.stop().await?;
    Ok(Baselines {
        store: p50_p99(&mut store_read),
        unaudited: p50_p99(&mut unaudited),
        idle: p50_p99(&mut idle),
    })
}

/// The median and the 99th percentile, in milliseconds.
fn p50_p99(samples: &mut [Duration]) -> (f64, f64) {
    let (p50, p99) = percentiles(samples);
    (ms(p50), ms(p99))
}

/// Trace p99s and the fill's rate against the archive's size.
fn plot(points: &[Point]) -> String {
    let millions = |p: &Point| p.messages as f64 / 1e6;
    let series = |name: &'static str, of: fn(&Point) -> f64| Series {
        name,
        points: points.iter().map(|p| (millions(p), of(p))).collect(),
    };
    crate::plot::svg(
        "archive size (million messages)",
        &[
            Chart {
                title: "p99 latency over HTTP, under a concurrent ingest",
                unit: "ms",
                series: vec![
                    series("trace", |p| p.trace.1),
                    series("failed listing, first page", |p| p.failed_first.1),
                    series("failed listing, deep page", |p| p.failed_deep.1),
                ],
            },
            Chart {
                title: "fill rate: LogStore::append in the archiver's batches",
                unit: "k msg/s",
                series: vec![series("fill", |p| p.fill_msgs_per_s / 1e3)],
            },
        ],
    )
}

/// The archive's store options, its incident rule included, as the archiver writes.
fn archive_store_options() -> StoreOptions {
    retrace_archive::ArchiveConfig::new("unused", "unused").store
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

/// When the first message occurred; each later one a millisecond after the last.
const START_MS: i64 = 1_790_000_000_000;

/// The message mix: transactions of 10 to 25 events, each event with one outcome (20 to 50
/// messages a transaction), `in_flight` transactions interleaved, one in [`FAILING_ONE_IN`]
/// failing at its last step with one of [`CAUSES`]; each message made as the archive would
/// have archived it ([`crate::records`]). Written in parts: [`write`](Mix::write) goes on
/// where the last call stopped.
pub(crate) struct Mix {
    records: Records,
    rng: ThreadRng,
    in_flight: usize,
    /// Transactions being written: their events so far, how many they will have, and their
    /// messages so far.
    open: Vec<(Vec<Envelope>, usize, usize)>,
    time_ms: i64,
    written: usize,
    /// Each finished transaction's id and message count.
    done: Vec<(String, usize)>,
    failed: usize,
}

impl Mix {
    pub(crate) fn new(in_flight: usize) -> Mix {
        Mix {
            records: Records::default(),
            rng: rand::rng(),
            in_flight,
            open: Vec::new(),
            time_ms: START_MS,
            written: 0,
            done: Vec::new(),
            failed: 0,
        }
    }

    /// Up to `count` finished transactions, at random: each id and message count.
    fn sample(&self, count: usize) -> Vec<(String, usize)> {
        let mut sample = self.done.clone();
        sample.shuffle(&mut rand::rng());
        sample.truncate(count);
        sample
    }

    /// Makes records until at least `messages` are written in all, handing each to `push`.
    pub(crate) fn write(
        &mut self,
        messages: usize,
        mut push: impl FnMut(PreparedRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let rng = &mut self.rng;
        while self.written < messages {
            while self.open.len() < self.in_flight {
                self.open.push((Vec::new(), rng.random_range(10..=25), 0));
            }
            let slot = rng.random_range(0..self.open.len());
            let (events, wanted, messages) = &mut self.open[slot];
            let event = match events.last() {
                None => Envelope::root("registration", "birth.registration.submitted.v1")
                    .with_subject(format!("beneficiary:{}", rng.random_range(0..100_000))),
                Some(parent) => Envelope::caused_by(parent, "validation", "birth.step.v1"),
            };
            let event = event.with_payload("application/json", vec![b'x'; 300]);
            self.time_ms += 1;
            let partition = rng.random_range(0..PARTITIONS);
            let topic = TOPICS[events.len() % TOPICS.len()];
            push(self.records.event(&event, topic, partition, self.time_ms))?;
            let last = events.len() + 1 == *wanted;
            let failing = last && rng.random_range(0..FAILING_ONE_IN) == 0;
            let outcome = match failing {
                true => {
                    let cause = CAUSES[rng.random_range(0..CAUSES.len())];
                    Outcome::of(
                        &event,
                        "certificates",
                        OutcomeStatus::Failed,
                        Some(cause.into()),
                        1,
                    )
                }
                false => Outcome::of(&event, "certificates", OutcomeStatus::Processed, None, 1),
            };
            push(self.records.outcome(&outcome, partition, self.time_ms + 1))?;
            *messages += 2;
            self.written += 2;
            self.failed += usize::from(failing);
            events.push(event);
            if last {
                let (events, _, messages) = self.open.swap_remove(slot);
                self.done.push((events[0].transaction_id.clone(), messages));
            }
        }
        Ok(())
    }
}

/// Makes at least `messages` records of [`Mix`], handing each to `push`. Returns each
/// finished transaction's id and message count.
pub(crate) fn generate(
    messages: usize,
    in_flight: usize,
    push: impl FnMut(PreparedRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut mix = Mix::new(in_flight);
    mix.write(messages, push)?;
    Ok(mix.done)
}
