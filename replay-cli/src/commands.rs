//! The commands that talk to a Retrace server (being written).

use crate::Failure;

#[derive(clap::Args)]
pub struct TraceArgs {}
#[derive(clap::Args)]
pub struct SubjectArgs {}
#[derive(clap::Args)]
pub struct FailedArgs {}
#[derive(clap::Args)]
pub struct ReplayArgs {}
#[derive(clap::Args)]
pub struct ExportArgs {}

fn not_yet() -> Result<(), Failure> {
    Err(Failure::Usage("this command is not built yet".into()))
}

pub async fn trace(_server: &str, _args: TraceArgs) -> Result<(), Failure> {
    not_yet()
}
pub async fn subject(_server: &str, _args: SubjectArgs) -> Result<(), Failure> {
    not_yet()
}
pub async fn failed(_server: &str, _args: FailedArgs) -> Result<(), Failure> {
    not_yet()
}
pub async fn replay(_server: &str, _args: ReplayArgs) -> Result<(), Failure> {
    not_yet()
}
pub async fn export(_server: &str, _args: ExportArgs) -> Result<(), Failure> {
    not_yet()
}
