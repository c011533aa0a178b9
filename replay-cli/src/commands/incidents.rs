//! `retrace incidents`: failed steps grouped by where and why they failed (docs/incidents.md),
//! so that an outage reads as one line rather than a thousand failed transactions; and
//! `incidents show`, one incident with its failures over time and its transactions.

use jiff::tz::TimeZone;
use retrace_api::{IncidentDetail, IncidentStatus, IncidentView, describe_incomplete};

use super::client::{Client, Request, Server};
use super::{MAX_PAGE, collect, print, print_json, render, window_words};
use crate::Failure;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    command: Option<IncidentsCommand>,
    /// Only `open` incidents (a transaction still fails with the cause), or only `resolved`
    /// ones.
    #[arg(long, value_name = "open|resolved")]
    status: Option<IncidentStatus>,
    /// Only incidents with a failure since this time: RFC 3339 or a duration back from now
    /// (90m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// ... and until this time.
    #[arg(long)]
    until: Option<String>,
    /// List at most this many incidents, the latest failure first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print the incidents as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum IncidentsCommand {
    /// One incident: its cause and step, its failures over time, its transactions (still
    /// failing first), and how to export and replay it.
    Show(ShowArgs),
}

#[derive(clap::Args)]
struct ShowArgs {
    /// The incident's id, as `retrace incidents` lists it.
    incident: String,
    /// List at most this many of its transactions.
    #[arg(
        long,
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE as i64)
    )]
    limit: u32,
    /// Print the server's JSON document instead.
    #[arg(long)]
    json: bool,
}

pub async fn run(server: &Server, args: IncidentsArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    match args.command {
        Some(IncidentsCommand::Show(show_args)) => show(&client, show_args).await,
        None => list(&client, args).await,
    }
}

async fn list(client: &Client, args: IncidentsArgs) -> Result<(), Failure> {
    let query = [
        ("status", args.status.map(|s| s.as_str().to_owned())),
        ("since", args.since.clone()),
        ("until", args.until.clone()),
    ];
    let path = ["v1", "incidents"];
    let listing = collect::<IncidentView>(client, &path, &query, Some(args.limit as usize)).await?;
    listing.note_behind();
    if args.json {
        return print_json(&listing.items);
    }
    if listing.items.is_empty() {
        return print(&format!(
            "no {}incidents{}\n",
            args.status
                .map(|s| format!("{} ", s.as_str()))
                .unwrap_or_default(),
            window_words(args.since.as_deref(), args.until.as_deref())
        ));
    }
    print(&render::incident_listing(
        &listing.items,
        &TimeZone::system(),
    ))?;
    listing.note_more("incidents");
    Ok(())
}

/// One page of the incident's transactions: the page is for reading; every subject is
/// what `retrace export --incident` is for.
async fn show(client: &Client, args: ShowArgs) -> Result<(), Failure> {
    let path = ["v1", "incidents", &args.incident];
    let request = Request::get(&path).query("limit", Some(args.limit));
    if args.json {
        let (_, body) = client.send_raw(request).await?;
        return print(&format!("{}\n", render::pretty_json(&body)));
    }
    let detail: IncidentDetail = client.send(request).await?;
    if let Some(caveat) = describe_incomplete(&detail.incomplete, "incident") {
        eprintln!("retrace: {caveat}");
    }
    print(&render::incident_detail(&detail, &TimeZone::system()))
}
