use jiff::tz::TimeZone;
use retrace_api::{
    Behind, EventRecord, FailedStep, MessageView, OutcomeView, Payload, PlannedMessage, RecordRole,
    ReplayPlan, ReplayView, Trace, TraceEvent, TransactionStatus, TransactionSummary, TreeNode,
};

use retrace_api::{QueueStatus, RedriveReport};

use super::*;

fn message(event_id: &str, event_type: &str, time: &str) -> MessageView {
    MessageView {
        topic: "registrations".into(),
        partition: 0,
        offset: 0,
        kind: "envelope".into(),
        problem: None,
        time: time.into(),
        event_id: event_id.into(),
        transaction_id: "t-1".into(),
        causation_id: String::new(),
        event_type: event_type.into(),
        source: "registration".into(),
        subject_ids: vec!["beneficiary:42".into()],
        replay_id: None,
        erased_at: None,
        payload: None,
    }
}

fn failed_outcome() -> OutcomeView {
    OutcomeView {
        consumer: "validation".into(),
        status: "failed".into(),
        error: "birth date is in the future".into(),
        error_code: String::new(),
        reported_by: String::new(),
        attempt: 1,
        time: "2026-03-02T09:15:00.400Z".into(),
    }
}

fn leaf(event_id: &str, event_type: &str) -> TreeNode {
    TreeNode {
        event_id: event_id.into(),
        event_type: event_type.into(),
        topic: "registrations".into(),
        children: vec![],
    }
}

fn failure() -> FailedStep {
    FailedStep {
        event_id: "e-2".into(),
        topic: "registrations".into(),
        event_type: "registration.checked.v1".into(),
        consumer: "validation".into(),
        error: "birth date is in the future".into(),
        time: "2026-03-02T09:15:00.400Z".into(),
    }
}

fn replay() -> ReplayView {
    ReplayView {
        replay_id: "r-1".into(),
        requested_by: "ada@desk".into(),
        reason: "fixed the date check".into(),
        requested_at: "2026-03-02T10:00:00Z".into(),
        state: "done".into(),
        selection: "only_failed".into(),
        transactions: 1,
        planned: 1,
        published: 1,
        target_topic: String::new(),
        error: String::new(),
        finished_at: Some("2026-03-02T10:00:01Z".into()),
    }
}

/// What the replayed copy's consumer said.
fn processed_after_replay() -> OutcomeView {
    OutcomeView {
        status: "processed".into(),
        error: String::new(),
        attempt: 1,
        time: "2026-03-02T10:00:01Z".into(),
        ..failed_outcome()
    }
}

fn record(role: RecordRole, time: &str, outcomes: Vec<OutcomeView>) -> EventRecord {
    EventRecord {
        role,
        attempt: 1,
        topic: "registrations".into(),
        partition: 0,
        offset: 0,
        time: time.into(),
        due_at: None,
        replay_id: None,
        redriven_by: None,
        outcomes,
    }
}

fn step(message: MessageView, since_previous_ms: i64, records: Vec<EventRecord>) -> TraceEvent {
    let last_at = records.last().map(|r| r.time.clone()).unwrap_or_default();
    TraceEvent {
        message,
        since_previous_ms,
        last_at,
        duration_ms: 0,
        records,
    }
}

fn sample_trace() -> Trace {
    let submitted = "2026-03-02T09:15:00Z";
    let checked = "2026-03-02T09:15:00.120Z";
    let processed = OutcomeView {
        status: "processed".into(),
        error: String::new(),
        ..failed_outcome()
    };
    let replayed = EventRecord {
        replay_id: Some("r-1".into()),
        offset: 9,
        ..record(
            RecordRole::Replayed,
            "2026-03-02T10:00:00.500Z",
            vec![processed_after_replay()],
        )
    };
    Trace {
        transaction_id: "t-1".into(),
        status: TransactionStatus::Replayed,
        started_at: submitted.into(),
        last_at: "2026-03-02T10:00:01Z".into(),
        duration_ms: 2_701_000,
        events: vec![
            step(
                message("e-1", "registration.submitted.v1", submitted),
                0,
                vec![record(RecordRole::Published, submitted, vec![processed])],
            ),
            TraceEvent {
                duration_ms: 2_700_880,
                ..step(
                    message("e-2", "registration.checked.v1", checked),
                    120,
                    vec![
                        record(RecordRole::Published, checked, vec![failed_outcome()]),
                        replayed,
                    ],
                )
            },
        ],
        tree: vec![TreeNode {
            children: vec![leaf("e-2", "registration.checked.v1")],
            ..leaf("e-1", "registration.submitted.v1")
        }],
        replays: vec![replay()],
        failure: Some(failure()),
        behind: Vec::new(),
        incomplete: Vec::new(),
    }
}

#[test]
fn times_are_shown_in_the_given_zone() {
    let paris = TimeZone::get("Europe/Paris").unwrap();
    assert_eq!(
        local_time("2026-03-02T09:15:00.120Z", &paris, true),
        "2026-03-02 10:15:00.120"
    );
    assert_eq!(
        local_time("2026-07-02T09:15:00Z", &paris, false),
        "2026-07-02 11:15:00"
    );
    assert_eq!(local_time("not a time", &paris, false), "not a time");
}

#[test]
fn durations_use_the_largest_units_that_matter() {
    assert_eq!(duration(0), "0ms");
    assert_eq!(duration(120), "120ms");
    assert_eq!(duration(1_250), "1.2s");
    assert_eq!(duration(125_000), "2m05s");
    assert_eq!(duration(2_700_380), "45m00s");
    assert_eq!(duration(3 * 3_600_000 + 7 * 60_000), "3h07m");
    assert_eq!(duration(52 * 3_600_000), "2d04h");
    assert_eq!(duration(-1_500), "-1.5s");
}

#[test]
fn the_timeline_shows_each_event_once_with_its_replayed_copy_and_each_outcome_under_its_record() {
    let text = timeline(&sample_trace().events, &TimeZone::UTC);
    let expected = [
        "  2026-03-02 09:15:00.000          registrations  registration.submitted.v1  from registration",
        "      validation: processed",
        "  2026-03-02 09:15:00.120  +120ms  registrations  registration.checked.v1    from registration",
        "      2 records, over 45m00s:",
        "        published on registrations at 2026-03-02 09:15:00.120",
        "          validation: failed (birth date is in the future) at 2026-03-02 09:15:00.400",
        "      ↻ replayed to registrations at 2026-03-02 10:00:00.500 (replay r-1)",
        "          validation: processed at 2026-03-02 10:00:01.000",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn a_job_reads_as_its_attempts_with_their_delays_and_where_it_was_dead_lettered() {
    let queue = "retrace.jobs.certificates";
    let failed = |attempt: u32, status: &str, time: &str| OutcomeView {
        consumer: "worker:certificates".into(),
        status: status.into(),
        error: "HTTP 503".into(),
        attempt,
        time: time.into(),
        ..failed_outcome()
    };
    let copy = |role, attempt, topic: &str, time: &str, due: Option<&str>, outcomes| EventRecord {
        attempt,
        topic: topic.into(),
        due_at: due.map(Into::into),
        ..record(role, time, outcomes)
    };
    let retry = format!("{queue}.retry");
    let job = TraceEvent {
        duration_ms: 7_020,
        ..step(
            MessageView {
                topic: queue.into(),
                ..message("e-9", "certificate.requested.v1", "2026-03-02T12:00:00Z")
            },
            0,
            vec![
                copy(
                    RecordRole::Published,
                    1,
                    queue,
                    "2026-03-02T12:00:00Z",
                    None,
                    vec![failed(1, "retrying", "2026-03-02T12:00:01Z")],
                ),
                copy(
                    RecordRole::Retry,
                    2,
                    &retry,
                    "2026-03-02T12:00:01Z",
                    Some("2026-03-02T12:00:03Z"),
                    vec![failed(2, "retrying", "2026-03-02T12:00:03.010Z")],
                ),
                copy(
                    RecordRole::Retry,
                    3,
                    &retry,
                    "2026-03-02T12:00:03.010Z",
                    Some("2026-03-02T12:00:07Z"),
                    vec![failed(3, "dead_lettered", "2026-03-02T12:00:07.020Z")],
                ),
                copy(
                    RecordRole::DeadLettered,
                    3,
                    &format!("{queue}.dlq"),
                    "2026-03-02T12:00:07.010Z",
                    None,
                    vec![],
                ),
            ],
        )
    };
    let text = timeline(&[job], &TimeZone::UTC);
    let expected = [
        "      4 records, over 7.0s:",
        "        published on retrace.jobs.certificates at 2026-03-02 12:00:00.000",
        "          worker:certificates: retrying (HTTP 503) at 2026-03-02 12:00:01.000",
        "      → retry, attempt 2, due 2026-03-02 12:00:03.000 (2.0s after it was written), on retrace.jobs.certificates.retry",
        "          worker:certificates: retrying (HTTP 503), attempt 2 at 2026-03-02 12:00:03.010",
        "      → retry, attempt 3, due 2026-03-02 12:00:07.000 (3.9s after it was written), on retrace.jobs.certificates.retry",
        "          worker:certificates: dead lettered (HTTP 503), attempt 3 at 2026-03-02 12:00:07.020",
        "      → dead-lettered to retrace.jobs.certificates.dlq at 2026-03-02 12:00:07.010 after attempt 3",
    ];
    assert_eq!(text.lines().skip(1).collect::<Vec<_>>(), expected);
}

#[test]
fn a_headers_only_event_says_so_quietly_and_warns_only_when_its_value_claims_to_be_an_envelope() {
    let foreign = |event_id: &str, time: &str, problem: Option<&str>| {
        let message = MessageView {
            topic: "notifications".into(),
            kind: "headers_only".into(),
            problem: problem.map(Into::into),
            source: "node-sms".into(),
            ..message(event_id, "notification.sms.queued.v1", time)
        };
        step(
            message,
            0,
            vec![record(RecordRole::Published, time, vec![])],
        )
    };
    let mut json = foreign("e-3", "2026-03-02T09:15:00Z", None);
    json.message.payload = Some(Payload {
        content_type: String::new(),
        json: Some(serde_json::json!({"template": "registered", "to": "***"})),
        text: None,
        base64: None,
        headers: vec![("retrace-event-id".into(), Some("e-3".into()))],
    });
    let damaged = foreign(
        "e-4",
        "2026-03-02T09:15:01Z",
        Some(
            "value is not a protobuf envelope: failed to decode Protobuf message: buffer underflow",
        ),
    );
    let text = timeline(&[json, damaged], &TimeZone::UTC);
    let expected = [
        "  2026-03-02 09:15:00.000        notifications  notification.sms.queued.v1  from node-sms",
        "      traced from its retrace-* headers",
        "      no consumer has reported on it",
        "      payload:",
        "        {",
        "          \"template\": \"registered\",",
        "          \"to\": \"***\"",
        "        }",
        "      headers: retrace-event-id=e-3",
        "  2026-03-02 09:15:01.000  +0ms  notifications  notification.sms.queued.v1  from node-sms",
        "      ⚠ headers_only: value is not a protobuf envelope: failed to decode Protobuf message: \
         buffer underflow",
        "      no consumer has reported on it",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn the_tree_draws_each_child_under_its_cause() {
    let tree_nodes = vec![
        TreeNode {
            children: vec![
                TreeNode {
                    children: vec![leaf("c", "c.v1")],
                    ..leaf("b", "b.v1")
                },
                leaf("d", "d.v1"),
            ],
            ..leaf("a", "a.v1")
        },
        leaf("e", "e.v1"),
    ];
    assert_eq!(
        tree(&tree_nodes),
        "\
a.v1 on registrations  a
├─ b.v1 on registrations  b
│  └─ c.v1 on registrations  c
└─ d.v1 on registrations  d
e.v1 on registrations  e
"
    );
}

#[test]
fn the_trace_page_has_status_failure_replays_and_tree() {
    let text = trace(&sample_trace(), &TimeZone::UTC);
    assert!(text.starts_with("Transaction t-1: replayed"), "{text}");
    assert!(text.contains("started 2026-03-02 09:15:00.000 UTC, lasted 45m01s, 2 events"));
    assert!(text.contains(
        "Failed at registrations / registration.checked.v1 / validation: birth date is in the \
         future"
    ));
    assert!(text.contains(
        "Replays\n  r-1  done, 1 of 1 message published, by ada@desk at 2026-03-02 10:00:00: \
         \"fixed the date check\" (only_failed)\n"
    ));
    assert!(text.contains(
        "Causation\n  registration.submitted.v1 on registrations  e-1\n  └─ \
         registration.checked.v1 on registrations  e-2\n"
    ));
}

#[test]
fn a_trace_read_while_the_archive_is_behind_says_it_may_be_incomplete() {
    let utc = TimeZone::UTC;
    assert!(!trace(&sample_trace(), &utc).contains("behind"));
    let behind = |partition, lag, since: &str| Behind {
        topic: "registrations".into(),
        partition,
        lag,
        since: since.into(),
    };
    let one = Trace {
        behind: vec![behind(2, 1204, "2026-03-02T10:00:01Z")],
        ..sample_trace()
    };
    assert!(trace(&one, &utc).lines().any(|line| line
        == "⚠ the archive is 1,204 messages behind on registrations/2 (since \
            2026-03-02T10:00:01Z); this trace may be incomplete"));
    let several = Trace {
        behind: vec![
            behind(2, 1000, "2026-03-02T10:00:05Z"),
            behind(0, 1, "2026-03-02T10:00:01Z"),
        ],
        ..sample_trace()
    };
    assert!(trace(&several, &utc).contains(
        "the archive is 1,001 messages behind on registrations/2 and 1 other partition \
         (since 2026-03-02T10:00:01Z)"
    ));
}

#[test]
fn a_trace_a_shard_did_not_answer_for_says_what_is_missing() {
    let utc = TimeZone::UTC;
    assert!(!trace(&sample_trace(), &utc).contains("shard"));
    let partial = Trace {
        incomplete: vec!["2/4".into(), "3/4".into()],
        ..sample_trace()
    };
    assert!(
        trace(&partial, &utc).lines().any(|line| line
            == "⚠ shards 2/4 and 3/4 did not answer: what they hold is missing from this trace"),
        "{}",
        trace(&partial, &utc)
    );
}

#[test]
fn outcomes_read_as_sentences() {
    assert_eq!(
        outcome(&failed_outcome()),
        "validation: failed (birth date is in the future)"
    );
    let retried = OutcomeView {
        status: "dead_lettered".into(),
        attempt: 3,
        ..failed_outcome()
    };
    assert_eq!(
        outcome(&retried),
        "validation: dead lettered (birth date is in the future), attempt 3"
    );
    let through_the_gateway = OutcomeView {
        error_code: String::new(),
        reported_by: "validation-service".into(),
        ..failed_outcome()
    };
    assert_eq!(
        outcome(&through_the_gateway),
        "validation: failed (birth date is in the future), reported by validation-service"
    );
}

fn summary() -> TransactionSummary {
    TransactionSummary {
        transaction_id: "t-1".into(),
        status: TransactionStatus::Failed,
        started_at: "2026-03-02T09:15:00Z".into(),
        last_at: "2026-03-02T09:15:00.400Z".into(),
        events: 2,
        topics: vec!["registrations".into(), "checks".into()],
        subject_ids: vec!["beneficiary:42".into()],
        failure: Some(failure()),
    }
}

#[test]
fn listings_align_their_columns() {
    let failed = failed_listing(&[summary()], &TimeZone::UTC);
    assert_eq!(
        failed,
        "\
TRANSACTION  FAILED AT (UTC)      STEP (TOPIC / TYPE / CONSUMER)                     ERROR
t-1          2026-03-02 09:15:00  registrations / registration.checked.v1 / validation  birth date is in the future
"
        .replace(
            "CONSUMER)                     ERROR",
            "CONSUMER)                        ERROR"
        )
    );
    let subject = subject_listing(&[summary()], &TimeZone::UTC);
    assert!(subject.starts_with("TRANSACTION  STATUS  STARTED (UTC)        EVENTS  FAILURE\n"));
    assert!(subject.contains("t-1          failed  2026-03-02 09:15:00  2       registrations"));
}

#[test]
fn csv_fields_are_quoted_when_they_must_be() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field(""), "");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"no\""), "\"say \"\"no\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_field(" padded"), "\" padded\"");
}

#[test]
fn csv_cells_a_spreadsheet_would_run_as_formulas_stay_text() {
    assert_eq!(
        csv_field("=HYPERLINK(\"http://evil\",\"x\")"),
        "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""
    );
    for formula in ["+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"] {
        let cell = csv_field(formula);
        assert!(
            cell.trim_start_matches('"').starts_with('\''),
            "{formula:?} → {cell:?}"
        );
    }
    assert_eq!(
        csv_field("t-1"),
        "t-1",
        "only a formula's first character matters"
    );
}

#[test]
fn csv_has_a_header_and_one_row_per_transaction() {
    let mut tricky = summary();
    tricky.failure.as_mut().unwrap().error = "field \"dob\", line 2\nis wrong".into();
    let rows: Vec<ExportRow> = [summary(), tricky].iter().map(ExportRow::from).collect();
    assert_eq!(
        csv(&rows),
        "transaction_id,status,started_at,last_at,events,topics,subject_ids,failed_step,error\r\n\
         t-1,failed,2026-03-02T09:15:00Z,2026-03-02T09:15:00.400Z,2,registrations;checks,\
         beneficiary:42,registrations/registration.checked.v1/validation,birth date is in the \
         future\r\n\
         t-1,failed,2026-03-02T09:15:00Z,2026-03-02T09:15:00.400Z,2,registrations;checks,\
         beneficiary:42,registrations/registration.checked.v1/validation,\"field \"\"dob\"\", \
         line 2\nis wrong\"\r\n"
    );
    let ok = TransactionSummary {
        status: TransactionStatus::Ok,
        failure: None,
        ..summary()
    };
    assert!(csv(&[ExportRow::from(&ok)]).ends_with(",beneficiary:42,,\r\n"));
}

#[test]
fn pretty_json_keeps_the_servers_order_and_strings() {
    let raw = r#"{"z":1,"a":[],"s":"a,b:{\"c\"}","n":{"x":[1,{}]}}"#;
    assert_eq!(
        pretty_json(raw),
        "{\n  \"z\": 1,\n  \"a\": [],\n  \"s\": \"a,b:{\\\"c\\\"}\",\n  \"n\": {\n    \"x\": [\n      \
         1,\n      {}\n    ]\n  }\n}"
    );
    let reparsed: serde_json::Value = serde_json::from_str(&pretty_json(raw)).unwrap();
    assert_eq!(
        reparsed,
        serde_json::from_str::<serde_json::Value>(raw).unwrap()
    );
}

#[test]
fn plans_list_messages_and_their_targets() {
    let message = PlannedMessage {
        transaction_id: "t-1".into(),
        event_id: "e-2".into(),
        event_type: "registration.checked.v1".into(),
        topic: "registrations".into(),
        partition: 2,
        offset: 17,
        target_topic: "registrations".into(),
    };
    let one = ReplayPlan {
        transactions: 1,
        messages: vec![message.clone()],
    };
    assert_eq!(
        plan(&one),
        "Replay plan: 1 message of 1 transaction\n  t-1  registration.checked.v1  event e-2  \
         from registrations → registrations\n"
    );
    let many = ReplayPlan {
        transactions: 30,
        messages: vec![message; 30],
    };
    let text = plan(&many);
    assert!(text.contains("  … and 10 more\n  to registrations: 30 messages\n"));
}

#[test]
fn progress_and_results() {
    assert_eq!(
        progress_line(45, 100),
        "[#############-----------------] 45/100 messages  45%"
    );
    assert_eq!(
        progress_line(0, 0),
        "[------------------------------] 0/0 messages 100%"
    );
    assert_eq!(
        replay_result(&replay()),
        "replay id: r-1\nstate: done, 1 of 1 message published, 1 transaction\n"
    );
}

fn queue(name: &str) -> QueueStatus {
    QueueStatus {
        queue: name.into(),
        gate_open: true,
        gate_reason: "no schedule or load signal configured".into(),
        pending: Some(12),
        pending_error: None,
        running: 1,
        done: 340,
        retrying: 4,
        failed: 0,
        dead_lettered: 2,
        deferred: 0,
        rate_per_s: 2.35,
    }
}

#[test]
fn queue_statuses_are_a_table_with_the_gates_reason_last() {
    let closed = QueueStatus {
        gate_open: false,
        gate_reason: "outside window until 19:00".into(),
        pending: None,
        pending_error: Some("Kafka did not say how many jobs wait within 2s".into()),
        ..queue("notifications")
    };
    let text = queue_statuses(&[queue("certificates"), closed]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "QUEUE          GATE    PENDING  RUNNING  DONE  RETRYING  DEAD-LETTERED  FAILED  \
             RATE/S  WHY"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "certificates   open    12       1        340   4         2              0       \
             2.4     no schedule or load signal configured"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "notifications  closed  ?        1        340   4         2              0       \
             2.4     outside window until 19:00"
        )
    );
    assert_eq!(
        lines.next(),
        Some("pending of notifications unknown: Kafka did not say how many jobs wait within 2s")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("pending: jobs waiting in Kafka")
    );
}

#[test]
fn redrive_plans_and_results_list_jobs_and_lanes() {
    let report = RedriveReport {
        redriven: [("j-1".to_owned(), "retrace.jobs.certificates".to_owned())].into(),
        not_found: vec!["j-9".into()],
        dry_run: true,
    };
    assert_eq!(
        redrive_plan("certificates", &report),
        "Redrive plan: 1 dead-lettered job of queue certificates\n  \
         job j-1  → retrace.jobs.certificates\n  not dead-lettered (not found): j-9\n"
    );
    let many = RedriveReport {
        redriven: (0..25)
            .map(|n| {
                let lane = if n < 20 { "q" } else { "q.urgent" };
                (format!("j-{n:02}"), lane.to_owned())
            })
            .collect(),
        not_found: vec![],
        dry_run: false,
    };
    let text = redrive_result("q", &many);
    assert!(
        text.starts_with("redriven: 25 jobs of queue q, back on their lanes\n  job j-00  → q\n")
    );
    assert!(text.ends_with("  … and 5 more\n  to q: 20 jobs\n  to q.urgent: 5 jobs\n"));
}

fn token_view(revoked: bool) -> retrace_api::TokenView {
    retrace_api::TokenView {
        id: "k1".into(),
        name: "ana".into(),
        role: "analyst".into(),
        extra: vec!["payload:read".into()],
        topics: None,
        created_at: "2026-03-02T09:00:00Z".into(),
        created_by: "bootstrap".into(),
        expires_at: Some("2026-04-01T09:00:00Z".into()),
        revoked_at: revoked.then(|| "2026-03-03T10:00:00Z".into()),
        revoked_by: revoked.then(|| "bootstrap".into()),
    }
}

#[test]
fn tokens_are_listed_without_secrets() {
    let listing = token_listing(&[token_view(false), token_view(true)], &TimeZone::UTC);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("ID  NAME  ROLE"), "{listing}");
    assert!(lines[0].contains("CREATED (UTC)"), "{listing}");
    assert!(
        lines[1].contains("ana")
            && lines[1].contains("payload:read")
            && lines[1].contains("any")
            && lines[1].contains("2026-04-01 09:00:00")
            && lines[1].ends_with('-'),
        "{listing}"
    );
    assert!(
        lines[2].ends_with("2026-03-03 10:00:00 by bootstrap"),
        "{listing}"
    );

    let created = token_created(&token_view(false), &TimeZone::UTC);
    assert!(
        created.starts_with(
            "created token k1 (ana), role analyst with payload:read, expires 2026-04-01 09:00:00"
        ),
        "{created}"
    );
    assert_eq!(
        token_revoked(&token_view(true), &TimeZone::UTC),
        "revoked token k1 (ana, role analyst) at 2026-03-03 10:00:00 by bootstrap\n"
    );
}

#[test]
fn audit_records_are_a_table_in_local_time() {
    let record = retrace_api::AuditView {
        seq: 1,
        at: "2026-03-02T09:15:00.123Z".into(),
        actor: "ana".into(),
        actor_id: "3f9a2c0d11aa".into(),
        role: "analyst".into(),
        origin: "127.0.0.1".into(),
        action: "transaction.read".into(),
        target: "t-1".into(),
        reason: String::new(),
        result: "ok".into(),
        hash: "ab".into(),
    };
    let listing = audit_listing(&[record], &TimeZone::fixed(jiff::tz::offset(1)));
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("TIME ("), "{listing}");
    for column in [
        "ACTOR", "ACTOR ID", "ROLE", "ORIGIN", "ACTION", "TARGET", "REASON", "RESULT",
    ] {
        assert!(lines[0].contains(column), "{listing}");
    }
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "2026-03-02",
            "10:15:00",
            "ana",
            "3f9a2c0d11aa",
            "analyst",
            "127.0.0.1",
            "transaction.read",
            "t-1",
            "-",
            "ok"
        ]
    );
}

fn report(chain: retrace_api::AuditVerificationView) -> retrace_api::AuditReport {
    retrace_api::AuditReport {
        chain,
        unsigned: vec![],
        badly_signed: vec![],
        truncated: false,
    }
}

#[test]
fn audit_verification_says_intact_or_names_each_problem() {
    let intact = report(retrace_api::AuditVerificationView {
        records: 7,
        intact: true,
        problems: vec![],
    });
    assert!(intact.clean());
    assert_eq!(
        audit_verification(&intact),
        "audit trail intact: 7 records\n"
    );
    let broken = report(retrace_api::AuditVerificationView {
        records: 7,
        intact: false,
        problems: vec!["record 3 altered".into(), "record 5 missing".into()],
    });
    assert!(!broken.clean());
    assert_eq!(
        audit_verification(&broken),
        "audit trail NOT intact: 2 problems in 7 records\n  record 3 altered\n  record 5 missing\n"
    );
}

#[test]
fn unsigned_and_badly_signed_audit_records_are_reported_apart_from_the_chain() {
    let unchained = |offset: u32, problem: &str| retrace_api::UnchainedAuditView {
        record: format!("retrace.audit/0@{offset}"),
        archived_at: "2026-03-02T09:15:00.000Z".into(),
        key: Some("mallory".into()),
        problem: problem.into(),
    };
    let mut flagged = report(retrace_api::AuditVerificationView {
        records: 3,
        intact: true,
        problems: vec![],
    });
    flagged.unsigned = vec![unchained(4, "audit event not chained, unsigned")];
    flagged.badly_signed = vec![
        unchained(5, "audit event not chained, badly signed: forged"),
        unchained(6, "audit event not chained, badly signed: unknown key"),
    ];
    assert!(!flagged.clean());
    assert_eq!(
        audit_verification(&flagged),
        "audit trail intact: 3 records\n\
         1 unsigned audit record on the audit topic, never chained (written without \
         Retrace's signing key):\n\
         \x20 retrace.audit/0@4 archived 2026-03-02T09:15:00.000Z key mallory: audit event \
         not chained, unsigned\n\
         2 badly signed audit records on the audit topic, never chained (written without \
         Retrace's signing key):\n\
         \x20 retrace.audit/0@5 archived 2026-03-02T09:15:00.000Z key mallory: audit event \
         not chained, badly signed: forged\n\
         \x20 retrace.audit/0@6 archived 2026-03-02T09:15:00.000Z key mallory: audit event \
         not chained, badly signed: unknown key\n"
    );
}

#[test]
fn an_erasure_says_what_and_when_the_bytes_leave() {
    let erased = retrace_api::ErasureView {
        subject_id: "beneficiary:42".into(),
        erased_at: "2026-03-02T09:15:00Z".into(),
        transactions: 2,
        records: 5,
        already_erased: 1,
        outcomes: 2,
        note: "Kafka keeps its own copies".into(),
    };
    let text = erasure(&erased, &TimeZone::UTC);
    assert!(
        text.starts_with(
            "erased subject beneficiary:42 at 2026-03-02 09:15:00: the payloads of 5 records \
             in 2 transactions (1 record already erased before), and the error text of 2 \
             outcomes\n"
        ),
        "{text}"
    );
    assert!(text.contains("next `retrace-archive compact`"), "{text}");
    assert!(
        text.ends_with("note: Kafka keeps its own copies\n"),
        "{text}"
    );
}
