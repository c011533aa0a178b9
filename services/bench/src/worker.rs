//! `retrace-bench worker`: the point of off-peak processing, and the worker's raw speed.
//!
//! **The peak.** A target HTTP service with a fixed capacity (`--target-capacity` requests at
//! once, each holding `--work-ms` of simulated work; the rest wait their turn) serves user
//! traffic on `/user` and the worker's webhook on `/jobs`. A backlog of `--backlog` jobs
//! waits on a queue whose webhook is `/jobs`. Then a peak: for `--peak-ms`, a load generator
//! sends `--user-rate` user requests per second (open loop: on schedule, whatever the
//! answers; each latency is counted from its scheduled time) and publishes one Kafka message
//! per request on a user-traffic topic, the gate's "peak traffic" signal. The worker starts
//! `--lead-ms` before the peak (default: as it begins). This runs twice, each on its own
//! queue and topics: gate off (always open: the backlog competes with the users), then gate
//! on (a `topic_rate` signal on the user-traffic topic, `max_rate` below the peak rate). It
//! reports the users' p50/p99 in each run, the jobs the target served during the peak, and
//! the job throughput once the peak is over (the gate reopens after its hysteresis).
//!
//! What the default measures: a worker (re)started with a backlog while a peak is on. Its
//! gate stays closed until its first rate reading, so no job reaches the peak; the ungated
//! worker's jobs start once its consumer has joined its group (about 3 s on the mock). With
//! `--lead-ms` above that, the peak begins while the gate is open: the jobs started within
//! one sampling interval reach the first moments of the peak, enough on a short step-shaped
//! peak to show in the p99 (a few percent of the requests).
//!
//! Jobs done are counted from the worker's `PROCESSED` outcomes, webhook calls at the target.
//!
//! **No-op jobs.** Job throughput with a no-op in-process handler, end to end (consume,
//! admit, run, publish the outcome, store the offset), as a ratio to a plain consumer
//! reading the same jobs in the same process.
//!
//! **Scaling** (`worker/scale.rs`): jobs/s with one `retrace-worker` process and with two on
//! the same queue, a webhook holding each job a fixed time; `worker_scale_2_over_1`.
//!
//! The last line is the headline, `peak_p99_ratio_gate_off_over_on`: how much worse the
//! users' p99 is when the backlog runs during the peak.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use rdkafka::consumer::BaseConsumer;
use retrace_fixtures::Broker;
use retrace_proto::{Envelope, Job, JobPriority, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::KafkaSettings;
use retrace_worker::{
    Handlers, JobError, JobHandler, QueueConfig, QueueTopics, ReceivedJob, Worker, WorkerConfig,
};
use tokio_util::sync::CancellationToken;

use crate::smoke;

mod peak;
mod scale;

use peak::{ms, peak};

const QUEUE: &str = "bench";

#[derive(clap::Args)]
pub struct Options {
    /// No-op jobs to run.
    #[arg(long, default_value_t = 100_000, default_value_ifs = smoke("2000"))]
    jobs: usize,
    /// Partitions of the no-op jobs' queue.
    #[arg(long, default_value_t = 16, default_value_ifs = smoke("4"))]
    partitions: i32,
    /// No-op jobs running at once in the worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Peak: how long the user traffic lasts, in milliseconds.
    #[arg(long, default_value_t = 8_000, default_value_ifs = smoke("2000"))]
    peak_ms: u64,
    /// Peak: user requests per second (and messages per second on the user-traffic topic).
    #[arg(long, default_value_t = 150.0)]
    user_rate: f64,
    /// Peak: jobs waiting on the queue before the peak begins.
    #[arg(long, default_value_t = 2_000, default_value_ifs = smoke("200"))]
    backlog: usize,
    /// Peak: jobs calling the target at once (the queue's `concurrency`).
    #[arg(long, default_value_t = 16)]
    job_concurrency: usize,
    /// Peak: requests the target serves at once; the others wait.
    #[arg(long, default_value_t = 4)]
    target_capacity: usize,
    /// Peak: simulated work per request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    work_ms: u64,
    /// Peak: the gate closes above this many user-traffic messages per second.
    #[arg(long, default_value_t = 50.0)]
    gate_max_rate: f64,
    /// Peak: how often the gate reads the user-traffic rate, in milliseconds.
    #[arg(long, default_value_t = 250)]
    gate_interval_ms: u64,
    /// Peak: how long the rate must stay below the maximum before the gate reopens.
    #[arg(long, default_value_t = 1_000)]
    gate_recover_ms: u64,
    /// Peak: how long the worker runs before the peak begins, in milliseconds.
    #[arg(long, default_value_t = 0)]
    lead_ms: u64,
    /// Scaling: jobs per run (one process, then two).
    #[arg(long, default_value_t = 4_000, default_value_ifs = smoke("200"))]
    scale_jobs: usize,
    /// Scaling: how long the webhook holds each job, in milliseconds.
    #[arg(long, default_value_t = 20)]
    scale_work_ms: u64,
    /// Scaling: jobs running at once in each worker process.
    #[arg(long, default_value_t = 8)]
    scale_concurrency: usize,
    /// Scaling: partitions of the queue the processes share.
    #[arg(long, default_value_t = 8)]
    scale_partitions: i32,
    /// Scaling: the `retrace-worker` binary to start; by default the one beside this one.
    #[arg(long)]
    worker_binary: Option<std::path::PathBuf>,
    /// A check that every phase runs, in seconds: 2,000 no-op jobs on 4 partitions, a 2 s
    /// peak over a backlog of 200, 200 jobs per scaling run, unless set. Its figures mean
    /// nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.user_rate > 0.0 && options.user_rate.is_finite(),
        "--user-rate must be above 0"
    );
    anyhow::ensure!(options.backlog > 0, "--backlog must be at least 1");
    anyhow::ensure!(
        options.target_capacity > 0,
        "--target-capacity must be at least 1"
    );
    let broker = Broker::mock();
    broker
        .create_topic(OUTCOMES_TOPIC, options.partitions)
        .await;

    println!("backlog={}", options.backlog);
    println!("peak_s={:.1}", options.peak_ms as f64 / 1000.0);
    println!("user_rate_per_s={}", options.user_rate);
    println!("target_capacity={}", options.target_capacity);
    println!("work_ms={}", options.work_ms);
    println!("job_concurrency={}", options.job_concurrency);
    println!("gate_max_rate_per_s={}", options.gate_max_rate);
    println!("gate_interval_ms={}", options.gate_interval_ms);
    println!("gate_recover_ms={}", options.gate_recover_ms);
    println!("lead_ms={}", options.lead_ms);
    let off = peak(&broker, &options, false).await?;
    off.print("gate_off");
    let on = peak(&broker, &options, true).await?;
    on.print("gate_on");

    let topics = create_queue(&broker, QUEUE, options.partitions).await;
    crate::archive::produce(&broker, &topics.normal, (0..options.jobs).map(job_envelope))?;
    println!("jobs={}", options.jobs);
    println!("partitions={}", options.partitions);
    println!("concurrency={}", options.concurrency);

    let raw =
        crate::archive::raw_consume(&broker, &topics.normal, options.jobs, options.partitions)?;
    println!("raw_consume_msgs_per_s={raw:.0}");
    let noop = noop_jobs(&broker, &options).await?;
    println!("noop_jobs_per_s={noop:.0}");
    println!(
        "raw_consume_msgs_per_s={raw:.0} ratio={:.3} noop_jobs_per_s={noop:.0}",
        noop / raw
    );
    scale::run(&broker, &options).await?;
    println!(
        "peak_p99_ratio_gate_off_over_on={:.2}",
        ms(off.p99) / ms(on.p99)
    );
    Ok(())
}

/// A job like the demo's certificate requests.
fn job_envelope(i: usize) -> Envelope {
    let mut envelope = Envelope::root("bench", "certificate.requested.v1")
        .with_subject(format!("beneficiary:{}", i % 5000))
        .with_payload("application/json", br#"{"certificate":"birth"}"#.to_vec());
    envelope.job = Some(Job {
        kind: "certificate.render".into(),
        priority: JobPriority::Normal as i32,
        ..Job::default()
    });
    envelope
}

/// Creates `queue`'s topics: its normal lane with `partitions`, the other lanes with one.
async fn create_queue(broker: &Broker, queue: &str, partitions: i32) -> QueueTopics {
    let topics = QueueTopics::of(queue);
    broker.create_topic(&topics.normal, partitions).await;
    for topic in [
        &topics.urgent,
        &topics.bulk,
        &topics.retry,
        &topics.dead_letter,
    ] {
        broker.create_topic(topic, 1).await;
    }
    topics
}

/// Counts one queue's `PROCESSED` outcomes as they arrive on the outcomes topic: jobs done,
/// as the worker reports them, whatever its status API looks like.
struct ProcessedOutcomes {
    count: Arc<AtomicU64>,
    /// When each was read.
    arrivals: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl ProcessedOutcomes {
    /// Reads every partition of the outcomes topic from the start, on a thread of its own.
    fn watch(broker: &Broker, queue: &str, partitions: i32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = broker
            .client_config()
            .set("group.id", format!("bench-outcomes-{queue}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()?;
        crate::archive::assign_from_start(&consumer, OUTCOMES_TOPIC, partitions)?;
        let count = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = format!("worker:{queue}");
        let reader = {
            let count = Arc::clone(&count);
            let arrivals = Arc::clone(&arrivals);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let message = message?;
                    let Some(payload) = rdkafka::Message::payload(&message) else {
                        continue;
                    };
                    let outcome = Outcome::decode(payload)?;
                    if outcome.consumer == worker && outcome.status() == OutcomeStatus::Processed {
                        arrivals
                            .lock()
                            .expect("no thread panics holding the lock")
                            .push(Instant::now());
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        };
        Ok(ProcessedOutcomes {
            count,
            arrivals,
            stop,
            reader,
        })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until `jobs` outcomes were read; returns when the last of them was.
    async fn wait_for(&self, jobs: u64, give_up: Duration) -> anyhow::Result<Instant> {
        anyhow::ensure!(jobs > 0, "no job to wait for");
        let give_up = Instant::now() + give_up;
        loop {
            let seen = self.count();
            if seen >= jobs {
                let arrivals = self
                    .arrivals
                    .lock()
                    .expect("no thread panics holding the lock");
                return Ok(arrivals[jobs as usize - 1]);
            }
            anyhow::ensure!(
                !self.reader.is_finished(),
                "the outcomes reader stopped after {seen} of {jobs} jobs"
            );
            anyhow::ensure!(
                Instant::now() < give_up,
                "only {seen} of {jobs} jobs done in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("the outcomes reader panicked"))?
    }
}

// ---------------------------------------------------------------------------------------
// No-op jobs
// ---------------------------------------------------------------------------------------

/// Does nothing, and notes when the first job arrived.
struct Noop {
    first: Arc<OnceLock<Instant>>,
    ran: Arc<AtomicUsize>,
}

impl JobHandler for Noop {
    async fn run(&self, _: &ReceivedJob) -> Result<(), JobError> {
        self.first.get_or_init(Instant::now);
        self.ran.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The worker with a no-op handler, from the first job run to the last one settled.
async fn noop_jobs(broker: &Broker, options: &Options) -> anyhow::Result<f64> {
    let mut config = WorkerConfig::new(broker.bootstrap());
    config.kafka = KafkaSettings::new(broker.bootstrap());
    config.queues.insert(
        QUEUE.to_owned(),
        QueueConfig {
            concurrency: options.concurrency,
            ..QueueConfig::default()
        },
    );
    let first = Arc::new(OnceLock::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let handler = Noop {
        first: Arc::clone(&first),
        ran: Arc::clone(&ran),
    };
    let worker = Worker::new(&config, Handlers::new().queue(QUEUE, handler))?;
    let outcomes = ProcessedOutcomes::watch(broker, QUEUE, options.partitions)?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let finished = outcomes
        .wait_for(options.jobs as u64, Duration::from_secs(300))
        .await
        .with_context(|| format!("{} no-op jobs ran", ran.load(Ordering::Relaxed)));
    shutdown.cancel();
    running.await??;
    outcomes.stop()?;
    let finished = finished?;
    let first = *first.get().context("no job ran")?;
    Ok(options.jobs as f64 / (finished - first).as_secs_f64())
}
