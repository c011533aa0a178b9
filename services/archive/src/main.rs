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
    tokio::pin!(archive);
    tokio::select! {
        result = &mut archive => return result.context("the archive stopped"),
        () = wait_for_signal() => shutdown.cancel(),
    }
    archive
        .await
        .context("the archive stopped while shutting down")
}

/// SIGTERM (orchestrators) or Ctrl-C (people).
async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler does not fail");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
