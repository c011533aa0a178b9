//! Running the real `retrace` binary from a test. Each test binary uses part of this.
#![allow(dead_code)]

use assert_cmd::Command;
use retrace_tests::PATIENCE;

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
