//! Everything the commands print, as text: a transaction's timeline and causation tree,
//! listings, incidents, replay plans and results, progress lines, CSV, and pretty JSON. Pure
//! functions of the API's documents (and a time zone), so they are tested without a server.

use std::fmt::Write as _;

use jiff::tz::TimeZone;
use retrace_api::AuditReport;
use retrace_api::{AuditView, ErasureView, ReplayPlan, ReplayView, TokenView, TransactionSummary};
use retrace_api::{QueueStatus, RedriveReport};
use serde::Serialize;

mod incidents;
mod trace;

pub use incidents::{incident_detail, incident_listing};
#[cfg(test)]
use trace::{outcome, timeline, tree};
pub use trace::{step, trace};

/// At most this many planned messages are listed one by one.
const PLAN_LINES: usize = 20;

/// An RFC 3339 time from the server in `tz`, to the second or the millisecond; the text as
/// is when it is not a time.
pub fn local_time(rfc3339: &str, tz: &TimeZone, millis: bool) -> String {
    let Ok(time) = rfc3339.parse::<jiff::Timestamp>() else {
        return rfc3339.to_owned();
    };
    let format = if millis {
        "%Y-%m-%d %H:%M:%S%.3f"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    time.to_zoned(tz.clone()).strftime(format).to_string()
}

/// The zone's abbreviation now (`CET`, `UTC`), to say which time the listing shows.
fn zone_name(tz: &TimeZone) -> String {
    jiff::Timestamp::now()
        .to_zoned(tz.clone())
        .strftime("%Z")
        .to_string()
}

/// A duration in the largest units that matter: `850ms`, `1.2s`, `2m05s`, `3h07m`, `2d04h`.
pub fn duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (s, m, h) = (ms / 1000, ms / 60_000, ms / 3_600_000);
    let text = match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", s, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{m}m{:02}s", s % 60),
        3_600_000..86_400_000 => format!("{h}h{:02}m", m % 60),
        _ => format!("{}d{:02}h", h / 24, h % 24),
    };
    format!("{sign}{text}")
}

/// A replay in one line: id, state, progress, who, when, why.
pub fn replay_line(replay: &ReplayView, tz: &TimeZone) -> String {
    let mut line = format!(
        "{}  {}, {} of {} message{} published, by {} at {}: {:?} ({})",
        replay.replay_id,
        replay.state,
        replay.published,
        replay.planned,
        plural(replay.planned as usize),
        replay.requested_by,
        local_time(&replay.requested_at, tz, false),
        replay.reason,
        replay.selection
    );
    if !replay.target_topic.is_empty() {
        write!(line, ", to {}", replay.target_topic).unwrap();
    }
    if !replay.error.is_empty() {
        write!(line, "; error: {}", replay.error).unwrap();
    }
    line
}

/// `retrace subject`: one line per transaction.
pub fn subject_listing(items: &[TransactionSummary], tz: &TimeZone) -> String {
    let mut rows = vec![header(&[
        "TRANSACTION",
        "STATUS",
        &format!("STARTED ({})", zone_name(tz)),
        "EVENTS",
        "FAILURE",
    ])];
    rows.extend(items.iter().map(|item| {
        vec![
            item.transaction_id.clone(),
            item.status.as_str().to_owned(),
            local_time(&item.started_at, tz, false),
            item.events.to_string(),
            item.failure
                .as_ref()
                .map(|f| format!("{}: {}", step(f), f.error))
                .unwrap_or_default(),
        ]
    }));
    lines(&rows)
}

/// `retrace failed`: one line per failed transaction, with the step and the error.
pub fn failed_listing(items: &[TransactionSummary], tz: &TimeZone) -> String {
    let mut rows = vec![header(&[
        "TRANSACTION",
        &format!("FAILED AT ({})", zone_name(tz)),
        "STEP (TOPIC / TYPE / CONSUMER)",
        "ERROR",
    ])];
    rows.extend(items.iter().map(|item| match &item.failure {
        Some(failure) => vec![
            item.transaction_id.clone(),
            local_time(&failure.time, tz, false),
            step(failure),
            failure.error.clone(),
        ],
        None => vec![
            item.transaction_id.clone(),
            local_time(&item.last_at, tz, false),
            String::new(),
            item.status.as_str().to_owned(),
        ],
    }));
    lines(&rows)
}

/// A replay plan: how many messages of how many transactions, each message (the first
/// [`PLAN_LINES`]) and where it goes.
pub fn plan(plan: &ReplayPlan) -> String {
    let count = plan.messages.len();
    let mut out = format!(
        "Replay plan: {count} message{} of {} transaction{}\n",
        plural(count),
        plan.transactions,
        plural(plan.transactions)
    );
    let rows: Vec<Vec<String>> = plan
        .messages
        .iter()
        .take(PLAN_LINES)
        .map(|m| {
            vec![
                m.transaction_id.clone(),
                m.event_type.clone(),
                format!("event {}", m.event_id),
                format!("from {} → {}", m.topic, m.target_topic),
            ]
        })
        .collect();
    for line in table(&rows) {
        writeln!(out, "  {line}").unwrap();
    }
    if count > PLAN_LINES {
        writeln!(out, "  … and {} more", count - PLAN_LINES).unwrap();
        let mut per_topic: std::collections::BTreeMap<&str, usize> = Default::default();
        for m in &plan.messages {
            *per_topic.entry(&m.target_topic).or_default() += 1;
        }
        for (topic, n) in per_topic {
            writeln!(out, "  to {topic}: {n} message{}", plural(n)).unwrap();
        }
    }
    out
}

/// The summary printed once a replay has finished.
pub fn replay_result(replay: &ReplayView) -> String {
    let mut out = format!("replay id: {}\n", replay.replay_id);
    writeln!(
        out,
        "state: {}, {} of {} message{} published, {} transaction{}",
        replay.state,
        replay.published,
        replay.planned,
        plural(replay.planned as usize),
        replay.transactions,
        plural(replay.transactions)
    )
    .unwrap();
    if !replay.error.is_empty() {
        writeln!(out, "error: {}", replay.error).unwrap();
    }
    out
}

/// One line of progress: `[#########-----------]  45/100 messages  45%`.
pub fn progress_line(published: u64, planned: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (published.min(planned) * WIDTH)
        .checked_div(planned)
        .unwrap_or(0);
    let percent = (published.min(planned) * 100)
        .checked_div(planned)
        .unwrap_or(100);
    format!(
        "[{}{}] {published}/{planned} messages {percent:>3}%",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    )
}

/// One exported transaction: what `retrace export` writes, as a CSV row or a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow {
    pub transaction_id: String,
    pub status: String,
    pub started_at: String,
    pub last_at: String,
    pub events: usize,
    pub topics: Vec<String>,
    pub subject_ids: Vec<String>,
    pub failed_step: Option<String>,
    pub error: Option<String>,
}

impl From<&TransactionSummary> for ExportRow {
    fn from(item: &TransactionSummary) -> Self {
        ExportRow {
            transaction_id: item.transaction_id.clone(),
            status: item.status.as_str().to_owned(),
            started_at: item.started_at.clone(),
            last_at: item.last_at.clone(),
            events: item.events,
            topics: item.topics.clone(),
            subject_ids: item.subject_ids.clone(),
            failed_step: item
                .failure
                .as_ref()
                .map(|f| format!("{}/{}/{}", f.topic, f.event_type, f.consumer)),
            error: item.failure.as_ref().map(|f| f.error.clone()),
        }
    }
}

/// A row of an export, as CSV fields in the order of its header.
pub trait CsvRow {
    /// The header line's names.
    const HEADER: &'static [&'static str];
    /// The fields, as many as [`CsvRow::HEADER`] names; a list joined with `;`.
    fn fields(&self) -> Vec<String>;
}

impl CsvRow for ExportRow {
    const HEADER: &'static [&'static str] = &[
        "transaction_id",
        "status",
        "started_at",
        "last_at",
        "events",
        "topics",
        "subject_ids",
        "failed_step",
        "error",
    ];

    fn fields(&self) -> Vec<String> {
        vec![
            self.transaction_id.clone(),
            self.status.clone(),
            self.started_at.clone(),
            self.last_at.clone(),
            self.events.to_string(),
            self.topics.join(";"),
            self.subject_ids.join(";"),
            self.failed_step.clone().unwrap_or_default(),
            self.error.clone().unwrap_or_default(),
        ]
    }
}

/// RFC 4180 CSV with a header line.
pub fn csv<R: CsvRow>(rows: &[R]) -> String {
    let mut out = csv_record(R::HEADER.iter().map(|h| h.to_string()));
    for row in rows {
        out.push_str(&csv_record(row.fields()));
    }
    out
}

fn csv_record(fields: impl IntoIterator<Item = String>) -> String {
    let fields: Vec<String> = fields.into_iter().map(|f| csv_field(&f)).collect();
    format!("{}\r\n", fields.join(","))
}

/// A field quoted when it must be: when it holds a comma, a quote, a line break, or
/// leading or trailing space; quotes inside are doubled. One a spreadsheet would run as a
/// formula is made text first.
pub fn csv_field(field: &str) -> String {
    // A spreadsheet runs a cell that starts with one of these as a formula; an id or an error
    // text chosen by whoever published the event must stay text (OWASP's CSV injection
    // advice: a leading apostrophe, which spreadsheets hide).
    let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    let needs_quotes = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs_quotes {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// `raw` JSON re-indented, two spaces a level, keeping every byte of its tokens and the
/// order of its keys (a parse and re-serialise would sort them).
pub fn pretty_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = raw.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let empty = matches!(chars.peek(), Some('}' | ']'));
                if empty {
                    out.push(chars.next().unwrap());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `retrace jobs status`: one line per queue, then what is unknown and what the numbers
/// count.
pub fn queue_statuses(statuses: &[QueueStatus]) -> String {
    let mut rows = vec![header(&[
        "QUEUE",
        "GATE",
        "PENDING",
        "RUNNING",
        "DONE",
        "RETRYING",
        "DEAD-LETTERED",
        "FAILED",
        "RATE/S",
        "WHY",
    ])];
    rows.extend(statuses.iter().map(|s| {
        vec![
            s.queue.clone(),
            if s.gate_open { "open" } else { "closed" }.to_owned(),
            s.pending.map_or("?".to_owned(), |n| n.to_string()),
            s.running.to_string(),
            s.done.to_string(),
            s.retrying.to_string(),
            s.dead_lettered.to_string(),
            s.failed.to_string(),
            format!("{:.1}", s.rate_per_s),
            s.gate_reason.clone(),
        ]
    }));
    let mut out = lines(&rows);
    for status in statuses {
        if let Some(error) = &status.pending_error {
            writeln!(out, "pending of {} unknown: {error}", status.queue).unwrap();
        }
    }
    out.push_str(
        "pending: jobs waiting in Kafka for all workers of the queue; other counts and the \
         rate (attempts per second, last minute): this worker since it started\n",
    );
    out
}

/// What a redrive would move (`retrace jobs redrive`, before asking): each job and the lane
/// it goes back to, and the selected jobs that are not dead-lettered.
pub fn redrive_plan(queue: &str, report: &RedriveReport) -> String {
    let count = report.redriven.len();
    let mut out = format!(
        "Redrive plan: {count} dead-lettered job{} of queue {queue}\n",
        plural(count)
    );
    out.push_str(&redriven_jobs(report));
    out
}

/// What a redrive moved.
pub fn redrive_result(queue: &str, report: &RedriveReport) -> String {
    let count = report.redriven.len();
    let mut out = format!(
        "redriven: {count} job{} of queue {queue}, back on {}\n",
        plural(count),
        if count == 1 {
            "its lane"
        } else {
            "their lanes"
        }
    );
    out.push_str(&redriven_jobs(report));
    out
}

fn redriven_jobs(report: &RedriveReport) -> String {
    let rows: Vec<Vec<String>> = report
        .redriven
        .iter()
        .take(PLAN_LINES)
        .map(|(job, lane)| vec![format!("job {job}"), format!("→ {lane}")])
        .collect();
    let mut out = String::new();
    for line in table(&rows) {
        writeln!(out, "  {line}").unwrap();
    }
    let count = report.redriven.len();
    if count > PLAN_LINES {
        writeln!(out, "  … and {} more", count - PLAN_LINES).unwrap();
        let mut per_lane: std::collections::BTreeMap<&str, usize> = Default::default();
        for lane in report.redriven.values() {
            *per_lane.entry(lane).or_default() += 1;
        }
        for (lane, n) in per_lane {
            writeln!(out, "  to {lane}: {n} job{}", plural(n)).unwrap();
        }
    }
    if !report.not_found.is_empty() {
        writeln!(
            out,
            "  not dead-lettered (not found): {}",
            report.not_found.join(", ")
        )
        .unwrap();
    }
    out
}

/// What `retrace token create` says on stderr; the token itself goes alone to stdout.
pub fn token_created(record: &TokenView, tz: &TimeZone) -> String {
    let mut out = format!(
        "created token {} ({}), role {}{}{}, {}\n",
        record.id,
        record.name,
        record.role,
        list_words(" with ", &record.extra),
        record
            .topics
            .as_ref()
            .map(|t| list_words(", publishing to ", t))
            .unwrap_or_default(),
        match &record.expires_at {
            Some(at) => format!("expires {}", local_time(at, tz, false)),
            None => "never expires".to_owned(),
        }
    );
    out.push_str("the token is shown this once, on the next line: keep it now\n");
    out
}

fn list_words(prefix: &str, items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}", items.join(", "))
    }
}

/// `retrace token list`: one line per token; never a secret (the server keeps none).
pub fn token_listing(tokens: &[TokenView], tz: &TimeZone) -> String {
    let zone = zone_name(tz);
    let mut rows = vec![vec![
        "ID".to_owned(),
        "NAME".to_owned(),
        "ROLE".to_owned(),
        "EXTRA".to_owned(),
        "TOPICS".to_owned(),
        format!("CREATED ({zone})"),
        "EXPIRES".to_owned(),
        "REVOKED".to_owned(),
    ]];
    rows.extend(tokens.iter().map(|t| {
        vec![
            t.id.clone(),
            t.name.clone(),
            t.role.clone(),
            or_dash(t.extra.join(",")),
            t.topics.as_ref().map_or("any".to_owned(), |t| t.join(",")),
            local_time(&t.created_at, tz, false),
            t.expires_at
                .as_ref()
                .map_or("never".to_owned(), |at| local_time(at, tz, false)),
            t.revoked_at.as_ref().map_or("-".to_owned(), |at| {
                let by = t
                    .revoked_by
                    .as_ref()
                    .map(|by| format!(" by {by}"))
                    .unwrap_or_default();
                format!("{}{by}", local_time(at, tz, false))
            }),
        ]
    }));
    lines(&rows)
}

/// What `retrace token revoke` did.
pub fn token_revoked(record: &TokenView, tz: &TimeZone) -> String {
    format!(
        "revoked token {} ({}, role {}){}{}\n",
        record.id,
        record.name,
        record.role,
        record
            .revoked_at
            .as_ref()
            .map(|at| format!(" at {}", local_time(at, tz, false)))
            .unwrap_or_default(),
        record
            .revoked_by
            .as_ref()
            .map(|by| format!(" by {by}"))
            .unwrap_or_default()
    )
}

/// `retrace audit`: one line per record, oldest first, in local time.
pub fn audit_listing(records: &[AuditView], tz: &TimeZone) -> String {
    let mut rows = vec![vec![
        format!("TIME ({})", zone_name(tz)),
        "ACTOR".to_owned(),
        "ACTOR ID".to_owned(),
        "ROLE".to_owned(),
        "ORIGIN".to_owned(),
        "ACTION".to_owned(),
        "TARGET".to_owned(),
        "REASON".to_owned(),
        "RESULT".to_owned(),
    ]];
    rows.extend(records.iter().map(|r| {
        vec![
            local_time(&r.at, tz, false),
            or_dash(r.actor.clone()),
            or_dash(r.actor_id.clone()),
            or_dash(r.role.clone()),
            or_dash(r.origin.clone()),
            r.action.clone(),
            or_dash(r.target.clone()),
            or_dash(r.reason.clone()),
            r.result.clone(),
        ]
    }));
    lines(&rows)
}

/// `retrace audit verify`: intact, or each break in the chain; then, apart, the audit
/// records that were never chained because they are unsigned or badly signed.
pub fn audit_verification(report: &AuditReport) -> String {
    let chain = &report.chain;
    let mut out = if chain.intact && chain.problems.is_empty() {
        format!("audit trail intact: {} records\n", chain.records)
    } else {
        let mut out = format!(
            "audit trail NOT intact: {} problem{} in {} records\n",
            chain.problems.len(),
            plural(chain.problems.len()),
            chain.records
        );
        for problem in &chain.problems {
            writeln!(out, "  {problem}").unwrap();
        }
        out
    };
    for (list, what) in [
        (&report.unsigned, "unsigned"),
        (&report.badly_signed, "badly signed"),
    ] {
        if list.is_empty() {
            continue;
        }
        writeln!(
            out,
            "{}{} {what} audit record{} on the audit topic, never chained \
             (written without Retrace's signing key):",
            list.len(),
            if report.truncated { "+" } else { "" },
            plural(list.len())
        )
        .unwrap();
        for record in list {
            writeln!(
                out,
                "  {} archived {} key {}: {}",
                record.record,
                record.archived_at,
                record.key.as_deref().unwrap_or("-"),
                record.problem
            )
            .unwrap();
        }
    }
    out
}

/// What `retrace erase` did, and when the bytes leave the disk.
pub fn erasure(erased: &ErasureView, tz: &TimeZone) -> String {
    let mut out = format!(
        "erased subject {} at {}: the payloads of {} record{} in {} transaction{}",
        erased.subject_id,
        local_time(&erased.erased_at, tz, false),
        erased.records,
        plural(erased.records),
        erased.transactions,
        plural(erased.transactions),
    );
    if erased.already_erased > 0 {
        write!(
            out,
            " ({} record{} already erased before)",
            erased.already_erased,
            plural(erased.already_erased)
        )
        .unwrap();
    }
    if erased.outcomes > 0 {
        write!(
            out,
            ", and the error text of {} outcome{}",
            erased.outcomes,
            plural(erased.outcomes)
        )
        .unwrap();
    }
    out.push('\n');
    out.push_str(
        "reminder: the bytes leave the archive's disk at the next `retrace-archive compact` \
         (stop the archive, then run it)\n",
    );
    if !erased.note.is_empty() {
        writeln!(out, "note: {}", erased.note).unwrap();
    }
    out
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Rows padded into aligned columns, two spaces apart; trailing blanks trimmed.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                if *width == 0 {
                    continue;
                }
                let pad = width - cell.chars().count();
                write!(line, "{cell}{}  ", " ".repeat(pad)).unwrap();
            }
            line.trim_end().to_owned()
        })
        .collect()
}

fn lines(rows: &[Vec<String>]) -> String {
    table(rows).into_iter().map(|l| l + "\n").collect()
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;

/// A backup's manifest, after `what` was done with it; for a restore, what happens next.
pub fn backup_manifest(what: &str, manifest: &retrace_api::BackupManifest) -> String {
    let mut text = format!(
        "{what}: {} records, format {}, taken {}\n",
        manifest.records, manifest.format_version, manifest.created_at
    );
    for position in &manifest.positions {
        text.push_str(&format!(
            "  {}/{} resumes at offset {}\n",
            position.topic, position.partition, position.next_offset
        ));
    }
    if what.starts_with("restored") {
        text.push_str("start the archive on it: it resumes reading Kafka from these positions\n");
    }
    text
}

/// What `retrace rebuild` did.
pub fn rebuilt(data_dir: &std::path::Path, done: &retrace_archive::RebuildProgress) -> String {
    format!(
        "rebuilt {} from Kafka: {} messages read, {} stored, {} already archived\n",
        data_dir.display(),
        done.read,
        done.appended,
        done.already_archived
    )
}
