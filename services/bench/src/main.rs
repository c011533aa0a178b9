//! `retrace-bench <area>`: Retrace's benchmarks. Each prints `key=value` lines, its headline
//! figure last, measured against a baseline run in the same process where one exists.

mod archive;
mod auth;
mod gateway;
mod incidents;
mod instructions;
mod peers;
mod plot;
mod records;
mod served;
mod shards;
mod soak;
mod trace;
mod worker;

use clap::Parser;
use clap::builder::ArgPredicate;

/// The archive's allocator, so the store is measured as the services run it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "retrace-bench")]
enum Area {
    /// Archive throughput against its two ceilings: raw Kafka consumption and raw storage.
    Archive(archive::Options),
    /// HTTP gateway throughput, single-event and batched, against direct SDK publishing.
    Gateway(gateway::Options),
    /// Trace latency over HTTP in an archive of a million messages, against the store read.
    Trace(trace::Options),
    /// The incident index in an archive of 10 M messages with 1 M failed transactions across
    /// 50 causes: listing p99 over HTTP, and ingest with the index against without.
    Incidents(incidents::Options),
    /// Instructions per archived message and per trace lookup, counted by callgrind, against
    /// bench/baseline.toml: a rise of more than 10% fails.
    Instructions(instructions::Options),
    /// Retrace beside PostgreSQL (a JDBC sink's table) on the same messages, in one run:
    /// ingest rate and trace p99 of each, and their ratios.
    Peers(peers::Options),
    /// Archive shards: ingest with two shards against one on the same topic, and trace p99
    /// through the fan-out against one archive holding everything.
    Shards(shards::Options),
    /// `retrace dev --demo` for a duration at a rate, with replays: lost, duplicates, RSS,
    /// disk growth, trace p99 per minute.
    Soak(soak::Options),
    /// User p99 during a peak with the off-peak gate off and on; no-op job throughput.
    Worker(worker::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Area::parse() {
        Area::Archive(options) => archive::run(options).await,
        Area::Gateway(options) => gateway::run(options).await,
        Area::Trace(options) => trace::run(options).await,
        Area::Incidents(options) => incidents::run(options).await,
        Area::Instructions(options) => instructions::run(options).await,
        Area::Peers(options) => peers::run(options).await,
        Area::Shards(options) => shards::run(options).await,
        Area::Soak(options) => soak::run(options).await,
        Area::Worker(options) => worker::run(options).await,
    }
}

/// An option's default under `--smoke` (`default_value_ifs = smoke("2000")` beside its
/// `default_value_t`): a check that every phase runs, small enough to take seconds.
fn smoke(value: &'static str) -> [(&'static str, ArgPredicate, &'static str); 1] {
    [("smoke", ArgPredicate::IsPresent, value)]
}
