//! `/metrics` of `retrace dev --demo` as Prometheus reads it right after start: promtool
//! finds no fault (every metric described, its help docs/metrics.md's meaning), every
//! documented metric is exposed, and so is every metric the alert rules and the dashboard
//! ask for, so `rate()` sees a series' first increment and an alert on it can fire.
//! (promtool also checks the rules themselves: tests/scenarios/docs.rs.)

mod common;

use std::collections::BTreeSet;

use common::DevServer;
use retrace_telemetry::documented_metrics;
use retrace_tests::prometheus::{metrics_in, promtool, shipped_queries};
use retrace_tests::{PATIENCE, wait_for};

/// Metrics the rules or the dashboard query that Retrace does not serve, and who does.
const EXTERNAL: [(&str, &str); 2] = [
    ("up", "Prometheus's own series, one per scrape target"),
    (
        "kafka_consumergroup_lag",
        "kafka-exporter's: the workers' consumer lag",
    ),
];

/// Documented metrics that only a sharded archive serves (its series are the other shards,
/// registered at its start), which dev mode's archive is not: the shards scenario
/// (services/archive/tests/shards.rs) reads them.
const SHARDS_ONLY: [&str; 2] = [
    "retrace_archive_shard_requests_total",
    "retrace_archive_shard_answering",
];

/// Documented metrics that appear only when they first count, and why no series of theirs
/// can be known at start.
const AT_FIRST_USE: [(&str, &str); 1] = [(
    "retrace_audit_records_total",
    "its `action` is that of each audit record chained, any service's, as they come over \
     retrace.audit",
)];

fn scrape(http: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::get(format!("{http}/metrics")).await.ok()?;
        response.error_for_status().ok()?.text().await.ok()
    })
}

/// The metric families `text` (Prometheus's text format) exposes.
fn families(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect()
}

#[test]
fn dev_mode_exposes_every_metric_described_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevServer::start(dir.path(), 1, None);
    // Series known from the configuration are registered before dev.json is written; each
    // partition's lag gauges at the archive's first lag check, made as it starts.
    let text = wait_for("the archive's first lag check", PATIENCE, || {
        scrape(dev.http()).filter(|text| text.contains("retrace_archive_lag_records{"))
    });

    let (passed, printed) = promtool(&["check", "metrics"], &text);
    assert!(
        passed && printed.trim().is_empty(),
        "promtool check metrics:\n{printed}"
    );

    let exposed = families(&text);
    let mut problems = Vec::new();
    for metric in documented_metrics() {
        let waits = AT_FIRST_USE.iter().any(|(name, _)| *name == metric.name)
            || SHARDS_ONLY.contains(&metric.name);
        if !exposed.contains(metric.name) {
            if !waits {
                problems.push(format!("{} is not exposed at start", metric.name));
            }
        } else if !text.contains(&format!("# HELP {} {}\n", metric.name, metric.help)) {
            problems.push(format!(
                "{}'s help is not docs/metrics.md's meaning",
                metric.name
            ));
        }
    }

    let queried: BTreeSet<(&str, String)> = shipped_queries()
        .into_iter()
        .flat_map(|(file, expr)| metrics_in(&expr).into_iter().map(move |name| (file, name)))
        .collect();
    assert!(queried.len() > 30, "found only {queried:?}");
    for (file, name) in &queried {
        let external = EXTERNAL.iter().any(|(external, _)| external == name)
            || SHARDS_ONLY.contains(&name.as_str());
        if !external && !exposed.contains(name.as_str()) {
            problems.push(format!("{file} queries {name}, not exposed at start"));
        }
    }
    // An exception nothing needs any more is one to remove.
    for (name, _) in EXTERNAL {
        if !queried.iter().any(|(_, queried)| queried == name) {
            problems.push(format!(
                "{name} is listed as external but nothing queries it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
