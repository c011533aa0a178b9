//! The Java SDK (`sdks/java`, `org.retrace:retrace-sdk`) in the workspace's test command: its
//! JUnit suite, `mvn -q -o test`, run against the Apache Kafka node this test binary shares
//! (`RETRACE_TEST_KAFKA_BOOTSTRAP`): the shared test vectors of `proto/testdata` (bytes, keys,
//! headers, lanes, and the 10,000 ids of `partitions.json` through kafka-clients' own
//! partitioner and produced to real topics), validation, publish → consume with an outcome on
//! `retrace.outcomes` and the commit after it, and jobs on their lanes.
//!
//! Maven runs offline: `tests/setup` fetches the SDK's dependencies (protoc included) once.

use std::process::Command;
use std::time::Instant;

use retrace_tests::{Broker, assert_not_checked_in, repo};

#[test]
fn the_java_sdks_tests_pass_against_apache_kafka() {
    let sdk = repo().join("sdks/java");
    let broker = Broker::real();
    let started = Instant::now();
    let output = Command::new("mvn")
        .args(["-q", "-B", "-o", "test"])
        .current_dir(&sdk)
        .env("RETRACE_TEST_KAFKA_BOOTSTRAP", broker.bootstrap())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run mvn in {} ({error}): the Java SDK's tests need Java 17+ and Maven \
                 (Debian: apt-get install openjdk-17-jdk-headless maven)",
                sdk.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Java SDK's `mvn -q -o test` failed ({}) after {:.1?} on {} (offline: if an \
         artifact is missing, run `tests/setup`, which fetches them):\n{stdout}\n{stderr}",
        output.status,
        started.elapsed(),
        broker.bootstrap()
    );
    eprintln!("mvn -q -o test passed in {:.1?}", started.elapsed());
}

#[test]
fn the_sdk_is_packaged_with_generated_types_only() {
    // The Java types generated from proto/ (target/generated-sources) are build output.
    assert_not_checked_in(
        &["sdks/java/target", "sdks/java/src/main/java/retrace"],
        "generated or built files",
    );
}
