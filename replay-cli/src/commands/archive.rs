//! `retrace archive compare URL URL`: proves two archive replicas hold the same records, or
//! names the first partition and offset where they differ, from their partition digests.
//! `retrace archive split`: a stopped shard's archive split in two, offline, when the number
//! of shards doubles.

use std::collections::BTreeMap;
use std::path::PathBuf;

use retrace_api::{DigestPartition, PartitionDigestView};
use retrace_archive::Shard;
use retrace_log_store::{SplitShard, StoreError, StoreOptions};
use retrace_proto::{ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC};

use super::client::{Client, Request, Server};
use super::print;
use crate::Failure;

#[derive(clap::Args)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(clap::Subcommand)]
enum ArchiveCommand {
    /// Compare two archive replicas, partition by partition, over the offsets both hold:
    /// exit 0 when they hold the same records, 1 naming the first differing offset of each
    /// partition that differs.
    Compare(CompareArgs),
    /// Split a stopped shard's archive (--shard i/N) into the archives of shards i/2N and
    /// (i+N)/2N, which own its partitions once the number of shards doubles. Offline, on the
    /// shard's host. Unlike `retrace rebuild` of the new shards, everything it holds stays:
    /// records Kafka no longer retains, erasures, replays and the audit trail.
    Split(SplitArgs),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// The first replica's base URL, e.g. http://archive-a:7070.
    first: String,
    /// The second replica's base URL.
    second: String,
}

#[derive(clap::Args)]
struct SplitArgs {
    /// The stopped shard's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The shard it is, as its `[archive] shard` says: i/N.
    #[arg(long, value_name = "i/N")]
    shard: Shard,
    /// Where to write shard i/2N: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    low: PathBuf,
    /// Where to write shard (i+N)/2N: a new or empty directory.
    #[arg(long, value_name = "DIR")]
    high: PathBuf,
}

pub async fn run(server: &Server, args: ArchiveArgs) -> Result<(), Failure> {
    match args.command {
        ArchiveCommand::Compare(args) => compare(server, &args).await,
        ArchiveCommand::Split(args) => split(&args),
    }
}

/// The topics every shard reads whole.
const UNSHARDED: [&str; 2] = [ARCHIVE_CHANGES_TOPIC, AUDIT_TOPIC];

fn split(args: &SplitArgs) -> Result<(), Failure> {
    let options = StoreOptions {
        incidents: Some(std::sync::Arc::new(retrace_archive::FingerprintRule)),
        ..StoreOptions::default()
    };
    let Shard { index, count } = args.shard;
    let summary = retrace_log_store::split(
        &args.data_dir,
        index,
        count,
        &UNSHARDED,
        [&args.low, &args.high],
        &options,
    )
    .map_err(|error| match error {
        StoreError::SplitRefused { .. } => Failure::Usage(error.to_string()),
        error => Failure::Server(error.to_string()),
    })?;
    let mut report = format!(
        "split shard {} ({}) into two:\n",
        args.shard,
        args.data_dir.display()
    );
    for shard in &summary.shards {
        report.push_str(&new_shard(shard));
    }
    let [low, high] = summary.shards.map(|s| format!("{}/{}", s.index, s.count));
    report.push_str(&format!(
        "start shards {low} and {high} on these directories, and give every shard the new \
         shard map; keep {} until both answer\n",
        args.data_dir.display()
    ));
    print(&report)
}

/// One new shard: where it is, its records, and its partitions topic by topic.
fn new_shard(shard: &SplitShard) -> String {
    let mut partitions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for position in &shard.positions {
        if !UNSHARDED.contains(&position.topic.as_str()) {
            let topic = partitions.entry(&position.topic).or_default();
            topic.push(position.partition.to_string());
        }
    }
    let count: usize = partitions.values().map(Vec::len).sum();
    let mut text = format!(
        "  shard {}/{} in {}: {}, {count} partition{}\n",
        shard.index,
        shard.count,
        shard.path.display(),
        records(shard.records),
        if count == 1 { "" } else { "s" }
    );
    for (topic, numbers) in &partitions {
        text.push_str(&format!("    {topic}: {}\n", numbers.join(", ")));
    }
    let whole: Vec<&str> = UNSHARDED
        .into_iter()
        .filter(|topic| shard.positions.iter().any(|p| p.topic == *topic))
        .collect();
    if !whole.is_empty() {
        text.push_str(&format!(
            "    whole, as on every shard: {}\n",
            whole.join(", ")
        ));
    }
    text
}

/// One replica: its client, and the URL it is named by.
struct Replica {
    client: Client,
    url: String,
}

impl Replica {
    fn new(server: &Server, url: &str) -> Result<Self, Failure> {
        if url.contains(',') {
            return Err(Failure::Usage(format!(
                "{url:?} lists several servers: `retrace archive compare` takes one URL per \
                 replica"
            )));
        }
        let server = Server {
            url: url.to_owned(),
            dev_json: None,
            ..server.clone()
        };
        Ok(Replica {
            client: Client::new(&server)?,
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// Every partition it holds records of, with its next offset.
    async fn partitions(&self) -> Result<BTreeMap<(String, i32), i64>, Failure> {
        let partitions: Vec<DigestPartition> =
            self.client.send(Request::get(&["v1", "digests"])).await?;
        Ok(partitions
            .into_iter()
            .map(|p| ((p.topic, p.partition), p.next_offset))
            .collect())
    }

    async fn digest(
        &self,
        (topic, partition): &(String, i32),
        until: i64,
    ) -> Result<PartitionDigestView, Failure> {
        let partition = partition.to_string();
        let request =
            Request::get(&["v1", "digests", topic, &partition]).query("until", Some(until));
        self.client.send(request).await
    }
}

async fn compare(server: &Server, args: &CompareArgs) -> Result<(), Failure> {
    let one = Replica::new(server, &args.first)?;
    let other = Replica::new(server, &args.second)?;
    let (held_by_one, held_by_other) = futures::try_join!(one.partitions(), other.partitions())?;
    let mut all = held_by_one.clone();
    all.extend(held_by_other.iter().map(|(key, next)| (key.clone(), *next)));

    let mut report = String::new();
    let mut compared = 0;
    let mut differences = Vec::new();
    for key in all.keys() {
        let (topic, partition) = key;
        let ends = (held_by_one.get(key), held_by_other.get(key));
        let bound = *ends.0.unwrap_or(&0).min(ends.1.unwrap_or(&0));
        if bound == 0 {
            let holder = if ends.0.is_some() {
                &one.url
            } else {
                &other.url
            };
            report.push_str(&format!(
                "{topic}/{partition}: nothing to compare yet, only {holder} holds records of it\n"
            ));
            continue;
        }
        let digests = digests(&one, &other, key, bound).await?;
        if digests.0.digest == digests.1.digest {
            compared += digests.0.records;
            report.push_str(&format!(
                "{topic}/{partition}: {} equal (offsets below {bound})\n",
                records(digests.0.records)
            ));
            continue;
        }
        let difference = first_difference(&one, &other, key, bound, digests).await?;
        report.push_str(&format!(
            "{topic}/{partition}: differs at offset {}\n",
            difference.offset
        ));
        differences.push(difference);
    }
    let partitions = all.len();
    match differences.first() {
        None => {
            report.push_str(&format!(
                "{} compared in {partitions} partitions: {} and {} hold the same\n",
                records(compared),
                one.url,
                other.url
            ));
            print(&report)
        }
        Some(first) => {
            print(&report)?;
            let more = match differences.len() {
                1 => String::new(),
                n => format!(" ({} more partitions differ, listed above)", n - 1),
            };
            Err(Failure::Invalid(format!(
                "{}/{} at offset {} differs: {}{more}",
                first.topic, first.partition, first.offset, first.what
            )))
        }
    }
}

/// Where two replicas first differ in a partition, and how.
struct Difference {
    topic: String,
    partition: i32,
    offset: i64,
    what: String,
}

/// Both replicas' digests of the partition below `until`, asked at the same time.
async fn digests(
    one: &Replica,
    other: &Replica,
    key: &(String, i32),
    until: i64,
) -> Result<(PartitionDigestView, PartitionDigestView), Failure> {
    let both = futures::try_join!(one.digest(key, until), other.digest(key, until))?;
    if both.0.algorithm != both.1.algorithm {
        return Err(Failure::Server(format!(
            "{} computes digests as {} and {} as {}: run the same Retrace version on both to \
             compare them",
            one.url, both.0.algorithm, other.url, both.1.algorithm
        )));
    }
    Ok(both)
}

/// The first offset below `bound` at which the replicas differ (the digests below `bound`
/// do), narrowed down by halving: below `equal` they agree, below `differ` they do not.
async fn first_difference(
    one: &Replica,
    other: &Replica,
    key: &(String, i32),
    bound: i64,
    mut at_differ: (PartitionDigestView, PartitionDigestView),
) -> Result<Difference, Failure> {
    let (mut equal, mut differ) = (0, bound);
    while differ - equal > 1 {
        let middle = equal + (differ - equal) / 2;
        let found = digests(one, other, key, middle).await?;
        if found.0.digest == found.1.digest {
            equal = middle;
        } else {
            (differ, at_differ) = (middle, found);
        }
    }
    let offset = differ - 1;
    let holds = |digest: &PartitionDigestView| digest.last_offset == Some(offset);
    let what = match (holds(&at_differ.0), holds(&at_differ.1)) {
        (true, false) => format!("only {} holds a record", one.url),
        (false, true) => format!("only {} holds a record", other.url),
        _ => format!(
            "{} and {} hold different records there (key, value, headers, timestamp or \
             erasure)",
            one.url, other.url
        ),
    };
    Ok(Difference {
        topic: key.0.clone(),
        partition: key.1,
        offset,
        what,
    })
}

fn records(count: u64) -> String {
    match count {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    }
}
