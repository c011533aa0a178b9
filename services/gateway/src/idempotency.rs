//! What the gateway remembers so a repeated request is answered, not published twice.
//!
//! In memory, per gateway instance: two gateways behind one load balancer do not share it,
//! and a restart forgets it. A retry that reaches a gateway without the memory is published
//! again under the same event id: the archive shows it as a copy of the one event
//! (docs/reliability.md, "Retried publishes").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedMutexGuard;

/// One key's memory. Whoever holds its lock is the one publishing; the others wait and
/// then read what it left (`None` if it failed, so the next one tries again).
pub(crate) type Slot<V> = Arc<tokio::sync::Mutex<Option<V>>>;

/// Keys remembered for `window` after their first use, at most `capacity` of them, the
/// oldest forgotten first.
pub(crate) struct Memory<V> {
    window: Duration,
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    slots: HashMap<String, (Instant, Slot<V>)>,
    /// Keys by first use, oldest first: exactly one entry per slot.
    order: VecDeque<(Instant, String)>,
}

impl<V> Memory<V> {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Memory {
            window,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Locks `key`'s slot, waiting while another request holds it.
    pub(crate) async fn lock(&self, key: String) -> OwnedMutexGuard<Option<V>> {
        self.slot(key).lock_owned().await
    }

    fn slot(&self, key: String) -> Slot<V> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("no panic while holding the lock");
        let Inner { slots, order } = &mut *inner;
        // Slots are in `order` by first use, so the expired ones are at its front.
        while let Some((first_use, oldest)) = order.front() {
            let expired = now.duration_since(*first_use) >= self.window;
            if !expired && slots.len() < self.capacity {
                break;
            }
            if !expired && slots.contains_key(&key) {
                break;
            }
            slots.remove(oldest);
            order.pop_front();
        }
        if let Some((_, slot)) = slots.get(&key) {
            return Arc::clone(slot);
        }
        let slot = Slot::default();
        slots.insert(key.clone(), (now, Arc::clone(&slot)));
        order.push_back((now, key));
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_request_waits_for_the_first_and_reads_its_result() {
        let memory = Arc::new(Memory::<u32>::new(Duration::from_secs(60), 10));
        let mut first = memory.lock("k".into()).await;
        let waiting = tokio::spawn({
            let memory = Arc::clone(&memory);
            async move { *memory.lock("k".into()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        *first = Some(7);
        drop(first);
        assert_eq!(waiting.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn a_failed_attempt_leaves_the_key_free_for_a_retry() {
        let memory = Memory::<u32>::new(Duration::from_secs(60), 10);
        drop(memory.lock("k".into()).await);
        assert_eq!(*memory.lock("k".into()).await, None);
    }

    #[tokio::test]
    async fn keys_are_forgotten_after_the_window() {
        let memory = Memory::<u32>::new(Duration::ZERO, 10);
        *memory.lock("k".into()).await = Some(1);
        assert_eq!(*memory.lock("k".into()).await, None);
    }

    #[tokio::test]
    async fn the_oldest_keys_go_first_when_full() {
        let memory = Memory::<u32>::new(Duration::from_secs(60), 2);
        for (value, key) in ["a", "b", "c"].into_iter().enumerate() {
            *memory.lock(key.into()).await = Some(value as u32);
        }
        assert_eq!(memory.len(), 2);
        assert_eq!(*memory.lock("c".into()).await, Some(2));
        assert_eq!(*memory.lock("b".into()).await, Some(1));
        assert_eq!(*memory.lock("a".into()).await, None);
    }
}
