//! The HTTP API against its own OpenAPI document: schemathesis (installed by `tests/setup` in
//! `tests/api-fuzz/.venv`) calls every operation `retrace dev --demo` documents at
//! `/v1/openapi.json`, with the admin token, with generated valid and invalid input and in
//! sequences, and checks that no answer is a server error and every answer (status, content
//! type, body) is one the document describes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::DevServer;

/// Where `tests/setup` installs schemathesis.
fn schemathesis() -> PathBuf {
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/api-fuzz/.venv/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run tests/setup, which installs schemathesis",
        st.display()
    );
    st
}

#[test]
fn every_operation_answers_as_the_openapi_document_says() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), 20, None);
    let output = Command::new(st)
        // A backup request names a directory on the server's host: relative ones land here.
        .current_dir(dir.path())
        .arg("run")
        .arg(format!("{}/v1/openapi.json", dev.http()))
        .args([
            "--header",
            &format!("Authorization: Bearer {}", dev.token()),
        ])
        .args(["--checks", "all"])
        // Schema-valid input the API still refuses (a replay of a transaction that does not
        // exist, a reason of spaces) is a 4xx by design; every 4xx is checked against the
        // document instead.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        // A backup writes a directory tree wherever the request says; fuzzing it would write
        // across the host's filesystem.
        .args(["--exclude-path", "/v1/admin/backups"])
        .args(["--max-examples", "25", "--seed", "20261206"])
        .args(["--request-timeout", "20", "--no-color"])
        .output()
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Shown with `--nocapture`: what was covered, and schemathesis's warnings.
    eprintln!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found answers the OpenAPI document does not describe:\n{report}"
    );
    assert!(
        report.contains("Tested:"),
        "schemathesis ran no operation:\n{report}"
    );
}
