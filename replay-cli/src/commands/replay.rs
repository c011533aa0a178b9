//! `retrace replay`: of one transaction, of the failed ones a query selects, or of an
//! incident's; show the plan (a dry run on the server), ask, start the replay with an
//! idempotency key, and follow it to the end.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use retrace_api::{
    BulkReplayRequest, ReplayRequest, ReplayResponse, ReplayView, TransactionStatus,
};

use super::client::{Client, Request};
use super::operator::{Action, confirm};
use super::{print, render};
use crate::Failure;

/// How often a running replay is polled.
const POLL: Duration = Duration::from_millis(250);
/// How often progress is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Attempts at a request that may fail on the way (the idempotency key makes them safe).
const ATTEMPTS: u32 = 3;

const REPLAY: Action = Action {
    verb: "replay",
    doing: "replaying",
    done: "replayed",
};

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("selection")
        .required(true)
        .args(["transaction", "failed", "incident"])
))]
#[command(group(clap::ArgGroup::new("bulk").args(["failed", "incident"])))]
// The query's options conflict with the other selections rather than `requires = "failed"`:
// a flag always has a value (false), so clap counts it present and would let them through.
pub struct ReplayArgs {
    /// The transaction to replay.
    transaction: Option<String>,
    /// Replay every failed transaction the query selects (--since, --until, --topic, --type).
    #[arg(long)]
    failed: bool,
    /// Replay the transactions of this incident that still fail with its cause, and of each
    /// only the events that fail with it (`retrace incidents` lists the ids).
    #[arg(long, value_name = "INCIDENT_ID")]
    incident: Option<String>,
    /// Replay this event of the transaction and everything after it.
    #[arg(long = "from", value_name = "EVENT_ID", requires = "transaction")]
    from_event_id: Option<String>,
    /// Replay only the events whose last outcome is a failure (always so with --failed and
    /// --incident).
    #[arg(long)]
    only_failed: bool,
    /// Publish every message to this topic instead of the one it came from.
    #[arg(long, value_name = "TOPIC")]
    to_topic: Option<String>,
    /// Why the messages are replayed, for the audit trail (required).
    #[arg(long)]
    reason: String,
    /// Only show what would be replayed.
    #[arg(long)]
    dry_run: bool,
    /// Replay without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// With --failed: transactions that failed since this time (RFC 3339 or 2h, 7d...).
    #[arg(long, conflicts_with_all = ["transaction", "incident"])]
    since: Option<String>,
    /// With --failed: ... and until this time.
    #[arg(long, conflicts_with_all = ["transaction", "incident"])]
    until: Option<String>,
    /// With --failed: only transactions with a message on this topic.
    #[arg(long, conflicts_with_all = ["transaction", "incident"])]
    topic: Option<String>,
    /// With --failed: only transactions with an event of this type.
    #[arg(long = "type", value_name = "TYPE", conflicts_with_all = ["transaction", "incident"])]
    event_type: Option<String>,
    /// With --failed or --incident: messages re-published per second.
    #[arg(long, default_value_t = 100, requires = "bulk")]
    rate: u32,
    /// With --failed or --incident: refuse to start if it selects more messages than this.
    #[arg(long, default_value_t = 1000, requires = "bulk")]
    max: usize,
}

pub async fn run(client: &Client, args: ReplayArgs) -> Result<(), Failure> {
    if args.reason.trim().is_empty() {
        return Err(Failure::Usage(
            "--reason must say why the messages are replayed, for the audit trail".into(),
        ));
    }
    let planned: ReplayResponse = client.send(request(&args, true)).await?;
    print(&render::plan(&planned.plan))?;
    if args.dry_run {
        return print("dry run: nothing was replayed\n");
    }
    let plan = &planned.plan;
    let (messages, transactions) = (plan.messages.len(), plan.transactions);
    let question = format!(
        "Replay {messages} message{} of {transactions} transaction{}?",
        if messages == 1 { "" } else { "s" },
        if transactions == 1 { "" } else { "s" },
    );
    confirm(args.yes, &REPLAY, &question).await?;
    let key = uuid::Uuid::now_v7().to_string();
    let started = start(client, &args, &key).await?;
    print(&format!(
        "replay {} started by {}; waiting for it to finish\n",
        started.replay_id, started.requested_by
    ))?;
    let finished = follow(client, started).await?;
    print(&render::replay_result(&finished))?;
    match finished.state.as_str() {
        "failed" => Err(Failure::Server(format!(
            "replay {} failed after {} of {} messages: {}",
            finished.replay_id, finished.published, finished.planned, finished.error
        ))),
        _ => Ok(()),
    }
}

/// The POST that plans (`dry_run`) or starts the replay `args` ask for.
fn request(args: &ReplayArgs, dry_run: bool) -> Request {
    match &args.transaction {
        Some(transaction) => Request::post(
            &["v1", "transactions", transaction, "replay"],
            &ReplayRequest {
                reason: args.reason.clone(),
                dry_run,
                from_event_id: args.from_event_id.clone(),
                only_failed: args.only_failed,
                target_topic: args.to_topic.clone(),
                requested_by: None,
            },
        ),
        None => Request::post(
            &["v1", "replays"],
            &BulkReplayRequest {
                reason: args.reason.clone(),
                dry_run,
                // An incident selects its own transactions: the query's filters are absent.
                status: args.failed.then_some(TransactionStatus::Failed),
                since: args.since.clone(),
                until: args.until.clone(),
                topic: args.topic.clone(),
                event_type: args.event_type.clone(),
                incident: args.incident.clone(),
                only_failed: true,
                target_topic: args.to_topic.clone(),
                rate: args.rate,
                max: args.max,
                requested_by: None,
            },
        ),
    }
}

/// Starts the replay, retrying a request lost on the way: the same idempotency key makes
/// the server answer a retry with the replay it already started.
async fn start(client: &Client, args: &ReplayArgs, key: &str) -> Result<ReplayView, Failure> {
    let mut attempt = 1;
    let response: ReplayResponse = loop {
        let sent = request(args, false).idempotency_key(key.to_owned());
        match client.send(sent).await {
            Err(Failure::Server(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_secs(attempt.into())).await;
                attempt += 1;
            }
            answer => break answer?,
        }
    };
    response.replay.ok_or_else(|| {
        Failure::Server(
            "the server accepted the replay but did not say which one it started".into(),
        )
    })
}

/// Polls the replay until it is no longer running, showing its progress on stderr.
async fn follow(client: &Client, mut replay: ReplayView) -> Result<ReplayView, Failure> {
    let mut progress = Progress::new();
    let mut failures = 0;
    while replay.state == "running" {
        progress.show(&replay);
        tokio::time::sleep(POLL).await;
        let path = ["v1", "replays", replay.replay_id.as_str()];
        match client.send(Request::get(&path)).await {
            Ok(newer) => {
                replay = newer;
                failures = 0;
            }
            Err(Failure::Server(_)) if failures + 1 < ATTEMPTS => failures += 1,
            Err(failure) => {
                progress.finish(&replay);
                return Err(lost_track(&replay.replay_id, failure));
            }
        }
    }
    progress.finish(&replay);
    Ok(replay)
}

fn lost_track(replay_id: &str, failure: Failure) -> Failure {
    let say = |m: String| format!("replay {replay_id} was started, but {m}");
    match failure {
        Failure::NothingToDo(m) | Failure::Invalid(m) | Failure::Usage(m) | Failure::Server(m) => {
            Failure::Server(say(m))
        }
    }
}

/// Progress on stderr: one line redrawn with `\r` on a terminal, else a line now and then.
struct Progress {
    terminal: bool,
    last_plain: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            last_plain: None,
            drawn: false,
        }
    }

    fn show(&mut self, replay: &ReplayView) {
        let line = render::progress_line(replay.published, replay.planned);
        if self.terminal {
            eprint!("\r{line}");
            self.drawn = true;
        } else if self
            .last_plain
            .is_none_or(|at| at.elapsed() >= PLAIN_PROGRESS_EVERY)
        {
            eprintln!("replay {}: {line}", replay.replay_id);
            self.last_plain = Some(Instant::now());
        }
    }

    fn finish(&mut self, replay: &ReplayView) {
        if self.drawn {
            eprintln!(
                "\r{}",
                render::progress_line(replay.published, replay.planned)
            );
        }
    }
}
