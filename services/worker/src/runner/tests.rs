//! The runner's bookkeeping across rebalances, as the rebalance log hands it changes.

use std::collections::VecDeque;

use super::{Hold, Lane, Pending, RawCopy, State, Tp, Waiting};

fn tp(partition: i32) -> Tp {
    ("jobs.retry".to_owned(), partition)
}

/// Consumes `offset` of `partition` and starts its job.
fn start(state: &mut State, partition: i32, offset: i64) -> super::Ticket {
    let ticket = state
        .assignments
        .ticket(tp(partition), offset)
        .expect("the partition is assigned");
    state.assignments.started(&ticket);
    ticket
}

/// Holds `offset` of `partition` at its head, its partition paused, as the runner does for
/// a retry not yet due.
fn hold(state: &mut State, partition: i32, offset: i64) {
    let ticket = state
        .assignments
        .ticket(tp(partition), offset)
        .expect("the partition is assigned");
    let pending = Pending {
        ticket,
        lane: Lane::Retry,
        raw: RawCopy {
            key: None,
            value: None,
            headers: Vec::new(),
        },
    };
    let waiting = Waiting {
        hold: Some(Hold::Due(std::time::SystemTime::now())),
        messages: VecDeque::from([pending]),
    };
    state.waiting.insert(tp(partition), waiting);
    state.paused.insert(tp(partition));
}

#[test]
fn a_job_from_before_a_rebalance_never_moves_the_new_commit_point() {
    let mut state = State::default();
    state.rebalanced(vec![(true, vec![tp(0)])]);
    let old: Vec<_> = (10..=15)
        .map(|offset| start(&mut state, 0, offset))
        .collect();
    state.rebalanced(vec![(false, vec![tp(0)]), (true, vec![tp(0)])]);
    // Committed 10: job 10 is consumed again and started; 11 and after not yet.
    let new_10 = start(&mut state, 0, 10);
    assert_eq!(state.assignments.settled(&old[5]), None, "old job 15");
    assert_eq!(
        state.assignments.settled(&new_10),
        Some(11),
        "jobs 11 to 15 have not settled in this assignment"
    );
}

#[test]
fn partitions_given_back_are_handed_out_to_be_resumed() {
    let mut state = State::default();
    state.rebalanced(vec![(true, vec![tp(0), tp(1)])]);
    hold(&mut state, 0, 4);
    hold(&mut state, 1, 7);
    let assigned = state.rebalanced(vec![(false, vec![tp(0), tp(1)]), (true, vec![tp(0)])]);
    assert_eq!(
        assigned,
        vec![tp(0)],
        "librdkafka kept partition 0 paused: the runner must resume it"
    );
    assert!(state.waiting.is_empty(), "held heads are consumed again");
    assert!(
        state.paused.is_empty(),
        "nothing known paused until reconciled"
    );
    assert_eq!(
        state.assignments.ticket(tp(1), 7),
        None,
        "partition 1 is gone"
    );
}
