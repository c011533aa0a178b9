//! Horizontal scaling: jobs/s with one `retrace-worker` process, then with two on the same
//! queue (one consumer group: Kafka splits the queue's partitions between them). The handler
//! is a webhook to a local server that holds every job a fixed time (`--scale-work-ms`) and
//! has no capacity limit of its own, so each process's `--scale-concurrency` bounds its rate
//! and two processes should do about twice the jobs a second.
//!
//! The processes are the real binary, found beside `retrace-bench` (build it first:
//! `cargo build --release -p retrace-worker`); without it this part is skipped and says so.
//! Each run has its own queue, filled before the processes start; the rate is measured
//! between the 10th and the 90th percentile of the outcomes, leaving out the group's
//! first join and the last stragglers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::post;
use futures::TryStreamExt as _;
use retrace_auth::AuthConfig;
use retrace_fixtures::{Broker, free_port};
use retrace_sdk::{KafkaSettings, Publisher};
use retrace_worker::enqueue;
use tokio_util::sync::CancellationToken;

use super::{Options, ProcessedOutcomes, create_queue, job_envelope};

/// Runs the one-process and two-process measurements; prints their lines.
pub async fn run(broker: &Broker, options: &Options) -> anyhow::Result<()> {
    let binary = match &options.worker_binary {
        Some(binary) => binary.clone(),
        None => match worker_binary()? {
            Some(binary) => binary,
            None => {
                println!(
                    "worker_scale_skipped=retrace-worker not built beside retrace-bench: cargo \
                     build --release -p retrace-worker, or name it with --worker-binary"
                );
                return Ok(());
            }
        },
    };
    // The processes' `[auth]`: on, as in production, though the bench calls no API of
    // theirs (jobs run whatever it says); the token records they read need the topic.
    let auth = crate::auth::secured(broker).await;
    anyhow::ensure!(options.scale_jobs >= 10, "--scale-jobs must be at least 10");
    let stop_target = CancellationToken::new();
    let (target_url, target) = serve_target(options.scale_work_ms, stop_target.clone()).await?;
    println!("worker_scale_jobs={}", options.scale_jobs);
    println!("worker_scale_work_ms={}", options.scale_work_ms);
    println!(
        "worker_scale_concurrency_per_process={}",
        options.scale_concurrency
    );
    let run = |processes| {
        jobs_per_s(
            broker,
            options,
            &binary,
            &auth.config,
            &target_url,
            processes,
        )
    };
    let one = run(1).await?;
    println!("worker_processes_1_jobs_per_s={one:.0}");
    let two = run(2).await?;
    println!("worker_processes_2_jobs_per_s={two:.0}");
    println!("worker_scale_2_over_1={:.2}", two / one);
    stop_target.cancel();
    target.await??;
    Ok(())
}

/// `retrace-worker` beside this executable, if it was built.
fn worker_binary() -> anyhow::Result<Option<PathBuf>> {
    let bench = std::env::current_exe().context("where retrace-bench runs from")?;
    let binary = bench.with_file_name("retrace-worker");
    Ok(binary.is_file().then_some(binary))
}

/// The webhook target: holds each job `work_ms`, however many arrive at once.
async fn serve_target(
    work_ms: u64,
    stop: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let work = Duration::from_millis(work_ms);
    let router = Router::new().route(
        "/jobs",
        post(move || async move {
            tokio::time::sleep(work).await;
            "done"
        }),
    );
    let listener = retrace_http::bind(([127, 0, 0, 1], 0).into(), None).await?;
    let url = format!("{}/jobs", listener.url());
    let served = tokio::spawn(async move {
        listener.serve(router, stop.cancelled_owned()).await?;
        Ok(())
    });
    Ok((url, served))
}

/// Fills a fresh queue, starts `processes` workers on it, and measures their jobs/s.
async fn jobs_per_s(
    broker: &Broker,
    options: &Options,
    binary: &Path,
    auth: &AuthConfig,
    target_url: &str,
    processes: usize,
) -> anyhow::Result<f64> {
    let queue = format!("scale-{processes}");
    create_queue(broker, &queue, options.scale_partitions).await;
    let publisher = Publisher::new(&KafkaSettings::new(broker.bootstrap()))?;
    futures::stream::iter((0..options.scale_jobs).map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(256, |i| {
            let (publisher, queue) = (&publisher, &queue);
            async move {
                enqueue(publisher, queue, job_envelope(i)).await?;
                Ok(())
            }
        })
        .await
        .context("enqueuing the jobs")?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[queues.{queue}]\nwebhook = \"{target_url}\"\nconcurrency = {}\n",
            toml::to_string(&AuthSection { auth })?,
            options.scale_concurrency
        ),
    )?;
    let outcomes = ProcessedOutcomes::watch(broker, &queue, options.partitions)?;
    let mut workers: Vec<Running> = (0..processes)
        .map(|_| spawn(binary, broker, &config).map(Running))
        .collect::<anyhow::Result<_>>()?;
    let jobs = options.scale_jobs as u64;
    let measured = async {
        let from = outcomes
            .wait_for(jobs / 10, Duration::from_secs(300))
            .await?;
        let to = outcomes
            .wait_for(jobs * 9 / 10, Duration::from_secs(300))
            .await?;
        anyhow::Ok((jobs * 9 / 10 - jobs / 10) as f64 / (to - from).as_secs_f64())
    }
    .await;
    for worker in &mut workers {
        anyhow::ensure!(
            worker.0.try_wait()?.is_none(),
            "a retrace-worker process stopped during the run"
        );
    }
    drop(workers);
    outcomes.stop()?;
    measured
}

fn spawn(binary: &Path, broker: &Broker, config: &Path) -> anyhow::Result<Child> {
    Command::new(binary)
        .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
        .env("RETRACE_CONFIG", config)
        .env("RETRACE_HTTP", format!("127.0.0.1:{}", free_port()))
        // The bench creates the topics; the mock cluster has no CreateTopics API.
        .env("RETRACE_TOPICS_CREATE", "false")
        // Drift warnings name the bench's own partition counts, not a problem.
        .env("RETRACE_LOG", "warn,retrace_sdk::events=error")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// `[auth]` of the processes' configuration file.
#[derive(serde::Serialize)]
struct AuthSection<'a> {
    auth: &'a AuthConfig,
}

/// A worker process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
