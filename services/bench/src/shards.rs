//! `retrace-bench shards`: what splitting the archive buys and costs, in one run on the same
//! messages. Ingest: one shard (`0/1`, the whole topic) against two (`0/2` and `1/2`, half
//! the partitions each, side by side), each from an empty store to every message archived
//! (`shards_2_over_1`). Traces: the same transactions traced through shard 0 of the two,
//! which asks shard 1 for its records over HTTP, against one archive holding everything
//! (`fanout_trace_p99_ratio`). Every archive serves with authentication on, audits every
//! read, and the two shards each audit their part of a fanned-out trace.

use std::time::{Duration, Instant};

use anyhow::Context;
use retrace_api::Trace;
use retrace_archive::{ArchiveConfig, Shard, Sharding, TopicSelection};
use retrace_fixtures::{Broker, free_port};
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::archive::{Workload, archived_count, envelopes, produce_keyed};
use crate::auth::Secured;
use crate::served::{ms, percentiles};
use crate::smoke;

const TOPIC: &str = "bench.sharded";
/// The fan-out may take at most this many times the single archive's trace p99.
const FANOUT_GOAL: f64 = 2.0;
/// Two shards on two cores ingest at least this many times one shard's rate.
const SCALING_GOAL: f64 = 1.6;

#[derive(clap::Args)]
pub struct Options {
    /// Ingested once by one shard and once by two.
    #[command(flatten)]
    workload: Workload,
    /// Traces timed on each side, each of a transaction spread over both shards.
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("50"))]
    traces: usize,
    /// A check that every phase runs, in seconds. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::mock();
    for topic in [AUDIT_TOPIC, ARCHIVE_CHANGES_TOPIC] {
        broker.create_topic(topic, 3).await;
    }
    broker
        .create_topic(TOPIC, options.workload.partitions)
        .await;
    let envelopes = envelopes(&options.workload);
    // Keyed by event, as producers with other partitioners do: a transaction's ten events
    // sit on several partitions, so on both shards.
    produce_keyed(&broker, TOPIC, &envelopes, |envelope| &envelope.event_id)?;
    let auth = crate::auth::secured(&broker).await;
    println!("messages={}", options.workload.messages);
    println!("partitions={}", options.workload.partitions);

    let one = Shards::start(&broker, &auth, 1)?;
    let one_rate = one.ingest(options.workload.messages).await?;
    println!("one_shard_msgs_per_s={one_rate:.0}");
    let single = one;
    let two = Shards::start(&broker, &auth, 2)?;
    let two_rate = two.ingest(options.workload.messages).await?;
    println!("two_shards_msgs_per_s={two_rate:.0}");
    let scaling = two_rate / one_rate;

    // The first hundred traced once untimed first, on each side.
    let transactions: Vec<&str> = envelopes
        .iter()
        .step_by(10)
        .map(|envelope| envelope.transaction_id.as_str())
        .take(options.traces)
        .collect();
    let client = reqwest::Client::new();
    let single_p = time_traces(&client, &single.urls[0], &auth.token, &transactions).await?;
    let fanout_p = time_traces(&client, &two.urls[0], &auth.token, &transactions).await?;
    for (side, (p50, p99)) in [("single", single_p), ("fanout", fanout_p)] {
        println!("{side}_trace_p50_ms={:.2}", ms(p50));
        println!("{side}_trace_p99_ms={:.2}", ms(p99));
    }
    single.stop().await?;
    two.stop().await?;
    let fanout_ratio = fanout_p.1.as_secs_f64() / single_p.1.as_secs_f64();
    println!("fanout_trace_p99_ratio={fanout_ratio:.2}");
    println!(
        "fanout_trace_p99_goal={}",
        if fanout_ratio <= FANOUT_GOAL {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "shards_2_over_1_goal={}",
        if scaling >= SCALING_GOAL {
            "met"
        } else {
            "missed"
        }
    );
    println!("shards_2_over_1={scaling:.2} fanout_trace_p99_ratio={fanout_ratio:.2}");
    Ok(())
}

/// `count` shards of one archive (one: an archive unsharded), each in its own store,
/// serving and ingesting in this process.
struct Shards {
    urls: Vec<String>,
    token: String,
    shutdown: CancellationToken,
    running: Vec<JoinHandle<Result<(), retrace_archive::ArchiveError>>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Shards {
    fn start(broker: &Broker, auth: &Secured, count: u32) -> anyhow::Result<Shards> {
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let urls: Vec<String> = ports
            .iter()
            .map(|port| format!("http://127.0.0.1:{port}"))
            .collect();
        let shutdown = CancellationToken::new();
        let (mut running, mut dirs) = (Vec::new(), Vec::new());
        for (index, port) in ports.iter().enumerate() {
            let dir = tempfile::tempdir()?;
            let mut config = ArchiveConfig::new(broker.bootstrap(), dir.path());
            config.auth = auth.config.clone();
            config.provisioning.create = false;
            config.topics = TopicSelection::Names(vec![TOPIC.to_owned()]);
            config.group_id = format!("bench-shards-{count}");
            config.http = ([127, 0, 0, 1], *port).into();
            // One shard is the archive as it runs unsharded.
            if count > 1 {
                let shard = Shard {
                    index: index as u32,
                    count,
                };
                let map = urls.iter().map(|url| vec![url.clone()]).collect();
                config.sharding = Some(Sharding::new(shard, map).map_err(anyhow::Error::msg)?);
            }
            running.push(tokio::spawn(retrace_archive::run(config, shutdown.clone())));
            dirs.push(dir);
        }
        Ok(Shards {
            urls,
            token: auth.token.clone(),
            shutdown,
            running,
            _dirs: dirs,
        })
    }

    /// Messages a second from the first record archived by any shard to the last message
    /// archived by all of them.
    async fn ingest(&self, messages: usize) -> anyhow::Result<f64> {
        let client = reqwest::Client::new();
        let patience = Duration::from_secs(120);
        let (mut archived, mut progress_at, mut first) = (0, Instant::now(), None);
        loop {
            if let Some(stopped) = self.running.iter().find(|task| task.is_finished()) {
                anyhow::bail!("a shard stopped during the run: {stopped:?}");
            }
            let mut now = 0;
            for url in &self.urls {
                let positions = format!("{url}/v1/positions");
                now += archived_count(&client, &positions, &self.token, TOPIC)
                    .await?
                    .unwrap_or(0);
            }
            if now > archived {
                (archived, progress_at) = (now, Instant::now());
                first.get_or_insert((Instant::now(), archived));
            }
            if archived >= messages {
                break;
            }
            anyhow::ensure!(
                progress_at.elapsed() < patience,
                "the shards stalled at {archived} of {messages} records for {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (at, seen) = first.context("nothing archived")?;
        // Counted from the first records seen: the start of the run, joins included, when
        // everything was archived by the first look (a run too small to measure).
        Ok((messages - seen).max(1) as f64 / at.elapsed().as_secs_f64())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for running in self.running {
            running.await?.context("a shard failed")?;
        }
        Ok(())
    }
}

/// The p50 and p99 of tracing each of `transactions` at `url` (each once untimed first),
/// checking every trace holds the transaction's ten events.
async fn time_traces(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    transactions: &[&str],
) -> anyhow::Result<(Duration, Duration)> {
    let get = |transaction: &str| {
        client
            .get(format!("{url}/v1/transactions/{transaction}"))
            .bearer_auth(token)
    };
    for transaction in transactions.iter().take(100) {
        get(transaction).send().await?.error_for_status()?;
    }
    let mut timings = Vec::with_capacity(transactions.len());
    for transaction in transactions {
        let began = Instant::now();
        let response = get(transaction).send().await?.error_for_status()?;
        let status = response.status();
        let trace: Trace = response.json().await?;
        timings.push(began.elapsed());
        anyhow::ensure!(
            status == 200 && trace.events.len() == 10 && trace.incomplete.is_empty(),
            "the trace of {transaction} at {url} is not whole: {status}, {} events, \
             incomplete {:?}",
            trace.events.len(),
            trace.incomplete
        );
    }
    Ok(percentiles(&mut timings))
}
