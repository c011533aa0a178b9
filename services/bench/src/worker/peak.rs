//! The peak (see the module above): a target service of fixed capacity, the user traffic
//! of a peak against it, and the worker's backlog on the same target, gate off then on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use futures::TryStreamExt as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use retrace_fixtures::Broker;
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_worker::gate::GateConfig;
use retrace_worker::{Handlers, QueueConfig, Worker, WorkerConfig, enqueue};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Options, ProcessedOutcomes, create_queue, job_envelope};

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
pub(super) struct PeakRun {
    user_requests: usize,
    user_errors: usize,
    /// User-traffic messages the producer refused (the signal would read low).
    unpublished: usize,
    p50: Duration,
    pub(super) p99: Duration,
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
    pub(super) fn print(&self, run: &str) {
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

/// One run: a fresh target, queue and user-traffic topic; the backlog; the worker (gated or
/// not); the peak; then waits for the backlog to be done.
pub(super) async fn peak(
    broker: &Broker,
    options: &Options,
    gated: bool,
) -> anyhow::Result<PeakRun> {
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

/// Nearest rank; `sorted` is not empty.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (sorted.len() as f64 * p / 100.0).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
