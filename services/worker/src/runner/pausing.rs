//! Pausing and resuming partitions to match what holds them back: a held head, or a queue
//! its target slowed.

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use retrace_telemetry::InternalEvent;

use super::{Lane, QueueRunner, State, Tp};
use crate::events::{During, PartitionsPaused, QueueSlowed};

impl QueueRunner {
    /// Whether `tp`'s lane is paused because the queue's target asked for a pause; the
    /// retry lane is not, so retries already due keep their place.
    pub(super) fn slowed(&self, state: &State, tp: &Tp) -> bool {
        state.slowed_until.is_some() && self.lane(&tp.0) != Some(Lane::Retry)
    }

    fn should_pause(&self, state: &State, tp: &Tp) -> bool {
        self.slowed(state, tp) || state.waiting.contains_key(tp)
    }

    /// Slows the queue for `pause`, unless it is already slowed for longer.
    pub(super) fn slow_down(&self, state: &mut State, pause: Duration) {
        let until = Instant::now() + pause;
        if state.slowed_until.is_none_or(|current| current < until) {
            state.slowed_until = Some(until);
            QueueSlowed {
                queue: &self.shared.queue,
                pause,
            }
            .emit();
            self.reconcile(state);
        }
    }

    /// Pauses the partitions that must wait and resumes the others.
    pub(super) fn reconcile(&self, state: &mut State) {
        let to_pause: Vec<Tp> = state
            .assignments
            .partitions()
            .filter(|tp| self.should_pause(state, tp) && !state.paused.contains(*tp))
            .cloned()
            .collect();
        if !to_pause.is_empty() {
            match self.consumer.pause(&partition_list(&to_pause)) {
                Ok(()) => state.paused.extend(to_pause.iter().cloned()),
                Err(error) => self.trouble(During::Pause, &error),
            }
        }
        let to_resume: Vec<Tp> = state
            .paused
            .iter()
            .filter(|tp| !self.should_pause(state, tp))
            .cloned()
            .collect();
        let mut resumed = 0;
        if !to_resume.is_empty() {
            match self.consumer.resume(&partition_list(&to_resume)) {
                Ok(()) => {
                    for tp in &to_resume {
                        state.paused.remove(tp);
                    }
                    resumed = to_resume.len();
                }
                // Stays paused; tried again at the next recheck.
                Err(error) => self.trouble(During::Resume, &error),
            }
        }
        if !to_pause.is_empty() || resumed > 0 {
            PartitionsPaused {
                queue: &self.shared.queue,
                paused: to_pause.len(),
                resumed,
            }
            .emit();
        }
    }
}

pub(super) fn partition_list(partitions: &[Tp]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        list.add_partition(topic, *partition);
    }
    list
}
