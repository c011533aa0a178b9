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
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use clap::builder::ArgPredicate::IsPresent;
use futures::TryStreamExt as _;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{Envelope, Job, JobPriority, OUTCOMES_TOPIC, Outcome, OutcomeStatus};
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_tests::Broker;
use retrace_worker::gate::GateConfig;
use retrace_worker::{
    Handlers, JobError, JobHandler, QueueConfig, QueueTopics, ReceivedJob, Worker, WorkerConfig,
    enqueue,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod scale;

const QUEUE: &str = "bench";

#[derive(clap::Args)]
pub struct Options {
    /// No-op jobs to run.
    #[arg(
        long,
        default_value_t = 100_000,
        default_value_if("smoke", IsPresent, "2000")
    )]
    jobs: usize,
    /// Partitions of the no-op jobs' queue.
    #[arg(long, default_value_t = 16, default_value_if("smoke", IsPresent, "4"))]
    partitions: i32,
    /// No-op jobs running at once in the worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Peak: how long the user traffic lasts, in milliseconds.
    #[arg(
        long,
        default_value_t = 8_000,
        default_value_if("smoke", IsPresent, "2000")
    )]
    peak_ms: u64,
    /// Peak: user requests per second (and messages per second on the user-traffic topic).
    #[arg(long, default_value_t = 150.0)]
    user_rate: f64,
    /// Peak: jobs waiting on the queue before the peak begins.
    #[arg(
        long,
        default_value_t = 2_000,
        default_value_if("smoke", IsPresent, "200")
    )]
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
    #[arg(
        long,
        default_value_t = 4_000,
        default_value_if("smoke", IsPresent, "200")
    )]
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
    produce(&broker, &topics.normal, options.jobs)?;
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

// ---------------------------------------------------------------------------------------
// The peak
// ---------------------------------------------------------------------------------------

/// The target service: `capacity` requests at once, each `work` long; the others queue.
struct Target {
    capacity: Semaphore,
    work: Duration,
    /// When each webhook call arrived.
    job_calls: Mutex<Vec<Instant>>,
}

impl Target {
    async fn serve(&self) {
        let _permit = self
            .capacity
            .acquire()
            .await
            .expect("the target's semaphore is never closed");
        // The service's own work (rendering, a database call), simulated.
        tokio::time::sleep(self.work).await;
    }

    fn job_calls(&self) -> Vec<Instant> {
        self.job_calls
            .lock()
            .expect("no thread panics holding the lock")
            .clone()
    }
}

async fn user(State(target): State<Arc<Target>>) -> &'static str {
    target.serve().await;
    "ok"
}

async fn job(State(target): State<Arc<Target>>) -> &'static str {
    target
        .job_calls
        .lock()
        .expect("no thread panics holding the lock")
        .push(Instant::now());
    target.serve().await;
    "done"
}

/// What one run of the peak measured.
struct PeakRun {
    user_requests: usize,
    user_errors: usize,
    /// User-traffic messages the producer refused (the signal would read low).
    unpublished: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Webhook calls the target received while the peak lasted.
    jobs_during_peak: usize,
    /// From the worker's start until its first webhook call (the consumer joins its group
    /// first: about 3 s on the mock cluster).
    first_job_after: Duration,
    /// From the start of the peak until the last job of the backlog was done (its outcome
    /// published).
    backlog_done_after: Duration,
    /// Jobs not done yet when the peak ended.
    post_peak_jobs: u64,
    /// From the end of the peak until the next webhook call, if jobs were left.
    resumed_after: Option<Duration>,
    /// From the end of the peak until the backlog was done.
    post_peak_took: Duration,
}

impl PeakRun {
    fn print(&self, run: &str) {
        println!("{run}_user_requests={}", self.user_requests);
        println!("{run}_user_errors={}", self.user_errors);
        if self.unpublished > 0 {
            println!("{run}_user_messages_unpublished={}", self.unpublished);
        }
        println!("{run}_user_p50_ms={:.1}", ms(self.p50));
        println!("{run}_user_p99_ms={:.1}", ms(self.p99));
        println!("{run}_user_max_ms={:.1}", ms(self.max));
        println!("{run}_jobs_during_peak={}", self.jobs_during_peak);
        println!(
            "{run}_first_job_after_worker_start_s={:.2}",
            self.first_job_after.as_secs_f64()
        );
        println!(
            "{run}_backlog_done_after_peak_start_s={:.2}",
            self.backlog_done_after.as_secs_f64()
        );
        println!("{run}_post_peak_jobs={}", self.post_peak_jobs);
        if self.post_peak_jobs > 0 {
            if let Some(resumed) = self.resumed_after {
                println!("{run}_jobs_resumed_after_peak_ms={:.0}", ms(resumed));
                println!(
                    "{run}_post_resume_jobs_per_s={:.0}",
                    self.post_peak_jobs as f64
                        / self.post_peak_took.saturating_sub(resumed).as_secs_f64()
                );
            }
            println!(
                "{run}_post_peak_jobs_per_s={:.0}",
                self.post_peak_jobs as f64 / self.post_peak_took.as_secs_f64()
            );
        }
    }
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

/// One run: a fresh target, queue and user-traffic topic; the backlog; the worker (gated or
/// not); the peak; then waits for the backlog to be done.
async fn peak(broker: &Broker, options: &Options, gated: bool) -> anyhow::Result<PeakRun> {
    let run = if gated { "gate-on" } else { "gate-off" };
    let queue = format!("peak-{run}");
    let user_topic = format!("bench.user-traffic.{run}");
    create_queue(broker, &queue, 4).await;
    broker.create_topic(&user_topic, 4).await;

    let shutdown = CancellationToken::new();
    let target = Arc::new(Target {
        capacity: Semaphore::new(options.target_capacity),
        work: Duration::from_millis(options.work_ms),
        job_calls: Mutex::new(Vec::with_capacity(options.backlog)),
    });
    let router = Router::new()
        .route("/user", get(user))
        .route("/jobs", post(job))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Arc::clone(&target));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target_addr = listener.local_addr()?;
    let server_shutdown = shutdown.clone();
    let target_server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });

    let kafka = KafkaSettings::new(broker.bootstrap());
    let publisher = Publisher::new(&kafka)?;
    futures::stream::iter((0..options.backlog).map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(256, |i| {
            let publisher = &publisher;
            let queue = &queue;
            async move {
                enqueue(publisher, queue, job_envelope(i)).await?;
                Ok(())
            }
        })
        .await
        .context("enqueuing the backlog")?;

    let mut queue_config = QueueConfig {
        webhook: Some(format!("http://{target_addr}/jobs")),
        concurrency: options.job_concurrency,
        ..QueueConfig::default()
    };
    if gated {
        let gate: GateConfig = toml::from_str(&format!(
            r#"
            [[signals]]
            kind = "topic_rate"
            topics = ["{user_topic}"]
            max_rate = {max_rate:?}
            interval_ms = {interval}
            recover_after_ms = {recover}
            "#,
            max_rate = options.gate_max_rate,
            interval = options.gate_interval_ms,
            recover = options.gate_recover_ms,
        ))
        .context("the gate's section")?;
        queue_config.gate = gate;
    }
    let mut config = WorkerConfig::new(broker.bootstrap());
    config.kafka = kafka;
    config.queues.insert(queue.clone(), queue_config);
    let worker = Worker::new(&config, Handlers::new())?;
    let outcomes = ProcessedOutcomes::watch(broker, &queue, options.partitions)?;
    let worker_started = Instant::now();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    tokio::time::sleep(Duration::from_millis(options.lead_ms)).await;
    let producer: ThreadedProducer<DefaultProducerContext> =
        broker.client_config().set("linger.ms", "5").create()?;
    let users = generate_peak(
        &producer,
        &user_topic,
        &format!("http://{target_addr}/user"),
        options,
        &outcomes,
    )
    .await?;
    producer.flush(Duration::from_secs(10))?;
    let done = outcomes
        .wait_for(options.backlog as u64, Duration::from_secs(120))
        .await;
    shutdown.cancel();
    running.await??;
    target_server.await??;
    outcomes.stop()?;
    let done = done?;

    let mut latencies = users.latencies;
    latencies.sort();
    anyhow::ensure!(!latencies.is_empty(), "no user request was answered");
    let job_calls = target.job_calls();
    let first_job = *job_calls.first().context("the target saw no job")?;
    let jobs_during_peak = job_calls
        .iter()
        .filter(|&&at| at >= users.started && at < users.ended)
        .count();
    let resumed = job_calls.iter().find(|&&at| at >= users.ended);
    Ok(PeakRun {
        user_requests: latencies.len() + users.errors,
        user_errors: users.errors,
        unpublished: users.unpublished,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: *latencies.last().expect("not empty"),
        jobs_during_peak,
        first_job_after: first_job.saturating_duration_since(worker_started),
        backlog_done_after: done.saturating_duration_since(users.started),
        post_peak_jobs: (options.backlog as u64).saturating_sub(users.processed_by_end),
        resumed_after: resumed.map(|&at| at - users.ended),
        post_peak_took: done.saturating_duration_since(users.ended),
    })
}

/// The user side of one peak.
struct Users {
    /// Of the answered requests, from each one's scheduled time.
    latencies: Vec<Duration>,
    errors: usize,
    unpublished: usize,
    /// Jobs done when the peak ended.
    processed_by_end: u64,
    started: Instant,
    ended: Instant,
}

/// Sends user requests at `options.user_rate` for `options.peak_ms`, open loop, publishing
/// one message per request on `topic`; waits for the answers.
async fn generate_peak(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    url: &str,
    options: &Options,
    outcomes: &ProcessedOutcomes,
) -> anyhow::Result<Users> {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / options.user_rate));
    // Late ticks fire at once, so the offered rate holds even when the process lags.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = tokio::time::Instant::now();
    let end = started + Duration::from_millis(options.peak_ms);
    let mut requests = tokio::task::JoinSet::new();
    let mut unpublished = 0;
    loop {
        let scheduled = ticks.tick().await;
        if scheduled >= end {
            break;
        }
        if producer
            .send(BaseRecord::<(), _>::to(topic).payload("user request"))
            .is_err()
        {
            unpublished += 1;
        }
        let request = client.get(url).send();
        requests.spawn(async move {
            let answered = match request.await {
                Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
                _ => false,
            };
            answered.then(|| scheduled.elapsed())
        });
    }
    let ended = Instant::now();
    let processed_by_end = outcomes.count();
    let mut latencies = Vec::with_capacity(requests.len());
    let mut errors = 0;
    while let Some(answer) = requests.join_next().await {
        match answer? {
            Some(latency) => latencies.push(latency),
            None => errors += 1,
        }
    }
    Ok(Users {
        latencies,
        errors,
        unpublished,
        processed_by_end,
        started: started.into_std(),
        ended,
    })
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
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(OUTCOMES_TOPIC, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
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

/// Nearest rank; `sorted` is not empty.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (sorted.len() as f64 * p / 100.0).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
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

fn produce(broker: &Broker, topic: &str, jobs: usize) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..jobs {
        let envelope = job_envelope(i);
        let headers = TraceHeaders::of(&envelope).pairs().into_iter().fold(
            OwnedHeaders::new(),
            |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        );
        let value = envelope.encode_to_vec();
        let record = BaseRecord::to(topic)
            .key(&envelope.transaction_id)
            .payload(&value)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
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
