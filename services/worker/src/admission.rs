//! Whether a job may start now, given its queue's gate. The one call site of the gate's
//! decision, so the gate's own `admits` replaces [`admits`] here without touching the runner.

use std::time::{Duration, SystemTime};

use retrace_proto::JobPriority;

use crate::gate::GateState;

/// What the runner needs from a queue's configuration to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Bulk jobs wait until the gate has been open this long.
    pub bulk_after: Duration,
    /// A job whose deadline is this close runs whatever the gate says.
    pub deadline_margin: Duration,
}

/// The decision for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// Not now; look again when the gate changes, or at `until` (when the deadline becomes
    /// near, or bulk jobs may start).
    Wait {
        until: Option<SystemTime>,
    },
}

/// Urgent jobs always run; a near deadline runs; normal jobs run while the gate is open;
/// bulk jobs once it has been open `bulk_after`.
pub fn admits(
    state: &GateState,
    priority: JobPriority,
    deadline: Option<SystemTime>,
    now: SystemTime,
    policy: &AdmissionPolicy,
) -> Admission {
    if priority == JobPriority::Urgent {
        return Admission::Run;
    }
    let near_at = deadline.map(|d| d.checked_sub(policy.deadline_margin).unwrap_or(d));
    if near_at.is_some_and(|near| near <= now) {
        return Admission::Run;
    }
    let open = match priority {
        JobPriority::Bulk => state.open && state.open_for.is_some_and(|f| f >= policy.bulk_after),
        _ => state.open,
    };
    if open {
        return Admission::Run;
    }
    let bulk_at = match (priority, state.open, state.open_for) {
        (JobPriority::Bulk, true, Some(open_for)) => {
            Some(now + policy.bulk_after.saturating_sub(open_for))
        }
        _ => None,
    };
    let until = match (near_at, bulk_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Admission::Wait { until }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(open: bool, open_for: Option<Duration>) -> GateState {
        GateState {
            open,
            reason: String::new(),
            open_for,
        }
    }

    const POLICY: AdmissionPolicy = AdmissionPolicy {
        bulk_after: Duration::from_secs(600),
        deadline_margin: Duration::from_secs(60),
    };

    #[test]
    fn urgent_and_near_deadlines_bypass_a_closed_gate() {
        let now = SystemTime::now();
        let closed = state(false, None);
        assert_eq!(
            admits(&closed, JobPriority::Urgent, None, now, &POLICY),
            Admission::Run
        );
        let soon = now + Duration::from_secs(30);
        assert_eq!(
            admits(&closed, JobPriority::Normal, Some(soon), now, &POLICY),
            Admission::Run
        );
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            admits(&closed, JobPriority::Normal, Some(later), now, &POLICY),
            Admission::Wait {
                until: Some(later - Duration::from_secs(60))
            }
        );
    }

    #[test]
    fn bulk_waits_until_the_gate_has_been_open_a_while() {
        let now = SystemTime::now();
        let fresh = state(true, Some(Duration::from_secs(100)));
        assert_eq!(
            admits(&fresh, JobPriority::Normal, None, now, &POLICY),
            Admission::Run
        );
        assert_eq!(
            admits(&fresh, JobPriority::Bulk, None, now, &POLICY),
            Admission::Wait {
                until: Some(now + Duration::from_secs(500))
            }
        );
        let settled = state(true, Some(Duration::from_secs(700)));
        assert_eq!(
            admits(&settled, JobPriority::Bulk, None, now, &POLICY),
            Admission::Run
        );
    }
}
