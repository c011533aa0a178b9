//! docs/metrics.md, the alert rules and the dashboard against the code: every metric the
//! sources emit is documented with its kind and labels, nothing documented is gone, the
//! rules and dashboard query only metrics that exist, and promtool accepts the rules.
//! (That every metric is exposed, described, from a service's start: replay-cli/tests/metrics.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use retrace_tests::prometheus::{RULES, metrics_in, promtool, shipped_queries};
use retrace_tests::repo;
use serde_norway::Value;

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Metric {
    kind: String,
    labels: BTreeSet<String>,
}

/// Every `.rs` file under the workspace's source folders.
fn sources() -> Vec<PathBuf> {
    let mut pending: Vec<PathBuf> = ["proto", "log-store", "services", "replay-cli"]
        .iter()
        .map(|folder| repo().join(folder))
        .collect();
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The text between a macro's `(` (already consumed) and its matching `)`.
fn invocation(text: &str) -> &str {
    let mut depth = 1;
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[..at];
                }
            }
            _ => {}
        }
    }
    panic!("unterminated metrics macro: {text:.80}")
}

/// The string literals of `body`, each with whether `=>` follows it (a label name).
fn literals(body: &str) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let end = after.find('"').expect("string literals close");
        let followed_by_arrow = after[end + 1..].trim_start().starts_with("=>");
        found.push((after[..end].to_owned(), followed_by_arrow));
        rest = &after[end + 1..];
    }
    found
}

/// Name → kind and labels, from every `counter!`, `gauge!` and `histogram!` in the sources.
fn emitted() -> BTreeMap<String, Metric> {
    let mut metrics = BTreeMap::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).expect("sources are readable");
        for kind in ["counter", "gauge", "histogram"] {
            let call = format!("{kind}!(");
            for (at, _) in text.match_indices(&call) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let found = literals(invocation(&text[at + call.len()..]));
                let (name, _) = found
                    .first()
                    .unwrap_or_else(|| panic!("{}: a {kind}! without a name", file.display()));
                let metric = Metric {
                    kind: kind.to_owned(),
                    labels: found
                        .iter()
                        .filter(|(_, is_label)| *is_label)
                        .map(|(label, _)| label.clone())
                        .collect(),
                };
                if let Some(other) = metrics.insert(name.clone(), metric.clone()) {
                    assert_eq!(
                        other,
                        metric,
                        "{name} is emitted twice, differently ({})",
                        file.display()
                    );
                }
            }
        }
    }
    metrics
}

/// Name → kind and labels, from the tables of docs/metrics.md as the services read them.
fn documented() -> BTreeMap<String, Metric> {
    retrace_telemetry::documented_metrics()
        .iter()
        .map(|metric| {
            let labels = metric
                .labels
                .iter()
                .map(|label| label.to_string())
                .collect();
            let kind = metric.kind.as_str().to_owned();
            (metric.name.to_owned(), Metric { kind, labels })
        })
        .collect()
}

#[test]
fn every_emitted_metric_is_documented_as_emitted() {
    let emitted = emitted();
    assert!(
        emitted.len() > 40,
        "the scan found only {} metrics; is it still looking in the right places?",
        emitted.len()
    );
    let documented = documented();
    let mut problems = Vec::new();
    for (name, metric) in &emitted {
        match documented.get(name) {
            None => problems.push(format!(
                "{name} ({}) is not in docs/metrics.md",
                metric.kind
            )),
            Some(doc) if doc != metric => problems.push(format!(
                "{name}: the code emits a {} with labels {:?}; docs/metrics.md says a {} with {:?}",
                metric.kind, metric.labels, doc.kind, doc.labels
            )),
            Some(_) => {}
        }
    }
    for name in documented
        .keys()
        .filter(|name| !emitted.contains_key(*name))
    {
        problems.push(format!("{name} is in docs/metrics.md but no code emits it"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_rules_and_the_dashboard_query_only_emitted_metrics() {
    let emitted = emitted();
    let queries = shipped_queries();
    assert!(queries.len() > 30, "found only {} queries", queries.len());
    let unknown: Vec<String> = queries
        .iter()
        .flat_map(|(file, expr)| metrics_in(expr).into_iter().map(move |name| (file, name)))
        .filter(|(_, name)| name.starts_with("retrace_") && !emitted.contains_key(name))
        .map(|(file, name)| format!("{file} queries {name}, which no code emits"))
        .collect();
    assert!(unknown.is_empty(), "{}", unknown.join("\n"));
}

/// What Prometheus would say loading the rules: syntax, PromQL, templates.
#[test]
fn promtool_accepts_the_alert_rules() {
    let rules = repo().join(RULES);
    let (passed, printed) = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(passed, "promtool check rules {RULES}:\n{printed}");
}

#[test]
fn every_shipped_alert_is_explained_in_the_metrics_doc() {
    let rules: Value = serde_norway::from_str(&read(RULES)).expect("rules.yml is YAML");
    let doc = read("docs/metrics.md");
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .expect("rules.yml has groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    assert!(!alerts.is_empty(), "rules.yml has alerts");
    let missing: Vec<&&str> = alerts
        .iter()
        .filter(|alert| !doc.contains(**alert))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/metrics.md does not mention {missing:?}"
    );
}
