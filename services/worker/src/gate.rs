//! The gate: whether now is a good time to run a queue's jobs (stub: always open; being
//! built).

use std::time::Duration;

use tokio::sync::watch;

/// What a queue's gate says right now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    pub open: bool,
    /// E.g. "outside window until 19:00", "topic rate 1,240/s > 800/s".
    pub reason: String,
    /// How long it has been open; `None` while closed.
    pub open_for: Option<Duration>,
}

/// The queue runner's view of its gate, kept current by the gate's own task.
#[derive(Debug, Clone)]
pub struct GateHandle {
    state: watch::Receiver<GateState>,
}

impl GateHandle {
    /// A gate that never closes, for queues with no schedule and no signals.
    pub fn always_open() -> Self {
        let (_, state) = watch::channel(GateState {
            open: true,
            reason: "no schedule or load signal configured".to_owned(),
            open_for: Some(Duration::MAX),
        });
        GateHandle { state }
    }

    pub fn state(&self) -> GateState {
        self.state.borrow().clone()
    }

    /// Resolves when the state changes (or the gate's task stopped).
    pub async fn changed(&mut self) {
        let _ = self.state.changed().await;
    }
}
