//! `retrace topics check --service NAME`: compares the topics a service needs, with the
//! partitions and replication its configuration asks for, with what Kafka has, and lists
//! every drift (missing topics, other partition counts or replication factors). Exit 1 on
//! drift, so a deployment pipeline can stop on it.

use std::path::PathBuf;

use clap::FromArgMatches;
use retrace_sdk::{KafkaSettings, TopicSpec};
use retrace_service::ConfigError;

use crate::Failure;
use crate::config::Service;

#[derive(clap::Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(clap::Subcommand)]
enum TopicsCommand {
    /// List the topics a service needs that are missing or differ from its configuration.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The service whose topics to check.
    #[arg(long, value_enum)]
    service: Service,
    /// The service's TOML file; its `RETRACE_*` variables are read from this environment,
    /// as the service would.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: TopicsArgs) -> Result<(), Failure> {
    let TopicsCommand::Check(args) = args.command;
    let binary = args.service.binary();
    let (kafka, specs) = needed(args.service, args.config)
        .map_err(|e| Failure::Usage(format!("the {binary} configuration is not valid: {e}")))?;
    let drift = retrace_sdk::check_topics(&kafka, &specs)
        .await
        .map_err(|e| Failure::Server(e.to_string()))?;
    if drift.is_empty() {
        println!(
            "{binary}: all {} topics as configured on Kafka at {}",
            specs.len(),
            kafka.bootstrap_servers
        );
        return Ok(());
    }
    for found in &drift {
        println!("{found}");
    }
    Err(Failure::Invalid(format!(
        "{} drift(s) between the topics {binary} needs and Kafka at {}, listed above",
        drift.len(),
        kafka.bootstrap_servers
    )))
}

/// The service's Kafka settings and topics, its configuration layered as it would layer it
/// itself: the file, then this process's environment.
fn needed(
    service: Service,
    config: Option<PathBuf>,
) -> Result<(KafkaSettings, Vec<TopicSpec>), ConfigError> {
    Ok(match service {
        Service::Archive => {
            let config = from_environment::<retrace_archive::ArchiveArgs>(config)?.resolve()?;
            (config.kafka.clone(), config.topics_needed())
        }
        Service::Gateway => {
            let config = from_environment::<retrace_gateway::GatewayArgs>(config)?.resolve()?;
            (config.kafka.clone(), config.topics_needed())
        }
        Service::Worker => {
            let config = from_environment::<retrace_worker::WorkerArgs>(config)?.resolve()?;
            (config.kafka.clone(), config.topics_needed())
        }
    })
}

/// A service's arguments as clap reads them from this process's environment, with `config`
/// as its `--config`.
fn from_environment<A: clap::Args + FromArgMatches>(
    config: Option<PathBuf>,
) -> Result<A, ConfigError> {
    let mut argv = vec!["service".into()];
    if let Some(path) = config {
        argv.extend(["--config".into(), path.into_os_string()]);
    }
    A::augment_args(clap::Command::new("service"))
        .try_get_matches_from(argv)
        .and_then(|matches| A::from_arg_matches(&matches))
        .map_err(|e| retrace_service::wrong("environment", e.to_string()))
}
