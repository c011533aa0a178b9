//! The event ids a consumer processed lately. A publish retried after its answer was lost
//! (a gateway killed, a 503 after the write, another gateway instance) writes a second record
//! of the same event; the consumer hands it to the handler once.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Event ids remembered per consumer: the window a second record of an event is skipped in.
/// A retry lands shortly after the first record, so this covers it many times over, in
/// about a megabyte.
pub(crate) const RECENT_EVENTS: usize = 10_000;

/// The last `capacity` event ids processed, the oldest forgotten first. Shared by the
/// handlers running at once, so behind a lock that is never held across an await.
pub(crate) struct RecentEvents {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    ids: HashSet<String>,
    /// The same ids, oldest first.
    order: VecDeque<String>,
}

impl RecentEvents {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentEvents {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    pub(crate) fn contains(&self, event_id: &str) -> bool {
        self.lock().ids.contains(event_id)
    }

    pub(crate) fn remember(&self, event_id: &str) {
        let mut inner = self.lock();
        if !inner.ids.insert(event_id.to_owned()) {
            return;
        }
        inner.order.push_back(event_id.to_owned());
        if inner.order.len() > self.capacity
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.ids.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("no panic while holding the lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_event_ids_are_forgotten_first() {
        let recent = RecentEvents::new(2);
        for id in ["a", "b", "a", "c"] {
            recent.remember(id);
        }
        assert!(!recent.contains("a"), "a is the oldest, remembered once");
        assert!(recent.contains("b") && recent.contains("c"));
    }
}
