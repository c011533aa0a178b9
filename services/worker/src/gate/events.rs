//! Everything a gate reports about itself: one typed event per observable thing, each emitting
//! its log line and its metrics together. [`register_metrics`] registers a gate's series at
//! zero as the worker starts.

use metrics::{counter, gauge};
use retrace_telemetry::{InternalEvent, register};
use tracing::{info, warn};

use super::GateSpec;

/// Registers at zero the series of `queue`'s gate with `spec`'s signals. The gate reads as
/// closed until its first evaluation sets its state.
pub(crate) fn register_metrics(queue: &str, spec: &GateSpec) {
    let queue = [queue];
    register("retrace_worker_gate_open", &[("queue", &queue)]);
    register(
        "retrace_worker_gate_changes_total",
        &[("queue", &queue), ("open", &["true", "false"])],
    );
    let labels: Vec<String> = spec.signals.iter().map(|signal| signal.label()).collect();
    let signals: Vec<&str> = labels.iter().map(String::as_str).collect();
    for per_signal in [
        "retrace_worker_gate_signal",
        "retrace_worker_gate_signal_errors_total",
    ] {
        register(per_signal, &[("queue", &queue), ("signal", &signals)]);
    }
}

/// The gate opened or closed (or took its first state).
pub(crate) struct GateChanged<'a> {
    pub queue: &'a str,
    pub open: bool,
    pub reason: &'a str,
}

impl InternalEvent for GateChanged<'_> {
    fn emit(self) {
        if self.open {
            info!(queue = self.queue, reason = self.reason, "gate opened");
        } else {
            info!(queue = self.queue, reason = self.reason, "gate closed");
        }
        gauge!("retrace_worker_gate_open", "queue" => self.queue.to_owned()).set(if self.open {
            1.0
        } else {
            0.0
        });
        counter!(
            "retrace_worker_gate_changes_total",
            "queue" => self.queue.to_owned(),
            "open" => if self.open { "true" } else { "false" },
        )
        .increment(1);
    }
}

/// A signal was read; the gauge holds its latest reading (messages/s, messages, or seconds).
pub(crate) struct SignalRead<'a> {
    pub queue: &'a str,
    pub signal: &'a str,
    pub value: f64,
}

impl InternalEvent for SignalRead<'_> {
    fn emit(self) {
        gauge!(
            "retrace_worker_gate_signal",
            "queue" => self.queue.to_owned(),
            "signal" => self.signal.to_owned(),
        )
        .set(self.value);
    }
}

/// A signal could not be read; the gate keeps its previous reading of it.
pub(crate) struct SignalUnreadable<'a> {
    pub queue: &'a str,
    pub signal: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for SignalUnreadable<'_> {
    fn emit(self) {
        warn!(
            queue = self.queue,
            signal = self.signal,
            error = %self.error,
            "gate signal could not be read; keeping its previous reading"
        );
        counter!(
            "retrace_worker_gate_signal_errors_total",
            "queue" => self.queue.to_owned(),
            "signal" => self.signal.to_owned(),
        )
        .increment(1);
    }
}

/// The gate took a reloaded spec: its schedule, signals and thresholds apply from now, and
/// its new signals' series start at zero.
pub(crate) struct GateReconfigured<'a> {
    pub queue: &'a str,
    pub spec: &'a GateSpec,
}

impl InternalEvent for GateReconfigured<'_> {
    fn emit(self) {
        info!(
            queue = self.queue,
            "gate reconfigured: the reloaded schedule, signals and thresholds apply"
        );
        register_metrics(self.queue, self.spec);
    }
}

/// A reloaded spec's signals could not be set up: the gate keeps the spec it has.
pub(crate) struct GateNotReconfigured<'a> {
    pub queue: &'a str,
    pub error: &'a super::GateError,
}

impl InternalEvent for GateNotReconfigured<'_> {
    fn emit(self) {
        warn!(
            queue = self.queue,
            error = %self.error,
            "gate of queue {} keeps its previous settings: the reloaded signals cannot be set              up ({})",
            self.queue,
            self.error
        );
    }
}
