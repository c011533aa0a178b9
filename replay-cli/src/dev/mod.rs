//! `retrace dev`: Kafka, the archive with its trace and replay API, the gateway, and the
//! worker with the demo's queues, in one process on one HTTP address, so a newcomer has the
//! whole pipeline with one command.
//!
//! Kafka is librdkafka's in-process mock cluster unless `--kafka` names a real one, or asks
//! for Apache Kafka started here (`local`, see [`local_kafka`]). The mock starts empty each
//! time, so its archive starts afresh too (the previous one is kept beside it); with a real
//! Kafka the archive in the data directory resumes where it stopped.

mod demo;
mod local_kafka;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use retrace_archive::{Archive, ArchiveConfig, MaskingConfig};
use retrace_auth::{AuthConfig, ServiceAuth};
use retrace_gateway::{Gateway, GatewayConfig};
use retrace_proto::{AUDIT_TOPIC, OUTCOMES_TOPIC};
use retrace_sdk::{
    KafkaSettings, ProvisionError, Publisher, TopicSettings, TopicSpec, ensure_topics_at_start,
    topic_layout,
};
use retrace_telemetry::LogFormat;
use retrace_worker::Worker;
use tokio_util::sync::CancellationToken;

use crate::Failure;
use local_kafka::LocalKafka;

/// Partitions of each topic dev mode creates.
const PARTITIONS: i32 = 3;
/// The client name dev mode creates its topics as (the `service` of their metrics).
const PROVISIONED_AS: &str = "retrace-dev";
/// Where dev mode keeps its data, and where the CLI looks for its `dev.json`, unless
/// `RETRACE_DATA_DIR` says otherwise.
const DEFAULT_DATA_DIR: &str = "retrace-data";

#[derive(clap::Args)]
pub struct DevArgs {
    /// Where the archive (and with `--kafka local`, Kafka's data) is kept, and where
    /// `dev.json` is written.
    #[arg(long, env = "RETRACE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The one address for the archive's API, the gateway, `/healthz` and `/metrics`.
    #[arg(long, env = "RETRACE_HTTP", default_value = "127.0.0.1:7070")]
    http: SocketAddr,
    /// Run on a real Kafka instead of the in-process mock cluster: `host:port` of a running
    /// one, or `local` to start Apache Kafka here (Java 17+), its data in DATA_DIR/kafka and
    /// stopped with dev mode.
    ///
    /// The mock (librdkafka's) starts empty every run, keeps 5 MB of a partition, and answers
    /// only metadata, produce, fetch, offset, consumer-group and transaction requests: no
    /// admin API (CreateTopics, DescribeConfigs, DeleteRecords, ListGroups: kafka-topics.sh,
    /// Kafka Streams, Kafka Connect and kafkajs's admin client fail), no compaction, no TLS or
    /// SASL; kafkajs's idempotent producer and its transactions fail on it ("Broker 0 not
    /// found in the cached metadata"). Use `--kafka local` for those.
    #[arg(
        long,
        env = "RETRACE_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT|local",
        value_parser = kafka_choice
    )]
    kafka: Option<KafkaChoice>,
    /// The launcher `--kafka local` runs [default: tests/kafka/kafka-local in the current
    /// directory, else in the checkout this retrace was built from].
    #[arg(long, env = "RETRACE_KAFKA_LOCAL", value_name = "SCRIPT")]
    kafka_local: Option<PathBuf>,
    /// Run the demo workload: birth registrations flowing through four services, some
    /// failing at one step.
    #[arg(long)]
    demo: bool,
    /// Demo registrations started per second.
    #[arg(long, default_value_t = 2.0)]
    demo_rate: f64,
    /// The worker holds the demo's jobs while registrations arrive faster than this many a
    /// second (its off-peak gate), and runs them once the rate has stayed below it for 5 s.
    #[arg(long, default_value_t = 20.0)]
    demo_gate_rate: f64,
    /// `text` or `json`.
    #[arg(long, env = "RETRACE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Which log lines to show (`RUST_LOG` syntax).
    #[arg(
        long,
        env = "RETRACE_LOG",
        default_value = "info,fjall=warn,lsm_tree=warn,librdkafka=warn,rdkafka=warn"
    )]
    log: String,
}

/// What `--kafka` asks for, besides the mock cluster.
#[derive(Clone)]
enum KafkaChoice {
    /// Apache Kafka, started through `kafka-local`.
    Local,
    /// A running Kafka's bootstrap servers.
    Bootstrap(String),
}

fn kafka_choice(value: &str) -> Result<KafkaChoice, String> {
    match value.trim() {
        "" => Err("give a running Kafka's host:port, or `local`".to_owned()),
        "local" => Ok(KafkaChoice::Local),
        bootstrap => Ok(KafkaChoice::Bootstrap(bootstrap.to_owned())),
    }
}

/// The Kafka dev mode runs on.
struct Kafka {
    kind: KafkaKind,
    bootstrap: String,
    /// What it is and where, for the banner.
    description: String,
}

/// dev.json's `kafka`.
#[derive(Clone, Copy, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum KafkaKind {
    /// librdkafka's in-process mock cluster.
    Mock,
    /// Apache Kafka started by dev mode through `kafka-local`.
    Local,
    /// A Kafka that `--kafka host:port` named.
    External,
}

/// A running `retrace dev`, as its dev.json describes it.
pub struct LocalDev {
    /// The dev.json, for messages.
    pub file: PathBuf,
    pub http: String,
    pub token: Option<String>,
}

/// The `retrace dev` whose dev.json is in `RETRACE_DATA_DIR` (default `retrace-data`), when
/// there is one: dev mode writes the file once it serves and removes it when it stops.
pub fn local_dev() -> Option<LocalDev> {
    let data_dir = std::env::var_os("RETRACE_DATA_DIR").unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let file = Path::new(&data_dir).join("dev.json");
    let text = std::fs::read_to_string(&file).ok()?;
    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(LocalDev {
        http: info["http"].as_str()?.to_owned(),
        token: info["token"].as_str().map(str::to_owned),
        file,
    })
}

/// What scripts read to connect: `DIR/dev.json`.
#[derive(serde::Serialize)]
struct DevInfo<'a> {
    kafka_bootstrap: &'a str,
    /// `mock`, `local` or `external`.
    kafka: KafkaKind,
    http: String,
    /// An admin API token for this run: `retrace` uses it for a local dev server.
    token: &'a str,
}

pub async fn run(args: DevArgs) -> Result<(), Failure> {
    retrace_telemetry::init_logging(args.log_format, &args.log)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    // Before the topics are provisioned, whose metrics are lost without a recorder.
    retrace_telemetry::prometheus();
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        Failure::Server(format!(
            "cannot create the data directory {}: {e}",
            args.data_dir.display()
        ))
    })?;
    let archive_dir = args.data_dir.join("archive");
    match &args.kafka {
        None => {
            // The mock cluster lives as long as this arm: it is not Send, and everything that
            // talks to it stops before it is dropped.
            let mock = MockCluster::<DefaultProducerContext>::new(3).map_err(|e| {
                Failure::Server(format!(
                    "cannot start the in-process Kafka mock cluster: {e}"
                ))
            })?;
            for spec in topic_settings().1 {
                mock.create_topic(&spec.name, spec.partitions, 1)
                    .map_err(|e| {
                        Failure::Server(format!(
                            "the mock cluster cannot create topic {}: {e}",
                            spec.name
                        ))
                    })?;
            }
            let bootstrap = mock.bootstrap_servers();
            let kafka = Kafka {
                kind: KafkaKind::Mock,
                description: format!(
                    "in-process mock cluster on {bootstrap} (empty at each start; `retrace dev \
                     --help` says what it lacks, `--kafka local` runs Apache Kafka instead)"
                ),
                bootstrap,
            };
            serve(&args, &kafka, fresh_mock_archive(&args.data_dir)?).await
        }
        Some(KafkaChoice::Bootstrap(bootstrap)) => {
            provision(bootstrap).await?;
            let kafka = Kafka {
                kind: KafkaKind::External,
                bootstrap: bootstrap.clone(),
                description: bootstrap.clone(),
            };
            serve(&args, &kafka, archive_dir).await
        }
        Some(KafkaChoice::Local) => {
            let local =
                LocalKafka::start(args.kafka_local.as_deref(), &args.data_dir.join("kafka"))
                    .await?;
            let kafka = Kafka {
                kind: KafkaKind::Local,
                bootstrap: local.bootstrap.clone(),
                description: local.description(),
            };
            let ran = async {
                provision(&kafka.bootstrap).await?;
                serve(&args, &kafka, archive_dir).await
            }
            .await;
            // After the pipeline: it commits its last positions before its broker goes.
            local.stop().await;
            ran
        }
    }
}

/// Creates the topics dev mode needs on a real Kafka (some brokers do not create topics on
/// first use), and prints their replication.
async fn provision(bootstrap: &str) -> Result<(), Failure> {
    let (settings, specs) = topic_settings();
    let kafka = KafkaSettings::new(bootstrap);
    let failed = |e: ProvisionError| {
        Failure::Server(format!(
            "cannot create the topics on Kafka at {bootstrap}: {e}"
        ))
    };
    ensure_topics_at_start(&kafka, &settings, &specs, PROVISIONED_AS)
        .await
        .map_err(failed)?;
    report_replication(&kafka, &specs).await.map_err(failed)
}

/// Runs the pipeline on `kafka`, its archive in `archive_dir`, until a signal stops it or a
/// part fails.
async fn serve(args: &DevArgs, kafka: &Kafka, archive_dir: PathBuf) -> Result<(), Failure> {
    let bootstrap = kafka.bootstrap.as_str();
    let shutdown = CancellationToken::new();
    // One admin token for this run, accepted by every service as the bootstrap credential.
    let (token, token_sha256) = retrace_auth::generate();
    let auth = AuthConfig {
        bootstrap_admin_sha256: Some(token_sha256),
        signing_key_file: Some(signing_key_file(&args.data_dir)?),
        ..AuthConfig::default()
    };
    let mut archive_config = ArchiveConfig::new(bootstrap, &archive_dir);
    archive_config.auth = auth.clone();
    archive_config.masking = MaskingConfig {
        json_paths: demo::PERSONAL_DATA.map(str::to_owned).to_vec(),
    };
    archive_config.metadata_refresh = Duration::from_secs(1);
    archive_config.batch.max_wait = Duration::from_millis(20);
    let archive = Archive::open(&archive_config, shutdown.clone())
        .await
        .map_err(|e| Failure::Server(e.to_string()))?;
    let settings = KafkaSettings::new(bootstrap);
    let services_auth = ServiceAuth::start(&auth, &settings, "dev", shutdown.clone())
        .await
        .map_err(|e| Failure::Server(e.to_string()))?;
    // The demo's event topics are the ones the gateway is configured for, as `[topics]
    // extra` would name them in a deployment: its metrics start with a series for each.
    let mut gateway_config = GatewayConfig::new(bootstrap);
    gateway_config.provisioning.extra = demo::TOPICS.map(str::to_owned).to_vec();
    let gateway = Gateway::new(&gateway_config, services_auth.guard.clone())
        .map_err(|e| Failure::Server(e.to_string()))?;
    let publisher = Publisher::new(&settings).map_err(|e| Failure::Server(e.to_string()))?;
    retrace_sdk::register_metrics(&demo::TOPICS, &[OUTCOMES_TOPIC, AUDIT_TOPIC]);
    // The mock cluster's topics are created above, not provisioned; a real Kafka's were.
    retrace_sdk::register_provisioning_metrics(PROVISIONED_AS);
    let worker = Worker::new(
        &demo::worker_config(&settings, args.demo_gate_rate)?,
        demo::handlers(&publisher),
    )
    .map_err(|e| Failure::Server(e.to_string()))?;
    // Local only: plain HTTP.
    let listener = retrace_http::bind(args.http, None).await.map_err(|e| {
        Failure::Server(format!(
            "{e}. Is another `retrace dev` running? Pass --http 127.0.0.1:<port>"
        ))
    })?;
    let http = listener.local_addr();
    // `GET /v1/config` shows the archive's configuration, as the archive service does (its
    // OpenAPI document lists the route); each read is audited on the audit topic.
    let config_route = retrace_service::http::router(
        &services_auth.guard,
        retrace_service::Reloader::fixed("archive", archive_config.clone()).documents(),
        retrace_service::http::audit_to(services_auth.audit()),
    );
    let app = archive
        .router()
        .merge(config_route)
        .merge(gateway.router())
        .merge(worker.router(&services_auth.guard, services_auth.audit()))
        .merge(retrace_telemetry::health_router(
            archive
                .readiness()
                .into_iter()
                .chain([services_auth.ready()])
                .collect(),
        ))
        .merge(retrace_telemetry::metrics_router().route_layer(services_auth.guard.metrics()));
    let stop_http = shutdown.child_token();
    let serve = listener.serve(app, stop_http.clone().cancelled_owned());
    let demo_run = async {
        if !args.demo {
            return Ok(());
        }
        let ran = demo::run(&settings, &publisher, args.demo_rate, &shutdown).await;
        if ran.is_err() {
            // Whatever stopped the demo stops the rest, rather than leaving it half-running.
            shutdown.cancel();
        }
        ran
    };
    let worker_run = async {
        let ran = worker.run(shutdown.clone()).await;
        ran.map_err(|e| Failure::Server(format!("the worker stopped: {e}")))
    };
    let dev_json = announce(&args.data_dir, kafka, http, &token, args.demo)?;
    let signals = async {
        retrace_telemetry::shutdown_signal().await;
        shutdown.cancel();
    };
    let archive_run = async {
        let archived = archive.run().await;
        stop_http.cancel();
        archived.map_err(|e| Failure::Server(format!("the archive stopped: {e}")))
    };
    let (served, demo_result, worked, archived, (), ()) = tokio::join!(
        serve,
        demo_run,
        worker_run,
        archive_run,
        services_auth.run(),
        // Stops on a signal, or when something else stopped and cancelled shutdown.
        async {
            tokio::select! {
                () = signals => {}
                () = shutdown.cancelled() => {}
            }
        }
    );
    // The CLI goes where dev.json says when no --server is given: a stopped dev server
    // leaves none behind.
    if let Err(e) = std::fs::remove_file(&dev_json) {
        tracing::warn!("cannot remove {}: {e}", dev_json.display());
    }
    served.map_err(|e| Failure::Server(format!("the HTTP server failed: {e}")))?;
    worked?;
    archived?;
    demo_result
}

/// The mock cluster starts empty, with offsets from 0 again, so an archive of an earlier
/// mock cluster cannot continue: it is kept as `mock-archive.previous`, and a new one begins.
/// The key dev mode's services sign token records and audit events with: made once, kept in
/// the data directory (`signing.key`, readable by its owner only), so the tokens and audit
/// events of an earlier run on the same Kafka stay valid.
fn signing_key_file(data_dir: &Path) -> Result<PathBuf, Failure> {
    let path = data_dir.join("signing.key");
    if path.exists() {
        return Ok(path);
    }
    let failed = |e: std::io::Error| {
        Failure::Server(format!(
            "cannot write dev mode's signing key to {}: {e}; check that the data directory \
             is writable, or set RETRACE_DATA_DIR to one that is",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(failed)?;
    std::io::Write::write_all(
        &mut file,
        format!(
            "# retrace dev's signing key (docs/security.md, \"Signed records\")\n{}\n",
            retrace_auth::SigningKeys::generate_hex()
        )
        .as_bytes(),
    )
    .map_err(failed)?;
    Ok(path)
}

fn fresh_mock_archive(data_dir: &Path) -> Result<PathBuf, Failure> {
    let current = data_dir.join("mock-archive");
    let previous = data_dir.join("mock-archive.previous");
    let io = |e: std::io::Error| {
        Failure::Server(format!(
            "cannot set aside the previous dev archive in {}: {e}",
            data_dir.display()
        ))
    };
    if current.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(io)?;
        }
        std::fs::rename(&current, &previous).map_err(io)?;
    }
    Ok(current)
}

/// Prints what replication each topic got, and warns when Retrace's own topics (the audit
/// trail, the tokens, the outcomes) have a single copy on a cluster of several brokers: one
/// lost disk would lose part of them.
async fn report_replication(
    kafka: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<(), ProvisionError> {
    let (brokers, layout) = topic_layout(kafka, specs).await?;
    println!("Kafka: {brokers} broker(s); topics (partitions × replication):");
    for (topic, partitions, replication) in &layout {
        println!("  {topic}: {partitions} × {replication}");
    }
    let single: Vec<&str> = layout
        .iter()
        .filter(|(topic, _, replication)| topic.starts_with("retrace.") && *replication == 1)
        .map(|(topic, _, _)| topic.as_str())
        .collect();
    if brokers > 1 && !single.is_empty() {
        eprintln!(
            "warning: Retrace's own topics {} have one copy on a cluster of {brokers} brokers; \
             set the cluster's default.replication.factor (3 is usual) and recreate them, or \
             one lost disk loses part of the audit trail and the tokens",
            single.join(", ")
        );
    }
    Ok(())
}

/// The topics dev mode needs: Retrace's own (the archive's change log among them), and the
/// demo's events and queues, replicated as the cluster's default says (like the services'
/// topics).
fn topic_settings() -> (TopicSettings, Vec<TopicSpec>) {
    let settings = TopicSettings {
        partitions: PARTITIONS,
        ..TopicSettings::default()
    };
    let demo = demo::topics();
    let specs = settings.retrace_topics(
        retrace_auth::DEFAULT_TOKENS_TOPIC,
        [retrace_proto::ARCHIVE_CHANGES_TOPIC]
            .into_iter()
            .chain(demo.iter().map(String::as_str)),
    );
    (settings, specs)
}

/// Writes `text` to `path` readable by its owner alone (0600), as a file holding a token
/// must be, whatever mode an earlier copy had.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Prints the banner and writes `dev.json`, once the API is listening; returns the file's
/// path.
fn announce(
    data_dir: &Path,
    kafka: &Kafka,
    http: SocketAddr,
    token: &str,
    demo: bool,
) -> Result<PathBuf, Failure> {
    let info = DevInfo {
        kafka_bootstrap: &kafka.bootstrap,
        kafka: kafka.kind,
        http: format!("http://{http}"),
        token,
    };
    let path = data_dir.join("dev.json");
    let json = serde_json::to_string_pretty(&info).expect("dev info serialises");
    write_private(&path, &(json + "\n"))
        .map_err(|e| Failure::Server(format!("cannot write {}: {e}", path.display())))?;
    // The CLI reads the address and the token from dev.json in RETRACE_DATA_DIR.
    let retrace = if data_dir == Path::new(DEFAULT_DATA_DIR) {
        "retrace".to_owned()
    } else {
        format!("RETRACE_DATA_DIR={} retrace", data_dir.display())
    };
    println!(
        "\nRetrace dev is running.\n  Kafka: {}\n  HTTP (API, gateway, worker, /metrics): {}\n  \
         Admin API token (retrace reads it from the file below): {token}\n  Connection \
         details: {}\n",
        kafka.description,
        info.http,
        path.display()
    );
    if demo {
        println!(
            "The demo publishes birth registrations; some fail. Try:\n  {retrace} failed --since \
             10m\n  {retrace} trace <transaction-id>\n  {retrace} replay <transaction-id> \
             --only-failed --reason \"renderer back up\"\n"
        );
    }
    println!("Ctrl-C stops everything.\n");
    Ok(path)
}
