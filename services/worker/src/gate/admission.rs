//! Whether one job runs now, given its gate: urgent jobs bypass the gate, a job whose deadline
//! is near runs regardless, bulk jobs wait until the gate has been open a while.

use std::time::Duration;

use jiff::Timestamp;
use retrace_proto::JobPriority;

use super::GateState;
use super::format;

/// A queue's admission rules (`deadline_margin_ms` and `bulk_after_ms` in its gate section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// A job whose deadline is within this runs whatever the gate says.
    pub deadline_margin: Duration,
    /// Bulk jobs run only once the gate has been open this long.
    pub bulk_after: Duration,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        AdmissionPolicy {
            deadline_margin: Duration::from_secs(5 * 60),
            bulk_after: Duration::from_secs(10 * 60),
        }
    }
}

/// The verdict on one job, with the reason shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Run {
        reason: String,
    },
    Wait {
        reason: String,
        /// When asking again could change the answer without the gate changing (a bulk job's
        /// wait for `bulk_after`, a deadline coming within its margin); `None`: only when the
        /// gate changes.
        recheck_in: Option<Duration>,
    },
}

impl Admission {
    pub fn runs(&self) -> bool {
        matches!(self, Admission::Run { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Admission::Run { reason } | Admission::Wait { reason, .. } => reason,
        }
    }
}

/// Whether a job of `priority` with `deadline` runs at `now` under `state`:
/// - urgent: always ("urgent: bypasses the gate");
/// - deadline within `deadline_margin` (or past): runs ("deadline in 4m: runs regardless of
///   the gate");
/// - gate closed: waits, with the gate's reason;
/// - normal (or unspecified): runs while the gate is open;
/// - bulk: runs once the gate has been open `bulk_after` ("bulk waits until the gate has
///   been open 10m").
pub fn admits(
    state: &GateState,
    priority: JobPriority,
    deadline: Option<Timestamp>,
    now: Timestamp,
    policy: &AdmissionPolicy,
) -> Admission {
    if priority == JobPriority::Urgent {
        return Admission::Run {
            reason: "urgent: bypasses the gate".to_owned(),
        };
    }
    // Until when the deadline is far enough away not to matter yet.
    let mut deadline_near_in = None;
    if let Some(deadline) = deadline {
        let left = deadline.duration_since(now);
        match Duration::try_from(left) {
            Err(_) => {
                let ago = Duration::try_from(-left).unwrap_or_default();
                return Admission::Run {
                    reason: format!(
                        "deadline passed {} ago: runs regardless of the gate",
                        format::duration(ago)
                    ),
                };
            }
            Ok(left) if left <= policy.deadline_margin => {
                return Admission::Run {
                    reason: format!(
                        "deadline in {}: runs regardless of the gate",
                        format::duration(left)
                    ),
                };
            }
            Ok(left) => deadline_near_in = Some(left - policy.deadline_margin),
        }
    }
    if !state.open {
        return Admission::Wait {
            reason: format!("gate closed: {}", state.reason),
            recheck_in: deadline_near_in,
        };
    }
    if priority != JobPriority::Bulk {
        return Admission::Run {
            reason: "gate open".to_owned(),
        };
    }
    let open_for = state.open_for.unwrap_or_default();
    if open_for == Duration::MAX {
        return Admission::Run {
            reason: "bulk: gate always open".to_owned(),
        };
    }
    if open_for >= policy.bulk_after {
        return Admission::Run {
            reason: format!("bulk: gate open for {}", format::duration(open_for)),
        };
    }
    let bulk_in = policy.bulk_after - open_for;
    Admission::Wait {
        reason: format!(
            "bulk waits until the gate has been open {}",
            format::duration(policy.bulk_after)
        ),
        recheck_in: Some(deadline_near_in.map_or(bulk_in, |near| near.min(bulk_in))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn policy() -> AdmissionPolicy {
        AdmissionPolicy {
            deadline_margin: 5 * MIN,
            bulk_after: 10 * MIN,
        }
    }

    fn open_for(open_for: Duration) -> GateState {
        GateState {
            open: true,
            reason: "open: inside window, all signals below thresholds".into(),
            open_for: Some(open_for),
        }
    }

    fn closed() -> GateState {
        GateState {
            open: false,
            reason: "outside window until 19:00".into(),
            open_for: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn in_minutes(minutes: i64) -> Option<Timestamp> {
        Some(now() + jiff::SignedDuration::from_mins(minutes))
    }

    #[test]
    fn urgent_always_runs() {
        for state in [closed(), open_for(Duration::ZERO)] {
            let admission = admits(&state, JobPriority::Urgent, None, now(), &policy());
            assert_eq!(
                admission,
                Admission::Run {
                    reason: "urgent: bypasses the gate".into()
                }
            );
        }
    }

    #[test]
    fn a_near_or_past_deadline_runs_through_a_closed_gate() {
        for priority in [
            JobPriority::Normal,
            JobPriority::Bulk,
            JobPriority::Unspecified,
        ] {
            let admission = admits(&closed(), priority, in_minutes(4), now(), &policy());
            assert_eq!(
                admission.reason(),
                "deadline in 4m: runs regardless of the gate"
            );
            assert!(admission.runs());
            let admission = admits(&closed(), priority, in_minutes(5), now(), &policy());
            assert!(admission.runs(), "exactly at the margin runs");
            let admission = admits(&closed(), priority, in_minutes(-2), now(), &policy());
            assert_eq!(
                admission.reason(),
                "deadline passed 2m ago: runs regardless of the gate"
            );
        }
        // A bulk job with a near deadline does not wait for bulk_after either.
        let admission = admits(
            &open_for(Duration::ZERO),
            JobPriority::Bulk,
            in_minutes(3),
            now(),
            &policy(),
        );
        assert!(admission.runs());
    }

    #[test]
    fn a_closed_gate_holds_normal_and_bulk_with_its_reason() {
        for priority in [
            JobPriority::Normal,
            JobPriority::Bulk,
            JobPriority::Unspecified,
        ] {
            assert_eq!(
                admits(&closed(), priority, None, now(), &policy()),
                Admission::Wait {
                    reason: "gate closed: outside window until 19:00".into(),
                    recheck_in: None
                }
            );
            // A far deadline: ask again when it comes within the margin.
            assert_eq!(
                admits(&closed(), priority, in_minutes(65), now(), &policy()),
                Admission::Wait {
                    reason: "gate closed: outside window until 19:00".into(),
                    recheck_in: Some(60 * MIN)
                }
            );
        }
    }

    #[test]
    fn normal_runs_as_soon_as_the_gate_opens() {
        for priority in [JobPriority::Normal, JobPriority::Unspecified] {
            let admission = admits(&open_for(Duration::ZERO), priority, None, now(), &policy());
            assert_eq!(
                admission,
                Admission::Run {
                    reason: "gate open".into()
                }
            );
        }
    }

    #[test]
    fn bulk_waits_until_the_gate_has_been_open_a_while() {
        assert_eq!(
            admits(
                &open_for(4 * MIN),
                JobPriority::Bulk,
                None,
                now(),
                &policy()
            ),
            Admission::Wait {
                reason: "bulk waits until the gate has been open 10m".into(),
                recheck_in: Some(6 * MIN)
            }
        );
        assert_eq!(
            admits(
                &open_for(4 * MIN),
                JobPriority::Bulk,
                in_minutes(7),
                now(),
                &policy()
            ),
            Admission::Wait {
                reason: "bulk waits until the gate has been open 10m".into(),
                recheck_in: Some(2 * MIN)
            }
        );
        assert_eq!(
            admits(
                &open_for(10 * MIN),
                JobPriority::Bulk,
                None,
                now(),
                &policy()
            ),
            Admission::Run {
                reason: "bulk: gate open for 10m".into()
            }
        );
        let always = super::super::GateHandle::always_open().state();
        assert_eq!(
            admits(&always, JobPriority::Bulk, None, now(), &policy()),
            Admission::Run {
                reason: "bulk: gate always open".into()
            }
        );
    }
}
