//! `retrace-bench worker`: job throughput with a no-op in-process handler, end to end (consume,
//! admit, run, publish the outcome, store the offset), as a ratio to a plain consumer reading
//! the same jobs in the same process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use retrace_proto::headers::TraceHeaders;
use retrace_proto::{Envelope, Job, JobPriority, OUTCOMES_TOPIC};
use retrace_sdk::KafkaSettings;
use retrace_tests::Broker;
use retrace_worker::{
    Handlers, JobError, JobHandler, QueueConfig, QueueStatus, QueueTopics, ReceivedJob, Worker,
    WorkerConfig,
};
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "bench";

#[derive(clap::Args)]
pub struct Options {
    /// Jobs to run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Jobs running at once in the worker.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
}

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

pub async fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::mock();
    let topics = QueueTopics::of(QUEUE);
    for topic in [
        &topics.urgent,
        &topics.bulk,
        &topics.retry,
        &topics.dead_letter,
    ] {
        broker.create_topic(topic, 1).await;
    }
    broker
        .create_topic(&topics.normal, options.partitions)
        .await;
    broker
        .create_topic(OUTCOMES_TOPIC, options.partitions)
        .await;
    produce(&broker, &topics.normal, options.jobs)?;
    println!("jobs={}", options.jobs);
    println!("partitions={}", options.partitions);
    println!("concurrency={}", options.concurrency);

    let raw = raw_consume(&broker, &topics.normal, options.jobs, options.partitions)?;
    println!("raw_consume_msgs_per_s={raw:.0}");
    let noop = noop_jobs(&broker, &options).await?;
    println!("noop_jobs_per_s={noop:.0}");
    println!(
        "raw_consume_msgs_per_s={raw:.0} ratio={:.3} noop_jobs_per_s={noop:.0}",
        noop / raw
    );
    Ok(())
}

fn produce(broker: &Broker, topic: &str, jobs: usize) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for i in 0..jobs {
        let mut envelope = Envelope::root("bench", "certificate.requested.v1")
            .with_subject(format!("beneficiary:{}", i % 5000))
            .with_payload("application/json", br#"{"certificate":"birth"}"#.to_vec());
        envelope.job = Some(Job {
            kind: "certificate.render".into(),
            priority: JobPriority::Normal as i32,
            ..Job::default()
        });
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

/// A consumer that reads every partition from the start and keeps nothing.
fn raw_consume(broker: &Broker, topic: &str, jobs: usize, partitions: i32) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut received = 0;
    let mut started = None;
    while received < jobs {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
                received += 1;
            }
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the raw consumer saw only {received} of {jobs} jobs"),
        }
    }
    let started = started.context("no job consumed")?;
    Ok(received as f64 / started.elapsed().as_secs_f64())
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let status_url = format!("http://{}/v1/jobs/queues", listener.local_addr()?);
    let router = worker.router();
    let shutdown = CancellationToken::new();
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let give_up = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let statuses: Vec<QueueStatus> = reqwest::get(&status_url).await?.json().await?;
        if statuses.iter().any(|s| s.done as usize >= options.jobs) {
            break Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < give_up,
            "only {} of {} jobs ran",
            ran.load(Ordering::Relaxed),
            options.jobs
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    running.await??;
    server.await??;
    let first = *first.get().context("no job ran")?;
    Ok(options.jobs as f64 / (finished - first).as_secs_f64())
}
