//! A queue's `[queues.<name>.gate]` section, and its validation into a [`GateSpec`] with
//! errors that name the TOML field at fault.

use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::admission::AdmissionPolicy;
use super::schedule::{Days, Schedule, TimeOfDay, Window};
use super::signals::{SignalKind, SignalSpec};

/// `[queues.<name>.gate]`: when a queue may run. Every field is optional; an empty section
/// is a gate that is always open. Durations are in milliseconds (`*_ms`), as everywhere in the
/// worker's configuration.
///
/// ```toml
/// [queues.certificates.gate]
/// time_zone = "Africa/Nairobi"
/// windows = [
///   { days = "mon-fri", from = "19:00", to = "07:00" },
///   { days = "sat-sun", from = "00:00", to = "24:00" },
/// ]
/// deadline_margin_ms = 300000
/// bulk_after_ms = 600000
///
/// [[queues.certificates.gate.signals]]
/// kind = "topic_rate"
/// topics = ["registrations"]
/// max_rate = 800
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// IANA name, e.g. "Africa/Nairobi"; required with `windows`.
    pub time_zone: Option<String>,
    /// When the queue may run; none: at any time.
    #[serde(default)]
    pub windows: Vec<WindowConfig>,
    /// Load signals that close the gate while above their threshold.
    #[serde(default)]
    pub signals: Vec<SignalConfig>,
    /// A job whose deadline is this close runs whatever the gate says.
    #[serde(default = "defaults::deadline_margin_ms")]
    pub deadline_margin_ms: u64,
    /// Bulk jobs run only once the gate has been open this long.
    #[serde(default = "defaults::bulk_after_ms")]
    pub bulk_after_ms: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            time_zone: None,
            windows: Vec::new(),
            signals: Vec::new(),
            deadline_margin_ms: defaults::deadline_margin_ms(),
            bulk_after_ms: defaults::bulk_after_ms(),
        }
    }
}

/// One schedule window: `{ days = "mon-fri", from = "19:00", to = "07:00" }`. A window whose
/// `to` is not after its `from` crosses midnight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `mon-fri`, `sat-sun`, `mon,wed,fri`, `daily`.
    pub days: String,
    /// `HH:MM`.
    pub from: String,
    /// `HH:MM`, or `24:00` for the end of the day.
    pub to: String,
}

/// One load signal, `[[queues.<name>.gate.signals]]`, chosen by `kind`. Each closes the gate
/// as soon as a reading is above its maximum, and keeps it closed until readings have stayed
/// at or below it for `recover_after_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SignalConfig {
    /// Messages per second published to `topics` (together): the peak-traffic measure.
    TopicRate {
        topics: Vec<String>,
        /// Messages per second.
        max_rate: f64,
        /// How often it is read.
        #[serde(default = "defaults::interval_ms")]
        interval_ms: u64,
        /// How long readings must stay at or below the maximum before the gate reopens.
        #[serde(default = "defaults::recover_after_ms")]
        recover_after_ms: u64,
    },
    /// How many messages of `topics` consumer group `group` has yet to process.
    ConsumerLag {
        group: String,
        topics: Vec<String>,
        /// Messages.
        max_lag: u64,
        /// How often it is read.
        #[serde(default = "defaults::interval_ms")]
        interval_ms: u64,
        /// How long readings must stay at or below the maximum before the gate reopens.
        #[serde(default = "defaults::recover_after_ms")]
        recover_after_ms: u64,
    },
    /// The p95 latency of GET `url` over its last `samples` probes; a probe that fails
    /// (timeout, connection refused, a status other than 2xx) counts as `timeout_ms`.
    TargetLatency {
        url: String,
        max_p95_ms: u64,
        #[serde(default = "defaults::timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "defaults::samples")]
        samples: usize,
        /// How often it is read.
        #[serde(default = "defaults::interval_ms")]
        interval_ms: u64,
        /// How long readings must stay at or below the maximum before the gate reopens.
        #[serde(default = "defaults::recover_after_ms")]
        recover_after_ms: u64,
    },
}

mod defaults {
    pub fn deadline_margin_ms() -> u64 {
        5 * 60_000
    }
    pub fn bulk_after_ms() -> u64 {
        10 * 60_000
    }
    pub fn interval_ms() -> u64 {
        5_000
    }
    pub fn recover_after_ms() -> u64 {
        30_000
    }
    pub fn timeout_ms() -> u64 {
        2_000
    }
    pub fn samples() -> usize {
        20
    }
}

/// A gate configuration that does not make sense, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct GateConfigError {
    /// The TOML path, e.g. `queues.certificates.gate.windows[1].from`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

/// A validated gate: its schedule, signals and admission policy.
#[derive(Debug, Clone, PartialEq)]
pub struct GateSpec {
    pub schedule: Schedule,
    pub signals: Vec<SignalSpec>,
    pub policy: AdmissionPolicy,
}

impl GateSpec {
    /// No schedule, no signals: always open.
    pub fn always_open() -> Self {
        GateSpec {
            schedule: Schedule::always(),
            signals: Vec::new(),
            policy: AdmissionPolicy::default(),
        }
    }
}

impl GateConfig {
    /// Checks every field; `path` is where this section is in the file, e.g.
    /// `queues.certificates.gate`, and starts every error's field name.
    pub fn validate(&self, path: &str) -> Result<GateSpec, GateConfigError> {
        let fail = |field: String, problem: String| GateConfigError { field, problem };
        let time_zone = match &self.time_zone {
            Some(name) => TimeZone::get(name).map_err(|error| {
                fail(
                    format!("{path}.time_zone"),
                    format!(
                        "{name:?} is not a time zone of the tz database ({error}); use an IANA \
                         name such as \"Africa/Nairobi\" or \"UTC\""
                    ),
                )
            })?,
            None if self.windows.is_empty() => TimeZone::UTC,
            None => {
                return Err(fail(
                    format!("{path}.time_zone"),
                    "missing: windows are times of day in a time zone; add e.g. time_zone = \
                     \"Africa/Nairobi\""
                        .to_owned(),
                ));
            }
        };
        let mut windows = Vec::with_capacity(self.windows.len());
        for (i, window) in self.windows.iter().enumerate() {
            let field = |name: &str| format!("{path}.windows[{i}].{name}");
            windows.push(Window {
                days: Days::parse(&window.days).map_err(|problem| fail(field("days"), problem))?,
                from: TimeOfDay::parse(&window.from, false)
                    .map_err(|problem| fail(field("from"), problem))?,
                to: TimeOfDay::parse(&window.to, true)
                    .map_err(|problem| fail(field("to"), problem))?,
            });
        }
        let signals = self
            .signals
            .iter()
            .enumerate()
            .map(|(i, signal)| signal.validate(&format!("{path}.signals[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GateSpec {
            schedule: Schedule::new(time_zone, windows),
            signals,
            policy: AdmissionPolicy {
                deadline_margin: Duration::from_millis(self.deadline_margin_ms),
                bulk_after: Duration::from_millis(self.bulk_after_ms),
            },
        })
    }
}

impl SignalConfig {
    fn validate(&self, path: &str) -> Result<SignalSpec, GateConfigError> {
        let fail = |name: &str, problem: String| GateConfigError {
            field: format!("{path}.{name}"),
            problem,
        };
        let check_topics = |topics: &[String]| {
            if topics.is_empty() {
                return Err(fail(
                    "topics",
                    "empty: name at least one topic, e.g. topics = [\"registrations\"]".into(),
                ));
            }
            for (i, topic) in topics.iter().enumerate() {
                retrace_sdk::check_topic_name(topic)
                    .map_err(|error| fail(&format!("topics[{i}]"), error.to_string()))?;
            }
            Ok(topics.to_vec())
        };
        let check_interval = |interval_ms: &u64| {
            if *interval_ms == 0 {
                Err(fail(
                    "interval_ms",
                    "0: sample at least every few seconds, e.g. interval_ms = 5000".into(),
                ))
            } else {
                Ok(Duration::from_millis(*interval_ms))
            }
        };
        Ok(match self {
            SignalConfig::TopicRate {
                topics,
                max_rate,
                interval_ms,
                recover_after_ms,
            } => {
                if !(max_rate.is_finite() && *max_rate >= 0.0) {
                    return Err(fail(
                        "max_rate",
                        format!("{max_rate} is not a rate; write messages per second, e.g. 800"),
                    ));
                }
                SignalSpec {
                    kind: SignalKind::TopicRate {
                        topics: check_topics(topics)?,
                    },
                    threshold: *max_rate,
                    interval: check_interval(interval_ms)?,
                    recover_after: Duration::from_millis(*recover_after_ms),
                }
            }
            SignalConfig::ConsumerLag {
                group,
                topics,
                max_lag,
                interval_ms,
                recover_after_ms,
            } => {
                if group.trim().is_empty() {
                    return Err(fail(
                        "group",
                        "empty: name the consumer group, e.g. group = \"registrations-validator\""
                            .into(),
                    ));
                }
                SignalSpec {
                    kind: SignalKind::ConsumerLag {
                        group: group.clone(),
                        topics: check_topics(topics)?,
                    },
                    threshold: *max_lag as f64,
                    interval: check_interval(interval_ms)?,
                    recover_after: Duration::from_millis(*recover_after_ms),
                }
            }
            SignalConfig::TargetLatency {
                url,
                max_p95_ms,
                timeout_ms,
                samples,
                interval_ms,
                recover_after_ms,
            } => {
                let parsed = reqwest::Url::parse(url).map_err(|error| {
                    fail(
                        "url",
                        format!(
                            "{url:?} is not a URL ({error}); e.g. \"http://certs:8080/healthz\""
                        ),
                    )
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(fail("url", format!("{url:?} is not an http or https URL")));
                }
                if timeout_ms <= max_p95_ms {
                    return Err(fail(
                        "timeout_ms",
                        format!(
                            "{timeout_ms} is not longer than max_p95_ms ({max_p95_ms}): a target \
                             that does not answer would count as fast enough; make the timeout \
                             longer"
                        ),
                    ));
                }
                if *samples == 0 {
                    return Err(fail(
                        "samples",
                        "0: the p95 needs at least one sample, e.g. samples = 20".into(),
                    ));
                }
                SignalSpec {
                    kind: SignalKind::TargetLatency {
                        url: parsed,
                        timeout: Duration::from_millis(*timeout_ms),
                        samples: *samples,
                    },
                    threshold: *max_p95_ms as f64,
                    interval: check_interval(interval_ms)?,
                    recover_after: Duration::from_millis(*recover_after_ms),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        queues: std::collections::BTreeMap<String, Queue>,
    }

    #[derive(Deserialize)]
    struct Queue {
        gate: GateConfig,
    }

    fn parse(toml_text: &str) -> Result<GateSpec, String> {
        let file: File = toml::from_str(toml_text).map_err(|error| error.to_string())?;
        let (name, queue) = file.queues.into_iter().next().unwrap();
        queue
            .gate
            .validate(&format!("queues.{name}.gate"))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_full_section_parses() {
        let spec = parse(
            r#"
            [queues.certificates.gate]
            time_zone = "Africa/Nairobi"
            windows = [ { days = "mon-fri", from = "19:00", to = "07:00" },
                        { days = "sat-sun", from = "00:00", to = "24:00" } ]
            deadline_margin_ms = 300000
            bulk_after_ms = 3600000

            [[queues.certificates.gate.signals]]
            kind = "topic_rate"
            topics = ["registrations"]
            max_rate = 800
            interval_ms = 200
            recover_after_ms = 1000

            [[queues.certificates.gate.signals]]
            kind = "consumer_lag"
            group = "registrations-validator"
            topics = ["registrations"]
            max_lag = 5000

            [[queues.certificates.gate.signals]]
            kind = "target_latency"
            url = "http://certs:8080/healthz"
            max_p95_ms = 500
            "#,
        )
        .unwrap();
        assert!(!spec.schedule.is_always());
        assert_eq!(spec.signals.len(), 3);
        assert_eq!(spec.signals[0].interval, Duration::from_millis(200));
        assert_eq!(spec.signals[1].recover_after, Duration::from_secs(30));
        assert_eq!(spec.signals[2].threshold, 500.0);
        assert_eq!(spec.policy.deadline_margin, Duration::from_secs(300));
        assert_eq!(spec.policy.bulk_after, Duration::from_secs(3600));
    }

    #[test]
    fn an_empty_section_is_always_open() {
        let spec = parse("[queues.q.gate]").unwrap();
        assert!(spec.schedule.is_always());
        assert!(spec.signals.is_empty());
        assert_eq!(spec.policy, AdmissionPolicy::default());
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"time_zone = "Africa/Nairobi"
                windows = [ { days = "mon-fri", from = "19:00", to = "07:00" },
                            { days = "sat", from = "25:00", to = "24:00" } ]"#,
                "queues.certificates.gate.windows[1].from: 25:00 is not a time of day",
            ),
            (
                r#"windows = [ { days = "mon-fri", from = "19:00", to = "07:00" } ]"#,
                "queues.certificates.gate.time_zone: missing",
            ),
            (
                r#"time_zone = "Mars/Olympus_Mons""#,
                "queues.certificates.gate.time_zone: \"Mars/Olympus_Mons\" is not a time zone",
            ),
            (
                r#"time_zone = "UTC"
                windows = [ { days = "weekdays", from = "19:00", to = "07:00" } ]"#,
                "queues.certificates.gate.windows[0].days: \"weekdays\" is not a day",
            ),
            (
                r#"signals = [ { kind = "topic_rate", topics = [], max_rate = 1 } ]"#,
                "queues.certificates.gate.signals[0].topics: empty",
            ),
            (
                r#"signals = [ { kind = "target_latency", url = "http://t/h", max_p95_ms = 3000 } ]"#,
                "queues.certificates.gate.signals[0].timeout_ms: 2000 is not longer than max_p95_ms (3000)",
            ),
            (
                r#"signals = [ { kind = "target_latency", url = "t/h", max_p95_ms = 1000 } ]"#,
                "queues.certificates.gate.signals[0].url: \"t/h\" is not a URL",
            ),
            (
                r#"signals = [ { kind = "consumer_lag", group = "g", topics = ["bad topic"], max_lag = 1 } ]"#,
                "queues.certificates.gate.signals[0].topics[0]: ",
            ),
        ];
        for (section, expected) in cases {
            let error = parse(&format!("[queues.certificates.gate]\n{section}")).unwrap_err();
            assert!(
                error.starts_with(expected),
                "{error}\n  expected: {expected}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let error = parse("[queues.q.gate]\nbulk_after = \"1m\"").unwrap_err();
        assert!(error.contains("unknown field `bulk_after`"), "{error}");
        let error = parse(
            "[queues.q.gate]\nsignals = [ { kind = \"topic_rate\", topics = [\"t\"], max_rate = 1, colour = 2 } ]",
        )
        .unwrap_err();
        assert!(error.contains("unknown field `colour`"), "{error}");
        let error = parse("[queues.q.gate]\nbulk_after_ms = \"10m\"").unwrap_err();
        assert!(error.contains("invalid type: string \"10m\""), "{error}");
        let error = parse("[queues.q.gate]\nsignals = [ { kind = \"cpu\" } ]").unwrap_err();
        assert!(error.contains("unknown variant `cpu`"), "{error}");
    }
}
