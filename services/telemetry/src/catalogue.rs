//! docs/metrics.md is the one place a metric is described: its tables (name, kind, labels,
//! meaning) are compiled into every service, so the `# HELP` line Prometheus shows is the
//! meaning people read in the docs, and the two cannot drift. The kind and labels a service
//! registers its series with are checked against the same rows.

use std::sync::OnceLock;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};

/// The metrics guide, whose table rows describe every metric a Retrace service exposes.
const GUIDE: &str = include_str!("../../../docs/metrics.md");

/// What a metric is in Prometheus's terms: the `kind` column of docs/metrics.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One row of docs/metrics.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedMetric {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Label names, in the order the row lists them.
    pub labels: Vec<&'static str>,
    /// The row's meaning as plain text: the `# HELP` line.
    pub help: String,
}

/// Every metric docs/metrics.md describes, in its order.
pub fn documented_metrics() -> &'static [DocumentedMetric] {
    static METRICS: OnceLock<Vec<DocumentedMetric>> = OnceLock::new();
    METRICS
        .get_or_init(|| parse(GUIDE).unwrap_or_else(|problem| panic!("docs/metrics.md: {problem}")))
}

/// The row of docs/metrics.md describing `name`.
pub fn documented(name: &str) -> Option<&'static DocumentedMetric> {
    documented_metrics()
        .iter()
        .find(|metric| metric.name == name)
}

/// The metric rows of `guide`: table lines whose first cell is a `retrace_` name in backticks.
fn parse(guide: &'static str) -> Result<Vec<DocumentedMetric>, String> {
    guide
        .lines()
        .filter(|line| line.starts_with("| `retrace_"))
        .map(|line| {
            let cells: Vec<&'static str> = line.split('|').map(str::trim).collect();
            let [_, name, kind, labels, meaning, ..] = cells[..] else {
                return Err(format!("a metric row without a meaning column: {line}"));
            };
            let kind = match kind {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                "histogram" => MetricKind::Histogram,
                other => {
                    return Err(format!(
                        "{name}: kind {other:?} is not counter, gauge or histogram"
                    ));
                }
            };
            let help = plain_text(meaning);
            if help.is_empty() {
                return Err(format!("{name} has no meaning"));
            }
            Ok(DocumentedMetric {
                name: name.trim_matches('`'),
                kind,
                labels: labels
                    .split(',')
                    .map(|label| label.trim().trim_matches('`'))
                    .filter(|label| !label.is_empty())
                    .collect(),
                help,
            })
        })
        .collect()
}

/// `markdown` as a person reads it rendered: links become their text, code spans lose their
/// backticks, runs of spaces become one.
fn plain_text(markdown: &str) -> String {
    let mut text = String::with_capacity(markdown.len());
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        let link = rest[open..].find("](").and_then(|middle| {
            let close = rest[open + middle..].find(')')?;
            Some((open + middle, open + middle + close))
        });
        match link {
            Some((middle, close)) => {
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..middle]);
                rest = &rest[close + 1..];
            }
            None => {
                text.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    text.push_str(rest);
    text.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Gives `recorder` the help text of every documented metric.
pub(crate) fn describe(recorder: &impl Recorder) {
    for metric in documented_metrics() {
        let name = KeyName::from_const_str(metric.name);
        let help = SharedString::from(metric.help.clone());
        match metric.kind {
            MetricKind::Counter => recorder.describe_counter(name, None, help),
            MetricKind::Gauge => recorder.describe_gauge(name, None, help),
            MetricKind::Histogram => recorder.describe_histogram(name, None, help),
        }
    }
}

/// Registers the series of `name` at zero, one for each combination of the label values
/// given (none when a label has no value known yet), with the kind docs/metrics.md gives it.
/// A series exposed from the start lets `rate()` and `increase()` see its first increment,
/// and an alert on it fire; one that appears at its first increment loses that increment.
/// Registering a series that exists leaves its value alone. The series go to the process's
/// recorder, like the `metrics` macros: a service installs Retrace's ([`prometheus`]) first,
/// while a program linking the SDK keeps the recorder of its choice.
///
/// Panics when `name` is not in docs/metrics.md or `labels` do not name its documented
/// labels: a mistake in the code, the same at every start, which the first test starting the
/// service reports.
///
/// [`prometheus`]: crate::prometheus
pub fn register(name: &str, labels: &[(&'static str, &[&str])]) {
    let Some(metric) = documented(name) else {
        panic!(
            "{name} is not in docs/metrics.md: document it (name, kind, labels, meaning) \
             before registering it"
        );
    };
    let mut given: Vec<&str> = labels.iter().map(|(label, _)| *label).collect();
    let mut expected = metric.labels.clone();
    given.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        given, expected,
        "{name} is registered with labels {given:?}; docs/metrics.md gives it {expected:?}"
    );
    let metadata = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
    for combination in combinations(labels) {
        let key = Key::from_parts(metric.name, combination);
        metrics::with_recorder(|recorder| match metric.kind {
            MetricKind::Counter => drop(recorder.register_counter(&key, &metadata)),
            MetricKind::Gauge => drop(recorder.register_gauge(&key, &metadata)),
            MetricKind::Histogram => drop(recorder.register_histogram(&key, &metadata)),
        });
    }
}

/// Every combination of one value per label, in the labels' order.
fn combinations(labels: &[(&'static str, &[&str])]) -> Vec<Vec<Label>> {
    labels
        .iter()
        .fold(vec![Vec::new()], |partial, (label, values)| {
            partial
                .iter()
                .flat_map(|before| {
                    values.iter().map(move |value| {
                        let mut next = before.clone();
                        next.push(Label::new(*label, value.to_string()));
                        next
                    })
                })
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_guide_is_a_metric_with_plain_help() {
        let metrics = documented_metrics();
        assert!(metrics.len() > 40, "{} rows", metrics.len());
        let consumed = documented("retrace_archive_records_consumed_total").unwrap();
        assert_eq!(consumed.kind, MetricKind::Counter);
        assert_eq!(consumed.labels, ["topic", "kind"]);
        assert!(
            consumed
                .help
                .starts_with("records consumed, by what they are: envelope,"),
            "{}",
            consumed.help
        );
        for metric in metrics {
            assert!(
                !metric.help.contains('`'),
                "{}: {}",
                metric.name,
                metric.help
            );
        }
    }

    #[test]
    fn links_keep_their_text_and_code_loses_its_backticks() {
        assert_eq!(
            plain_text("see [Behind](reliability.md#behind) and `lag`, [not a link"),
            "see Behind and lag, [not a link"
        );
        assert_eq!(plain_text("a  `b`\tc"), "a b c");
    }

    #[test]
    fn a_row_with_an_unknown_kind_is_refused() {
        let problem = parse("| `retrace_x_total` | countr | | things |").unwrap_err();
        assert!(problem.contains("retrace_x_total"), "{problem}");
    }

    #[test]
    fn every_combination_of_label_values_is_registered() {
        let made = combinations(&[("queue", &["a", "b"]), ("status", &["ok", "failed"])]);
        let rendered: Vec<String> = made
            .iter()
            .map(|labels| {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                pairs.join(",")
            })
            .collect();
        assert_eq!(
            rendered,
            [
                "queue=a,status=ok",
                "queue=a,status=failed",
                "queue=b,status=ok",
                "queue=b,status=failed"
            ]
        );
        assert!(combinations(&[("queue", &[]), ("status", &["ok"])]).is_empty());
    }

    #[test]
    fn registered_series_are_exposed_at_zero_with_their_help() {
        let recorder = crate::recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            register(
                "retrace_worker_jobs_total",
                &[("queue", &["certificates"]), ("status", &["failed"])],
            );
            register("retrace_archive_batch_write_seconds", &[]);
        });
        let text = handle.render();
        let help = &documented("retrace_worker_jobs_total").unwrap().help;
        assert!(
            text.contains(&format!("# HELP retrace_worker_jobs_total {help}\n")),
            "{text}"
        );
        assert!(
            text.contains(
                "retrace_worker_jobs_total{queue=\"certificates\",status=\"failed\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("retrace_archive_batch_write_seconds_count 0\n"),
            "{text}"
        );
    }

    #[test]
    #[should_panic(expected = "docs/metrics.md gives it")]
    fn registering_other_labels_than_documented_is_a_mistake() {
        register("retrace_worker_jobs_total", &[("queue", &["certificates"])]);
    }
}
