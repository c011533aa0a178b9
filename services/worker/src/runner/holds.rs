//! Held heads: when each may go, when to look again, and deciding again on those released.

use std::time::{Instant, SystemTime};

use retrace_proto::JobPriority;
use tokio::task::JoinSet;

use super::dispatch::Decision;
use super::{Hold, QueueRunner, Settled, State};
use crate::gate::{Admission, AdmissionPolicy, GateState, admits};

impl QueueRunner {
    /// The earliest time something held or slowed must be looked at again.
    pub(super) fn next_wake(&self, state: &State) -> Option<Instant> {
        let now_sys = SystemTime::now();
        let now = Instant::now();
        let to_instant = |at: SystemTime| now + at.duration_since(now_sys).unwrap_or_default();
        state
            .waiting
            .values()
            .filter_map(|waiting| match waiting.hold? {
                Hold::Due(due) => Some(to_instant(due)),
                Hold::Gate { until, .. } => until.map(to_instant),
            })
            .chain(state.slowed_until)
            // Past, it no longer holds anything back (and waking for it would spin).
            .chain(state.next_start.filter(|at| *at > now))
            .min()
    }

    /// Releases the held heads that may go now, then pauses and resumes partitions to match.
    pub(super) fn reevaluate(&self, state: &mut State) {
        let now = SystemTime::now();
        if state
            .slowed_until
            .is_some_and(|until| until <= Instant::now())
        {
            state.slowed_until = None;
        }
        let gate = self.gate.state();
        let policy = self.shared.policy();
        for waiting in state.waiting.values_mut() {
            let still = waiting.hold.is_some_and(|hold| match hold {
                Hold::Due(due) => due > now,
                Hold::Gate {
                    priority, deadline, ..
                } => must_wait(&gate, priority, deadline, now, &policy).is_some(),
            });
            if !still {
                waiting.hold = None;
            }
        }
        self.reconcile(state);
    }

    /// Decides again on released heads, and the messages behind them, while jobs may start.
    pub(super) fn start_released(&self, state: &mut State, jobs: &mut JoinSet<Settled>) {
        while self.may_start(state, jobs) {
            let Some(tp) = state
                .waiting
                .iter()
                .find(|(tp, waiting)| waiting.hold.is_none() && !self.slowed(state, tp))
                .map(|(tp, _)| tp.clone())
            else {
                return;
            };
            let waiting = state.waiting.get_mut(&tp).expect("found above");
            let pending = waiting
                .messages
                .pop_front()
                .expect("a waiting partition has a message");
            let decided = self.decide(state, jobs, pending);
            let waiting = state.waiting.get_mut(&tp).expect("found above");
            match decided {
                Decision::Taken if waiting.messages.is_empty() => {
                    state.waiting.remove(&tp);
                    self.reconcile(state);
                }
                Decision::Taken => {}
                Decision::Wait(pending, hold) => {
                    waiting.messages.push_front(pending);
                    waiting.hold = Some(hold);
                }
            }
        }
    }
}

/// `None` when the job may start now; else when to ask again (`None` inside: only when the
/// gate changes).
pub(super) fn must_wait(
    gate: &GateState,
    priority: JobPriority,
    deadline: Option<SystemTime>,
    now: SystemTime,
    policy: &AdmissionPolicy,
) -> Option<Option<SystemTime>> {
    let stamp = |at: SystemTime| jiff::Timestamp::try_from(at).ok();
    let admission = admits(
        gate,
        priority,
        deadline.and_then(stamp),
        stamp(now).unwrap_or_else(jiff::Timestamp::now),
        policy,
    );
    match admission {
        Admission::Run { .. } => None,
        Admission::Wait { recheck_in, .. } => Some(recheck_in.map(|after| now + after)),
    }
}
