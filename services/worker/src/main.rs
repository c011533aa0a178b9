//! `retrace-worker`: the off-peak worker service.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use retrace_service::run_binary;
use retrace_worker::{WorkerArgs, WorkerConfig};

/// After the jobs' grace: the final commit and leaving the group.
const FINAL_COMMIT: Duration = Duration::from_secs(5);

/// Runs queued jobs when the system is quiet, with retries, dead-letters and redrive.
#[derive(Parser)]
#[command(name = "retrace-worker", version)]
struct Cli {
    #[command(flatten)]
    worker: WorkerArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Cli::parse().worker;
    let common = args.common.clone();
    let resolve = move || args.clone().resolve();
    let grace = |config: &WorkerConfig| config.shutdown_grace + FINAL_COMMIT;
    let stopped = run_binary::<WorkerArgs, anyhow::Error, _, _, _>(
        "worker",
        &common,
        resolve,
        grace,
        retrace_worker::serve,
    );
    stopped.await?.context("the worker stopped")
}
