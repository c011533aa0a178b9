//! Running the real `retrace` binary from a test. Each test binary uses part of this.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Stdio};

use assert_cmd::Command;
use retrace_tests::{PATIENCE, free_port, wait_for};

/// What one run of `retrace` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `retrace args…` against `server`, stdin not a terminal, times in UTC. Blocking, so
/// on the blocking pool: the services in the test keep serving meanwhile.
pub async fn retrace(server: &str, args: &[&str]) -> Run {
    run(server, None, args).await
}

/// [`retrace`], showing the server `token`.
pub async fn retrace_as(server: &str, token: &str, args: &[&str]) -> Run {
    run(server, Some(token), args).await
}

async fn run(server: &str, token: Option<&str>, args: &[&str]) -> Run {
    let server = server.to_owned();
    let token = token.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::cargo_bin("retrace").unwrap();
        command
            .env("RETRACE_SERVER", server)
            .env_remove("RETRACE_TOKEN")
            .env("TZ", "UTC");
        if let Some(token) = token {
            command.env("RETRACE_TOKEN", token);
        }
        let output = command
            .args(&args)
            .write_stdin("")
            .timeout(PATIENCE)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

#[track_caller]
pub fn assert_exit(run: &Run, code: i32) {
    assert_eq!(run.code, code, "unexpected exit code: {run:#?}");
}

/// `retrace dev --demo` on a free port, killed when dropped.
pub struct DevServer {
    pub child: Child,
    pub port: u16,
    /// Its `dev.json`: `http`, `kafka_bootstrap`, `kafka`, `token`.
    pub info: serde_json::Value,
}

impl DevServer {
    /// Starts it with its data in `data_dir` and `rate` registrations a second, on `kafka`
    /// (bootstrap servers, or `local`: Apache Kafka it starts itself) or else dev mode's
    /// in-process mock cluster, and waits until it has written `dev.json`. The demo's job gate
    /// closes at 20 a second and over: below it jobs run, and some dead-letter. Its stderr
    /// goes to `dev.log` in `data_dir`.
    pub fn start(data_dir: &Path, rate: u32, kafka: Option<&str>) -> DevServer {
        let port = free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_retrace"));
        command
            .args(["dev", "--demo", "--log", "warn"])
            .args(["--demo-rate", &rate.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", &format!("127.0.0.1:{port}")]);
        if let Some(kafka) = kafka {
            command.args(["--kafka", kafka]);
        }
        std::fs::create_dir_all(data_dir).expect("the data directory can be created");
        let log = data_dir.join("dev.log");
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dev.log in the data directory"))
            .spawn()
            .expect("the retrace binary starts");
        let mut server = DevServer {
            child,
            port,
            info: serde_json::Value::Null,
        };
        server.info = wait_for("dev.json", PATIENCE, || {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "retrace dev exited with {status} before writing dev.json: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let text = std::fs::read_to_string(data_dir.join("dev.json")).ok()?;
            serde_json::from_str(&text).ok()
        });
        server
    }

    pub fn http(&self) -> &str {
        self.info["http"]
            .as_str()
            .expect("dev.json names the HTTP address")
    }

    pub fn token(&self) -> &str {
        self.info["token"]
            .as_str()
            .expect("dev.json holds the admin token")
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
