//! Incidents as `retrace incidents` prints them: a table of incidents with a sparkline of
//! their last hour, one incident's page (`incidents show`) with a chart of its failures over
//! time and its transactions, and an incident's subjects as CSV rows (`export --incident`).

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use retrace_api::{
    CauseKind, IncidentDetail, IncidentStatus, IncidentSubject, IncidentTransaction, IncidentView,
    MinuteCount,
};

use super::{CsvRow, lines, local_time, plural, table, zone_name};

/// A cause longer than this is cut in the listing; `incidents show` prints it whole.
const CAUSE_WIDTH: usize = 48;
/// The most columns `incidents show`'s chart takes: a longer incident is charted in buckets
/// of several minutes.
const CHART_WIDTH: u64 = 60;
/// Eighths of a character cell, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// `retrace incidents`: one line per incident, in the server's order (the newest failure
/// first).
pub fn incident_listing(items: &[IncidentView], tz: &TimeZone) -> String {
    let zone = zone_name(tz);
    let mut rows = vec![vec![
        "STATUS".to_owned(),
        "CAUSE".to_owned(),
        "STEP (TOPIC TYPE → CONSUMER)".to_owned(),
        "FAILING/TXNS".to_owned(),
        format!("FIRST SEEN ({zone})"),
        "LAST SEEN".to_owned(),
        "FAILURES PER MINUTE (HOUR TO LAST SEEN)".to_owned(),
        "INCIDENT".to_owned(),
    ]];
    rows.extend(items.iter().map(|incident| {
        let recent: Vec<u64> = incident.recent.iter().map(|m| m.failures).collect();
        vec![
            incident.status.as_str().to_owned(),
            shorten(&incident.cause, CAUSE_WIDTH),
            step(incident),
            format!("{}/{}", incident.failing, incident.transactions),
            local_time(&incident.first_seen, tz, false),
            local_time(&incident.last_seen, tz, false),
            sparkline(&recent),
            incident.incident_id.clone(),
        ]
    }));
    lines(&rows)
}

/// `retrace incidents show`: what failed where and since when, the chart of its failures,
/// its transactions (this page of them), and how to export and replay it.
pub fn incident_detail(detail: &IncidentDetail, tz: &TimeZone) -> String {
    let incident = &detail.incident;
    let id = &incident.incident_id;
    let mut out = format!("Incident {id}: {}\n", status_words(incident, tz));
    let kind = match incident.cause_kind {
        CauseKind::Code => "the consumer's error code",
        CauseKind::Text => "the error text, its variable parts normalised",
    };
    let fields = [
        ("cause", format!("{} ({kind})", incident.cause)),
        ("step", step(incident)),
        (
            "failing",
            format!(
                "{} of {} transaction{} ({} failure{}), {} subject{} touched",
                incident.failing,
                incident.transactions,
                plural(incident.transactions as usize),
                incident.failures,
                plural(incident.failures as usize),
                detail.subjects,
                plural(detail.subjects as usize),
            ),
        ),
        (
            "seen",
            format!(
                "first {}, last {} ({})",
                local_time(&incident.first_seen, tz, false),
                local_time(&incident.last_seen, tz, false),
                zone_name(tz)
            ),
        ),
        ("example", incident.example_error.clone()),
    ];
    for (name, value) in fields {
        writeln!(out, "  {:<8} {value}", format!("{name}:")).unwrap();
    }
    out.push('\n');
    out.push_str(&chart(&detail.minutes, tz));
    out.push_str("\nTransactions, still failing first\n");
    out.push_str(&transactions(&detail.transactions, tz));
    if detail.next_cursor.is_some() {
        writeln!(
            out,
            "  … and more: `retrace incidents show {id} --limit N` lists up to 500"
        )
        .unwrap();
    }
    out.push('\n');
    out.push_str(&hints(incident, detail.subjects));
    out
}

/// `open since …`, `resolved at … (opened …)`, with how often it reopened.
fn status_words(incident: &IncidentView, tz: &TimeZone) -> String {
    let opened = local_time(&incident.opened_at, tz, false);
    let mut words = match (&incident.status, &incident.resolved_at) {
        (IncidentStatus::Resolved, Some(at)) => format!(
            "RESOLVED at {} (opened {opened})",
            local_time(at, tz, false)
        ),
        (IncidentStatus::Resolved, None) => format!("RESOLVED (opened {opened})"),
        (IncidentStatus::Open, _) => format!("OPEN since {opened}"),
    };
    if incident.reopened > 0 {
        write!(
            words,
            ", reopened {} time{}",
            incident.reopened,
            plural(incident.reopened as usize)
        )
        .unwrap();
    }
    words
}

/// The transactions of one page of an incident.
fn transactions(items: &[IncidentTransaction], tz: &TimeZone) -> String {
    let mut rows = vec![vec![
        "TRANSACTION".to_owned(),
        "STATE".to_owned(),
        "FAILURES".to_owned(),
        format!("LAST FAILED ({})", zone_name(tz)),
        "SUBJECTS".to_owned(),
    ]];
    rows.extend(items.iter().map(|t| {
        let state = match (&t.recovered_at, t.failing) {
            (_, true) => "failing".to_owned(),
            (Some(at), false) => format!("recovered {}", local_time(at, tz, false)),
            (None, false) => "recovered".to_owned(),
        };
        vec![
            t.transaction_id.clone(),
            state,
            t.failures.to_string(),
            local_time(&t.last_failed_at, tz, false),
            t.subject_ids.join(", "),
        ]
    }));
    table(&rows).iter().map(|l| format!("  {l}\n")).collect()
}

/// What to do next: export whom it touched, replay what still fails.
fn hints(incident: &IncidentView, subjects: u64) -> String {
    let id = &incident.incident_id;
    let mut out = format!(
        "Export its {subjects} subject{}: retrace export --incident {id} --format csv\n",
        plural(subjects as usize)
    );
    if incident.failing == 0 {
        out.push_str("Nothing to replay: none of its transactions still fails\n");
    } else {
        writeln!(
            out,
            "Replay its {} failing transaction{}: retrace replay --incident {id} --reason \"…\" \
             --dry-run",
            incident.failing,
            plural(incident.failing as usize)
        )
        .unwrap();
    }
    out
}

/// `registrations birth.registration.submitted.v1 → validation`.
fn step(incident: &IncidentView) -> String {
    format!(
        "{} {} → {}",
        incident.topic, incident.event_type, incident.consumer
    )
}

/// `text`, cut to `width` characters with `…` when longer.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(width - 1).collect();
    short.push('…');
    short
}

/// One block character per count, its height scaled to the largest count (which is `█`).
/// A zero is a space and any other count at least `▁`, so that a minute with one failure
/// among hundreds still shows, and reads apart from a minute without any.
fn sparkline(counts: &[u64]) -> String {
    let peak = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&count| match count {
            0 => ' ',
            _ => {
                // In eighths, rounded up so that no count above zero falls to nothing.
                let eighths = (u128::from(count) * 8).div_ceil(u128::from(peak));
                BLOCKS[eighths as usize - 1]
            }
        })
        .collect()
}

/// The failures from an incident's first minute to its last, one column a minute (or a few
/// minutes when that is more than [`CHART_WIDTH`]), minutes without a failure blank.
fn chart(minutes: &[MinuteCount], tz: &TimeZone) -> String {
    let timed: Vec<(Timestamp, u64)> = minutes
        .iter()
        .filter_map(|m| Some((m.minute.parse().ok()?, m.failures)))
        .collect();
    // The server sends them oldest first; taking the ends does not rely on it.
    let (Some(first), Some(last)) = (
        timed.iter().map(|(at, _)| *at).min(),
        timed.iter().map(|(at, _)| *at).max(),
    ) else {
        return "No failure charted\n".to_owned();
    };
    let minutes_from_first = |at: Timestamp| at.duration_since(first).as_mins().unsigned_abs();
    let span = minutes_from_first(last) + 1;
    let bucket = span.div_ceil(CHART_WIDTH);
    let mut counts = vec![0u64; span.div_ceil(bucket) as usize];
    for (at, failures) in &timed {
        counts[(minutes_from_first(*at) / bucket) as usize] += failures;
    }
    let per = match bucket {
        1 => "a minute".to_owned(),
        n => format!("per {n} minutes"),
    };
    let end = last + SignedDuration::from_mins(1);
    format!(
        "Failures {per}, {} to {} ({}), peak {}\n  {}\n",
        local_time(&first.to_string(), tz, false),
        local_time(&end.to_string(), tz, false),
        zone_name(tz),
        counts.iter().max().unwrap_or(&0),
        sparkline(&counts)
    )
}

impl CsvRow for IncidentSubject {
    const HEADER: &'static [&'static str] = &["subject_id", "transaction_ids", "failing"];

    fn fields(&self) -> Vec<String> {
        vec![
            self.subject_id.clone(),
            self.transaction_ids.join(";"),
            self.failing.to_string(),
        ]
    }
}

#[cfg(test)]
#[path = "incidents_tests.rs"]
mod tests;
