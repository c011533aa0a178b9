//! Operating the archive's data: `retrace backup` (online, through the archive's API),
//! `retrace restore` and `retrace rebuild --from-kafka` (offline, on the archive's host).

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use retrace_api::{BackupManifest, BackupRequest};
use retrace_archive::ArchiveArgs;

use super::client::{Client, Request};
use super::{Server, print, render};
use crate::Failure;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Where the archive writes the backup: a new or empty directory, as an absolute path
    /// on the archive's host.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup's directory (the one `retrace backup --to` named).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The archive's data directory. The archive must be stopped.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Replace the archive already in --data-dir (it is kept as `<data-dir>.replaced`).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// Read the archive back from Kafka (what its topics still retain).
    #[arg(long, required = true)]
    from_kafka: bool,
    /// Only messages at or after this time: RFC 3339, or a duration back from now (2h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// The archive's own configuration: --data-dir, --topics, Kafka settings, --config.
    #[command(flatten)]
    archive: ArchiveArgs,
}

pub async fn backup(server: &Server, args: BackupArgs) -> Result<(), Failure> {
    let client = Client::new(server)?;
    let body = BackupRequest {
        directory: args.to.to_string_lossy().into_owned(),
    };
    let manifest: BackupManifest = client
        .send(Request::post(&["v1", "admin", "backups"], &body))
        .await?;
    print(&render::backup_manifest(
        &format!("backed up into {}", args.to.display()),
        &manifest,
    ))
}

pub fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let manifest =
        retrace_archive::restore(&args.from, &args.data_dir, args.force).map_err(|error| {
            if error.is_refusal() {
                Failure::Usage(error.to_string())
            } else {
                Failure::Server(error.to_string())
            }
        })?;
    print(&render::backup_manifest(
        &format!(
            "restored {} into {}",
            args.from.display(),
            args.data_dir.display()
        ),
        &manifest,
    ))
}

pub async fn rebuild(args: RebuildArgs) -> Result<(), Failure> {
    let since_ms = args
        .since
        .as_deref()
        .map(retrace_archive::parse_time)
        .transpose()
        .map_err(|error| Failure::Usage(format!("--since: {error}")))?;
    let config = args
        .archive
        .resolve()
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let data_dir = config.data_dir.clone();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages, {per_sec}, eta {eta}")
            .expect("the template is valid"),
    );
    let shown = bar.clone();
    let rebuilt = tokio::task::spawn_blocking(move || {
        retrace_archive::rebuild(&config, since_ms, |progress| {
            shown.set_length(progress.total);
            shown.set_position(progress.read);
        })
        .map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| Failure::Server(format!("the rebuild stopped: {error}")))?
    .map_err(Failure::Server)?;
    bar.finish_and_clear();
    print(&render::rebuilt(&data_dir, &rebuilt))
}
