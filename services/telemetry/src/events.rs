//! What the shared plumbing itself reports.

use std::time::Duration;

use crate::InternalEvent;

/// A service did not finish draining within its deadline after a shutdown signal, and the
/// process stops anyway. Logged only: the process exits right after.
pub(crate) struct DrainDeadlinePassed {
    pub deadline: Duration,
}

impl InternalEvent for DrainDeadlinePassed {
    fn emit(self) {
        tracing::error!(
            deadline_ms = self.deadline.as_millis() as u64,
            "did not finish draining within the shutdown deadline; exiting now. Work not yet \
             acknowledged is done again after the restart; raise the service's \
             shutdown_grace_ms if this happens on healthy stops"
        );
    }
}
