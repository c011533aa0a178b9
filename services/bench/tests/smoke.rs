//! Every benchmark mode runs to its end: `retrace-bench <mode> --smoke` (small counts, a few
//! seconds each) exits 0 and prints its headline last, as `key=value`. A bench that can no
//! longer finish (a service it starts refuses it, an API it polls changed) fails here rather
//! than at release time. No figure is checked: the counts are too small to mean anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by every smoke: each keeps the CPU busy (services in processes, callgrind, a
/// PostgreSQL server), and on 2 cores side by side they starved each other: the soak's dev
/// mode missed its start deadline, and in CI the trace smoke's deep listing page came back
/// empty once. One at a time, the binary takes about the sum of their times.
static SERVICES: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERVICES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bench() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_retrace-bench"))
}

/// `binary` of the workspace's `package`, as built now by the cargo running this test: a
/// no-op after `cargo test --workspace`, which built it already, and a fresh build of the
/// workspace's tests, never a stale file, after `cargo test -p retrace-bench`, which builds
/// only this package's binaries. Outside cargo, the one beside `retrace-bench`. It asks for
/// exactly what `cargo test --workspace` builds: `cargo build -p <package>` resolves other
/// features (no dev-dependencies), so in CI it compiled the binary again while the other
/// smokes ran, and starved them on 2 cores.
fn built(package: &str, binary: &str) -> PathBuf {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return bench().with_file_name(binary);
    };
    let mut command = Command::new(cargo);
    command.args([
        "test",
        "--workspace",
        "--no-run",
        "--locked",
        "--message-format=json-render-diagnostics",
    ]);
    // The same profile, and the same target directory when it is plainly the one this
    // test's binary came from (cargo tags its root), so nothing is built twice.
    let profile_dir = bench().parent().expect("retrace-bench is in a directory");
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
        None => {}
    }
    if let Some(root) = profile_dir.parent()
        && root.join("CACHEDIR.TAG").is_file()
    {
        command.arg("--target-dir").arg(root);
    }
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo test --workspace --no-run (for {package}'s {binary}) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == binary
                && message["target"]["kind"] == serde_json::json!(["bin"])
                && message["profile"]["test"] == false
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable {binary}"))
}

/// Runs `retrace-bench <mode> --smoke <extra>`; checks it succeeded and that its last line
/// starts with `headline=<number>`. Answers what it printed.
fn smoke(mode: &str, extra: &[&std::ffi::OsStr], headline: &str) -> String {
    let output = Command::new(bench())
        .args([mode, "--smoke"])
        .args(extra)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("retrace-bench runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "retrace-bench {mode} --smoke failed ({}):\n{report}",
        output.status
    );
    let last = report.lines().last().unwrap_or_default();
    let value = last
        .split_whitespace()
        .next()
        .and_then(|pair| pair.strip_prefix(&format!("{headline}=")))
        .unwrap_or_else(|| panic!("{mode}'s last line is not {headline}=…: {last:?}"));
    assert!(
        value.parse::<f64>().is_ok(),
        "{mode}'s headline {headline} is not a number: {last:?}"
    );
    report
}

#[test]
fn archive_smoke_runs_every_phase() {
    let _services = one_at_a_time();
    let report = smoke("archive", &[], "end_to_end_msgs_per_s");
    for key in [
        "raw_consume_msgs_per_s=",
        "store_only_msgs_per_s=",
        "disk_over_payload=",
        "disk_over_kafka_log=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn shards_smoke_ingests_with_one_and_two_shards_and_traces_through_the_fanout() {
    let _services = one_at_a_time();
    let report = smoke("shards", &[], "shards_2_over_1");
    for key in [
        "one_shard_msgs_per_s=",
        "two_shards_msgs_per_s=",
        "single_trace_p99_ms=",
        "fanout_trace_p99_ms=",
        "fanout_trace_p99_ratio=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn gateway_smoke_runs_every_phase() {
    let _services = one_at_a_time();
    let report = smoke("gateway", &[], "gateway_batched_events_per_s");
    for key in [
        "baseline_publish_events_per_s=",
        "gateway_single_events_per_s=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn trace_smoke_runs_every_phase() {
    let _services = one_at_a_time();
    let report = smoke("trace", &[], "trace_http_p99_ms");
    for key in ["store_read_p99_ms=", "trace_http_unaudited_p99_ms="] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn incidents_smoke_runs_every_phase_and_finds_every_cause() {
    let _services = one_at_a_time();
    let report = smoke("incidents", &[], "incidents_listing_p99_ms");
    for key in [
        "ingest_without_index_per_s=",
        "ingest_with_index_per_s=",
        "ingest_ratio=",
        "store_incidents_p99_ms=",
        "incident_detail_p99_ms=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
    // The bench checks the index against what it wrote; this is its count.
    assert!(
        report.lines().any(|line| line == "incidents=50"),
        "{report}"
    );
}

/// Needs PostgreSQL's server programs (`tests/setup` installs them): without them the bench
/// prints `skipped=…` last and this fails, so a run without the comparison does not pass.
#[test]
fn peers_smoke_runs_retrace_and_postgresql() {
    let _services = one_at_a_time();
    let report = smoke("peers", &[], "trace_p99_ratio");
    for key in [
        "retrace_ingest_msgs_per_s=",
        "postgres_ingest_msgs_per_s=",
        "retrace_trace_p99_ms=",
        "postgres_trace_p99_ms=",
        "retrace_disk_bytes=",
        "postgres_disk_bytes=",
        "ingest_ratio=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

/// Needs valgrind (`tests/setup` installs it): the smoke counts its debug build's
/// instructions, so the functions the mode counts are checked to still be found by name.
#[test]
fn instructions_smoke_counts_the_ingest_and_the_lookups_under_callgrind() {
    let _services = one_at_a_time();
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/baseline.toml");
    let report = smoke(
        "instructions",
        &["--baseline".as_ref(), baseline.as_os_str()],
        "instructions_per_message",
    );
    for key in ["messages=", "lookups=", "instructions_per_lookup="] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn worker_smoke_runs_every_phase_with_real_worker_processes() {
    let _services = one_at_a_time();
    let worker = built("retrace-worker", "retrace-worker");
    let report = smoke(
        "worker",
        &["--worker-binary".as_ref(), worker.as_os_str()],
        "peak_p99_ratio_gate_off_over_on",
    );
    for key in [
        "gate_off_user_p99_ms=",
        "gate_on_user_p99_ms=",
        "noop_jobs_per_s=",
        "worker_processes_1_jobs_per_s=",
        "worker_processes_2_jobs_per_s=",
    ] {
        assert!(report.contains(key), "no {key} in:\n{report}");
    }
}

#[test]
fn soak_smoke_loses_nothing_and_doubles_nothing() {
    let _services = one_at_a_time();
    let retrace = built("retrace", "retrace");
    let report = smoke("soak", &["--retrace".as_ref(), retrace.as_os_str()], "lost");
    assert!(
        report.lines().any(|line| line == "duplicates=0"),
        "{report}"
    );
    assert!(report.lines().any(|line| line == "lost=0"), "{report}");
}
