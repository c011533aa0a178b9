//! The commands that talk to a Retrace server: `trace`, `subject`, `failed`, `incidents`,
//! `replay` and `export`. Each one asks the API ([`client`]), and prints what it answered
//! ([`render`]).

pub mod admin;
pub mod archive;
mod client;
mod export;
pub mod incidents;
pub mod jobs;
pub mod operations;
mod operator;
mod render;
mod replay;

use std::collections::BTreeSet;
use std::io::Write as _;

use jiff::tz::TimeZone;
use retrace_api::{Behind, Page, Trace, describe_behind, describe_incomplete};
use serde::de::DeserializeOwned;

use crate::Failure;
pub use client::Server;
use client::{Client, Request};

/// The server's largest page.
const MAX_PAGE: usize = 500;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// The transaction id (the `retrace-transaction-id` of its messages).
    transaction: String,
    /// Print the server's JSON document instead of the timeline.
    #[arg(long)]
    json: bool,
    /// Show every message's payload and headers.
    #[arg(long)]
    payload: bool,
}

#[derive(clap::Args)]
pub struct SubjectArgs {
    /// The subject id, e.g. `beneficiary:42`.
    subject: String,
    /// Only transactions since this time: RFC 3339 (2026-11-23T08:00:00Z) or a duration
    /// back from now (90m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only transactions until this time (RFC 3339 or a duration back from now).
    #[arg(long)]
    until: Option<String>,
    /// List at most this many transactions, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print the transactions as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct FailedArgs {
    /// Transactions that failed since this time: RFC 3339 or a duration back from now.
    #[arg(long, default_value = "24h")]
    since: String,
    /// ... and until this time.
    #[arg(long)]
    until: Option<String>,
    /// Only transactions with a message on this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only transactions with an event of this type.
    #[arg(long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// List at most this many transactions, newest failure first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print the transactions as a JSON array.
    #[arg(long)]
    json: bool,
}

pub use export::ExportArgs;
pub use replay::ReplayArgs;

pub async fn trace(server: &Server, args: TraceArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    let path = ["v1", "transactions", &args.transaction];
    let request = Request::get(&path).query("payload", args.payload.then_some("true"));
    if args.json {
        let (_, body) = client.send_raw(request).await?;
        return print(&format!("{}\n", render::pretty_json(&body)));
    }
    let trace: Trace = client.send(request).await?;
    print(&render::trace(&trace, &TimeZone::system()))
}

pub async fn subject(server: &Server, args: SubjectArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    let path = ["v1", "subjects", &args.subject, "transactions"];
    let query = [("since", args.since.clone()), ("until", args.until.clone())];
    let listing = collect(&client, &path, &query, Some(args.limit as usize)).await?;
    listing.note_behind();
    if args.json {
        return print_json(&listing.items);
    }
    if listing.items.is_empty() {
        return print(&format!(
            "no transaction touched {}{}\n",
            args.subject,
            window_words(args.since.as_deref(), args.until.as_deref())
        ));
    }
    print(&render::subject_listing(
        &listing.items,
        &TimeZone::system(),
    ))?;
    listing.note_more("subject");
    Ok(())
}

pub async fn failed(server: &Server, args: FailedArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    let query = failed_query(
        Some(args.since.clone()),
        args.until.clone(),
        args.topic.clone(),
        args.event_type.clone(),
    );
    let listing = collect(
        &client,
        &["v1", "transactions"],
        &query,
        Some(args.limit as usize),
    )
    .await?;
    listing.note_behind();
    if args.json {
        return print_json(&listing.items);
    }
    if listing.items.is_empty() {
        let filters: Vec<String> = [("topic", &args.topic), ("type", &args.event_type)]
            .iter()
            .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
            .collect();
        return print(&format!(
            "no failed transactions{}{}\n",
            window_words(Some(&args.since), args.until.as_deref()),
            if filters.is_empty() {
                String::new()
            } else {
                format!(" with {}", filters.join(" and "))
            }
        ));
    }
    print(&render::failed_listing(&listing.items, &TimeZone::system()))?;
    listing.note_more("failed");
    Ok(())
}

pub async fn replay(server: &Server, args: ReplayArgs) -> Result<(), Failure> {
    replay::run(&Client::new(server)?, args).await
}

pub async fn export(server: &Server, args: ExportArgs) -> Result<(), Failure> {
    export::run(&Client::new(server)?, args).await
}

fn failed_query(
    since: Option<String>,
    until: Option<String>,
    topic: Option<String>,
    event_type: Option<String>,
) -> [(&'static str, Option<String>); 5] {
    [
        ("status", Some("failed".to_owned())),
        ("since", since),
        ("until", until),
        ("topic", topic),
        ("type", event_type),
    ]
}

/// The items of a listing (transactions, incidents, an incident's subjects) in the server's
/// order, whether the server had more, the partitions the archive was behind on when it
/// answered, and the shards that did not answer.
struct Listing<T> {
    items: Vec<T>,
    more: bool,
    behind: Vec<Behind>,
    incomplete: BTreeSet<String>,
}

impl<T> Listing<T> {
    /// Says, before anything else, that the listing may lack what the archive has not read
    /// yet, or what a shard that did not answer holds: "no failed transactions" is not an
    /// answer while it catches up.
    fn note_behind(&self) {
        if let Some(caveat) = describe_behind(&self.behind) {
            eprintln!("retrace: {caveat}; this listing may be incomplete");
        }
        let incomplete: Vec<String> = self.incomplete.iter().cloned().collect();
        if let Some(caveat) = describe_incomplete(&incomplete, "listing") {
            eprintln!("retrace: {caveat}");
        }
    }

    fn note_more(&self, command: &str) {
        if self.more {
            eprintln!(
                "retrace: showing the first {}; pass `retrace {command} --limit N` for more",
                self.items.len()
            );
        }
    }
}

/// Follows a listing's cursors until `limit` items (or all of them) are in hand.
async fn collect<T: DeserializeOwned>(
    client: &Client,
    path: &[&str],
    query: &[(&'static str, Option<String>)],
    limit: Option<usize>,
) -> Result<Listing<T>, Failure> {
    let mut items = Vec::new();
    let mut incomplete = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = limit.map_or(MAX_PAGE, |l| (l - items.len()).min(MAX_PAGE));
        let mut request = Request::get(path)
            .query("limit", Some(wanted))
            .query("cursor", cursor.as_ref());
        for (name, value) in query {
            request = request.query(name, value.as_ref());
        }
        let page: Page<T> = client.send(request).await?;
        items.extend(page.items);
        incomplete.extend(page.incomplete);
        let full = limit.is_some_and(|l| items.len() >= l);
        match page.next_cursor {
            Some(next) if !full => cursor = Some(next),
            next => {
                return Ok(Listing {
                    more: next.is_some(),
                    items,
                    behind: page.behind,
                    incomplete,
                });
            }
        }
    }
}

/// ` since 24h ago`, ` since 2026-03-02 10:00:00 and until …`: the window a listing covers.
fn window_words(since: Option<&str>, until: Option<&str>) -> String {
    let tz = TimeZone::system();
    let words = |time: &str| match time.parse::<jiff::Timestamp>() {
        Ok(_) => render::local_time(time, &tz, false),
        Err(_) => format!("{time} ago"),
    };
    let mut text = String::new();
    if let Some(since) = since {
        text.push_str(&format!(" since {}", words(since)));
    }
    if let Some(until) = until {
        text.push_str(&format!(" until {}", words(until)));
    }
    text
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Server(format!("cannot write the output: {e}")))
        }
        _ => Ok(()),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).expect("API documents serialise to JSON");
    print(&format!("{text}\n"))
}
