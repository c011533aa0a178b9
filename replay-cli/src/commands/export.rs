//! `retrace export`: what analysts take away, as CSV or JSON: the transactions that touched
//! a subject, failed transactions, or the subjects an incident touched. Every page of the
//! archive's export routes (which need the export permission and are audited).

use retrace_api::{IncidentSubject, TransactionSummary};
use serde::Serialize;

use super::client::Client;
use super::render::{self, CsvRow, ExportRow};
use super::{collect, failed_query, print, print_json};
use crate::Failure;

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("selection").required(true).args(["subject", "failed", "incident"])
))]
// `--topic` and `--type` conflict with the other selections rather than `requires = "failed"`:
// a flag always has a value (false), so clap counts it present and would let them through.
pub struct ExportArgs {
    /// Export the transactions that touched this subject.
    #[arg(long, value_name = "SUBJECT_ID")]
    subject: Option<String>,
    /// Export failed transactions.
    #[arg(long)]
    failed: bool,
    /// Export the subjects this incident's transactions touched (`retrace incidents` lists
    /// the ids): one row per subject, with its transactions of the incident.
    #[arg(long, value_name = "INCIDENT_ID")]
    incident: Option<String>,
    /// Only transactions since this time: RFC 3339 or a duration back from now.
    #[arg(long, conflicts_with = "incident")]
    since: Option<String>,
    /// Only transactions until this time.
    #[arg(long, conflicts_with = "incident")]
    until: Option<String>,
    /// With --failed: only transactions with a message on this topic.
    #[arg(long, conflicts_with_all = ["subject", "incident"])]
    topic: Option<String>,
    /// With --failed: only transactions with an event of this type.
    #[arg(long = "type", value_name = "TYPE", conflicts_with_all = ["subject", "incident"])]
    event_type: Option<String>,
    /// Export at most this many rows (default: all).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// csv: one row per transaction (per subject with --incident), with a header; json: an
    /// array of the same rows.
    #[arg(long, value_enum, default_value = "csv")]
    format: ExportFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

pub async fn run(client: &Client, args: ExportArgs) -> Result<(), Failure> {
    let limit = args.limit.map(|l| l as usize);
    let Some(incident) = &args.incident else {
        return transactions(client, &args, limit).await;
    };
    let path = ["v1", "exports", "incidents", incident, "subjects"];
    let listing = collect::<IncidentSubject>(client, &path, &[], limit).await?;
    listing.note_behind();
    write(&listing.items, args.format, "subjects")?;
    listing.note_more("export");
    Ok(())
}

/// `--subject` or `--failed`: one row per transaction.
async fn transactions(
    client: &Client,
    args: &ExportArgs,
    limit: Option<usize>,
) -> Result<(), Failure> {
    let listing = match &args.subject {
        Some(subject) => {
            let path = ["v1", "exports", "subjects", subject, "transactions"];
            let query = [("since", args.since.clone()), ("until", args.until.clone())];
            collect::<TransactionSummary>(client, &path, &query, limit).await?
        }
        None => {
            let query = failed_query(
                args.since.clone(),
                args.until.clone(),
                args.topic.clone(),
                args.event_type.clone(),
            );
            collect(client, &["v1", "exports", "transactions"], &query, limit).await?
        }
    };
    listing.note_behind();
    let rows: Vec<ExportRow> = listing.items.iter().map(ExportRow::from).collect();
    write(&rows, args.format, "transactions")?;
    listing.note_more("export");
    Ok(())
}

/// The rows in `format` on stdout; on stderr, that there were none (of `what`).
fn write<R: CsvRow + Serialize>(
    rows: &[R],
    format: ExportFormat,
    what: &str,
) -> Result<(), Failure> {
    match format {
        ExportFormat::Csv => print(&render::csv(rows))?,
        ExportFormat::Json => print_json(&rows)?,
    }
    if rows.is_empty() {
        eprintln!("retrace: no {what} matched; nothing exported");
    }
    Ok(())
}
