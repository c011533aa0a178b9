//! `retrace`: trace, find, export and replay transactions from a terminal, for people who
//! do not know Kafka; and `retrace dev`, the whole pipeline on one laptop in one process.
//!
//! Exit codes: 0 done, 1 not found, nothing to do or a check failed (`config check`, `archive
//! compare`), 2 usage error, 3 server or Kafka error.
//! Errors are one plain sentence on stderr.

mod commands;
mod config;
mod dev;
mod kafka;
mod topics;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fjall's memtables and the records' buffers allocate and free per key; glibc's malloc
/// took a fifth of the ingest's CPU (docs/benchmarks.md, "What bounds the ingest").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "retrace", version, about)]
struct Cli {
    /// The Retrace server to talk to: the archive (trace and replay API; port 7070), or for
    /// `retrace jobs` the worker (port 7072). `retrace dev` serves both on one address.
    /// Several, separated by commas (archive replicas), are tried in order: a command moves
    /// on to the next while one cannot be reached.
    /// [default: the address of the running `retrace dev` whose dev.json is in
    /// $RETRACE_DATA_DIR (./retrace-data by default), else http://127.0.0.1:7070]
    #[arg(long, env = "RETRACE_SERVER", global = true)]
    server: Option<String>,
    /// API token for the server. Without one, a local `retrace dev` server's token is read
    /// from its dev.json (in $RETRACE_DATA_DIR, ./retrace-data by default) when the server is
    /// that one.
    #[arg(long, env = "RETRACE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// A PEM certificate (or bundle) to trust for an `https://` server, besides the system's
    /// trust store: for a server whose certificate a private CA issued.
    #[arg(long, env = "RETRACE_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a transaction: its events in time order, their outcomes, and the causation tree.
    Trace(commands::TraceArgs),
    /// List the transactions that touched a subject (e.g. `beneficiary:42`), newest first.
    Subject(commands::SubjectArgs),
    /// List failed transactions, with the step that failed and the error.
    Failed(commands::FailedArgs),
    /// List incidents: failures grouped by step and cause, with a sparkline of each; `show`
    /// one with its transactions.
    Incidents(commands::incidents::IncidentsArgs),
    /// Re-publish a transaction's messages (or every failed one, with --failed; an
    /// incident's, with --incident).
    Replay(commands::ReplayArgs),
    /// Export a subject's transactions, or failed ones, as CSV or JSON; or the subjects an
    /// incident touched.
    Export(commands::ExportArgs),
    /// The off-peak worker's queues: their status, and redrive of dead-lettered jobs.
    Jobs(commands::jobs::JobsArgs),
    /// API tokens (admin): create one, list them, revoke one.
    Token(commands::admin::TokenArgs),
    /// The audit trail (admin): who did what, when, from where and why; `verify` checks its
    /// hash chain.
    Audit(commands::admin::AuditArgs),
    /// Erase a subject's payloads from the archive (admin); the bytes leave the disk at the
    /// next `retrace-archive compact`.
    Erase(commands::admin::EraseArgs),
    /// Archive replicas and shards: `compare` proves two replicas hold the same records, or
    /// names where they differ; `split` splits a stopped shard's archive in two.
    Archive(commands::archive::ArchiveArgs),
    /// Back the running archive up into a directory on its host (admin), while it ingests.
    Backup(commands::operations::BackupArgs),
    /// Restore a backup into a stopped archive's data directory (on the archive's host).
    Restore(commands::operations::RestoreArgs),
    /// Rebuild a stopped archive (or fill a gap in it) from what Kafka still retains.
    Rebuild(Box<commands::operations::RebuildArgs>),
    /// Run Kafka (in-process mock, or Apache Kafka with `--kafka local`), the archive, the
    /// gateway and the worker in one process.
    Dev(dev::DevArgs),
    /// Service configuration files: `check` validates one offline.
    Config(config::ConfigArgs),
    /// Kafka topics: `check` lists the ones a service needs that are missing or differ from
    /// its configuration (partitions, replication).
    Topics(topics::TopicsArgs),
    /// Kafka ACLs: `acls --print` shows the principals and ACLs of a deployment, `acls
    /// --apply` creates them through Kafka's admin API.
    Kafka(kafka::KafkaArgs),
}

/// How a command failed, and the exit code that says so.
#[derive(Debug)]
pub enum Failure {
    /// Not found, or nothing to do: exit 1.
    NothingToDo(String),
    /// What was checked is not valid (`retrace config check`), or differs (`retrace archive
    /// compare`): exit 1.
    Invalid(String),
    /// The command was used wrongly: exit 2.
    Usage(String),
    /// The server, Kafka, or the machine failed: exit 3.
    Server(String),
}

impl Failure {
    /// The exit code, and the sentence for stderr.
    fn code_and_message(self) -> (u8, String) {
        match self {
            Failure::NothingToDo(m) | Failure::Invalid(m) => (1, m),
            Failure::Usage(m) => (2, m),
            Failure::Server(m) => (3, m),
        }
    }

    fn exit(self) -> ExitCode {
        let (code, message) = self.code_and_message();
        eprintln!("retrace: {message}");
        ExitCode::from(code)
    }
}

/// The server when neither --server nor a running `retrace dev` names one.
const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = server(cli.server, cli.token, cli.ca_cert);
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Config(args) => config::run(args),
        Command::Topics(args) => topics::run(args).await,
        Command::Kafka(args) => kafka::run(args).await,
        Command::Trace(args) => commands::trace(&server, args).await,
        Command::Subject(args) => commands::subject(&server, args).await,
        Command::Failed(args) => commands::failed(&server, args).await,
        Command::Incidents(args) => commands::incidents::run(&server, args).await,
        Command::Replay(args) => commands::replay(&server, args).await,
        Command::Export(args) => commands::export(&server, args).await,
        Command::Jobs(args) => commands::jobs::run(&server, args).await,
        Command::Token(args) => commands::admin::token(&server, args).await,
        Command::Audit(args) => commands::admin::audit(&server, args).await,
        Command::Erase(args) => commands::admin::erase(&server, args).await,
        Command::Archive(args) => commands::archive::run(&server, args).await,
        Command::Backup(args) => commands::operations::backup(&server, args).await,
        Command::Restore(args) => commands::operations::restore(args),
        Command::Rebuild(args) => commands::operations::rebuild(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

/// The server to talk to: the one given, else the local `retrace dev`'s, else the default;
/// with the dev server's token when it is the one talked to and no token was given.
fn server(
    url: Option<String>,
    token: Option<String>,
    ca_cert: Option<std::path::PathBuf>,
) -> commands::Server {
    let dev = dev::local_dev();
    let (url, dev_json) = match (url, &dev) {
        (Some(url), _) => (url, None),
        (None, Some(dev)) => (dev.http.clone(), Some(dev.file.clone())),
        (None, None) => (DEFAULT_SERVER.to_owned(), None),
    };
    let token = token.or_else(|| {
        dev.filter(|dev| dev.http == url.trim_end_matches('/'))
            .and_then(|dev| dev.token)
    });
    commands::Server {
        url,
        token,
        ca_cert,
        dev_json,
    }
}
