//! `retrace-archive`: the archiver service; `retrace-archive compact` rewrites a stopped
//! archive so that erased payloads leave the disk.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use retrace_archive::{ArchiveArgs, ArchiveConfig};
use retrace_log_store::StoreOptions;
use retrace_service::run_binary;

/// fjall's memtables and the records' buffers allocate and free per key; glibc's malloc
/// took a fifth of the ingest's CPU (docs/benchmarks.md, "What bounds the ingest").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps every Kafka record in Retrace's archive.
#[derive(Parser)]
#[command(
    name = "retrace-archive",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Rewrites a stopped archive into a fresh copy holding only live data, so nothing
    /// overwritten or erased survives in any file under the data directory. Stop the archive
    /// service first (the store refuses a second opener).
    Compact {
        /// The archive's directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Compact { data_dir }) = cli.command {
        return compact(data_dir);
    }
    let args = cli.archive;
    let common = args.common.clone();
    let resolve = move || args.clone().resolve();
    let grace = |config: &ArchiveConfig| config.shutdown_grace;
    let stopped = run_binary::<ArchiveArgs, anyhow::Error, _, _, _>(
        "archive",
        &common,
        resolve,
        grace,
        retrace_archive::serve,
    );
    stopped.await?.context("the archive stopped")
}

fn compact(data_dir: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(
        data_dir.is_dir(),
        "{} is not an archive directory; pass the archive's --data-dir",
        data_dir.display()
    );
    let summary = retrace_log_store::compact(&data_dir, &StoreOptions::default())
        .with_context(|| format!("cannot compact the archive at {}", data_dir.display()))?;
    println!(
        "compacted {}: {} entries, {} bytes before, {} bytes after",
        data_dir.display(),
        summary.entries,
        summary.bytes_before,
        summary.bytes_after
    );
    Ok(())
}
