//! What the archive reports about incidents: each one that opens, reopens or resolves, as
//! a log line and metrics without a per-incident label (bounded cardinality).

use metrics::{counter, gauge};
use retrace_log_store::{IncidentChange, IncidentTransition};
use retrace_telemetry::{InternalEvent, register};
use tracing::{info, warn};

use crate::trace::rfc3339;

const OPENED: &str = "opened";
const REOPENED: &str = "reopened";
const RESOLVED: &str = "resolved";

pub(super) fn register_metrics() {
    register(
        "retrace_incidents_transitions_total",
        &[("transition", &[OPENED, REOPENED, RESOLVED])],
    );
    register("retrace_incidents_open", &[]);
}

/// The incidents open as the archive starts, counted from the index: the gauge's base,
/// which each [`IncidentChanged`] then moves.
pub(crate) struct IncidentsOpen {
    pub open: u64,
}

impl InternalEvent for IncidentsOpen {
    fn emit(self) {
        info!(open = self.open, "incidents open at start");
        gauge!("retrace_incidents_open").set(self.open as f64);
    }
}

/// An incident opened, reopened or resolved in a batch.
pub(crate) struct IncidentChanged<'a> {
    pub change: &'a IncidentChange,
}

impl InternalEvent for IncidentChanged<'_> {
    fn emit(self) {
        let incident = &self.change.incident;
        let cause = incident.cause.clone().unwrap_or_default();
        let transition = match self.change.transition {
            IncidentTransition::Opened => OPENED,
            IncidentTransition::Reopened => REOPENED,
            IncidentTransition::Resolved => RESOLVED,
        };
        // The cause text and error are a consumer's words, which may name people: they are
        // left to the API, which masks them by role; the log names the incident and step.
        match self.change.transition {
            IncidentTransition::Opened | IncidentTransition::Reopened => {
                warn!(
                    incident_id = cause.id,
                    topic = cause.topic,
                    event_type = cause.event_type,
                    consumer = cause.consumer,
                    failing = incident.failing,
                    since = rfc3339(incident.opened_at_ms),
                    "incident {transition}: `retrace incidents show {}`",
                    cause.id
                );
                gauge!("retrace_incidents_open").increment(1.0);
            }
            IncidentTransition::Resolved => {
                info!(
                    incident_id = cause.id,
                    topic = cause.topic,
                    event_type = cause.event_type,
                    consumer = cause.consumer,
                    transactions = incident.transactions,
                    resolved_at = incident.resolved_at_ms.map(rfc3339),
                    "incident resolved"
                );
                gauge!("retrace_incidents_open").decrement(1.0);
            }
        }
        counter!("retrace_incidents_transitions_total", "transition" => transition).increment(1);
    }
}
