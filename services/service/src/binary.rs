//! What every service's binary (`retrace-<service>`) does around its service: configuration,
//! logging, and running until it stops or a signal stops it.

use std::future::Future;
use std::time::Duration;

use retrace_telemetry::TelemetryError;
use tokio_util::sync::CancellationToken;

use crate::host::ServiceConfig;
use crate::{CommonArgs, ConfigError, Reloader, warn_unknown_env_vars};

/// Runs `service` as its binary does: the reloader of its configuration (`resolve` layers
/// defaults, the file `args` name, the env and the flags, again at each reload), logging as
/// that configuration says, a warning for each `RETRACE_*` variable that none of `A`'s flags
/// reads; then `serve` until it stops, or a shutdown signal stops it within `grace` of the
/// configuration. `Err` (an `S`, the binary's error) if the service could not start, else
/// how it stopped.
pub async fn run_binary<A, S, C, E, F>(
    service: &'static str,
    args: &CommonArgs,
    resolve: impl Fn() -> Result<C, ConfigError> + Send + Sync + 'static,
    grace: impl FnOnce(&C) -> Duration,
    serve: impl FnOnce(Reloader<C>, CancellationToken) -> F,
) -> Result<Result<(), E>, S>
where
    A: clap::Args,
    S: From<ConfigError> + From<TelemetryError>,
    C: ServiceConfig,
    F: Future<Output = Result<(), E>>,
{
    let reloader = args.reloader(service, resolve)?;
    let config = &reloader.current().config;
    retrace_telemetry::init_logging_to(config.log_format, &config.log_filter, &config.log_sinks)?;
    warn_unknown_env_vars::<A>(&format!("retrace-{service}"));
    let shutdown = CancellationToken::new();
    let deadline = grace(config);
    let service = serve(reloader, shutdown.clone());
    Ok(retrace_telemetry::until_signalled(&shutdown, deadline, service).await)
}
