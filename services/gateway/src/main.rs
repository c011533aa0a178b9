//! `retrace-gateway`: the HTTP gateway service.

use anyhow::Context;
use clap::Parser;
use retrace_gateway::{GatewayArgs, GatewayConfig};
use retrace_service::run_binary;

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
    let common = args.common.clone();
    let resolve = move || args.clone().resolve();
    let grace = |config: &GatewayConfig| config.shutdown_grace;
    let stopped = run_binary::<GatewayArgs, anyhow::Error, _, _, _>(
        "gateway",
        &common,
        resolve,
        grace,
        retrace_gateway::serve,
    );
    stopped.await?.context("the gateway stopped")
}
