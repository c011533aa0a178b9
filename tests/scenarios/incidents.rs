//! Incidents end to end (issue 26): a consumer fails 500 registrations because the population
//! register is down and 50 death registrations for a data error it gives a code to. The
//! archive groups them into exactly two incidents with those counts, the export lists exactly
//! the affected subjects, a replay of the larger one once the register is back resolves it
//! while the other stays open, and a later failure of the same cause reopens it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use retrace_api::{
    CauseKind, IncidentDetail, IncidentStatus, IncidentSubject, IncidentView, Page, ReplayResponse,
};
use retrace_proto::{Envelope, OUTCOMES_TOPIC};
use retrace_sdk::{EventHandler, HandlerError, Publisher, ReceivedEvent, consume};
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, eventually, on_every_broker, start_archive, unique_topic,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const BIRTH: &str = "birth.registration.submitted.v1";
const DEATH: &str = "death.registration.submitted.v1";
const BIRTHS: usize = 500;
const DEATHS: usize = 50;
const DEATH_CODE: &str = "death_before_birth";

/// The validation service: births fail while the register is down, with the subject and
/// the event in the message; deaths always fail, with a code.
struct Validation {
    register_down: AtomicBool,
}

impl EventHandler for Validation {
    async fn handle(&self, event: &ReceivedEvent) -> Result<(), HandlerError> {
        let envelope = &event.envelope;
        let subject = envelope.subject_ids.join(",");
        match envelope.r#type.as_str() {
            BIRTH if self.register_down.load(Ordering::SeqCst) => Err(HandlerError::new(format!(
                "population register did not answer within 2 s for {subject} (request {})",
                envelope.event_id
            ))),
            DEATH => Err(HandlerError::new(format!(
                "date of death is before the date of birth of {subject}"
            ))
            .with_code(DEATH_CODE)),
            _ => Ok(()),
        }
    }
}

async fn get<T: DeserializeOwned>(archive: &RunningArchive, path: &str) -> T {
    let response = reqwest::get(archive.url(path)).await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// The incidents of `topic` (the archive sees every test's topics), once `ready` holds.
async fn incidents_when(
    archive: &RunningArchive,
    topic: &str,
    what: &str,
    ready: impl Fn(&[IncidentView]) -> bool,
) -> Vec<IncidentView> {
    eventually(what, PATIENCE, || async {
        let page: Page<IncidentView> = get(archive, "/v1/incidents?limit=500").await;
        let ours: Vec<IncidentView> = page
            .items
            .into_iter()
            .filter(|i| i.topic == topic)
            .collect();
        ready(&ours).then_some(ours)
    })
    .await
}

fn find<'a>(incidents: &'a [IncidentView], event_type: &str) -> &'a IncidentView {
    incidents
        .iter()
        .find(|i| i.event_type == event_type)
        .unwrap_or_else(|| panic!("an incident of {event_type}: {incidents:#?}"))
}

fn failing(incidents: &[IncidentView], event_type: &str) -> Option<u64> {
    incidents
        .iter()
        .find(|i| i.event_type == event_type)
        .map(|i| i.failing)
}

/// Every subject of the incident's export, page by page.
async fn exported_subjects(archive: &RunningArchive, id: &str) -> Vec<IncidentSubject> {
    let mut subjects = Vec::new();
    let mut path = format!("/v1/exports/incidents/{id}/subjects?limit=200");
    loop {
        let page: Page<IncidentSubject> = get(archive, &path).await;
        subjects.extend(page.items);
        match page.next_cursor {
            Some(cursor) => {
                path = format!("/v1/exports/incidents/{id}/subjects?limit=200&cursor={cursor}")
            }
            None => return subjects,
        }
    }
}

async fn publish(publisher: &Publisher, topic: &str, event_type: &str, subject: String) {
    let event = Envelope::root("registration", event_type).with_subject(subject);
    publisher.publish(topic, &event).await.unwrap();
}

async fn failures_group_into_incidents_that_export_replay_resolve_and_reopen(broker: Broker) {
    let topic = unique_topic("registrations");
    broker.create_topic(&topic, 3).await;
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let archive = start_archive(&broker).await;
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let validation = Validation {
        register_down: AtomicBool::new(true),
    };
    let (settings, group, stop) = (
        broker.settings(),
        unique_topic("validation"),
        CancellationToken::new(),
    );
    let run = async {
        for n in 0..BIRTHS {
            publish(&publisher, &topic, BIRTH, format!("beneficiary:{n}")).await;
        }
        for n in 0..DEATHS {
            publish(&publisher, &topic, DEATH, format!("person:{n}")).await;
        }
        let both = incidents_when(&archive, &topic, "every failure in an incident", |found| {
            failing(found, BIRTH) == Some(BIRTHS as u64)
                && failing(found, DEATH) == Some(DEATHS as u64)
        })
        .await;
        assert_eq!(both.len(), 2, "one incident per cause: {both:#?}");
        let outage = find(&both, BIRTH);
        assert_eq!(
            (outage.transactions, outage.failures, outage.status),
            (BIRTHS as u64, BIRTHS as u64, IncidentStatus::Open)
        );
        assert_eq!(outage.consumer, "validation");
        assert_eq!(outage.cause_kind, CauseKind::Text);
        assert!(
            outage
                .cause
                .starts_with("population register did not answer within <n> s for beneficiary:<n>"),
            "the ids and numbers normalised: {}",
            outage.cause
        );
        let coded = find(&both, DEATH);
        assert_eq!(
            (coded.cause_kind, coded.cause.as_str(), coded.transactions),
            (CauseKind::Code, DEATH_CODE, DEATHS as u64)
        );
        let charted: u64 = outage.recent.iter().map(|m| m.failures).sum();
        assert_eq!(
            charted, BIRTHS as u64,
            "every failure in the last hour's minutes"
        );

        let subjects = exported_subjects(&archive, &outage.incident_id).await;
        let names: BTreeSet<String> = subjects.iter().map(|s| s.subject_id.clone()).collect();
        let expected: BTreeSet<String> = (0..BIRTHS).map(|n| format!("beneficiary:{n}")).collect();
        assert_eq!(names, expected, "exactly the subjects the outage touched");
        assert!(
            subjects
                .iter()
                .all(|s| s.failing && s.transaction_ids.len() == 1)
        );

        // The register is back: the outage's transactions are replayed as one.
        validation.register_down.store(false, Ordering::SeqCst);
        let response = reqwest::Client::new()
            .post(archive.url("/v1/replays"))
            .json(&json!({
                "reason": "population register back",
                "incident": outage.incident_id,
                "rate": 2000,
                "max": 1000,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let started: ReplayResponse = response.json().await.unwrap();
        assert_eq!(
            (started.plan.transactions, started.plan.messages.len()),
            (BIRTHS, BIRTHS),
            "each failing transaction's failed step, once"
        );
        assert!(started.plan.messages.iter().all(|m| m.event_type == BIRTH));
        let after = incidents_when(&archive, &topic, "the outage resolved", |found| {
            failing(found, BIRTH) == Some(0)
        })
        .await;
        let resolved = find(&after, BIRTH);
        assert_eq!(resolved.status, IncidentStatus::Resolved);
        assert!(resolved.resolved_at.is_some());
        assert_eq!(
            (find(&after, DEATH).status, find(&after, DEATH).failing),
            (IncidentStatus::Open, DEATHS as u64),
            "the other cause is untouched"
        );

        // The register goes down again: the same cause reopens the same incident.
        validation.register_down.store(true, Ordering::SeqCst);
        publish(&publisher, &topic, BIRTH, "beneficiary:9999".to_owned()).await;
        let again = incidents_when(&archive, &topic, "the outage reopened", |found| {
            failing(found, BIRTH) == Some(1)
        })
        .await;
        let reopened = find(&again, BIRTH);
        assert_eq!(reopened.incident_id, outage.incident_id);
        assert_eq!(
            (reopened.status, reopened.reopened, reopened.transactions),
            (IncidentStatus::Open, 1, BIRTHS as u64 + 1)
        );
        let detail: IncidentDetail = get(
            &archive,
            &format!("/v1/incidents/{}?limit=3", outage.incident_id),
        )
        .await;
        let listed: Vec<bool> = detail.transactions.iter().map(|t| t.failing).collect();
        assert_eq!(
            listed,
            [true, false, false],
            "the failing transaction first"
        );
        assert_eq!(detail.transactions[0].subject_ids, ["beneficiary:9999"]);
        assert_eq!(detail.subjects, BIRTHS as u64 + 1);
        stop.cancel();
    };
    let topics = [topic.as_str()];
    let (consumed, ()) = tokio::join!(
        consume(
            &settings,
            &group,
            "validation",
            &topics,
            &validation,
            &publisher,
            &stop,
        ),
        run
    );
    consumed.unwrap();
    archive.stop().await;
}

/// Asked about an incident that does not exist, or with a query as well as an incident, the
/// API says what is wrong and names the field.
async fn an_unknown_incident_or_a_mixed_selection_is_refused_by_name(broker: Broker) {
    let archive = start_archive(&broker).await;
    let response = reqwest::get(archive.url("/v1/incidents/0000000000000000"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("retrace incidents"),
        "{body}"
    );
    let response = reqwest::Client::new()
        .post(archive.url("/v1/replays"))
        .json(&json!({"reason": "r", "incident": "0000000000000000", "since": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["field"], "since", "{body}");
    let response = reqwest::get(archive.url("/v1/incidents?status=closed"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["field"], "status", "{body}");
    archive.stop().await;
}

on_every_broker!(
    failures_group_into_incidents_that_export_replay_resolve_and_reopen,
    an_unknown_incident_or_a_mixed_selection_is_refused_by_name,
);
