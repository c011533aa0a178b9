//! The soak's CI version: `retrace-bench soak` for 60 s at a modest rate, with the same
//! checks as the long run: nothing Kafka holds is missing from the archive, and no event is
//! stored twice outside replays. Timings are printed, not asserted.

use std::process::Command;

#[test]
fn a_minute_of_dev_mode_with_the_demo_loses_nothing_and_doubles_nothing() {
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_retrace-bench"));
    // `cargo test --workspace` builds every package's binaries, `retrace` among them, into
    // the same directory.
    let retrace = bench.with_file_name("retrace");
    assert!(
        retrace.exists(),
        "{} is missing: cargo build -p retrace",
        retrace.display()
    );
    let output = Command::new(bench)
        .args([
            "soak",
            "--duration",
            "60s",
            "--rate",
            "20",
            "--replay-every",
            "5s",
        ])
        .arg("--retrace")
        .arg(&retrace)
        .output()
        .expect("retrace-bench runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let figure = |key: &str| {
        report
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the soak reports {key}:\n{report}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(figure("lost"), 0.0);
    assert_eq!(figure("duplicates"), 0.0);
    assert!(
        figure("events_archived") > 0.0,
        "the demo published nothing"
    );
    assert!(figure("replays") > 0.0, "no replay went through");
    assert!(output.status.success(), "the soak failed:\n{report}");
}
