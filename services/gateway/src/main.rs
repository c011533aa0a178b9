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
    let args = Cli::parse().gateway;
    let reloader = args
        .common
        .clone()
        .reloader("gateway", move || args.clone().resolve())?;
    let config = &reloader.current().config;
    retrace_telemetry::init_logging_to(config.log_format, &config.log_filter, &config.log_sinks)?;
    retrace_config::warn_unknown_env_vars::<GatewayArgs>("retrace-gateway");
    let shutdown = CancellationToken::new();
    let deadline = config.shutdown_grace;
    let gateway = retrace_gateway::serve(reloader, shutdown.clone());
    retrace_telemetry::until_signalled(&shutdown, deadline, gateway)
        .await
        .context("the gateway stopped")
}
