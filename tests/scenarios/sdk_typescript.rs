//! The TypeScript SDK (`sdks/typescript`, `@retrace/sdk`): its own tests, `npm test`, run
//! against this binary's Apache Kafka node (or `RETRACE_TEST_KAFKA`): the shared test vectors
//! of `proto/testdata`, validation, and publish → consume with outcomes and commits, and jobs
//! on their lanes, on the broker. `tests/setup` installs its packages (`npm ci`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use retrace_tests::Broker;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdks/typescript")
}

#[test]
fn the_typescript_sdk_passes_its_tests_on_apache_kafka() {
    let dir = sdk_dir();
    assert!(
        dir.join("node_modules/.package-lock.json").is_file(),
        "{} has no node_modules: run `tests/setup` (it runs `npm ci` there; Node.js 18+ and \
         npm are needed)",
        dir.display()
    );
    let broker = Broker::real();
    let started = Instant::now();
    let output = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("RETRACE_TEST_KAFKA_BOOTSTRAP", broker.bootstrap())
        .output()
        .unwrap_or_else(|error| panic!("cannot run npm in {}: {error}", dir.display()));
    assert!(
        output.status.success(),
        "`npm test` in {} failed ({}) after {:.1?}:\n{}\n{}",
        dir.display(),
        output.status,
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    eprintln!("npm test passed in {:.1?}", started.elapsed());
}
