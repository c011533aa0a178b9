//! A transaction as `retrace trace` prints it: status, timeline (each event once, the
//! records that carry it and the outcomes on each beneath it), failure, replays, causation.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use retrace_api::{
    EventRecord, FailedStep, OutcomeView, Payload, RecordRole, Trace, TraceEvent,
    TransactionStatus, TreeNode, describe_behind, describe_incomplete,
};

use super::{duration, indent, local_time, plural, replay_line, table, zone_name};

/// `validation: failed (birth date is in the future)`, with the attempt when it is a retry.
pub fn outcome(outcome: &OutcomeView) -> String {
    let mut text = format!("{}: {}", outcome.consumer, outcome.status.replace('_', " "));
    if !outcome.error.is_empty() {
        write!(text, " ({})", outcome.error).unwrap();
    }
    if outcome.attempt > 1 {
        write!(text, ", attempt {}", outcome.attempt).unwrap();
    }
    if !outcome.reported_by.is_empty() {
        write!(text, ", reported by {}", outcome.reported_by).unwrap();
    }
    text
}

/// `registrations / registration.checked.v1 / validation`.
pub fn step(failure: &FailedStep) -> String {
    format!(
        "{} / {} / {}",
        failure.topic, failure.event_type, failure.consumer
    )
}

/// The whole `retrace trace` page: status, timeline, failure, replays, causation tree.
pub fn trace(trace: &Trace, tz: &TimeZone) -> String {
    let mut out = String::new();
    let events = trace.events.len();
    writeln!(
        out,
        "Transaction {}: {}",
        trace.transaction_id,
        status_words(trace)
    )
    .unwrap();
    writeln!(
        out,
        "started {} {}, lasted {}, {events} event{}",
        local_time(&trace.started_at, tz, true),
        zone_name(tz),
        duration(trace.duration_ms),
        plural(events)
    )
    .unwrap();
    if let Some(caveat) = describe_behind(&trace.behind) {
        writeln!(out, "⚠ {caveat}; this trace may be incomplete").unwrap();
    }
    if let Some(caveat) = describe_incomplete(&trace.incomplete, "trace") {
        writeln!(out, "⚠ {caveat}").unwrap();
    }
    out.push_str("\nTimeline\n");
    out.push_str(&timeline(&trace.events, tz));
    if let Some(failure) = &trace.failure {
        writeln!(
            out,
            "\nFailed at {}: {}\n  at {}, event {}",
            step(failure),
            failure.error,
            local_time(&failure.time, tz, true),
            failure.event_id
        )
        .unwrap();
    }
    if !trace.replays.is_empty() {
        out.push_str("\nReplays\n");
        for replay in &trace.replays {
            writeln!(out, "  {}", replay_line(replay, tz)).unwrap();
        }
    }
    if !trace.tree.is_empty() {
        out.push_str("\nCausation\n");
        out.push_str(&indent(&tree(&trace.tree), "  "));
    }
    out
}

fn status_words(trace: &Trace) -> &'static str {
    match trace.status {
        TransactionStatus::Ok => "ok",
        TransactionStatus::Failed => "FAILED",
        TransactionStatus::InProgress => "in progress (a consumer retries)",
        TransactionStatus::Replayed => {
            "replayed (failed, then replayed; waiting for the replayed events' outcomes)"
        }
    }
}

/// One line per event (time, +Δ, topic, type, source), its outcomes beneath it.
pub fn timeline(events: &[TraceEvent], tz: &TimeZone) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let m = &event.message;
            vec![
                local_time(&m.time, tz, true),
                if index == 0 {
                    String::new()
                } else {
                    format!("+{}", duration(event.since_previous_ms))
                },
                m.topic.clone(),
                if m.event_type.is_empty() {
                    format!("({})", m.kind)
                } else {
                    m.event_type.clone()
                },
                if m.source.is_empty() {
                    String::new()
                } else {
                    format!("from {}", m.source)
                },
                m.replay_id
                    .as_ref()
                    .map(|id| format!("↻ replayed copy (replay {id})"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let lines = table(&rows);
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        writeln!(out, "  {line}").unwrap();
        let details = event_details(&events[index], tz);
        out.push_str(&indent(&details, "      "));
    }
    out
}

/// What is known of an event beyond its line: problem, the records that carry it with the
/// outcomes reported on each (only the outcomes when it has one record), payload.
fn event_details(event: &TraceEvent, tz: &TimeZone) -> String {
    let mut out = String::new();
    match &event.message.problem {
        Some(problem) => writeln!(out, "⚠ {}: {problem}", event.message.kind).unwrap(),
        // How other languages publish (proto/README.md): worth knowing, not a warning.
        None if event.message.kind == "headers_only" => {
            out.push_str("traced from its retrace-* headers\n")
        }
        None => {}
    }
    match event.records.as_slice() {
        [only] => {
            if only.outcomes.is_empty() && event.message.kind != "outcome" {
                out.push_str("no consumer has reported on it\n");
            }
            for seen in &only.outcomes {
                writeln!(out, "{}", outcome(seen)).unwrap();
            }
        }
        records => {
            writeln!(
                out,
                "{} records, over {}:",
                records.len(),
                duration(event.duration_ms)
            )
            .unwrap();
            for record in records {
                writeln!(out, "{}", record_line(record, tz)).unwrap();
                for seen in &record.outcomes {
                    let at = local_time(&seen.time, tz, true);
                    writeln!(out, "    {} at {at}", outcome(seen)).unwrap();
                }
            }
        }
    }
    if let Some(payload) = &event.message.payload {
        out.push_str(&payload_text(payload));
    }
    out
}

/// What a record of an event is, where and when it was written: `→ retry, attempt 2, due
/// 12:00:03.005 (2.0s after it was written), on retrace.jobs.certificates.retry`.
fn record_line(record: &EventRecord, tz: &TimeZone) -> String {
    let at = local_time(&record.time, tz, true);
    let topic = &record.topic;
    match record.role {
        RecordRole::Published => format!("  published on {topic} at {at}"),
        RecordRole::Republished => {
            format!("  written again on {topic} at {at} (a retried publish)")
        }
        RecordRole::Retry | RecordRole::Deferred => {
            let due = record.due_at.as_deref().unwrap_or_default();
            let after = match (
                due.parse::<jiff::Timestamp>(),
                record.time.parse::<jiff::Timestamp>(),
            ) {
                (Ok(due), Ok(written)) => format!(
                    " ({} after it was written)",
                    duration(due.as_millisecond() - written.as_millisecond())
                ),
                _ => String::new(),
            };
            let what = if record.role == RecordRole::Retry {
                format!("retry, attempt {}", record.attempt)
            } else {
                format!("held for later, attempt {}", record.attempt)
            };
            format!(
                "→ {what}, due {}{after}, on {topic}",
                local_time(due, tz, true)
            )
        }
        RecordRole::DeadLettered => format!(
            "→ dead-lettered to {topic} at {at} after attempt {}",
            record.attempt
        ),
        RecordRole::Redriven => format!(
            "→ redriven to {topic} at {at} by {}",
            record.redriven_by.as_deref().unwrap_or("?")
        ),
        RecordRole::Replayed => format!(
            "↻ replayed to {topic} at {at} (replay {})",
            record.replay_id.as_deref().unwrap_or("?")
        ),
    }
}

fn payload_text(payload: &Payload) -> String {
    let content_type = if payload.content_type.is_empty() {
        String::new()
    } else {
        format!(" ({})", payload.content_type)
    };
    let body = if let Some(json) = &payload.json {
        serde_json::to_string_pretty(json).unwrap_or_default()
    } else if let Some(text) = &payload.text {
        text.clone()
    } else if let Some(base64) = &payload.base64 {
        format!("base64 {base64}")
    } else {
        "(empty)".to_owned()
    };
    let mut out = format!("payload{content_type}:\n");
    out.push_str(&indent(&format!("{body}\n"), "  "));
    let headers: Vec<String> = payload
        .headers
        .iter()
        .map(|(name, value)| format!("{name}={}", value.as_deref().unwrap_or("(null)")))
        .collect();
    if !headers.is_empty() {
        writeln!(out, "headers: {}", headers.join(" ")).unwrap();
    }
    out
}

/// The causation tree: roots flush left, each child under its cause with `├─` / `└─`.
pub fn tree(roots: &[TreeNode]) -> String {
    let mut out = String::new();
    for root in roots {
        writeln!(out, "{}", node_label(root)).unwrap();
        children(&root.children, "", &mut out);
    }
    out
}

fn children(nodes: &[TreeNode], prefix: &str, out: &mut String) {
    for (index, node) in nodes.iter().enumerate() {
        let last = index + 1 == nodes.len();
        let (branch, below) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        writeln!(out, "{prefix}{branch}{}", node_label(node)).unwrap();
        children(&node.children, &format!("{prefix}{below}"), out);
    }
}

fn node_label(node: &TreeNode) -> String {
    format!("{} on {}  {}", node.event_type, node.topic, node.event_id)
}
