//! `retrace config check FILE`: validates a service's TOML file with that service's own
//! configuration type, offline, naming every problem with its path in the file.

use std::path::{Path, PathBuf};

use retrace_service::{CommonArgs, ConfigError};

use crate::Failure;

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Validate a service's configuration file; exit 1 naming every problem with its path.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The TOML file.
    file: PathBuf,
    /// The service that reads the file. Default: the one whose section the file has
    /// (`[archive]`, `[gateway]`, `[worker]` or `[queues.*]`).
    #[arg(long, value_enum)]
    service: Option<Service>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Service {
    Archive,
    Gateway,
    Worker,
}

impl Service {
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Service::Archive => "retrace-archive",
            Service::Gateway => "retrace-gateway",
            Service::Worker => "retrace-worker",
        }
    }

    /// The file's layering with nothing else (no flags, no environment), so only the file's
    /// own problems are found.
    fn resolve(self, file: &Path) -> Result<(), ConfigError> {
        let common = CommonArgs {
            config: Some(file.to_owned()),
            ..CommonArgs::default()
        };
        match self {
            Service::Archive => retrace_archive::ArchiveArgs {
                common,
                ..Default::default()
            }
            .resolve()
            .map(drop),
            Service::Gateway => retrace_gateway::GatewayArgs {
                common,
                ..Default::default()
            }
            .resolve()
            .map(drop),
            Service::Worker => retrace_worker::WorkerArgs {
                common,
                ..Default::default()
            }
            .resolve()
            .map(drop),
        }
    }
}

pub fn run(args: ConfigArgs) -> Result<(), Failure> {
    let ConfigCommand::Check(args) = args.command;
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| Failure::Usage(format!("cannot read {file}: {e}")))?;
    let service = match args.service {
        Some(service) => service,
        None => service_of(&text).ok_or_else(|| {
            Failure::Usage(format!(
                "cannot tell which service {file} is for: it has no [archive], [gateway], \
                 [worker] or [queues] section; say which with --service"
            ))
        })?,
    };
    let binary = service.binary();
    match service.resolve(&args.file) {
        Ok(()) => {
            println!("{file}: a valid {binary} configuration");
            Ok(())
        }
        Err(error) => {
            let problems = error.problems();
            for problem in &problems {
                println!("{}", describe(problem, &text));
            }
            Err(Failure::Invalid(format!(
                "{file} is not a valid {binary} configuration: {} problem(s), listed above",
                problems.len()
            )))
        }
    }
}

/// The service whose own section the file has, when exactly one does.
fn service_of(text: &str) -> Option<Service> {
    let table: toml::Table = text.parse().ok()?;
    let mut found = [
        ("archive", Service::Archive),
        ("gateway", Service::Gateway),
        ("worker", Service::Worker),
        ("queues", Service::Worker),
    ]
    .into_iter()
    .filter(|(section, _)| table.contains_key(*section))
    .map(|(_, service)| service)
    .collect::<Vec<_>>();
    found.dedup();
    match found.as_slice() {
        [service] => Some(*service),
        _ => None,
    }
}

/// One problem as `path: what is wrong`, with the line for a file that does not parse.
fn describe(problem: &ConfigError, text: &str) -> String {
    match problem {
        ConfigError::Parse { field, source, .. } => {
            let line = source
                .span()
                .map(|span| format!(" (line {})", text[..span.start].matches('\n').count() + 1))
                .unwrap_or_default();
            format!("{field}: {}{line}", source.message().trim_end())
        }
        other => other.to_string(),
    }
}
