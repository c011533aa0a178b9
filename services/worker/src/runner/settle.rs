//! Taking back finished job tasks, and storing a partition's offset once its commit point
//! moves past them.

use retrace_sdk::store_next_offset;

use super::assignments::Ticket;
use super::{QueueRunner, Settled, State};
use crate::events::During;

impl QueueRunner {
    pub(super) fn settled(
        &self,
        state: &mut State,
        joined: Result<Settled, tokio::task::JoinError>,
    ) {
        let settled = match joined {
            Ok(settled) => settled,
            // Only cancellation at shutdown gets here (panics are caught in the task); the
            // offset stays uncommitted.
            Err(_) => return,
        };
        if let Some(pause) = settled.slow_for {
            self.slow_down(state, pause);
        }
        if settled.done {
            self.store(state, &settled.ticket);
        }
    }

    /// Settles `ticket`'s message, and stores its partition's offset if it moved.
    pub(super) fn store(&self, state: &mut State, ticket: &Ticket) {
        let Some(next) = state.assignments.settled(ticket) else {
            return;
        };
        let tp = &ticket.tp;
        if let Err(error) = store_next_offset(&self.consumer, &tp.0, tp.1, next) {
            self.trouble(During::StoreOffset, &error);
        }
    }
}
