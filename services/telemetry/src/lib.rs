//! The plumbing every Retrace service shares: logging, metrics, the health endpoint, and
//! shutdown on a signal.
//!
//! Convention (after Vector's `internal_events`): each thing worth observing is a small typed
//! event implementing [`InternalEvent`], which emits its log line and its metrics together,
//! so names stay consistent and every signal is greppable from one place per crate
//! (`events.rs`).
//!
//! Metrics say what they are, from the start. docs/metrics.md, the guide's table of every
//! metric (name, kind, labels, meaning), is compiled in ([`documented_metrics`]): the
//! recorder gives each metric its meaning as `# HELP`, so help and docs are one text and
//! cannot drift. Each crate's `events.rs` registers its series at zero as the service starts
//! ([`register`], checked against the same rows): every metric without labels, and labelled
//! ones for the values known then (kinds, reasons, statuses, the configured topics and
//! queues), so `rate()` sees the first increment and an alert on a series can fire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio_util::sync::CancellationToken;

mod logging;
#[cfg(test)]
mod logging_tests;

pub use logging::{Category, FileSink, LogSink, LogSinks, Rotation};

mod catalogue;
mod events;

pub use catalogue::{DocumentedMetric, MetricKind, documented, documented_metrics, register};

/// Something worth observing: emits its log line and its metrics in one place.
pub trait InternalEvent {
    fn emit(self);
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `text` when stderr is a terminal (a person watching), else `json`.
    #[default]
    Auto,
    /// One JSON object a line, for log collectors.
    Json,
    /// Human-readable, for a terminal.
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(TelemetryError::UnknownLogFormat(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log format {0:?} is not known: use `auto`, `json` or `text`")]
    UnknownLogFormat(String),
    #[error("log filter {filter:?} is not valid ({reason}); example: `info,retrace_archive=debug`")]
    BadFilter { filter: String, reason: String },
    #[error(
        "cannot write logs to {path}: {reason}; check that its directory can be created and written"
    )]
    LogFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("logging was already set up in this process")]
    AlreadyInitialised,
}

/// Sends `tracing` events to stderr in `format`, filtered by `filter` (`RUST_LOG` syntax).
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    init_logging_to(format, filter, &LogSinks::default())
}

/// Sends `tracing` events filtered by `filter` to each category's sink in `sinks`, in
/// `format`, each line with its `category`.
pub fn init_logging_to(
    format: LogFormat,
    filter: &str,
    sinks: &LogSinks,
) -> Result<(), TelemetryError> {
    use tracing_subscriber::util::SubscriberInitExt;
    logging::subscriber(format, filter, sinks)?
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialised)
}

/// The process's Prometheus recorder, installed on first use, every documented metric
/// described. Every `metrics` counter and histogram recorded in the process is rendered by it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = recorder();
        let handle = recorder.handle();
        // A host process embedding Retrace may have installed its own recorder; ours then
        // renders nothing, and metrics go to the host's, which is what the host wants.
        if metrics::set_global_recorder(recorder).is_err() {
            eprintln!("retrace: a metrics recorder was already installed; /metrics will be empty");
        }
        handle
    })
}

/// A Prometheus recorder with Retrace's buckets and help texts, not installed.
fn recorder() -> PrometheusRecorder {
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .expect("the bucket list is not empty")
        .build_recorder();
    catalogue::describe(&recorder);
    recorder
}

/// `GET /metrics` in Prometheus text format.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(|| async { prometheus().render() }))
}

/// `GET /healthz`: 200 while every flag in `ready` is set, 503 otherwise. A process serving
/// several services on one address passes one flag per service.
pub fn health_router(ready: Vec<Arc<AtomicBool>>) -> Router {
    Router::new().route(
        "/healthz",
        get(move || {
            let ready = ready.iter().all(|flag| flag.load(Ordering::Acquire));
            async move {
                if ready {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
        }),
    )
}

/// Resolves on SIGTERM (orchestrators) or Ctrl-C (people).
pub async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler does not fail");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Runs `service` until it stops by itself, or a shutdown signal cancels `shutdown`; then
/// waits for it to drain, for at most `deadline`. Past it, the process exits with status 1
/// at once (an orchestrator's grace period ends in SIGKILL anyway: better to stop on our own
/// terms, having said why), without running destructors, which could block on a broker that
/// does not answer.
pub async fn until_signalled<T>(
    shutdown: &CancellationToken,
    deadline: std::time::Duration,
    service: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(service);
    tokio::select! {
        result = &mut service => return result,
        () = shutdown_signal() => shutdown.cancel(),
    }
    match tokio::time::timeout(deadline, service).await {
        Ok(result) => result,
        Err(_) => {
            events::DrainDeadlinePassed { deadline }.emit();
            std::process::exit(1)
        }
    }
}
