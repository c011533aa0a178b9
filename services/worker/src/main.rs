//! `retrace-worker`: the off-peak worker service.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use retrace_worker::WorkerArgs;
use tokio_util::sync::CancellationToken;

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
    let reloader = args
        .common
        .clone()
        .reloader("worker", move || args.clone().resolve())?;
    let config = &reloader.current().config;
    retrace_telemetry::init_logging_to(config.log_format, &config.log_filter, &config.log_sinks)?;
    retrace_config::warn_unknown_env_vars::<WorkerArgs>("retrace-worker");
    let shutdown = CancellationToken::new();
    let deadline = config.shutdown_grace + FINAL_COMMIT;
    let worker = retrace_worker::serve(reloader, shutdown.clone());
    retrace_telemetry::until_signalled(&shutdown, deadline, worker)
        .await
        .context("the worker stopped")
}
