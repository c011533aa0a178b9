//! `retrace dev --kafka local`: Apache Kafka on loopback, started through the repository's
//! `tests/kafka/kafka-local` launcher (the one the tests, CI and the benchmarks use), its data
//! in the data directory, and owned by this process.
//!
//! The launcher runs with `--until-stdin-closes` and this process holds its stdin: however
//! dev mode ends (a clean stop, a panic, even SIGKILL), the pipe closes and the launcher stops
//! the broker.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::Failure;

/// The launcher, relative to a checkout of Retrace.
const LAUNCHER: &str = "tests/kafka/kafka-local";
/// How long the launcher may take to serve: the first start resolves the broker's jars from
/// Maven Central (about a minute), and the launcher allows a node 180 s to start.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// The launcher's last lines on stderr kept for an error message.
const LAST_WORDS: usize = 5;

/// A running broker and the launcher that owns it.
pub struct LocalKafka {
    launcher: Child,
    /// Held open for `--until-stdin-closes`; closing it stops the broker.
    stdin: Option<ChildStdin>,
    stderr: JoinHandle<VecDeque<String>>,
    script: PathBuf,
    /// Apache Kafka's version, as the launcher reports it.
    version: Option<String>,
    pub bootstrap: String,
    /// Where the nodes keep their data and logs.
    dir: PathBuf,
}

impl LocalKafka {
    /// Starts the cluster kept in `dir` (formatting it on the first start) through `script`,
    /// or the launcher found in the current directory or the checkout this binary was built
    /// from; returns once it serves clients.
    pub async fn start(script: Option<&Path>, dir: &Path) -> Result<LocalKafka, Failure> {
        let script = find_launcher(script)?;
        let mut launcher = Command::new(&script)
            .arg("start")
            .arg("--dir")
            .arg(dir)
            .arg("--until-stdin-closes")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A Ctrl-C in the terminal reaches dev mode alone, which stops its pipeline first
            // and the broker after it, rather than the broker going while the archive commits.
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::Server(format!("cannot run {}: {e}", script.display())))?;
        let stdin = launcher.stdin.take();
        let stdout = launcher
            .stdout
            .take()
            .expect("the launcher's stdout is piped");
        let stderr = launcher
            .stderr
            .take()
            .expect("the launcher's stderr is piped");
        let stderr = tokio::spawn(forward_stderr(stderr));
        let mut kafka = LocalKafka {
            launcher,
            stdin,
            stderr,
            script,
            version: None,
            bootstrap: String::new(),
            dir: dir.to_owned(),
        };
        let mut lines = BufReader::new(stdout).lines();
        let serving = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(version) = line.strip_prefix("version=") {
                    kafka.version = Some(version.to_owned());
                } else if let Some(bootstrap) = line.strip_prefix("bootstrap=") {
                    kafka.bootstrap = bootstrap.to_owned();
                    return true;
                }
            }
            false
        })
        .await;
        match serving {
            Ok(true) => Ok(kafka),
            Ok(false) => Err(kafka.exited_early().await),
            Err(_) => {
                let logs = kafka.dir.join("node-1/kafka.log");
                // Still starting, the launcher does not read its stdin yet: SIGTERM stops it
                // (and any node it started) as soon as its current step ends.
                if let Some(pid) = kafka.launcher.id().and_then(|id| Pid::from_raw(id as i32)) {
                    let _ = kill_process(pid, Signal::TERM);
                }
                let script = kafka.script.clone();
                kafka.stop().await;
                Err(Failure::Server(format!(
                    "Apache Kafka did not serve within {} s of starting it through {}; see \
                     its log, {}",
                    START_TIMEOUT.as_secs(),
                    script.display(),
                    logs.display()
                )))
            }
        }
    }

    /// What runs where, for the banner.
    pub fn description(&self) -> String {
        let version = self.version.as_deref().map(|v| format!(" {v}"));
        format!(
            "Apache Kafka{} on {} (kafka-local, data in {})",
            version.unwrap_or_default(),
            self.bootstrap,
            self.dir.display()
        )
    }

    /// Stops the broker (a controlled shutdown, which keeps its data) and waits until the
    /// launcher has, so that dev mode exits with its ports free. Closing stdin alone: a
    /// SIGTERM as well would cut short the launcher's wait for its nodes.
    pub async fn stop(mut self) {
        tracing::info!(
            "stopping Apache Kafka (kafka-local, data in {})",
            self.dir.display()
        );
        drop(self.stdin.take());
        match self.launcher.wait().await {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::warn!(
                "{} exited with {status} while stopping Apache Kafka; its nodes' logs are in {}",
                self.script.display(),
                self.dir.display()
            ),
            Err(error) => tracing::warn!(
                "cannot wait for {} to stop Apache Kafka: {error}",
                self.script.display()
            ),
        }
    }

    /// The failure of a launcher that exited without serving, in its own last words.
    async fn exited_early(mut self) -> Failure {
        drop(self.stdin.take());
        let status = match self.launcher.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => format!("an unknown status ({error})"),
        };
        let said = Vec::from(self.stderr.await.unwrap_or_default());
        let said = if said.is_empty() {
            "nothing".to_owned()
        } else {
            said.join(" / ")
        };
        Failure::Server(format!(
            "Apache Kafka did not start: {} exited with {status}, having said: {said}. `--kafka \
             local` needs Java 17 or newer (a JDK 17: apt-get install openjdk-17-jdk-headless) \
             and Apache Kafka's jars (`{} install` fetches them once, with Maven); the nodes' \
             logs are in {}",
            self.script.display(),
            self.script.display(),
            self.dir.display()
        ))
    }
}

/// `script` if given, else the launcher in the current directory, else in the checkout this
/// binary was built from (`cargo run` and `cargo install --path` from anywhere).
fn find_launcher(script: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(script) = script {
        return if script.is_file() {
            Ok(script.to_owned())
        } else {
            Err(Failure::Usage(format!(
                "--kafka-local (or RETRACE_KAFKA_LOCAL) names {}, which is not a file; give the \
                 path of {LAUNCHER} in a checkout of Retrace",
                script.display()
            )))
        };
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the CLI's crate is inside the workspace");
    [PathBuf::from(LAUNCHER), checkout.join(LAUNCHER)]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "`--kafka local` starts Apache Kafka through Retrace's launcher, {LAUNCHER}, \
                 which is neither in the current directory nor in {}, the checkout this retrace \
                 was built from: run it from a checkout, or set RETRACE_KAFKA_LOCAL (or \
                 --kafka-local) to the script's path",
                checkout.display()
            ))
        })
}

/// Logs what the launcher says (it is terse: the broker's own logs go to files), and returns
/// its last lines once it closes stderr.
async fn forward_stderr(stderr: tokio::process::ChildStderr) -> VecDeque<String> {
    let mut last = VecDeque::with_capacity(LAST_WORDS);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "kafka_local", "{line}");
        if last.len() == LAST_WORDS {
            last.pop_front();
        }
        last.push_back(line);
    }
    last
}
