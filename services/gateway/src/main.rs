//! `retrace-gateway`: the HTTP gateway service.

use anyhow::Context;
use clap::Parser;
use retrace_gateway::GatewayArgs;
use tokio_util::sync::CancellationToken;

/// Publishes Retrace events and outcomes sent over HTTP.
#[derive(Parser)]
#[command(name = "retrace-gateway", version)]
struct Cli {
    #[command(flatten)]
    gateway: GatewayArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().gateway.resolve()?;
    retrace_telemetry::init_logging(config.log_format, &config.log_filter)?;
    let shutdown = CancellationToken::new();
    let gateway = retrace_gateway::run(config, shutdown.clone());
    tokio::pin!(gateway);
    tokio::select! {
        result = &mut gateway => return result.context("the gateway stopped"),
        () = wait_for_signal() => shutdown.cancel(),
    }
    gateway
        .await
        .context("the gateway stopped while shutting down")
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
