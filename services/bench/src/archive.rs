//! `retrace-bench archive`: end-to-end archive rate, against its two ceilings measured in
//! the same run on the same records: a plain consumer that stores
//! nothing (transport), and the store written directly with the archiver's batching (disk
//! and CPU); and the archive's bytes on disk per message, against the payload's and against
//! Apache Kafka's own log of the same messages.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use retrace_archive::{ArchiveConfig, TopicSelection};
use retrace_fixtures::{Broker, KafkaCluster, free_port};
use retrace_log_store::{LogStore, StoreOptions};
use retrace_proto::Envelope;
use retrace_proto::headers::TraceHeaders;
use tokio_util::sync::CancellationToken;

use crate::records::{archived, kafka_headers};
use crate::smoke;

const TOPIC: &str = "bench.registrations";

/// The messages a bench archives (`archive`, `shards`): how many, on how many partitions,
/// how large.
#[derive(clap::Args)]
pub(crate) struct Workload {
    /// Messages on the topic. The mock broker keeps about 5 MiB per partition, so raise
    /// --partitions with it (a run with more than it keeps stalls).
    #[arg(long, default_value_t = 200_000, default_value_ifs = smoke("2000"))]
    pub messages: usize,
    /// Partitions of the topic (shared between the shards, for `shards`).
    #[arg(long, default_value_t = 64, default_value_ifs = smoke("4"))]
    pub partitions: i32,
    /// Size of each encoded envelope, in bytes.
    #[arg(long, default_value_t = 500)]
    pub envelope_bytes: usize,
}

#[derive(clap::Args)]
pub struct Options {
    #[command(flatten)]
    workload: Workload,
    /// Records per durable batch (the archiver's default unless set).
    #[arg(long)]
    batch_records: Option<usize>,
    /// A check that every phase runs, in seconds: 2,000 messages on 4 partitions unless
    /// set. Its figures mean nothing.
    #[arg(long)]
    smoke: bool,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let broker = Broker::mock();
    broker
        .create_topic(TOPIC, options.workload.partitions)
        .await;
    let envelopes = envelopes(&options.workload);
    produce(&broker, TOPIC, &envelopes)?;
    let mut config = ArchiveConfig::new(broker.bootstrap(), "unused");
    // Authentication as in production (its token registry reads the tokens topic beside
    // the ingest); the bench polls `/v1/positions` as the bootstrap admin. Without a token
    // that poll is refused, and the bench used to wait out its deadline on the refusals.
    let auth = crate::auth::secured(&broker).await;
    config.auth = auth.config;
    // The bench creates the topics; the mock cluster has no CreateTopics API, and trying
    // held the archive's start for 15 s.
    config.provisioning.create = false;
    if let Some(batch_records) = options.batch_records {
        config.batch.max_records = batch_records;
    }
    println!("messages={}", options.workload.messages);
    println!("partitions={}", options.workload.partitions);
    println!("envelope_bytes={}", envelopes[0].encoded_len());
    println!("batch_records={}", config.batch.max_records);

    let raw = raw_consume(
        &broker,
        TOPIC,
        options.workload.messages,
        options.workload.partitions,
    )?;
    println!("raw_consume_msgs_per_s={raw:.0}");
    let (store_only, disk_bytes) = store_only(&envelopes, config.batch.max_records)?;
    println!("store_only_msgs_per_s={store_only:.0}");
    let end_to_end = archive(config, &auth.token, options.workload.messages).await?;
    println!("end_to_end_msgs_per_s={end_to_end:.0}");
    let payload_bytes: usize = envelopes.iter().map(|e| e.encoded_len()).sum();
    let kafka_log_bytes =
        kafka_log_bytes(&envelopes, payload_bytes, options.workload.partitions).await?;
    let messages = options.workload.messages as f64;
    println!(
        "payload_bytes_per_message={:.0}",
        payload_bytes as f64 / messages
    );
    println!("disk_bytes_per_message={:.0}", disk_bytes as f64 / messages);
    println!(
        "kafka_log_bytes_per_message={:.0}",
        kafka_log_bytes as f64 / messages
    );
    println!(
        "disk_over_payload={:.2}",
        disk_bytes as f64 / payload_bytes as f64
    );
    println!(
        "disk_over_kafka_log={:.2}",
        disk_bytes as f64 / kafka_log_bytes as f64
    );
    println!("store_only_over_raw_consume={:.3}", store_only / raw);
    println!("end_to_end_over_store_only={:.2}", end_to_end / store_only);
    println!(
        "end_to_end_msgs_per_s={end_to_end:.0} raw_consume_msgs_per_s={raw:.0} \
         store_only_msgs_per_s={store_only:.0}"
    );
    Ok(())
}

/// The workload's registration events, one transaction per ten events.
pub(crate) fn envelopes(workload: &Workload) -> Vec<Envelope> {
    let mut root = Envelope::root("registration", "registration.submitted.v1");
    (0..workload.messages)
        .map(|i| {
            if i % 10 == 0 {
                root = Envelope::root("registration", "registration.submitted.v1");
            }
            let mut event = Envelope::caused_by(&root, "registration", "registration.checked.v1")
                .with_subject(format!("beneficiary:{}", i % 5000));
            let padding = workload
                .envelope_bytes
                .saturating_sub(event.encoded_len() + 20);
            event.content_type = "application/json".into();
            event.payload = vec![b'x'; padding];
            event
        })
        .collect()
}

/// Produces `envelopes` to `topic` with their trace headers, keyed by transaction as the SDK
/// does, and waits until every one is acknowledged.
pub(crate) fn produce(
    broker: &Broker,
    topic: &str,
    envelopes: impl IntoIterator<Item = impl Borrow<Envelope>>,
) -> anyhow::Result<()> {
    produce_keyed(broker, topic, envelopes, |envelope| {
        &envelope.transaction_id
    })
}

/// [`produce`], each envelope keyed by `key` (its partition follows the key).
pub(crate) fn produce_keyed(
    broker: &Broker,
    topic: &str,
    envelopes: impl IntoIterator<Item = impl Borrow<Envelope>>,
    key: impl Fn(&Envelope) -> &String,
) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    for envelope in envelopes {
        let envelope = envelope.borrow();
        let headers = kafka_headers(&TraceHeaders::of(envelope));
        let value = envelope.encode_to_vec();
        let record = BaseRecord::to(topic)
            .key(key(envelope))
            .payload(&value)
            .headers(headers);
        producer.send(record).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Assigns `consumer` every partition of `topic`, each from its beginning.
pub(crate) fn assign_from_start(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(())
}

/// Messages per second of a consumer that reads every partition of `topic` from the start
/// and keeps nothing: the transport ceiling every consuming benchmark is measured against.
pub(crate) fn raw_consume(
    broker: &Broker,
    topic: &str,
    messages: usize,
    partitions: i32,
) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .create()?;
    assign_from_start(&consumer, topic, partitions)?;
    let mut received = 0;
    let mut started = None;
    while received < messages {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => {
                started.get_or_insert_with(Instant::now);
                received += 1;
            }
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the raw consumer saw only {received} of {messages} messages"),
        }
    }
    Ok(rate(received, started))
}

/// Bytes of Apache Kafka's own log for the same messages: produced as the SDK does onto a
/// node started by the launcher (`tests/kafka/kafka-local`), with as many partitions;
/// `payload_bytes` is the envelopes' encoded size.
async fn kafka_log_bytes(
    envelopes: &[Envelope],
    payload_bytes: usize,
    partitions: i32,
) -> anyhow::Result<u64> {
    let cluster = Arc::new(KafkaCluster::start(1));
    let broker = Broker::Kafka {
        cluster: Arc::clone(&cluster),
        private: true,
    };
    broker.create_topic(TOPIC, partitions).await;
    produce(&broker, TOPIC, envelopes)?;
    let bytes = cluster.log_bytes(TOPIC)?;
    // Uncompressed, the log holds every value whole: less means the wrong files were counted.
    anyhow::ensure!(
        bytes >= payload_bytes as u64,
        "Kafka's log of {TOPIC} has {bytes} bytes, less than the {payload_bytes} bytes of \
         its values"
    );
    Ok(bytes)
}

/// The same records, classified, indexed and written in the archiver's batches, no Kafka:
/// messages per second and the archive's bytes on disk after.
fn store_only(envelopes: &[Envelope], batch_records: usize) -> anyhow::Result<(f64, u64)> {
    let dir = tempfile::tempdir()?;
    let store = LogStore::open(dir.path(), &StoreOptions::default())?;
    let started = Instant::now();
    for (batch_number, batch) in envelopes.chunks(batch_records).enumerate() {
        let records: Vec<_> = batch
            .iter()
            .enumerate()
            .map(|(i, envelope)| {
                archived(
                    TOPIC,
                    0,
                    (batch_number * batch_records + i) as i64,
                    &envelope.transaction_id,
                    envelope.encode_to_vec(),
                    None,
                    0,
                )
            })
            .collect();
        store.append(&records)?;
    }
    let rate = rate(envelopes.len(), Some(started));
    store.flush()?;
    Ok((rate, store.disk_space()?))
}

/// The archiver itself, from its first archived record to its last.
async fn archive(mut config: ArchiveConfig, token: &str, messages: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    config.data_dir = dir.path().to_path_buf();
    config.topics = TopicSelection::Names(vec![TOPIC.to_owned()]);
    config.group_id = "bench-archive".into();
    let port = free_port();
    config.http = ([127, 0, 0, 1], port).into();
    let positions_url = format!("http://127.0.0.1:{port}/v1/positions");
    let client = reqwest::Client::new();
    let shutdown = CancellationToken::new();
    let spawned = Instant::now();
    let mut archiver = tokio::spawn(retrace_archive::run(config, shutdown.clone()));
    // When records were first seen archived, and how many: the rate counts those archived
    // after, so the first batch's records are not counted without their time.
    let mut first: Option<(Instant, usize)> = None;
    // The deadline is for a stall, not for the run: it moves with every record archived.
    let patience = Duration::from_secs(120);
    let (mut archived, mut progress_at) = (0, Instant::now());
    loop {
        if archiver.is_finished() {
            (&mut archiver)
                .await?
                .context("the archiver stopped during the run")?;
            anyhow::bail!("the archiver stopped during the run at {archived} records");
        }
        if let Some(now) = archived_count(&client, &positions_url, token, TOPIC).await? {
            if now > archived {
                (archived, progress_at) = (now, Instant::now());
            }
            if archived > 0 {
                first.get_or_insert((Instant::now(), archived));
            }
            if archived >= messages {
                break;
            }
        }
        anyhow::ensure!(
            progress_at.elapsed() < patience,
            "the archive stalled at {archived} of {messages} records for {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed_rate = match first {
        Some((at, seen)) if seen < messages => rate(messages - seen, Some(at)),
        // All archived by the first look (a run too small to measure, such as --smoke):
        // from the archiver's start, its group join included.
        _ => rate(messages, Some(spawned)),
    };
    shutdown.cancel();
    archiver.await?.context("the archiver failed")?;
    Ok(elapsed_rate)
}

/// Records of `topic` the archive has stored, from `/v1/positions` asked as `token`;
/// `None` while the archive does not answer yet (starting: no listener, or 503 until its
/// token registry has caught up). Any other refusal is an error, not a wait.
pub(crate) async fn archived_count(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    topic: &str,
) -> anyhow::Result<Option<usize>> {
    let Ok(response) = client.get(url).bearer_auth(token).send().await else {
        return Ok(None);
    };
    let status = response.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Ok(None);
    }
    anyhow::ensure!(
        status.is_success(),
        "GET {url} answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    let positions: Vec<retrace_api::PositionView> = response.json().await?;
    Ok(Some(
        positions
            .iter()
            .filter(|p| p.topic == topic)
            .map(|p| p.next_offset.max(0) as usize)
            .sum(),
    ))
}

fn rate(count: usize, started: Option<Instant>) -> f64 {
    let seconds = started.map_or(f64::INFINITY, |s| s.elapsed().as_secs_f64());
    count as f64 / seconds
}
