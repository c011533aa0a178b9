use std::path::Path;

use tracing::{debug, info, warn};

use crate::logging::subscriber;
use crate::{FileSink, LogFormat, LogSink, LogSinks, Rotation, TelemetryError};

fn file(path: &Path) -> LogSink {
    LogSink::File(FileSink {
        path: path.to_owned(),
        rotation: Rotation::Never,
        max_files: None,
    })
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn messages(lines: &[serde_json::Value]) -> Vec<(&str, &str)> {
    lines
        .iter()
        .map(|line| {
            (
                line["category"].as_str().unwrap(),
                line["message"].as_str().unwrap(),
            )
        })
        .collect()
}

#[test]
fn audit_lines_go_to_the_audit_file_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, app) = (dir.path().join("audit.log"), dir.path().join("app.log"));
    let sinks = LogSinks {
        audit: file(&audit),
        app: file(&app),
        debug: file(&app),
        ..LogSinks::default()
    };
    let installed = subscriber(LogFormat::Json, "debug", &sinks).unwrap();
    tracing::subscriber::with_default(installed, || {
        info!(category = "audit", action = "replay", "replay started");
        info!("batch written");
        debug!("polled");
        warn!(category = "security", "denied");
    });
    assert_eq!(messages(&lines(&audit)), [("audit", "replay started")]);
    assert_eq!(
        messages(&lines(&app)),
        [("app", "batch written"), ("debug", "polled")]
    );
    // The security line went to its default sink, stderr: in neither file.
}

#[test]
fn a_rotated_file_is_named_by_its_period_and_a_text_line_has_its_category() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = LogSinks {
        app: LogSink::File(FileSink {
            path: dir.path().join("app.log"),
            rotation: Rotation::Hourly,
            max_files: Some(3),
        }),
        ..LogSinks::default()
    };
    let installed = subscriber(LogFormat::Text, "info", &sinks).unwrap();
    tracing::subscriber::with_default(installed, || info!(topic = "t", "consumed"));
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].starts_with("app.") && written[0].ends_with(".log"),
        "{written:?}"
    );
    let text = std::fs::read_to_string(dir.path().join(&written[0])).unwrap();
    assert!(text.trim_end().ends_with("category=app"), "{text}");
    assert!(text.contains("consumed"), "{text}");
}

#[test]
fn a_file_that_cannot_be_created_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_directory = dir.path().join("plain-file");
    std::fs::write(&not_a_directory, "").unwrap();
    let sinks = LogSinks {
        audit: file(&not_a_directory.join("audit.log")),
        ..LogSinks::default()
    };
    let error = subscriber(LogFormat::Json, "info", &sinks).err().unwrap();
    assert!(
        matches!(&error, TelemetryError::LogFile { path, .. } if path.ends_with("audit.log")),
        "{error}"
    );
}
