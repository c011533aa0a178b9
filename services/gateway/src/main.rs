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
    retrace_config::warn_unknown_env_vars::<GatewayArgs>("retrace-gateway");
    let shutdown = CancellationToken::new();
    let deadline = config.shutdown_grace;
    let gateway = retrace_gateway::run(config, shutdown.clone());
    retrace_telemetry::until_signalled(&shutdown, deadline, gateway)
        .await
        .context("the gateway stopped")
}
