//! `retrace jobs`: the off-peak worker's queues. `status` shows each queue's gate, backlog and
//! counts; `redrive` moves dead-lettered jobs back to their lanes: it shows what will move (a
//! dry run on the worker), asks, then moves exactly those jobs and prints what moved.

use retrace_api::{QueueStatus, RedriveBody, RedriveReport};

use super::client::{Client, Request, Server};
use super::operator::{Action, confirm};
use super::{print, render};
use crate::Failure;

/// Where `--server` must point for these commands.
const SERVER_NOTE: &str = "--server (or RETRACE_SERVER) is the worker's HTTP address. With \
`retrace dev` everything is on one address, the default http://127.0.0.1:7070; in production, \
point it at the worker, which listens on port 7072 by default (e.g. --server \
http://worker-host:7072).";

const REDRIVE: Action = Action {
    verb: "redrive",
    doing: "redriving",
    done: "redriven",
};

#[derive(clap::Args)]
#[command(after_help = SERVER_NOTE)]
pub struct JobsArgs {
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(clap::Subcommand)]
enum JobsCommand {
    /// Per queue: the gate (open or closed, and why), jobs pending, running, done, retrying,
    /// dead-lettered and failed, and the rate.
    #[command(after_help = SERVER_NOTE)]
    Status(StatusArgs),
    /// Move dead-lettered jobs of a queue back to their lanes: shows what will move, asks,
    /// moves them, and prints what moved.
    #[command(after_help = SERVER_NOTE)]
    Redrive(RedriveArgs),
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Print the worker's JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("selection").required(true).args(["jobs", "all"])))]
struct RedriveArgs {
    /// The queue, e.g. `certificates` (its topics are `retrace.jobs.<queue>…`).
    queue: String,
    /// A dead-lettered job to move back (its job id, the job's event id); repeat for more.
    #[arg(long = "job", value_name = "JOB_ID")]
    jobs: Vec<String>,
    /// Move back every dead-lettered job of the queue.
    #[arg(long)]
    all: bool,
    /// Jobs re-published per second at most (default: no limit).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Why the jobs are redriven, for the audit trail (required).
    #[arg(long)]
    reason: String,
    /// Only show what would be redriven.
    #[arg(long)]
    dry_run: bool,
    /// Redrive without asking for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(server: &Server, args: JobsArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    match args.command {
        JobsCommand::Status(args) => status(&client, &server.url, args).await,
        JobsCommand::Redrive(args) => redrive(&client, &server.url, args).await,
    }
}

async fn status(client: &Client, server: &str, args: StatusArgs) -> Result<(), Failure> {
    let request = Request::get(&["v1", "jobs", "queues"]);
    if args.json {
        let (_, body) = client
            .send_raw(request)
            .await
            .map_err(|f| not_a_worker(f, server))?;
        return print(&format!("{}\n", render::pretty_json(&body)));
    }
    let statuses = queues(client, server).await?;
    if statuses.is_empty() {
        return print(&format!(
            "the worker at {server} has no queues configured\n"
        ));
    }
    print(&render::queue_statuses(&statuses))
}

async fn redrive(client: &Client, server: &str, args: RedriveArgs) -> Result<(), Failure> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(Failure::Usage(
            "--reason must say why the jobs are redriven, for the audit trail".into(),
        ));
    }
    let queue = args.queue.as_str();
    let known = queues(client, server).await?;
    if !known.iter().any(|s| s.queue == queue) {
        let names: Vec<&str> = known.iter().map(|s| s.queue.as_str()).collect();
        return Err(Failure::NothingToDo(format!(
            "the worker at {server} has no queue {queue:?}; its queues: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let selected = (!args.all).then(|| args.jobs.clone());
    let body = |jobs: Option<Vec<String>>, dry_run: bool| RedriveBody {
        all: jobs.is_none(),
        jobs,
        rate: args.rate.map(f64::from),
        dry_run,
        reason: reason.to_owned(),
    };
    let planned = send(client, queue, &body(selected, true)).await?;
    print(&render::redrive_plan(queue, &planned))?;
    if planned.redriven.is_empty() {
        return Err(Failure::NothingToDo(match args.all {
            true => format!("nothing to redrive: queue {queue} has no dead-lettered job"),
            false => format!("nothing to redrive: no given job is dead-lettered in queue {queue}"),
        }));
    }
    if args.dry_run {
        return print("dry run: nothing was redriven\n");
    }
    let count = planned.redriven.len();
    let question = format!(
        "Redrive {count} job{} of queue {queue}?",
        if count == 1 { "" } else { "s" }
    );
    confirm(args.yes, &REDRIVE, &question).await?;
    // Exactly the jobs shown, even with --all: one dead-lettered since is not moved unasked.
    let shown: Vec<String> = planned.redriven.into_keys().collect();
    let moved = send(client, queue, &body(Some(shown), false)).await?;
    print(&render::redrive_result(queue, &moved))
}

async fn send(client: &Client, queue: &str, body: &RedriveBody) -> Result<RedriveReport, Failure> {
    let path = ["v1", "jobs", "queues", queue, "redrive"];
    client.send(Request::post(&path, body)).await
}

/// The queues' statuses; a server without them is said to be the wrong server.
async fn queues(client: &Client, server: &str) -> Result<Vec<QueueStatus>, Failure> {
    client
        .send(Request::get(&["v1", "jobs", "queues"]))
        .await
        .map_err(|failure| not_a_worker(failure, server))
}

/// A worker always serves `/v1/jobs/queues`: "not found" there means another server.
fn not_a_worker(failure: Failure, server: &str) -> Failure {
    match failure {
        Failure::NothingToDo(_) => Failure::NothingToDo(format!(
            "the server at {server} does not serve the worker's queues (/v1/jobs/queues): \
             point --server at the worker (default port 7072), or at `retrace dev`"
        )),
        other => other,
    }
}
