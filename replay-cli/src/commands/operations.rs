//! Operating the archive's data: `retrace backup` (online, through the archive's API),
//! `retrace restore` (offline, on the archive's host).

use std::path::PathBuf;

use retrace_archive::api::{BackupManifest, BackupRequest};

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
