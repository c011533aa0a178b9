//! What Prometheus and Grafana are shipped to ask of Retrace (deploy/prometheus/rules.yml, the
//! dashboard), the metric names those queries select, and promtool (Debian's `prometheus`
//! package, installed by tests/setup) to check metrics and rules as Prometheus reads them.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::repo;

/// Where the alert rules and the dashboard are, from the repository's root.
pub const RULES: &str = "deploy/prometheus/rules.yml";
pub const DASHBOARD: &str = "deploy/grafana/dashboards/retrace.json";

/// Every PromQL expression of the alert rules and the dashboard, each with its file.
pub fn shipped_queries() -> Vec<(&'static str, String)> {
    let read = |file: &str| {
        std::fs::read_to_string(repo().join(file))
            .unwrap_or_else(|e| panic!("cannot read {file}: {e}"))
    };
    let rules: serde_norway::Value =
        serde_norway::from_str(&read(RULES)).expect("rules.yml is YAML");
    let mut queries: Vec<(&str, String)> = rules["groups"]
        .as_sequence()
        .expect("rules.yml has groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .filter_map(|rule| rule["expr"].as_str())
        .map(|expr| (RULES, expr.to_owned()))
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut pending = vec![&dashboard];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::Object(fields) => {
                if let Some(expr) = fields.get("expr").and_then(|expr| expr.as_str()) {
                    queries.push((DASHBOARD, expr.to_owned()));
                }
                pending.extend(fields.values());
            }
            serde_json::Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    queries
}

/// PromQL's words that look like names but select nothing: aggregations, operators and
/// modifiers.
const NOT_METRICS: [&str; 23] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
];

/// The metric names `expr` selects; a histogram's `_bucket`, `_sum` and `_count` series count
/// as their metric. Label matchers (`{…}`), ranges (`[…]`), strings, numbers, functions and
/// the label lists of `by (…)` and its kin are skipped.
pub fn metrics_in(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    let skip_to = |from: usize, end: char| {
        chars[from + 1..]
            .iter()
            .position(|c| *c == end)
            .map_or(chars.len(), |offset| from + 1 + offset + 1)
    };
    while at < chars.len() {
        let c = chars[at];
        if c == '"' || c == '\'' {
            at = skip_to(at, c);
        } else if c == '{' {
            at = skip_to(at, '}');
        } else if c == '[' {
            at = skip_to(at, ']');
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = at;
            while at < chars.len()
                && (chars[at].is_ascii_alphanumeric() || "_:".contains(chars[at]))
            {
                at += 1;
            }
            let name: String = chars[start..at].iter().collect();
            let next = chars[at..].iter().find(|c| !c.is_whitespace());
            let groups_labels = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ];
            if groups_labels.contains(&name.as_str()) && next == Some(&'(') {
                let open = at + chars[at..].iter().position(|c| *c == '(').expect("found");
                at = skip_to(open, ')');
            } else if next != Some(&'(') && !NOT_METRICS.contains(&name.as_str()) {
                let metric = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name);
                names.insert(metric.to_owned());
            }
        } else if c.is_ascii_digit() || c == '.' {
            while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '.') {
                at += 1;
            }
        } else {
            at += 1;
        }
    }
    names
}

/// `promtool args…` with `input` on its stdin: whether it succeeded, and everything it
/// printed.
pub fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (tests/setup does), which puts it at /usr/bin/promtool"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("promtool reads its input");
    let output = child.wait_with_output().expect("promtool runs to its end");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), printed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metric_names_are_found_in_an_expression() {
        let found = metrics_in(
            "histogram_quantile(0.99, sum by (le, endpoint) (rate(retrace_api_request_seconds_bucket\
             [$__rate_interval]))) > 1 or sum without (job) (up{job=~\"retrace-.*\"}) == 0 \
             and on (queue) kafka_consumergroup_lag{consumergroup=\"a_b\"} > 1e4",
        );
        let expected = [
            "kafka_consumergroup_lag",
            "retrace_api_request_seconds",
            "up",
        ];
        assert_eq!(found, expected.map(str::to_owned).into_iter().collect());
    }
}
