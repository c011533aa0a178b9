//! `retrace-archive`: the archiver service.

use anyhow::Context;
use clap::Parser;
use retrace_archive::ArchiveArgs;
use tokio_util::sync::CancellationToken;

/// Keeps every Kafka record in Retrace's archive.
#[derive(Parser)]
#[command(name = "retrace-archive", version)]
struct Cli {
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().archive.resolve()?;
    retrace_telemetry::init_logging(config.log_format, &config.log_filter)?;
    let shutdown = CancellationToken::new();
    let archive = retrace_archive::run(config, shutdown.clone());
    retrace_telemetry::until_signalled(&shutdown, archive)
        .await
        .context("the archive stopped")
}
