//! The SDK's consume path and a topic holding an event twice (a publish retried after its
//! answer was lost, issue 28 item 4): the handler sees the event once, the skip is counted,
//! and what must run again (a replayed copy, a failed event's retry) still does.

use std::collections::HashMap;
use std::sync::Mutex;

use retrace_proto::{Envelope, OUTCOMES_TOPIC, Replay};
use retrace_sdk::{EventHandler, HandlerError, Publisher, ReceivedEvent, consume};
use retrace_tests::{Broker, PATIENCE, eventually, metric_sum, on_every_broker, unique_topic};
use tokio_util::sync::CancellationToken;

/// Counts the events that reach it by event id; fails those about `beneficiary:3`.
#[derive(Default)]
struct Counting(Mutex<HashMap<String, usize>>);

impl Counting {
    fn seen(&self, event: &Envelope) -> usize {
        let seen = self.0.lock().unwrap();
        seen.get(&event.event_id).copied().unwrap_or(0)
    }
}

impl EventHandler for Counting {
    async fn handle(&self, event: &ReceivedEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        *self
            .0
            .lock()
            .unwrap()
            .entry(envelope.event_id.clone())
            .or_default() += 1;
        if envelope.subject_ids.iter().any(|s| s == "beneficiary:3") {
            return Err(HandlerError("registry timeout".into()));
        }
        Ok(())
    }
}

async fn a_second_record_of_a_processed_event_reaches_the_handler_once(broker: Broker) {
    let topic = unique_topic("retried-publishes");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let processed =
        Envelope::root("registration", "registration.submitted.v1").with_subject("beneficiary:1");
    let mut replayed = processed.clone();
    replayed.replay = Some(Replay {
        replay_id: "r-1".into(),
        original_event_id: processed.event_id.clone(),
        ..Replay::default()
    });
    let failed =
        Envelope::root("registration", "registration.submitted.v1").with_subject("beneficiary:3");
    // Each event twice, as a retried publish writes it; then a replay of the processed one.
    for event in [&processed, &processed, &replayed, &failed, &failed] {
        publisher.publish(&topic, event).await.unwrap();
    }

    let metrics = retrace_telemetry::prometheus();
    let skipped = || {
        let text = metrics.render();
        metric_sum(
            &text,
            "retrace_sdk_duplicates_skipped_total",
            &format!("topic=\"{topic}\""),
        )
    };
    let handler = Counting::default();
    let (settings, group, topics) = (broker.settings(), unique_topic("dedup-group"), [&*topic]);
    let stop = CancellationToken::new();
    let (consumed, ()) = tokio::join!(
        consume(
            &settings,
            &group,
            "validation",
            &topics,
            &handler,
            &publisher,
            &stop,
        ),
        async {
            // The replayed copy comes after the second record in the partition, and the
            // failed event's second record is the last: all five are settled once these hold.
            eventually("every record settled", PATIENCE, || {
                let done = handler.seen(&processed) == 2 && handler.seen(&failed) == 2;
                async move { done.then_some(()) }
            })
            .await;
            stop.cancel();
        }
    );
    consumed.unwrap();
    assert_eq!(
        handler.seen(&processed),
        2,
        "the first record and the replayed copy; the second record skipped"
    );
    assert_eq!(
        handler.seen(&failed),
        2,
        "a failed event is not remembered: its second record is a retry"
    );
    assert_eq!(skipped(), 1.0, "the one skip is counted");
}

on_every_broker!(a_second_record_of_a_processed_event_reaches_the_handler_once);
