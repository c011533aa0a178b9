use jiff::tz::TimeZone;
use retrace_api::{
    CauseKind, IncidentDetail, IncidentStatus, IncidentSubject, IncidentTransaction, IncidentView,
    MinuteCount,
};

use super::super::csv;
use super::*;

fn minute(at: &str, failures: u64) -> MinuteCount {
    MinuteCount {
        minute: at.into(),
        failures,
    }
}

/// The hour up to 09:41, failures in its last four minutes only.
fn recent_hour() -> Vec<MinuteCount> {
    let start: Timestamp = "2026-03-02T08:42:00Z".parse().unwrap();
    (0..60)
        .map(|i| {
            let at = start + SignedDuration::from_mins(i);
            let failures = match i {
                56 => 1,
                57 => 4,
                58 => 8,
                59 => 2,
                _ => 0,
            };
            minute(&at.to_string(), failures)
        })
        .collect()
}

fn register_down() -> IncidentView {
    IncidentView {
        incident_id: "3f9a0c1d2e4b5a69".into(),
        status: IncidentStatus::Open,
        topic: "registrations".into(),
        event_type: "birth.registration.submitted.v1".into(),
        consumer: "validation".into(),
        cause_kind: CauseKind::Text,
        cause: "population register did not answer within <n> s (timeout)".into(),
        example_error: "population register did not answer within 2 s (timeout)".into(),
        first_seen: "2026-03-02T09:38:05Z".into(),
        last_seen: "2026-03-02T09:41:07Z".into(),
        opened_at: "2026-03-02T09:38:05Z".into(),
        resolved_at: None,
        reopened: 0,
        transactions: 14,
        failing: 12,
        failures: 15,
        recent: recent_hour(),
    }
}

fn renderer_down() -> IncidentView {
    IncidentView {
        incident_id: "a07c55e1b2d3f480".into(),
        status: IncidentStatus::Resolved,
        topic: "retrace.jobs.certificates".into(),
        event_type: "certificate.render".into(),
        consumer: "worker:certificates".into(),
        cause_kind: CauseKind::Code,
        cause: "RENDERER_UNAVAILABLE".into(),
        example_error: "certificate renderer unavailable: HTTP 503 from pdf-renderer:8080".into(),
        first_seen: "2026-03-02T07:00:00Z".into(),
        last_seen: "2026-03-02T07:10:00Z".into(),
        opened_at: "2026-03-02T07:05:00Z".into(),
        resolved_at: Some("2026-03-02T08:00:00Z".into()),
        reopened: 1,
        transactions: 3,
        failing: 0,
        failures: 3,
        recent: vec![minute("2026-03-02T07:10:00Z", 3)],
    }
}

fn transaction(id: &str, failing: bool) -> IncidentTransaction {
    IncidentTransaction {
        transaction_id: id.into(),
        failing,
        failing_event_ids: if failing {
            vec![format!("{id}-e2")]
        } else {
            vec![]
        },
        first_failed_at: "2026-03-02T09:38:05Z".into(),
        last_failed_at: "2026-03-02T09:40:00Z".into(),
        failures: if failing { 2 } else { 1 },
        recovered_at: (!failing).then(|| "2026-03-02T09:45:00Z".into()),
        subject_ids: vec!["beneficiary:42".into(), "mother:7".into()],
    }
}

fn detail(incident: IncidentView) -> IncidentDetail {
    IncidentDetail {
        incident,
        minutes: vec![
            minute("2026-03-02T09:38:00Z", 1),
            minute("2026-03-02T09:39:00Z", 4),
            minute("2026-03-02T09:41:00Z", 10),
        ],
        transactions: vec![transaction("t-1", true), transaction("t-2", false)],
        next_cursor: None,
        subjects: 9,
        incomplete: Vec::new(),
    }
}

#[test]
fn a_sparkline_scales_to_its_peak_and_keeps_every_failure_visible() {
    assert_eq!(sparkline(&[0, 1, 2, 4, 8]), " ▁▂▄█");
    // Rounded up to the next eighth: a third of the peak is three eighths high.
    assert_eq!(sparkline(&[1, 2, 3]), "▃▆█");
    // One failure beside a thousand is the lowest block, not nothing; zero is a blank.
    assert_eq!(sparkline(&[1, 0, 1000]), "▁ █");
    assert_eq!(sparkline(&[7, 7]), "██");
    assert_eq!(sparkline(&[0, 0]), "  ");
    assert_eq!(sparkline(&[]), "");
}

#[test]
fn the_listing_has_one_aligned_line_per_incident_with_its_last_hour() {
    let text = incident_listing(&[register_down(), renderer_down()], &TimeZone::UTC);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("STATUS    CAUSE"), "{text}");
    assert!(lines[0].contains("FIRST SEEN (UTC)"), "{text}");
    let open = lines[1];
    assert!(open.starts_with("open      "), "{open}");
    // The cause cut to 48 characters, the last of them an ellipsis.
    assert!(
        open.contains("  population register did not answer within <n> s…  "),
        "{open}"
    );
    assert!(open.contains("registrations birth.registration.submitted.v1 → validation"));
    assert!(open.contains("  12/14  "), "{open}");
    assert!(
        open.contains("  2026-03-02 09:38:05  2026-03-02 09:41:07  "),
        "{open}"
    );
    // 56 quiet minutes, then the four with failures (1, 4, 8, 2 of a peak of 8), then the id.
    assert!(
        open.ends_with(&format!("{}▁▄█▂  3f9a0c1d2e4b5a69", " ".repeat(56))),
        "{open:?}"
    );
    let resolved = lines[2];
    assert!(resolved.starts_with("resolved  RENDERER_UNAVAILABLE "));
    assert!(
        resolved.contains("retrace.jobs.certificates certificate.render → worker:certificates")
    );
    assert!(resolved.contains("  0/3  "));
    assert!(resolved.ends_with("a07c55e1b2d3f480"));
    // The ids, last, start in the same column on every line, under their header.
    let column = |line: &str, last: &str| line.chars().count() - last.chars().count();
    assert!(lines[0].ends_with("  INCIDENT"), "{text}");
    assert_eq!(
        column(open, "3f9a0c1d2e4b5a69"),
        column(lines[0], "INCIDENT")
    );
    assert_eq!(
        column(resolved, "a07c55e1b2d3f480"),
        column(lines[0], "INCIDENT")
    );
}

#[test]
fn a_shown_incident_has_its_figures_chart_transactions_and_what_to_do_next() {
    let text = incident_detail(&detail(register_down()), &TimeZone::UTC);
    let expected = "\
Incident 3f9a0c1d2e4b5a69: OPEN since 2026-03-02 09:38:05
  cause:   population register did not answer within <n> s (timeout) (the error text, its variable parts normalised)
  step:    registrations birth.registration.submitted.v1 → validation
  failing: 12 of 14 transactions (15 failures), 9 subjects touched
  seen:    first 2026-03-02 09:38:05, last 2026-03-02 09:41:07 (UTC)
  example: population register did not answer within 2 s (timeout)

Failures a minute, 2026-03-02 09:38:00 to 2026-03-02 09:42:00 (UTC), peak 10
  ▁▄ █

Transactions, still failing first
  TRANSACTION  STATE                          FAILURES  LAST FAILED (UTC)    SUBJECTS
  t-1          failing                        2         2026-03-02 09:40:00  beneficiary:42, mother:7
  t-2          recovered 2026-03-02 09:45:00  1         2026-03-02 09:40:00  beneficiary:42, mother:7

Export its 9 subjects: retrace export --incident 3f9a0c1d2e4b5a69 --format csv
Replay its 12 failing transactions: retrace replay --incident 3f9a0c1d2e4b5a69 --reason \"…\" --dry-run
";
    assert_eq!(text, expected);
}

#[test]
fn a_resolved_incident_says_when_and_that_nothing_is_left_to_replay() {
    let mut shown = detail(renderer_down());
    shown.next_cursor = Some("c2".into());
    let text = incident_detail(&shown, &TimeZone::UTC);
    assert!(
        text.starts_with(
            "Incident a07c55e1b2d3f480: RESOLVED at 2026-03-02 08:00:00 \
             (opened 2026-03-02 07:05:00), reopened 1 time\n"
        ),
        "{text}"
    );
    assert!(text.contains("  cause:   RENDERER_UNAVAILABLE (the consumer's error code)\n"));
    assert!(text.contains(
        "  … and more: `retrace incidents show a07c55e1b2d3f480 --limit N` lists up to 500\n"
    ));
    assert!(text.ends_with("Nothing to replay: none of its transactions still fails\n"));
    assert!(!text.contains("retrace replay"), "{text}");
}

#[test]
fn a_long_incident_is_charted_in_buckets_of_several_minutes() {
    // Three hours and a minute: 181 minutes, more than 60 columns of one; in 46 columns of 4
    // minutes (the last one short).
    let minutes = [
        minute("2026-03-02T06:00:00Z", 2),
        minute("2026-03-02T06:03:00Z", 2),
        minute("2026-03-02T07:30:00Z", 1),
        minute("2026-03-02T09:00:00Z", 8),
    ];
    let text = chart(&minutes, &TimeZone::UTC);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Failures per 4 minutes, 2026-03-02 06:00:00 to 2026-03-02 09:01:00 (UTC), peak 8"
    );
    let columns: Vec<char> = lines[1].trim_start_matches("  ").chars().collect();
    assert_eq!(columns.len(), 46, "{:?}", lines[1]);
    // 06:00 and 06:03 share the first column; 07:30 is minute 90, column 22; 09:00 the last.
    assert_eq!(columns[0], '▄');
    assert_eq!(columns[22], '▁');
    assert_eq!(columns[45], '█');
    assert_eq!(columns.iter().filter(|c| **c != ' ').count(), 3);
    assert_eq!(chart(&[], &TimeZone::UTC), "No failure charted\n");
}

#[test]
fn subjects_export_as_csv_rows_that_survive_a_spreadsheet() {
    let subjects = [
        IncidentSubject {
            subject_id: "beneficiary:42".into(),
            transaction_ids: vec!["t-1".into(), "t-2".into()],
            failing: true,
        },
        IncidentSubject {
            subject_id: "family:\"Doe, Jane\"".into(),
            transaction_ids: vec!["t-3".into()],
            failing: false,
        },
        IncidentSubject {
            subject_id: "=HYPERLINK(\"x\")".into(),
            transaction_ids: vec![],
            failing: true,
        },
    ];
    assert_eq!(
        csv(&subjects),
        "subject_id,transaction_ids,failing\r\n\
         beneficiary:42,t-1;t-2,true\r\n\
         \"family:\"\"Doe, Jane\"\"\",t-3,false\r\n\
         \"'=HYPERLINK(\"\"x\"\")\",,true\r\n"
    );
    let none: [IncidentSubject; 0] = [];
    assert_eq!(csv(&none), "subject_id,transaction_ids,failing\r\n");
}
