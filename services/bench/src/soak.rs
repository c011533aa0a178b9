//! `retrace-bench soak`: runs `retrace dev --demo` (archive, gateway, worker and the
//! birth-registration workload with its failing validations, retried and dead-lettered
//! renders, on the in-process mock cluster) for a duration at a registration rate, replays a
//! recently failed transaction every few seconds, traces recent ones all along, then checks
//! what the archive kept against what Kafka holds.
//!
//! Prints: events published, archived and lost, duplicates (an event id stored twice that is
//! not a replay's copy), RSS min/max of the dev process, disk growth per million events, and
//! p99 trace latency per minute. A soak of 60 s runs in CI (`tests/soak.rs`), asserting
//! lost=0 and duplicates=0; the long run is for people:
//! `retrace-bench soak --duration 15m --rate 275 --real-broker` (release build).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use prost::Message as _;
use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use retrace_api::{Page, ReplayRequest, TransactionSummary};
use retrace_fixtures::Broker;
use retrace_log_store::{LogStore, RecordKey, StoreOptions};
use retrace_proto::Envelope;

use crate::smoke;

#[derive(clap::Args)]
pub struct Options {
    /// How long the workload runs: `60s`, `15m`, `1h`.
    #[arg(long, value_parser = parse_duration)]
    #[arg(default_value = "15m", default_value_ifs = smoke("15s"))]
    duration: Duration,
    /// Demo registrations started per second; each becomes about ten records (events,
    /// jobs, outcomes), reported as `events_per_s`.
    #[arg(long, default_value_t = 250.0, default_value_ifs = smoke("20"))]
    rate: f64,
    /// A recently failed transaction is replayed this often.
    #[arg(long, value_parser = parse_duration)]
    #[arg(default_value = "10s", default_value_ifs = smoke("2s"))]
    replay_every: Duration,
    /// The `retrace` binary to run; by default the one beside this one.
    #[arg(long)]
    retrace: Option<PathBuf>,
    /// Run dev mode on a real Kafka-protocol broker (tansu, started by the soak as the tests
    /// start it, or `RETRACE_TEST_KAFKA`) rather than its in-process mock cluster, whose one
    /// thread and in-memory log cap the rate and share the dev process's CPU and RSS.
    #[arg(long)]
    real_broker: bool,
    /// A check that every phase runs, in seconds: 15 s at 20 registrations a second, a
    /// replay every 2 s, unless set. Its figures mean nothing; lost and duplicates are
    /// checked as in a full run.
    #[arg(long)]
    smoke: bool,
}

/// `90s`, `15m`, `2h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 60s, 15m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: the unit must be s, m or h")),
    }
}

/// What `retrace dev` writes to `DIR/dev.json`.
#[derive(serde::Deserialize)]
struct DevInfo {
    kafka_bootstrap: String,
    http: String,
    token: String,
}

/// The figures one soak reports.
#[derive(Debug, Default)]
pub struct Report {
    pub events_published: i64,
    /// Records in Kafka at the end, per topic.
    pub published_by_topic: BTreeMap<String, i64>,
    pub events_archived: i64,
    pub lost: i64,
    pub duplicates: u64,
    pub replays: u64,
    pub traces: usize,
    pub rss_min_kib: u64,
    pub rss_max_kib: u64,
    /// The highest RSS of each minute: whether memory levels off or keeps growing.
    pub rss_max_kib_by_minute: Vec<u64>,
    pub disk_bytes_per_million_events: f64,
    /// p99 of each minute's traces, in milliseconds.
    pub p99_trace_ms_by_minute: Vec<f64>,
    pub seconds: f64,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let report = soak(&options).await?;
    println!("duration_s={:.0}", report.seconds);
    println!("registrations_per_s={}", options.rate);
    println!(
        "events_per_s={:.0}",
        report.events_published as f64 / report.seconds
    );
    println!("events_published={}", report.events_published);
    for (topic, records) in &report.published_by_topic {
        println!("published_{topic}={records}");
    }
    println!("events_archived={}", report.events_archived);
    println!("replays={}", report.replays);
    println!("traces={}", report.traces);
    println!("rss_min_mib={:.0}", report.rss_min_kib as f64 / 1024.0);
    println!("rss_max_mib={:.0}", report.rss_max_kib as f64 / 1024.0);
    println!(
        "disk_mib_per_million_events={:.0}",
        report.disk_bytes_per_million_events / (1 << 20) as f64
    );
    for (minute, kib) in report.rss_max_kib_by_minute.iter().enumerate() {
        println!(
            "rss_max_mib_minute_{}={:.0}",
            minute + 1,
            *kib as f64 / 1024.0
        );
    }
    for (minute, p99) in report.p99_trace_ms_by_minute.iter().enumerate() {
        println!("p99_trace_ms_minute_{}={p99:.1}", minute + 1);
    }
    println!("duplicates={}", report.duplicates);
    println!("lost={}", report.lost);
    anyhow::ensure!(
        report.lost == 0 && report.duplicates == 0,
        "the soak lost {} events and stored {} twice",
        report.lost,
        report.duplicates
    );
    Ok(())
}

/// The dev process, stopped (SIGKILL) if the soak fails half-way.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the soak and measures it.
pub async fn soak(options: &Options) -> anyhow::Result<Report> {
    let retrace = match &options.retrace {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("retrace-bench has a directory")?
            .join("retrace"),
    };
    let data = tempfile::tempdir()?;
    let log = std::fs::File::create(data.path().join("dev.log"))?;
    // Outlives the dev process, which is stopped first.
    let broker = options.real_broker.then(Broker::real);
    let mut command = Command::new(&retrace);
    command.args(["dev", "--demo", "--log-format", "json"]);
    let archive_dir = match &broker {
        Some(broker) => {
            command.arg("--kafka").arg(broker.bootstrap());
            data.path().join("archive")
        }
        None => data.path().join("mock-archive"),
    };
    let mut dev = Dev(command
        .arg("--demo-rate")
        .arg(options.rate.to_string())
        // A steady rate above the gate's threshold would hold every job for the whole
        // soak; the soak measures the pipeline with its jobs running.
        .arg("--demo-gate-rate")
        .arg((options.rate * 2.0).to_string())
        // Port 0: dev mode binds a free port and writes it to dev.json, so no other process
        // can take a port chosen before it binds.
        .arg("--http")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data.path())
        .env("RETRACE_LOG", "warn,librdkafka=error,rdkafka=error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (build it: cargo build -p retrace)",
                retrace.display()
            )
        })?);
    let info = wait_for_dev(data.path(), &mut dev).await?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let disk_at_start = directory_bytes(&archive_dir);

    let recent = Arc::new(Mutex::new(VecDeque::new()));
    let follower = tokio::spawn(follow_registrations(
        info.kafka_bootstrap.clone(),
        Arc::clone(&recent),
    ));
    // A sample taken as the last second ends counts in the last minute.
    let last_minute = options.duration.as_secs().saturating_sub(1) / 60;
    let minute = |started: Instant| (started.elapsed().as_secs() / 60).min(last_minute);
    let mut rss = (u64::MAX, 0u64);
    let mut rss_by_minute: BTreeMap<u64, u64> = BTreeMap::new();
    let mut by_minute: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    let mut replays = 0;
    let mut last_replay = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < options.duration {
        tick.tick().await;
        if let Some(kib) = rss_kib(dev.0.id()) {
            rss = (rss.0.min(kib), rss.1.max(kib));
            let minute = rss_by_minute.entry(minute(started)).or_default();
            *minute = (*minute).max(kib);
        }
        // Transactions a few seconds old, so most of their steps have happened.
        let chosen = {
            let recent = recent.lock().expect("never poisoned");
            (recent.len() > 200)
                .then(|| recent[rand::rng().random_range(0..recent.len() - 100)].clone())
        };
        let Some(transaction) = chosen else { continue };
        let asked = Instant::now();
        let answer = client
            .get(format!("{}/v1/transactions/{transaction}", info.http))
            .bearer_auth(&info.token)
            .send()
            .await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            by_minute
                .entry(minute(started))
                .or_default()
                .push(asked.elapsed());
        }
        if last_replay.elapsed() >= options.replay_every {
            last_replay = Instant::now();
            match replay_a_failed_transaction(&client, &info).await {
                Ok(true) => replays += 1,
                Ok(false) => {}
                Err(error) => eprintln!("soak: replay: {error:#}"),
            }
        }
    }
    // Its consumer closes as the task is dropped: wait for that while the broker runs.
    follower.abort();
    let _ = follower.await;
    let seconds = started.elapsed().as_secs_f64();

    // What Kafka holds now is what the archive must have once it catches up.
    let published = high_watermarks(&info.kafka_bootstrap)?;
    let caught_up = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            if let Ok(positions) = positions(&client, &info).await
                && published
                    .iter()
                    .all(|(key, high)| positions.get(key).copied().unwrap_or(0) >= *high)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    if caught_up.is_err() {
        eprintln!("soak: the archive did not catch up within 300 s; counting what it has");
    }
    stop(dev)?;
    let disk_growth = directory_bytes(&archive_dir).saturating_sub(disk_at_start);

    let store = LogStore::open(&archive_dir, &StoreOptions::default()).with_context(|| {
        format!(
            "cannot open the soak's archive at {}",
            archive_dir.display()
        )
    })?;
    let (events_archived, lost, duplicates) = check(&store, &published)?;
    let events_published: i64 = published.values().sum();
    let mut published_by_topic = BTreeMap::new();
    for ((topic, _), high) in &published {
        *published_by_topic.entry(topic.clone()).or_default() += high;
    }
    let p99_trace_ms_by_minute = by_minute
        .values()
        .map(|latencies| percentile(latencies, 0.99).as_secs_f64() * 1000.0)
        .collect();
    Ok(Report {
        events_published,
        published_by_topic,
        events_archived,
        lost,
        duplicates,
        replays,
        traces: by_minute.values().map(Vec::len).sum(),
        rss_min_kib: if rss.0 == u64::MAX { 0 } else { rss.0 },
        rss_max_kib: rss.1,
        rss_max_kib_by_minute: rss_by_minute.into_values().collect(),
        disk_bytes_per_million_events: disk_growth as f64 * 1e6 / events_archived.max(1) as f64,
        p99_trace_ms_by_minute,
        seconds,
    })
}

/// Waits for `dev.json` and a healthy `/healthz`: started, and the archive caught up with
/// the demo's traffic. A debug build beside the other benches' smokes (CI runs them at
/// once, on 2 cores) took over a minute to catch up. In CI, dev mode's `/healthz` also stayed
/// 503 for minutes on some runs while it archived (cause not found yet): after
/// `NOT_READY_PATIENCE` the soak starts anyway, saying so. What it checks does not depend on
/// it: at the end it waits until the archive's positions reach what Kafka holds, then counts
/// lost and doubled messages from the store itself.
async fn wait_for_dev(data_dir: &Path, dev: &mut Dev) -> anyhow::Result<DevInfo> {
    const NOT_READY_PATIENCE: Duration = Duration::from_secs(60);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_health = String::from("no dev.json yet");
    let mut not_ready_since: Option<Instant> = None;
    loop {
        if let Some(status) = dev.0.try_wait()? {
            anyhow::bail!("retrace dev exited {status}; {}", log_tail(data_dir));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "retrace dev did not start within 180 s (its /healthz: {last_health}); {}",
            log_tail(data_dir)
        );
        if let Ok(text) = std::fs::read_to_string(data_dir.join("dev.json")) {
            let info: DevInfo = serde_json::from_str(&text)?;
            match reqwest::get(format!("{}/healthz", info.http)).await {
                Ok(health) if health.status().is_success() => return Ok(info),
                Ok(health) => {
                    let since = *not_ready_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= NOT_READY_PATIENCE {
                        eprintln!(
                            "soak: dev mode's /healthz still answers {} after {} s; measuring \
                             anyway (the end checks what the archive holds)",
                            health.status(),
                            NOT_READY_PATIENCE.as_secs()
                        );
                        return Ok(info);
                    }
                    last_health = format!("{}: {}", health.status(), health.text().await?)
                }
                Err(error) => last_health = error.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The end of dev mode's log, for an error: its folder is removed with the soak.
fn log_tail(data_dir: &Path) -> String {
    let log = std::fs::read_to_string(data_dir.join("dev.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("the last lines of its log:\n{tail}")
}

/// Keeps the last few thousand registrations' transaction ids.
async fn follow_registrations(bootstrap: String, recent: Arc<Mutex<VecDeque<String>>>) {
    let consumer: StreamConsumer = match ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "soak-follower")
        .set("auto.offset.reset", "latest")
        .create()
    {
        Ok(consumer) => consumer,
        Err(error) => return eprintln!("soak: cannot follow registrations: {error}"),
    };
    if let Err(error) = consumer.subscribe(&["registrations"]) {
        return eprintln!("soak: cannot follow registrations: {error}");
    }
    let mut stream = consumer.stream();
    while let Some(message) = stream.next().await {
        let Ok(message) = message else { continue };
        let Ok(envelope) = Envelope::decode(message.payload().unwrap_or_default()) else {
            continue;
        };
        let mut recent = recent.lock().expect("never poisoned");
        recent.push_back(envelope.transaction_id);
        if recent.len() > 5000 {
            recent.pop_front();
        }
    }
}

/// Replays the failed steps of one transaction that failed in the last ten minutes, as
/// support staff would; `false` when none has failed yet.
async fn replay_a_failed_transaction(
    client: &reqwest::Client,
    info: &DevInfo,
) -> anyhow::Result<bool> {
    let failed: Page<TransactionSummary> = client
        .get(format!(
            "{}/v1/transactions?status=failed&since=10m&limit=50",
            info.http
        ))
        .bearer_auth(&info.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if failed.items.is_empty() {
        return Ok(false);
    }
    let chosen = &failed.items[rand::rng().random_range(0..failed.items.len())];
    client
        .post(format!(
            "{}/v1/transactions/{}/replay",
            info.http, chosen.transaction_id
        ))
        .bearer_auth(&info.token)
        .json(&ReplayRequest {
            reason: "soak: replay a failed transaction".to_owned(),
            only_failed: true,
            ..ReplayRequest::default()
        })
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("replaying transaction {}", chosen.transaction_id))?;
    Ok(true)
}

/// Every partition's high watermark, for every topic of the dev cluster.
fn high_watermarks(bootstrap: &str) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut highs = HashMap::new();
    // A broker's internal topics (`__consumer_offsets`) are not archived.
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
    {
        for partition in topic.partitions() {
            let (_, high) =
                consumer.fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10))?;
            highs.insert((topic.name().to_owned(), partition.id()), high);
        }
    }
    Ok(highs)
}

async fn positions(
    client: &reqwest::Client,
    info: &DevInfo,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let positions: Vec<retrace_api::PositionView> = client
        .get(format!("{}/v1/positions", info.http))
        .bearer_auth(&info.token)
        .send()
        .await?
        .json()
        .await?;
    Ok(positions
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect())
}

/// SIGTERM, and waits for a clean exit.
fn stop(mut dev: Dev) -> anyhow::Result<()> {
    let sent = Command::new("kill")
        .args(["-TERM", &dev.0.id().to_string()])
        .status()?;
    anyhow::ensure!(sent.success(), "cannot signal retrace dev");
    let status = dev.0.wait()?;
    anyhow::ensure!(status.success(), "retrace dev exited {status} on SIGTERM");
    Ok(())
}

/// Reads every record below each partition's `published` watermark: returns how many are
/// there, how many are missing, and how many event ids are stored more than once outside
/// the copies that carry the original event id on purpose: a replay's, and a job's retry
/// and dead-letter copies.
fn check(
    store: &LogStore,
    published: &HashMap<(String, i32), i64>,
) -> anyhow::Result<(i64, i64, u64)> {
    let (mut archived, mut lost) = (0, 0);
    let mut copies: HashMap<String, u32> = HashMap::new();
    for ((topic, partition), high) in published {
        let job_copies = topic.ends_with(".retry") || topic.ends_with(".dlq");
        for offset in 0..*high {
            let key = RecordKey {
                topic: topic.clone(),
                partition: *partition,
                epoch: 0,
                offset,
            };
            let Some(record) = store.get(&key)? else {
                lost += 1;
                continue;
            };
            archived += 1;
            let replayed = record
                .headers
                .iter()
                .any(|h| h.name == retrace_proto::headers::REPLAY_ID);
            let copy = replayed || job_copies || record.outcome.is_some();
            if let Some(ids) = record.ids.filter(|_| !copy) {
                *copies.entry(ids.event_id).or_default() += 1;
            }
        }
    }
    let duplicates = copies.values().filter(|n| **n > 1).count() as u64;
    Ok((archived, lost, duplicates))
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 * p).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}
