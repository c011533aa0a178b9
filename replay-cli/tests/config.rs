//! `retrace config check`: the real binary on files a person would write.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, assert_exit, retrace};

/// No server is involved; the address only satisfies the runner.
const NO_SERVER: &str = "http://127.0.0.1:9";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn check(args: &[&str]) -> Run {
    let mut all = vec!["config", "check"];
    all.extend_from_slice(args);
    retrace(NO_SERVER, &all).await
}

#[tokio::test]
async fn every_problem_is_printed_with_its_path_and_the_exit_code_is_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "worker.toml",
        r#"
[queues.certificates]
concurrency = 0

[queues.sms.gate]
time_zone = "UTC"
windows = [ { days = "mon", from = "25:00", to = "07:00" } ]

[auth]
bootstrap_admin_sha256 = "abc"
"#,
    );
    let run = check(&[&file]).await;
    assert_exit(&run, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{run:#?}");
    assert_eq!(
        lines[0],
        "queues.certificates.concurrency: must be at least 1"
    );
    assert!(
        lines[1].starts_with("queues.sms.gate.windows[0].from: 25:00 is not a time of day"),
        "{run:#?}"
    );
    assert!(
        lines[2].starts_with("auth.bootstrap_admin_sha256 must be 64 lowercase hex digits"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("is not a valid retrace-worker configuration: 3 problem(s)"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn a_misspelt_setting_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "archive.toml",
        "[archive]\nbatch_records = 100\nbatch_recs = 5\n",
    );
    let run = check(&[&file]).await;
    assert_exit(&run, 1);
    assert!(
        run.stdout
            .starts_with("archive.batch_recs: unknown field `batch_recs`"),
        "{run:#?}"
    );
    assert!(run.stdout.trim_end().ends_with("(line 3)"), "{run:#?}");
}

#[tokio::test]
async fn the_service_is_taken_from_the_file_or_from_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let common_only = write(dir.path(), "auth.toml", "[auth]\nmetrics_public = false\n");
    let run = check(&[&common_only]).await;
    assert_exit(&run, 2);
    assert!(run.stderr.contains("--service"), "{run:#?}");
    let run = check(&[&common_only, "--service", "gateway"]).await;
    assert_exit(&run, 0);
    assert_eq!(
        run.stdout,
        format!("{common_only}: a valid retrace-gateway configuration\n")
    );
    // A setting of another service is refused by the one named.
    let archive = write(
        dir.path(),
        "archive.toml",
        "[archive]\nbatch_records = 10\n",
    );
    let run = check(&[&archive, "--service", "worker"]).await;
    assert_exit(&run, 1);
    assert!(run.stdout.starts_with("archive: unknown field"), "{run:#?}");
}

#[tokio::test]
async fn the_files_compose_mounts_are_valid() {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/retrace");
    for (file, service) in [
        ("archive.toml", "retrace-archive"),
        ("gateway.toml", "retrace-gateway"),
        ("worker.toml", "retrace-worker"),
    ] {
        let path = deploy.join(file).display().to_string();
        let run = check(&[&path]).await;
        assert_exit(&run, 0);
        assert!(
            run.stdout
                .contains(&format!("a valid {service} configuration")),
            "{run:#?}"
        );
    }
}
