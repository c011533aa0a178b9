//! The archive binary reloads its configuration on SIGHUP: with file polling off
//! (`RETRACE_CONFIG_POLL_MS=0`), an edited file takes effect only once the signal arrives,
//! through the same layering as at start (an environment variable still wins over the file).

use std::process::Command;
use std::time::Duration;

use retrace_tests::{
    Broker, ServiceProcess, Stop, eventually, free_port, on_every_broker, unique_topic,
};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(60);

/// The archive's `/v1/config`, once it serves it (while starting it answers 503).
async fn config(http: &str) -> Option<Value> {
    reqwest::get(format!("http://{http}/v1/config"))
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .json()
        .await
        .ok()
}

async fn sighup_reloads_the_file_through_the_same_layers(broker: Broker) {
    let topic = unique_topic("sighup");
    broker.create_topic(&topic, 1).await;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("archive.toml");
    std::fs::write(&file, "[auth]\nenabled = false\n").unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let archive = ServiceProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_retrace-archive"))
            .env("RETRACE_CONFIG", &file)
            .env("RETRACE_CONFIG_POLL_MS", "0")
            .env("RETRACE_KAFKA_BOOTSTRAP", broker.bootstrap())
            .env("RETRACE_ARCHIVE_TOPICS", &topic)
            .env("RETRACE_ARCHIVE_BATCH_RECORDS", "100")
            // Tests of one binary share a Kafka node; each archive in a group of its own.
            .env("RETRACE_ARCHIVE_GROUP", format!("{topic}-archive"))
            .env("RETRACE_DATA_DIR", data.path().join("archive"))
            .env("RETRACE_HTTP", &http)
            .env("RETRACE_LOG", "warn"),
    );
    let started = eventually("the archive to answer /v1/config", PATIENCE, || {
        config(&http)
    })
    .await;
    assert_eq!(started["config"]["replay_bulk_admin_above"], 100);

    std::fs::write(
        &file,
        "[auth]\nenabled = false\n\n[archive]\nreplay_bulk_admin_above = 7\nbatch_records = 5\n",
    )
    .unwrap();
    let hangup = Command::new("kill")
        .args(["-HUP", &archive.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let reloaded = eventually("SIGHUP to reload the file", PATIENCE, || async {
        let now = config(&http).await?;
        (now["version"] != started["version"]).then_some(now)
    })
    .await;
    assert_eq!(reloaded["config"]["replay_bulk_admin_above"], 7);
    assert_eq!(
        reloaded["config"]["batch"]["max_records"], 100,
        "the environment still wins over the file"
    );

    archive.stop(Stop::Terminate);
}

on_every_broker!(sighup_reloads_the_file_through_the_same_layers);
