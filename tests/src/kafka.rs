//! Apache Kafka for the tests, started through `tests/kafka/kafka-local` (the launcher a
//! person, CI and the benchmarks use too): one KRaft node, or three.
//!
//! A test binary shares one node among its tests ([`KafkaCluster::shared`]); tests keep apart
//! by topic ([`crate::unique_topic`]). A test that stops, kills or restarts nodes starts a
//! cluster of its own ([`KafkaCluster::start`]).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

/// A running cluster. Dropping it stops its nodes (SIGTERM to the launcher); a test process
/// that dies stops them too, since the launcher runs until its stdin, held here, closes.
pub struct KafkaCluster {
    launcher: Mutex<Child>,
    /// Held open for the launcher's `--until-stdin-closes`; closed first when dropped.
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
    bootstrap: String,
    nodes: u8,
    /// With SASL: the super user's librdkafka properties (`name=value`).
    admin_properties: Vec<String>,
}

/// The launcher script, `tests/kafka/kafka-local`.
pub fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kafka/kafka-local")
}

impl KafkaCluster {
    /// The node every test of this binary shares, started by the first to ask.
    pub fn shared() -> Arc<KafkaCluster> {
        static SHARED: OnceLock<Arc<KafkaCluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(KafkaCluster::start(1)))
            .clone()
    }

    /// A cluster of `nodes` (1 or 3) for one test; returns once every node serves clients.
    pub fn start(nodes: u8) -> KafkaCluster {
        KafkaCluster::launch(nodes, &[])
    }

    /// One node for one test whose clients authenticate with SASL/SCRAM-SHA-512 and whose
    /// requests the StandardAuthorizer checks against ACLs: the super user `admin`
    /// ([`KafkaCluster::admin_settings`]) and `users` (name, password), created at format
    /// time. Passwords: letters, digits, `.`, `_`, `-`.
    pub fn start_sasl(users: &[(&str, &str)]) -> KafkaCluster {
        let mut args = vec!["--sasl".to_owned()];
        for (name, password) in users {
            args.extend(["--scram-user".to_owned(), format!("{name}={password}")]);
        }
        KafkaCluster::launch(1, &args)
    }

    fn launch(nodes: u8, extra: &[String]) -> KafkaCluster {
        let dir = tempfile::Builder::new()
            .prefix("retrace-kafka-")
            .tempdir()
            .expect("a temporary folder for Kafka's data");
        let mut launcher = Command::new(launcher())
            .arg("start")
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--nodes",
                &nodes.to_string(),
                "--until-stdin-closes",
                "--clean",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {}: {error}. It needs bash, Java 17+ and Maven (or the jars \
                     already in ~/.cache/retrace-kafka); see docs/testing.md",
                    launcher().display()
                )
            });
        let stdin = launcher
            .stdin
            .take()
            .expect("the launcher's stdin is piped");
        let stdout = launcher
            .stdout
            .take()
            .expect("the launcher's stdout is piped");
        let mut admin_properties = Vec::new();
        let bootstrap = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                if let Some(property) = line.strip_prefix("kafka.property=") {
                    admin_properties.push(property.to_owned());
                }
                line.strip_prefix("bootstrap=").map(str::to_owned)
            });
        let Some(bootstrap) = bootstrap else {
            let status = launcher.wait().map(|s| s.to_string()).unwrap_or_default();
            panic!(
                "Apache Kafka did not start ({} exited {status} without a bootstrap line; its \
                 message is above, the nodes' logs in {})",
                self::launcher().display(),
                dir.keep().display()
            )
        };
        KafkaCluster {
            launcher: Mutex::new(launcher),
            stdin: Some(stdin),
            dir,
            bootstrap,
            nodes,
            admin_properties,
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Kafka settings for a client authenticating as `user` on a [`KafkaCluster::start_sasl`]
    /// cluster.
    pub fn user_settings(&self, user: &str, password: &str) -> retrace_sdk::KafkaSettings {
        retrace_sdk::KafkaSettings::new(&self.bootstrap)
            .with_properties([
                "security.protocol=SASL_PLAINTEXT",
                "sasl.mechanism=SCRAM-SHA-512",
                &format!("sasl.username={user}"),
                &format!("sasl.password={password}"),
            ])
            .expect("SASL properties are name=value")
    }

    /// Kafka settings for the super user of a [`KafkaCluster::start_sasl`] cluster.
    pub fn admin_settings(&self) -> retrace_sdk::KafkaSettings {
        assert!(
            !self.admin_properties.is_empty(),
            "this cluster was not started with SASL"
        );
        retrace_sdk::KafkaSettings::new(&self.bootstrap)
            .with_properties(self.admin_properties.iter().map(String::as_str))
            .expect("the launcher prints name=value properties")
    }

    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// SIGTERM to node `n` (a controlled shutdown: it hands its leaderships over); returns
    /// once it exited.
    pub async fn stop_node(&self, n: u8) {
        self.node_command("stop-node", n).await;
    }

    /// SIGKILL to node `n`: a crash, nothing handed over.
    pub async fn kill_node(&self, n: u8) {
        self.node_command("kill-node", n).await;
    }

    /// Starts node `n` again; returns once it serves clients.
    pub async fn start_node(&self, n: u8) {
        self.node_command("start-node", n).await;
    }

    /// The node that leads the KRaft quorum: the active controller.
    pub async fn quorum_leader(&self) -> u8 {
        let out = self.launcher_command(&["quorum-leader".to_owned()]).await;
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("kafka-local quorum-leader printed {out:?}"))
    }

    async fn node_command(&self, command: &str, n: u8) {
        self.launcher_command(&[command.to_owned(), n.to_string()])
            .await;
    }

    async fn launcher_command(&self, args: &[String]) -> String {
        let output = tokio::process::Command::new(launcher())
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .await
            .expect("the launcher runs");
        assert!(
            output.status.success(),
            "kafka-local {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        // The launcher stops its nodes when its stdin closes (or on SIGTERM), and exits once
        // they have. Closed before the wait below: a launcher that waited for its stdin
        // reader as it stopped would otherwise wait for us while we wait for it.
        drop(self.stdin.take());
        let launcher = self.launcher.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("kill")
            .args(["-TERM", &launcher.id().to_string()])
            .status();
        let _ = launcher.wait();
    }
}
