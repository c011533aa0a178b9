//! `retrace-bench incidents`: what the incident index costs and what it answers, in an
//! archive of ten million messages of which a million transactions failed with one of fifty
//! causes (issue 26).
//!
//! - **Ingest cost**: the same slice of the message mix appended into two fresh stores, one
//!   with the archive's incident rule ([`FingerprintRule`]) and one without, in the
//!   archiver's batches, alternated over rounds; `ingest_ratio` = with / without (goal ≥ 0.9).
//! - **Listing**: the archive filled through [`LogStore::append`] with the archive's rule (no
//!   Kafka: records made as [`crate::records`] makes them, so the index is kept batch by batch
//!   as the archiver keeps it), then served with authentication on: `GET /v1/incidents`
//!   (first page, 50) and `GET /v1/incidents/{id}` timed over HTTP, against the baseline of
//!   the store's index read alone. Headline: `incidents_listing_p99_ms` (goal ≤ 20 ms).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng as _;
use rand::seq::SliceRandom as _;
use retrace_api::{IncidentDetail, IncidentView, Page};
use retrace_archive::{ArchiveConfig, FingerprintRule};
use retrace_log_store::{LogStore, PreparedRecord, StoreOptions};
use retrace_proto::{Envelope, Outcome, OutcomeStatus};

use crate::records::{Records, Writer, archiver_batch};
use crate::served::{ServedArchive, ms, percentiles, time_gets};
use crate::smoke;

const TOPICS: [&str; 4] = [
    "registrations",
    "validations",
    "certificates",
    "notifications",
];
/// The consumer that processes each topic's events when nothing fails.
const TOPIC_CONSUMERS: [&str; 4] = ["validation", "registry", "worker:certificates", "notify"];
const PARTITIONS: i32 = 8;
/// Events per transaction, each with one outcome.
const EVENTS: std::ops::RangeInclusive<usize> = 2..=6;
/// The consumers that fail; each fails with every one of the [`TEMPLATES`] error texts of
/// [`error_text`].
const FAILING_CONSUMERS: [&str; 10] = [
    "validation",
    "worker:certificates",
    "notify",
    "payments",
    "identity-check",
    "registry-sync",
    "statistics",
    "archive-export",
    "sms-gateway",
    "audit-mirror",
];
const TEMPLATES: usize = 5;
const MAX_CAUSES: usize = FAILING_CONSUMERS.len() * TEMPLATES;
const START_MS: i64 = 1_790_000_000_000;
const LISTING_GOAL_MS: f64 = 20.0;
const INGEST_GOAL_RATIO: f64 = 0.9;

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the archive: events, their outcomes, and the outcomes of later retries.
    #[arg(long, default_value_t = 10_000_000, default_value_ifs = smoke("20000"))]
    messages: usize,
    /// Transactions that fail, each at one step, after which it goes no further.
    #[arg(long, default_value_t = 1_000_000, default_value_ifs = smoke("2000"))]
    failed: usize,
    /// Causes the failures are spread over, each a (consumer, error text) pair whose texts
    /// differ in ids and numbers only: at most 50.
    #[arg(long, default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=MAX_CAUSES as i64))]
    causes: u16,
    /// Percentage of the failed transactions processed by a later retry (their outcome comes
    /// 1% of the messages later), so resolved members exist beside failing ones.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    recovered_percent: u8,
    /// Transactions written at a time, interleaved, as they arrive in Kafka.
    #[arg(long, default_value_t = 200)]
    in_flight: usize,
    /// Messages appended into each of the two stores the ingest cost is measured on, from
    /// the same mix (failures in the same proportion).
    #[arg(long, default_value_t = 1_000_000, default_value_ifs = smoke("20000"))]
    ingest_messages: usize,
    /// Ingest runs of each kind (with and without the index), alternated; the median counts.
    #[arg(long, default_value_t = 3, default_value_ifs = smoke("1"), value_parser = at_least_one())]
    ingest_rounds: u32,
    /// `GET /v1/incidents` requests timed (and as many reads of the store's index).
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("20"), value_parser = at_least_one())]
    listings: u32,
    /// `GET /v1/incidents/{id}` requests timed, over the incidents in turn.
    #[arg(long, default_value_t = 500, default_value_ifs = smoke("10"), value_parser = at_least_one())]
    details: u32,
    /// A check that every phase runs, in seconds: 20,000 messages with 2,000 failed
    /// transactions, one ingest round of 20,000, 20 listings and 10 details unless set. Its
    /// figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let mix = Mix {
        messages: options.messages,
        failed: options.failed,
        causes: usize::from(options.causes),
        recovered_percent: usize::from(options.recovered_percent),
        in_flight: options.in_flight.max(1),
    };
    println!("fill=log_store_append_with_archive_fingerprint_rule");
    println!("batch_records={}", archiver_batch());
    let dir = tempfile::tempdir().context("creating a temporary archive directory")?;
    let started = Instant::now();
    let mut writer = Writer::new(LogStore::open(dir.path(), &store_options(true))?);
    let mixed = generate(&mix, |record| writer.push(record))?;
    let store = writer.finish()?;
    let fill = started.elapsed();
    println!("messages={}", mixed.messages);
    println!("transactions={}", mixed.transactions);
    println!("failed_transactions={}", mixed.failed);
    println!("recovered_transactions={}", mixed.recovered);
    println!("causes={}", mix.causes);
    println!("fill_seconds={:.1}", fill.as_secs_f64());
    println!(
        "fill_msgs_per_s={:.0}",
        mixed.messages as f64 / fill.as_secs_f64()
    );
    println!("disk_bytes={}", store.disk_space()?);
    let ids = check_index(&store, &mixed, mix.causes)?;

    // The baseline: the index read alone (one entry per incident), no views, no HTTP.
    for _ in 0..options.listings.min(100) {
        std::hint::black_box(store.incidents()?);
    }
    let mut store_reads = Vec::with_capacity(options.listings as usize);
    for _ in 0..options.listings {
        let began = Instant::now();
        std::hint::black_box(store.incidents()?);
        store_reads.push(began.elapsed());
    }
    // The archive opens the store next: every handle to it must be gone first.
    drop(store);
    let (listings, details, rss_kib) = time_api(dir.path(), &options, &ids).await?;
    drop(dir);

    // Last, so that the records it holds are not in the RSS above.
    let (without, with) = ingest(&mix, &options)?;
    let ingest_ratio = with / without;
    let (listing_p50, listing_p99) = p50_p99_ms(listings);
    let (detail_p50, detail_p99) = p50_p99_ms(details);
    let (store_p50, store_p99) = p50_p99_ms(store_reads);
    println!("ingest_without_index_per_s={without:.0}");
    println!("ingest_with_index_per_s={with:.0}");
    println!("ingest_ratio={ingest_ratio:.3}");
    if let Some(kib) = rss_kib {
        println!("process_rss_mib={}", kib / 1024);
    }
    println!("store_incidents_p50_ms={store_p50:.3}");
    println!("store_incidents_p99_ms={store_p99:.3}");
    println!("details={}", options.details);
    println!("incident_detail_p50_ms={detail_p50:.3}");
    println!("incident_detail_p99_ms={detail_p99:.3}");
    println!("listings={}", options.listings);
    println!("incidents_listing_p50_ms={listing_p50:.3}");
    println!("ratio_p99_listing_to_store={:.2}", listing_p99 / store_p99);
    println!(
        "ingest_goal_min_ratio={INGEST_GOAL_RATIO} ingest_ratio={ingest_ratio:.3} met={}",
        ingest_ratio >= INGEST_GOAL_RATIO
    );
    println!(
        "listing_goal_max_p99_ms={LISTING_GOAL_MS} incidents_listing_p99_ms={listing_p99:.3} \
         met={}",
        listing_p99 <= LISTING_GOAL_MS
    );
    println!("incidents_listing_p99_ms={listing_p99:.3}");
    Ok(())
}

/// The filled archive served with authentication on: `GET /v1/incidents` (the first page,
/// 50) and `GET /v1/incidents/{id}` timed, each checked; and the process's RSS meanwhile.
async fn time_api(
    dir: &std::path::Path,
    options: &Options,
    ids: &[String],
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Option<u64>)> {
    let archive = ServedArchive::start(dir).await?;
    let client = reqwest::Client::new();
    let listed = ids.len().min(50);
    let listing = |_| "/v1/incidents?limit=50".to_owned();
    let listings = time_gets(
        &client,
        &archive,
        options.listings as usize,
        listing,
        |body, _| {
            let page: Page<IncidentView> = serde_json::from_slice(body)?;
            anyhow::ensure!(
                page.items.len() == listed,
                "the listing's first page has {} incidents, expected {listed}",
                page.items.len()
            );
            Ok(())
        },
    )
    .await?;
    let detail = |i: usize| format!("/v1/incidents/{}?limit=50", ids[i % ids.len()]);
    let details = time_gets(
        &client,
        &archive,
        options.details as usize,
        detail,
        |body, i| {
            let detail: IncidentDetail = serde_json::from_slice(body)?;
            let id = &ids[i % ids.len()];
            anyhow::ensure!(
                detail.incident.incident_id == *id && !detail.transactions.is_empty(),
                "GET /v1/incidents/{id} answered incident {} with {} transactions",
                detail.incident.incident_id,
                detail.transactions.len()
            );
            Ok(())
        },
    )
    .await?;
    let rss_kib = crate::soak::rss_kib(std::process::id());
    archive.stop().await?;
    Ok((listings, details, rss_kib))
}

fn at_least_one() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

/// The archive's store options (its cache and memtable sizes), with or without its incident
/// rule.
fn store_options(indexed: bool) -> StoreOptions {
    let mut options = ArchiveConfig::new("unused", "unused").store;
    options.incidents = match indexed {
        true => Some(Arc::new(FingerprintRule)),
        false => None,
    };
    options
}

/// Messages per second appended without and with the incident index: the median of
/// `ingest_rounds` runs of each, each into a fresh store, alternating which goes first. The
/// records are made before the clock starts (the archiver prepares a batch while the last
/// one is written), so only [`LogStore::append`] is timed, in the archiver's batches.
fn ingest(mix: &Mix, options: &Options) -> anyhow::Result<(f64, f64)> {
    let failed = (options.ingest_messages as u128 * mix.failed as u128
        / mix.messages.max(1) as u128) as usize;
    let slice = Mix {
        messages: options.ingest_messages,
        failed: failed.max(mix.causes),
        ..*mix
    };
    let mut records = Vec::with_capacity(options.ingest_messages + 10);
    let mixed = generate(&slice, |record| {
        records.push(record);
        Ok(())
    })?;
    println!("ingest_messages={}", mixed.messages);
    println!("ingest_failed_transactions={}", mixed.failed);
    println!("ingest_rounds={}", options.ingest_rounds);
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..options.ingest_rounds {
        let order = match round % 2 {
            0 => [false, true],
            _ => [true, false],
        };
        for indexed in order {
            let rate = append_all(&records, indexed, mix.causes)?;
            match indexed {
                true => with.push(rate),
                false => without.push(rate),
            }
        }
    }
    let listed = |rates: &[f64]| {
        let rates: Vec<String> = rates.iter().map(|rate| format!("{rate:.0}")).collect();
        rates.join(",")
    };
    println!("ingest_runs_without_index_per_s={}", listed(&without));
    println!("ingest_runs_with_index_per_s={}", listed(&with));
    Ok((median(&mut without), median(&mut with)))
}

/// Messages per second of appending `records` into a fresh store.
fn append_all(records: &[PreparedRecord], indexed: bool, causes: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = LogStore::open(dir.path(), &store_options(indexed))?;
    let started = Instant::now();
    for batch in records.chunks(archiver_batch()) {
        store.append(batch)?;
    }
    let rate = records.len() as f64 / started.elapsed().as_secs_f64();
    if indexed {
        let incidents = store.incidents()?.len();
        anyhow::ensure!(
            incidents == causes,
            "the ingest run's index holds {incidents} incidents, expected {causes}"
        );
    }
    Ok(rate)
}

fn p50_p99_ms(mut samples: Vec<Duration>) -> (f64, f64) {
    let (p50, p99) = percentiles(&mut samples);
    (ms(p50), ms(p99))
}

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Checks the index the fill kept: one incident per cause, counting every failed
/// transaction once and the recovered ones as no longer failing. Answers the incident ids.
fn check_index(store: &LogStore, mixed: &Mixed, causes: usize) -> anyhow::Result<Vec<String>> {
    let incidents = store.incidents()?;
    let transactions: u64 = incidents.iter().map(|i| i.transactions).sum();
    let failing: u64 = incidents.iter().map(|i| i.failing).sum();
    println!("incidents={}", incidents.len());
    println!("incident_transactions={transactions}");
    println!("incident_failing_transactions={failing}");
    anyhow::ensure!(
        incidents.len() == causes,
        "the index holds {} incidents, expected one per cause: {causes}",
        incidents.len()
    );
    anyhow::ensure!(
        transactions == mixed.failed as u64 && failing == (mixed.failed - mixed.recovered) as u64,
        "the index counts {transactions} failed transactions, {failing} still failing; \
         {} failed, {} recovered were written",
        mixed.failed,
        mixed.recovered
    );
    Ok(incidents.iter().map(|i| i.id().to_owned()).collect())
}

/// The message mix, `in_flight` transactions interleaved, each event with one outcome:
/// `failed` transactions that fail at their first or second step with one of `causes`
/// causes and go no further (a failed step publishes nothing after it), `recovered_percent`
/// of them processed by a retry later; the rest of the messages in transactions of 2 to 6
/// events (4 to 12 messages) that do not fail.
#[derive(Clone, Copy)]
struct Mix {
    messages: usize,
    failed: usize,
    causes: usize,
    recovered_percent: usize,
    in_flight: usize,
}

/// What [`generate`] wrote.
struct Mixed {
    messages: usize,
    transactions: usize,
    failed: usize,
    recovered: usize,
}

/// A transaction being written.
struct Open {
    events: Vec<Envelope>,
    wanted: usize,
    partition: i32,
    failure: Option<Failure>,
}

/// A transaction to write: its events, and its failure if it fails.
struct Planned {
    events: u8,
    failure: Option<Failure>,
}

#[derive(Clone, Copy)]
struct Failure {
    cause: usize,
    recovered: bool,
}

/// Writes `mix` to `push`, record by record, as the archive would have archived it.
///
/// Cause `c` is consumer `FAILING_CONSUMERS[c % 10]` failing with error text `c / 10`, at the
/// transaction's first or second event (by the text), with ids and numbers that vary from
/// one failure to the next: fifty (consumer, text) pairs, fifty incidents. The `k`-th failed
/// transaction has cause `k % causes`, so every cause has failures; the first
/// `recovered_percent` of them (spread over the causes alike) are processed by attempt 2 a
/// hundredth of the messages later. The transactions come in a random order.
fn generate(
    mix: &Mix,
    mut push: impl FnMut(PreparedRecord) -> anyhow::Result<()>,
) -> anyhow::Result<Mixed> {
    let mut rng = rand::rng();
    let recovered = mix.failed * mix.recovered_percent / 100;
    let mut plan: Vec<Planned> = Vec::new();
    let mut planned = 0;
    for k in 0..mix.failed {
        let cause = k % mix.causes;
        let events = failing_position(cause) + 1;
        plan.push(Planned {
            events: events as u8,
            failure: Some(Failure {
                cause,
                recovered: k < recovered,
            }),
        });
        planned += 2 * events + usize::from(k < recovered);
    }
    anyhow::ensure!(
        planned <= mix.messages,
        "{} failed transactions take {planned} messages, more than the {} asked for",
        mix.failed,
        mix.messages
    );
    while planned < mix.messages {
        let events = rng.random_range(EVENTS);
        plan.push(Planned {
            events: events as u8,
            failure: None,
        });
        planned += 2 * events;
    }
    plan.shuffle(&mut rng);

    let mut records = Records::default();
    let mut retries: VecDeque<(usize, Outcome, i32)> = VecDeque::new();
    let retry_after = (mix.messages / 100).max(1);
    let mut open: Vec<Open> = Vec::new();
    let mut next = 0;
    let mut written = 0;
    let mut time_ms = START_MS;
    loop {
        while let Some((due, _, _)) = retries.front()
            && *due <= written
        {
            let (_, outcome, partition) = retries.pop_front().expect("looked at above");
            push(records.outcome(&outcome, partition, time_ms))?;
            written += 1;
        }
        while open.len() < mix.in_flight && next < plan.len() {
            open.push(Open {
                events: Vec::new(),
                wanted: usize::from(plan[next].events),
                partition: rng.random_range(0..PARTITIONS),
                failure: plan[next].failure,
            });
            next += 1;
        }
        if open.is_empty() {
            break;
        }
        let slot = rng.random_range(0..open.len());
        let transaction = &mut open[slot];
        let position = transaction.events.len();
        let event = match transaction.events.last() {
            None => Envelope::root("registration", "birth.registration.submitted.v1")
                .with_subject(format!("beneficiary:{}", rng.random_range(0..5_000_000))),
            Some(parent) => Envelope::caused_by(parent, "registration", "birth.step.v1"),
        }
        .with_payload("application/json", vec![b'x'; 200]);
        time_ms += 1;
        let topic = position % TOPICS.len();
        let partition = transaction.partition;
        push(records.event(&event, TOPICS[topic], partition, time_ms))?;
        let outcome = match transaction.failure {
            Some(failure) if position == failing_position(failure.cause) => {
                let consumer = FAILING_CONSUMERS[failure.cause % FAILING_CONSUMERS.len()];
                let error = error_text(failure.cause, &event, &mut rng);
                if failure.recovered {
                    let retry = Outcome::of(&event, consumer, OutcomeStatus::Processed, None, 2);
                    retries.push_back((written + retry_after, retry, partition));
                }
                Outcome::of(&event, consumer, OutcomeStatus::Failed, Some(error), 1)
            }
            _ => Outcome::of(
                &event,
                TOPIC_CONSUMERS[topic],
                OutcomeStatus::Processed,
                None,
                1,
            ),
        };
        push(records.outcome(&outcome, partition, time_ms + 1))?;
        written += 2;
        transaction.events.push(event);
        if transaction.events.len() == transaction.wanted {
            open.swap_remove(slot);
        }
    }
    for (_, outcome, partition) in retries {
        time_ms += 1;
        push(records.outcome(&outcome, partition, time_ms))?;
        written += 1;
    }
    Ok(Mixed {
        messages: written,
        transactions: plan.len(),
        failed: mix.failed,
        recovered,
    })
}

/// The event of a transaction at which cause `cause` fails: the first or the second.
fn failing_position(cause: usize) -> usize {
    (cause / FAILING_CONSUMERS.len()) % 2
}

/// An error text of cause `cause`: its template (`cause / 10`), with the ids and numbers of
/// this failure, which the archive's normaliser replaces.
fn error_text(cause: usize, event: &Envelope, rng: &mut impl rand::Rng) -> String {
    let beneficiary = event
        .subject_ids
        .first()
        .map_or("beneficiary:0", String::as_str);
    match cause / FAILING_CONSUMERS.len() {
        0 => format!("population register did not answer within 2 s for {beneficiary}"),
        1 => format!(
            "certificate renderer unavailable: HTTP 503 after {} ms (event {})",
            rng.random_range(100..30_000),
            event.event_id
        ),
        2 => format!(
            "duplicate registration number {:08} for {beneficiary}",
            rng.random_range(0..100_000_000)
        ),
        3 => format!(
            "address lookup failed for '{} Street {}': no such street",
            ["Station", "Church", "Mill", "Harbour"][rng.random_range(0..4)],
            rng.random_range(1..400)
        ),
        _ => format!(
            "payment reference {:016x} rejected by the bank gateway at 10.0.{}.{}",
            rng.random::<u64>(),
            rng.random_range(0..256),
            rng.random_range(1..255)
        ),
    }
}
