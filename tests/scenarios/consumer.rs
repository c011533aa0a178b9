//! The SDK's consume path and a topic holding an event twice (a publish retried after its
//! answer was lost, issue 28 item 4): the handler sees the event once, the skip is counted,
//! and what must run again (a replayed copy, a failed event's retry) still does. And a static
//! consumer (a group instance id, issue 22): restarted, it resumes at once; a twin fences it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use retrace_proto::{Envelope, OUTCOMES_TOPIC, Replay};
use retrace_sdk::{
    ConsumeError, EventHandler, HandlerError, KafkaSettings, Publisher, ReceivedEvent, consume,
};
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
            return Err(HandlerError::new("registry timeout"));
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

/// Consumes `topic` in `group` with `handler` until `stop`.
async fn consume_until(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    handler: &Counting,
    publisher: &Publisher,
    stop: &CancellationToken,
) -> Result<(), ConsumeError> {
    consume(
        settings,
        group,
        "validation",
        &[topic],
        handler,
        publisher,
        stop,
    )
    .await
}

/// A consumer with a group instance id (issue 22): stopped and started again under the same
/// id, it resumes at once, though the old member never left its group (a static member does
/// not); a second consumer started under the same id fences the first, whose `consume`
/// returns an error instead of waiting for events that will not come.
async fn a_static_consumer_resumes_at_once_and_its_twin_fences_it(broker: Broker) {
    if let Broker::Mock(_) = broker {
        // The mock cluster neither replaces a static member nor fences one.
        return;
    }
    let topic = unique_topic("static-consumer");
    broker.create_topic(&topic, 2).await;
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    // A session longer than the waits' patience: a restart that waited for the old
    // member's eviction times out instead of passing.
    let settings = broker
        .settings()
        .with_properties(["session.timeout.ms=120000"])
        .unwrap()
        .with_group_instance_id("validation-1");
    let group = unique_topic("static-group");
    let handler = Counting::default();
    let event = |n: usize| {
        Envelope::root("registration", "registration.submitted.v1")
            .with_subject(format!("beneficiary:{}", 10 + n))
    };
    let (first, second, third) = (event(1), event(2), event(3));

    let stop = CancellationToken::new();
    let (consumed, ()) = tokio::join!(
        consume_until(&settings, &group, &topic, &handler, &publisher, &stop),
        async {
            publisher.publish(&topic, &first).await.unwrap();
            eventually("the first event handled", PATIENCE, || {
                let seen = handler.seen(&first) > 0;
                async move { seen.then_some(()) }
            })
            .await;
            stop.cancel();
        }
    );
    consumed.unwrap();

    let (stop, twin_starts, stop_twin) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let fenced = CancellationToken::new();
    let started = Instant::now();
    let (restarted, twin, ()) = tokio::join!(
        async {
            let result =
                consume_until(&settings, &group, &topic, &handler, &publisher, &stop).await;
            fenced.cancel();
            result
        },
        async {
            twin_starts.cancelled().await;
            consume_until(&settings, &group, &topic, &handler, &publisher, &stop_twin).await
        },
        async {
            publisher.publish(&topic, &second).await.unwrap();
            eventually(
                "the restarted consumer to handle an event",
                PATIENCE,
                || {
                    let seen = handler.seen(&second) > 0;
                    async move { seen.then_some(()) }
                },
            )
            .await;
            println!(
                "static consumer: resume_ms={} (session.timeout.ms=120000) on {}",
                started.elapsed().as_millis(),
                broker.name()
            );
            twin_starts.cancel();
            eventually(
                "the restarted consumer fenced by its twin",
                PATIENCE,
                || {
                    let done = fenced.is_cancelled();
                    async move { done.then_some(()) }
                },
            )
            .await;
            publisher.publish(&topic, &third).await.unwrap();
            eventually("the twin to handle an event", PATIENCE, || {
                let seen = handler.seen(&third) > 0;
                async move { seen.then_some(()) }
            })
            .await;
            stop_twin.cancel();
            // Not needed by then; cancelled for a clean end should it not have stopped.
            stop.cancel();
        }
    );
    assert!(
        matches!(restarted, Err(ConsumeError::Fatal { .. })),
        "a consumer fenced by another under its instance id returns an error: {restarted:?}"
    );
    twin.unwrap();
}

on_every_broker!(
    a_second_record_of_a_processed_event_reaches_the_handler_once,
    a_static_consumer_resumes_at_once_and_its_twin_fences_it
);
