//! The archiver's configuration: defaults, then an optional TOML file, then `RETRACE_*`
//! environment variables, then flags; each later source wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use retrace_auth::AuthConfig;
use retrace_http::TlsFiles;
use retrace_log_store::StoreOptions;
use retrace_sdk::TopicSpec;

use crate::incidents::FingerprintRule;
use crate::shards::{Shard, Sharding};
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};
pub use retrace_service::ConfigError;
use retrace_service::{
    CommonArgs, CommonConfig, CommonSections, DEFAULT_BOOTSTRAP, KafkaSection, LogSection,
    Problems, TopicsSection, serialize_ms, wrong,
};
use serde::{Deserialize, Serialize};

/// Every topic except Kafka's internal `__*` ones (librdkafka regexes are POSIX: no
/// look-ahead, hence the spelled-out alternatives).
pub const ALL_TOPICS_PATTERN: &str = "^([^_]|_[^_]).*";

/// The consumer group of an archive without replicas; replicas add their id.
const DEFAULT_GROUP: &str = "retrace-archive";

/// [`ArchiveConfig::replica`] of an archive without replicas.
const SOLE_REPLICA: &str = "archive";

/// The topics every replica reads whatever else it archives: what the other replicas
/// changed, and what they audited.
const REPLICATED_TOPICS: [&str; 2] = [ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC];

fn is_replica_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Which topics to archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicSelection {
    Names(Vec<String>),
    /// A POSIX regex over topic names; topics created later are picked up when they appear.
    Pattern(String),
}

impl TopicSelection {
    /// The subscription in librdkafka's form, where a leading `^` marks a regex; a list
    /// gains the replicated topics (a pattern must match them: checked as it is read).
    pub fn subscription(&self) -> Vec<String> {
        match self {
            TopicSelection::Names(names) => {
                let mut names = names.clone();
                for topic in REPLICATED_TOPICS {
                    if !names.iter().any(|name| name == topic) {
                        names.push(topic.to_owned());
                    }
                }
                names
            }
            TopicSelection::Pattern(pattern) if pattern.starts_with('^') => vec![pattern.clone()],
            TopicSelection::Pattern(pattern) => vec![format!("^{pattern}")],
        }
    }

    /// Whether `topic` is archived (the replicated topics always are). librdkafka matches patterns as POSIX regexes; the ones
    /// Retrace uses read the same in Rust's syntax. A pattern Rust cannot read matches
    /// nothing here, which only hides its topics' lag.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicSelection::Names(names) => {
                (names.iter().map(String::as_str).chain(REPLICATED_TOPICS))
                    .any(|name| name == topic)
            }
            TopicSelection::Pattern(_) => self
                .subscription()
                .first()
                .and_then(|pattern| regex::Regex::new(pattern).ok())
                .is_some_and(|pattern| pattern.is_match(topic)),
        }
    }
}

/// How records are grouped into one durable write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchSettings {
    pub max_records: usize,
    /// How long the first record of a batch may wait for others.
    #[serde(rename = "max_wait_ms", serialize_with = "serialize_ms")]
    pub max_wait: Duration,
}

/// What `GET /v1/config` shows, and what a reload compares.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveConfig {
    /// Kafka, the HTTP address, TLS, logging, `[topics]`, and who may call the API (`[auth]`,
    /// enabled unless configured otherwise); read as the archive's own (`config.kafka`).
    #[serde(flatten)]
    pub common: CommonConfig,
    pub topics: TopicSelection,
    /// This archive's name among the replicas of one archive (`[archive] replica_id`): each
    /// replica consumes every topic in its own group, `<group>.<id>`
    /// ([`consumer_group`](Self::consumer_group)). `None`: the only one.
    pub replica_id: Option<String>,
    /// This archive's shard and where the others answer (`[archive] shard`, `shard_urls`):
    /// it archives its share of the partitions and asks the others for theirs
    /// ([`crate::shards`]). `None`: it holds every partition.
    pub sharding: Option<Sharding>,
    /// The archive's group (`[archive] group`): its consumer group, or its replicas' groups'
    /// stem; also what names the archive on its change log, whose records other archives on
    /// the same cluster ignore.
    pub group_id: String,
    pub data_dir: PathBuf,
    pub batch: BatchSettings,
    /// Not configurable: the engine's memory caps, and the incident rule.
    #[serde(skip)]
    pub store: StoreOptions,
    /// How often topic metadata is refreshed, so new topics are archived soon after they
    /// appear.
    #[serde(rename = "metadata_refresh_ms", serialize_with = "serialize_ms")]
    pub metadata_refresh: Duration,
    /// Bulk replays planning more messages than this need the `replay:bulk` permission
    /// (admins).
    pub replay_bulk_admin_above: usize,
    /// `[masking]`: what callers without `payload:read` see as `"***"`.
    pub masking: MaskingConfig,
    /// How long the archive may take, after SIGTERM, to write the batch in hand, commit,
    /// and save running replays' progress before the process stops anyway
    /// (`[archive] shutdown_grace_ms`). Stopping early loses nothing: the archive resumes
    /// from its stored positions.
    pub shutdown_grace: Duration,
    /// How often the archive asks Kafka where each partition ends, to say how far behind it
    /// is (`[archive] lag_check_ms`): `/v1/positions`, the caveat on traces and listings, the
    /// lag metrics.
    #[serde(rename = "lag_check_ms", serialize_with = "serialize_ms")]
    pub lag_check: Duration,
    /// Whether the web console is served at `/ui/` (`[archive] console`). Off, `/ui/` is not
    /// found, for deployments that expose the API but keep the console to an internal
    /// network; the API it calls is unchanged either way.
    pub console: bool,
}

/// `[masking]` in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Dotted paths into JSON payloads (`child.given_name`, `*.phone`): `*` matches any key
    /// at one level, and a path applies to every element of an array it meets.
    #[serde(default)]
    pub json_paths: Vec<String>,
}

retrace_service::service_config!(ArchiveConfig);

/// Bulk replays planning more messages than this need `replay:bulk` unless configured.
pub const DEFAULT_REPLAY_BULK_ADMIN_ABOVE: usize = 100;

impl ArchiveConfig {
    /// The defaults, for an archive of `bootstrap` kept in `data_dir`.
    pub fn new(bootstrap: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let mut common = CommonConfig::new(bootstrap, SocketAddr::from(([127, 0, 0, 1], 7070)));
        common.log_filter = "info,fjall=warn,lsm_tree=warn".to_owned();
        ArchiveConfig {
            common,
            topics: TopicSelection::Pattern(ALL_TOPICS_PATTERN.to_owned()),
            replica_id: None,
            sharding: None,
            group_id: DEFAULT_GROUP.to_owned(),
            data_dir: data_dir.into(),
            batch: BatchSettings {
                max_records: 5000,
                max_wait: Duration::from_millis(50),
            },
            store: StoreOptions {
                incidents: Some(Arc::new(FingerprintRule)),
                ..StoreOptions::default()
            },
            metadata_refresh: Duration::from_secs(5),
            replay_bulk_admin_above: DEFAULT_REPLAY_BULK_ADMIN_ABOVE,
            masking: MaskingConfig::default(),
            shutdown_grace: Duration::from_secs(20),
            lag_check: Duration::from_secs(2),
            console: true,
        }
    }

    /// The topics the archive creates when missing: Retrace's own (its change log among
    /// them), and `[topics] extra`.
    pub fn topics_needed(&self) -> Vec<TopicSpec> {
        self.provisioning
            .retrace_topics(&self.auth.tokens_topic, [ARCHIVE_CHANGES_TOPIC])
    }

    /// The replica's name in what it publishes (the replays it runs, its audit events).
    pub fn replica(&self) -> &str {
        self.replica_id.as_deref().unwrap_or(SOLE_REPLICA)
    }

    /// The group the archiver consumes in: the archive's group, then `.shard-<i>-of-<N>`
    /// for a shard, then `.<replica id>` for a replica. Every shard and replica reads the
    /// change log whole, so none may share a group with another.
    pub fn consumer_group(&self) -> String {
        let mut group = self.group_id.clone();
        if let Some(Sharding { shard, .. }) = &self.sharding {
            group.push_str(&format!(".shard-{}-of-{}", shard.index, shard.count));
        }
        if let Some(replica) = &self.replica_id {
            group.push_str(&format!(".{replica}"));
        }
        group
    }
}

/// Command-line flags; each also reads a `RETRACE_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Topics to archive (comma-separated). Default: every topic but Kafka's internal ones.
    #[arg(
        long,
        env = "RETRACE_ARCHIVE_TOPICS",
        value_delimiter = ',',
        conflicts_with = "topic_pattern"
    )]
    pub topics: Vec<String>,
    /// POSIX regex of topics to archive, instead of a list.
    #[arg(long, env = "RETRACE_ARCHIVE_TOPIC_PATTERN")]
    pub topic_pattern: Option<String>,
    /// The archive's Kafka consumer group (`retrace-archive` by default); each replica
    /// consumes in `<group>.<replica id>`.
    #[arg(long, env = "RETRACE_ARCHIVE_GROUP")]
    pub group: Option<String>,
    /// This archive's name among replicas that each hold the whole archive (letters,
    /// digits, `-`, `_`).
    #[arg(long, env = "RETRACE_ARCHIVE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// This archive's shard, `i/N`: it archives partition p of every topic where
    /// p mod N = i, and asks the other shards (`--shard-urls`) for the rest.
    #[arg(long, env = "RETRACE_ARCHIVE_SHARD")]
    pub shard: Option<String>,
    /// Where each shard answers, in shard order, comma-separated; a shard's replicas
    /// separated by `|` (`http://a:7070,http://b1:7070|http://b2:7070`).
    #[arg(long, env = "RETRACE_ARCHIVE_SHARD_URLS", value_delimiter = ',')]
    pub shard_urls: Vec<String>,
    /// Directory of the archive.
    #[arg(long, env = "RETRACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP server (/healthz, /metrics, /v1/positions).
    #[arg(long, env = "RETRACE_HTTP")]
    pub http: Option<SocketAddr>,
    /// Most records written in one durable batch.
    #[arg(long, env = "RETRACE_ARCHIVE_BATCH_RECORDS")]
    pub batch_records: Option<usize>,
    /// Longest a record waits for its batch to fill, in milliseconds.
    #[arg(long, env = "RETRACE_ARCHIVE_BATCH_WAIT_MS")]
    pub batch_wait_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    kafka: KafkaSection,
    tls: Option<TlsFiles>,
    archive: FileArchive,
    log: LogSection,
    auth: AuthConfig,
    topics: TopicsSection,
    masking: MaskingConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileArchive {
    topics: Option<Vec<String>>,
    topic_pattern: Option<String>,
    group: Option<String>,
    replica_id: Option<String>,
    shard: Option<String>,
    shard_urls: Option<Vec<Vec<String>>>,
    data_dir: Option<PathBuf>,
    http: Option<SocketAddr>,
    batch_records: Option<usize>,
    batch_wait_ms: Option<u64>,
    replay_bulk_admin_above: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    lag_check_ms: Option<u64>,
    disk_reserve_mb: Option<u64>,
    console: Option<bool>,
}

impl ArchiveArgs {
    /// Layers defaults, the file, and these flags (which clap already merged with the env);
    /// refuses the result naming every problem found.
    pub fn resolve(self) -> Result<ArchiveConfig, ConfigError> {
        let FileConfig {
            kafka,
            tls,
            archive: file,
            log,
            auth,
            topics,
            masking,
        } = self.common.read_file()?;
        let mut problems = Problems::default();
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("retrace-data"));
        let mut config = ArchiveConfig::new(DEFAULT_BOOTSTRAP, data_dir);
        let names = Some(self.topics).filter(|t| !t.is_empty()).or(file.topics);
        let pattern = self.topic_pattern.or(file.topic_pattern);
        config.topics = match (names, pattern) {
            (Some(names), _) => TopicSelection::Names(names),
            (None, Some(pattern)) => TopicSelection::Pattern(pattern),
            (None, None) => config.topics,
        };
        if let Some(missed) = REPLICATED_TOPICS
            .iter()
            .find(|topic| !config.topics.matches(topic))
        {
            problems.check(Err::<(), _>(wrong(
                "archive.topic_pattern",
                format!(
                    "the pattern does not match {missed}, which every archive reads (its \
                     replicas' changes and audit events): widen it, e.g. \
                     `^(retrace\\.|births\\.).*`"
                ),
            )));
        }
        if let Some(group) = self.group.or(file.group) {
            config.group_id = group;
        }
        match self.replica_id.or(file.replica_id) {
            Some(replica_id) if !is_replica_id(&replica_id) => {
                problems.check(Err::<(), _>(wrong(
                    "archive.replica_id",
                    format!(
                        "{replica_id:?} is not a replica id: use 1 to 64 letters, digits, `-` \
                         or `_`, e.g. `a` or `zone-2`"
                    ),
                )));
            }
            replica_id => config.replica_id = replica_id,
        }
        let shard_urls = Some(self.shard_urls)
            .filter(|urls| !urls.is_empty())
            .map(|shards| {
                shards
                    .iter()
                    .map(|urls| urls.split('|').map(str::to_owned).collect())
                    .collect()
            })
            .or(file.shard_urls);
        config.sharding = problems
            .check(sharding(self.shard.or(file.shard), shard_urls))
            .flatten();
        let max_records = self.batch_records.or(file.batch_records);
        if let Some(max_records) = problems.at_least_one("archive.batch_records", max_records) {
            config.batch.max_records = max_records;
        }
        if let Some(wait) = self.batch_wait_ms.or(file.batch_wait_ms) {
            config.batch.max_wait = Duration::from_millis(wait);
        }
        if let Some(reserve) = file.disk_reserve_mb {
            config.store.disk_reserve_bytes = reserve << 20;
        }
        if let Some(grace) = file.shutdown_grace_ms {
            config.shutdown_grace = Duration::from_millis(grace);
        }
        if let Some(every) = problems.at_least_one("archive.lag_check_ms", file.lag_check_ms) {
            config.lag_check = Duration::from_millis(every);
        }
        if let Some(above) = file.replay_bulk_admin_above {
            config.replay_bulk_admin_above = above;
        }
        if let Some(console) = file.console {
            config.console = console;
        }
        problems.check(
            crate::masking::Masking::new(&masking.json_paths)
                .map_err(|e| wrong("masking.json_paths", e.to_string())),
        );
        config.masking = masking;
        let common = CommonSections::new(kafka, tls, log, auth, topics);
        let http = self.http.or(file.http);
        self.common
            .layer(&mut config.common, common, http, &mut problems);
        problems.finish(config)
    }
}

/// The shard and its map, when a shard is configured; a map without a shard is refused
/// (it would be ignored, and the archive would hold every partition unannounced).
fn sharding(
    shard: Option<String>,
    urls: Option<Vec<Vec<String>>>,
) -> Result<Option<Sharding>, ConfigError> {
    let (shard, urls) = match (shard, urls) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(wrong(
                "archive.shard_urls",
                "a shard map is configured but no `shard`: give this archive's `shard = \"i/N\"`, \
                 or remove the map",
            ));
        }
        (Some(shard), urls) => (shard, urls.unwrap_or_default()),
    };
    let shard: Shard = shard.parse().map_err(|e| wrong("archive.shard", e))?;
    Sharding::new(shard, urls)
        .map(Some)
        .map_err(|e| wrong("archive.shard_urls", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags of an archive whose configuration file, in `dir`, holds `toml`.
    fn with_file(dir: &tempfile::TempDir, toml: &str) -> ArchiveArgs {
        let path = dir.path().join("retrace.toml");
        std::fs::write(&path, toml).unwrap();
        ArchiveArgs {
            common: CommonArgs {
                config: Some(path),
                ..CommonArgs::default()
            },
            ..ArchiveArgs::default()
        }
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = with_file(
            &dir,
            r#"
[kafka]
bootstrap = "file:9092"
properties = { "security.protocol" = "SASL_SSL" }

[archive]
topics = ["registrations"]
batch_records = 100
"#,
        );
        args.common.kafka_bootstrap = Some("flag:9092".into());
        args.common.kafka_properties = vec!["sasl.mechanism=PLAIN".into()];
        let config = args.resolve().unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "flag:9092");
        assert_eq!(config.kafka.properties.len(), 2);
        assert_eq!(
            config.topics,
            TopicSelection::Names(vec!["registrations".into()])
        );
        assert_eq!(config.batch.max_records, 100);
        assert_eq!(config.group_id, "retrace-archive");
    }

    #[test]
    fn auth_masking_and_the_bulk_threshold_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let args = with_file(
            &dir,
            r#"
[archive]
replay_bulk_admin_above = 20
console = false

[auth]
bootstrap_admin_sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
tokens_topic = "ops.tokens"

[masking]
json_paths = ["child.given_name", "*.phone"]
"#,
        );
        let config = args.resolve().unwrap();
        assert_eq!(config.replay_bulk_admin_above, 20);
        assert!(!config.console);
        assert!(config.auth.enabled);
        assert_eq!(config.auth.tokens_topic, "ops.tokens");
        assert_eq!(config.masking.json_paths.len(), 2);

        let defaults = ArchiveArgs::default().resolve().unwrap();
        assert!(
            defaults.auth.enabled,
            "authentication is on unless turned off"
        );
        assert_eq!(
            defaults.replay_bulk_admin_above,
            DEFAULT_REPLAY_BULK_ADMIN_ABOVE
        );
        assert!(defaults.console, "the console is served unless turned off");

        let args = with_file(&dir, "[auth]\nbootstrap_admin_sha256 = \"abc\"\n");
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("bootstrap_admin_sha256"), "{error}");
        let args = with_file(&dir, "[masking]\njson_paths = [\"child..name\"]\n");
        let error = args.resolve().unwrap_err().to_string();
        assert!(error.contains("child..name"), "{error}");
    }

    #[test]
    fn an_unknown_setting_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = with_file(&dir, "[archive]\nbatch_recs = 5\n")
            .resolve()
            .unwrap_err();
        assert!(error.to_string().contains("batch_recs"), "{error}");
    }

    #[test]
    fn a_replica_consumes_in_a_group_of_its_own_and_reads_the_replicated_topics() {
        let dir = tempfile::tempdir().unwrap();
        let replica = with_file(
            &dir,
            "[archive]\nreplica_id = \"zone-2\"\ntopics = [\"births\"]\n",
        )
        .resolve()
        .unwrap();
        assert_eq!(replica.consumer_group(), "retrace-archive.zone-2");
        assert_eq!(replica.replica(), "zone-2");
        assert_eq!(
            replica.topics.subscription(),
            ["births", "retrace.archive.changes", "retrace.audit"]
        );
        let grouped = with_file(&dir, "[archive]\nreplica_id = \"b\"\ngroup = \"mine\"\n")
            .resolve()
            .unwrap();
        assert_eq!(
            grouped.consumer_group(),
            "mine.b",
            "the configured group is the stem"
        );
        let sole = with_file(&dir, "").resolve().unwrap();
        assert_eq!(
            (sole.consumer_group().as_str(), sole.replica()),
            ("retrace-archive", "archive")
        );

        let error = with_file(&dir, "[archive]\nreplica_id = \"a b\"\n")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("archive.replica_id"), "{error}");
        let error = with_file(&dir, "[archive]\ntopic_pattern = \"births.*\"\n")
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(error.contains("retrace.archive.changes"), "{error}");
    }

    #[test]
    fn a_shard_consumes_in_a_group_of_its_own_and_knows_every_shard() {
        let dir = tempfile::tempdir().unwrap();
        let shard = with_file(
            &dir,
            "[archive]\nshard = \"1/2\"\nreplica_id = \"b\"\n\
             shard_urls = [[\"http://a:7070\"], [\"http://b:7070\", \"http://c:7070\"]]\n",
        )
        .resolve()
        .unwrap();
        assert_eq!(shard.consumer_group(), "retrace-archive.shard-1-of-2.b");
        let sharding = shard.sharding.unwrap();
        assert_eq!(sharding.shard.to_string(), "1/2");
        assert_eq!(sharding.urls[1].len(), 2);

        let mut flags = with_file(&dir, "");
        flags.shard = Some("0/2".into());
        flags.shard_urls = vec![
            "http://a:7070".into(),
            "http://b1:7070|http://b2:7070".into(),
        ];
        let from_flags = flags.resolve().unwrap().sharding.unwrap();
        assert_eq!(from_flags.urls[1], ["http://b1:7070", "http://b2:7070"]);

        for (toml, field) in [
            ("shard = \"2/2\"", "archive.shard"),
            (
                "shard = \"0/2\"\nshard_urls = [[\"http://a\"]]",
                "archive.shard_urls",
            ),
            ("shard_urls = [[\"http://a\"]]", "archive.shard_urls"),
        ] {
            let error = with_file(&dir, &format!("[archive]\n{toml}\n"))
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(error.contains(field), "{toml}: {error}");
        }
    }
}
