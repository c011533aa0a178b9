//! Load signals: what each measures, how a reading is taken, and the hysteresis that keeps
//! the gate closed until a signal has stayed below its threshold for a while.
//!
//! Readings are plain numbers in the signal's unit (messages/s, messages, milliseconds).
//! [`Hysteresis`] is pure: it is fed readings with their time and asked about a moment, so
//! its rules are tested with synthetic readings and an injected clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use retrace_sdk::KafkaSettings;

use super::format;

/// A validated load signal.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSpec {
    pub kind: SignalKind,
    /// Readings above this close the gate (messages/s, messages, or milliseconds).
    pub threshold: f64,
    pub interval: Duration,
    /// How long readings must stay at or below the threshold before the gate reopens.
    pub recover_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SignalKind {
    TopicRate {
        topics: Vec<String>,
    },
    ConsumerLag {
        group: String,
        topics: Vec<String>,
    },
    TargetLatency {
        url: reqwest::Url,
        timeout: Duration,
        samples: usize,
    },
}

impl SignalSpec {
    /// The `signal` label of its metrics: `topic_rate:registrations`,
    /// `consumer_lag:registrations-validator`, `target_latency:http://certs:8080/healthz`.
    pub fn label(&self) -> String {
        match &self.kind {
            SignalKind::TopicRate { topics } => format!("topic_rate:{}", topics.join(",")),
            SignalKind::ConsumerLag { group, .. } => format!("consumer_lag:{group}"),
            SignalKind::TargetLatency { url, .. } => format!("target_latency:{url}"),
        }
    }

    /// The reading as its metric reports it: latency in seconds, others unchanged.
    pub fn metric_value(&self, reading: f64) -> f64 {
        match self.kind {
            SignalKind::TargetLatency { .. } => reading / 1000.0,
            _ => reading,
        }
    }

    /// What it measures, e.g. "topic rate", "lag of group registrations-validator".
    fn measure(&self) -> String {
        match &self.kind {
            SignalKind::TopicRate { .. } => "topic rate".to_owned(),
            SignalKind::ConsumerLag { group, .. } => format!("lag of group {group}"),
            SignalKind::TargetLatency { .. } => "target p95".to_owned(),
        }
    }

    /// A value in the signal's unit, e.g. "1,240/s", "12,000", "910 ms".
    fn amount(&self, value: f64) -> String {
        match self.kind {
            SignalKind::TopicRate { .. } => format!("{}/s", format::count(value)),
            SignalKind::ConsumerLag { .. } => format::count(value),
            SignalKind::TargetLatency { .. } => format!("{} ms", format::count(value)),
        }
    }

    /// Why this signal keeps the gate closed, or `None` when it does not.
    pub(crate) fn blocking_reason(&self, status: &SignalStatus) -> Option<String> {
        match *status {
            SignalStatus::Clear => None,
            SignalStatus::NoReading => {
                Some(format!("waiting for the first {} reading", self.measure()))
            }
            SignalStatus::Above { value } => Some(format!(
                "{} {} > {}",
                self.measure(),
                self.amount(value),
                self.amount(self.threshold)
            )),
            SignalStatus::Recovering { value, below_for } => Some(format!(
                "{} recovering: {} ≤ {} for {} of {}",
                self.measure(),
                self.amount(value),
                self.amount(self.threshold),
                format::duration(below_for),
                format::duration(self.recover_after)
            )),
        }
    }
}

/// Where a signal stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SignalStatus {
    /// Not read yet: the gate stays closed, it cannot know the load.
    NoReading,
    /// Its latest reading is above the threshold.
    Above { value: f64 },
    /// Below again, but not yet for `recover_after`.
    Recovering { value: f64, below_for: Duration },
    /// Below (and, if it was ever above, for at least `recover_after`).
    Clear,
}

/// The readings history one signal needs: its latest value, and since when it has been at or
/// below its threshold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hysteresis {
    latest: Option<f64>,
    was_above: bool,
    below_since: Option<Timestamp>,
}

impl Hysteresis {
    /// Takes in a reading of `value` taken at `at`.
    pub fn record(&mut self, spec: &SignalSpec, value: f64, at: Timestamp) {
        self.latest = Some(value);
        if value > spec.threshold {
            self.was_above = true;
            self.below_since = None;
        } else if self.below_since.is_none() {
            self.below_since = Some(at);
        }
    }

    pub fn latest(&self) -> Option<f64> {
        self.latest
    }

    /// Where the signal stands at `now`.
    pub(crate) fn status(&self, spec: &SignalSpec, now: Timestamp) -> SignalStatus {
        let Some(value) = self.latest else {
            return SignalStatus::NoReading;
        };
        match self.below_since {
            None => SignalStatus::Above { value },
            // Below from the first reading on: nothing to recover from.
            Some(_) if !self.was_above => SignalStatus::Clear,
            Some(since) => {
                let below_for = Duration::try_from(now.duration_since(since)).unwrap_or_default();
                if below_for >= spec.recover_after {
                    SignalStatus::Clear
                } else {
                    SignalStatus::Recovering { value, below_for }
                }
            }
        }
    }

    /// When a recovering signal turns clear, if nothing else is read.
    pub(crate) fn clears_at(&self, spec: &SignalSpec) -> Option<Timestamp> {
        match self.below_since {
            Some(since) if self.was_above => since
                .checked_add(jiff::SignedDuration::try_from(spec.recover_after).ok()?)
                .ok(),
            _ => None,
        }
    }
}

/// Why a signal could not be read this time.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(
        "reading the watermarks of {topic} from Kafka failed: {error}; check that the topic exists and the brokers are reachable"
    )]
    Watermarks { topic: String, error: KafkaError },
    #[error(
        "reading the committed offsets of group {group} from Kafka failed: {error}; check the group name and that the brokers are reachable"
    )]
    Committed { group: String, error: KafkaError },
    #[error("the Kafka sampler stopped unexpectedly: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

/// Creating a signal's client failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(
        "creating the Kafka client for the {signal} signal failed: {error}; check the Kafka settings (bootstrap servers, properties)"
    )]
    Kafka { signal: String, error: KafkaError },
    #[error("creating the HTTP client for the {signal} signal failed: {error}")]
    Http {
        signal: String,
        error: reqwest::Error,
    },
}

/// Each partition's high watermark, by topic and partition.
type HighWatermarks = HashMap<(String, i32), i64>;

/// Takes readings of one signal.
pub(crate) enum Sampler {
    TopicRate {
        probe: KafkaProbe,
        previous: Option<(Instant, HighWatermarks)>,
    },
    ConsumerLag {
        probe: KafkaProbe,
        group: String,
    },
    TargetLatency {
        client: reqwest::Client,
        url: reqwest::Url,
        timeout: Duration,
        samples: usize,
        recent: VecDeque<Duration>,
    },
}

impl Sampler {
    pub(crate) fn new(spec: &SignalSpec, kafka: &KafkaSettings) -> Result<Sampler, GateError> {
        let kafka_error = |error| GateError::Kafka {
            signal: spec.label(),
            error,
        };
        // A sample must finish well within its interval, but give a slow broker a second.
        let timeout = spec
            .interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        Ok(match &spec.kind {
            SignalKind::TopicRate { topics } => Sampler::TopicRate {
                probe: KafkaProbe::new(kafka, None, topics, timeout).map_err(kafka_error)?,
                previous: None,
            },
            SignalKind::ConsumerLag { group, topics } => Sampler::ConsumerLag {
                probe: KafkaProbe::new(kafka, Some(group), topics, timeout).map_err(kafka_error)?,
                group: group.clone(),
            },
            SignalKind::TargetLatency {
                url,
                timeout,
                samples,
            } => Sampler::TargetLatency {
                client: reqwest::Client::builder()
                    .timeout(*timeout)
                    .build()
                    .map_err(|error| GateError::Http {
                        signal: spec.label(),
                        error,
                    })?,
                url: url.clone(),
                timeout: *timeout,
                samples: *samples,
                recent: VecDeque::with_capacity(*samples),
            },
        })
    }

    /// Takes one reading; `None` when there is no value yet (a rate needs two samples).
    pub(crate) async fn sample(&mut self) -> Result<Option<f64>, SampleError> {
        match self {
            Sampler::TopicRate { probe, previous } => {
                let offsets = probe
                    .on_blocking_pool(KafkaProbe::high_watermarks)
                    .await??;
                let now = Instant::now();
                let rate = previous.as_ref().map(|(then, before)| {
                    let published: i64 = offsets
                        .iter()
                        .filter_map(|(partition, high)| {
                            before.get(partition).map(|low| (high - low).max(0))
                        })
                        .sum();
                    published as f64 / now.duration_since(*then).as_secs_f64().max(1e-3)
                });
                *previous = Some((now, offsets));
                Ok(rate)
            }
            Sampler::ConsumerLag { probe, group } => {
                let group = group.clone();
                let lag = probe
                    .on_blocking_pool(move |probe| probe.lag(&group))
                    .await??;
                Ok(Some(lag as f64))
            }
            Sampler::TargetLatency {
                client,
                url,
                timeout,
                samples,
                recent,
            } => {
                let started = Instant::now();
                let answered = match client.get(url.clone()).send().await {
                    Ok(response) if response.status().is_success() => {
                        response.bytes().await.is_ok()
                    }
                    _ => false,
                };
                let took = if answered {
                    started.elapsed()
                } else {
                    *timeout
                };
                if recent.len() == *samples {
                    recent.pop_front();
                }
                recent.push_back(took);
                Ok(Some(p95(recent).as_secs_f64() * 1000.0))
            }
        }
    }
}

/// The 95th percentile (nearest rank) of `samples`, which is not empty.
fn p95(samples: &VecDeque<Duration>) -> Duration {
    let mut sorted: Vec<Duration> = samples.iter().copied().collect();
    sorted.sort();
    let rank = (sorted.len() * 95).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// A Kafka client that reads watermarks and committed offsets; it never subscribes, is
/// never assigned partitions, and so never joins any group.
pub(crate) struct KafkaProbe {
    consumer: Arc<BaseConsumer>,
    topics: Arc<[String]>,
    timeout: Duration,
}

impl KafkaProbe {
    fn new(
        kafka: &KafkaSettings,
        group: Option<&str>,
        topics: &[String],
        timeout: Duration,
    ) -> Result<KafkaProbe, KafkaError> {
        let mut config = kafka.client_config(&[("enable.auto.commit", "false")]);
        if let Some(group) = group {
            config.set("group.id", group);
        }
        Ok(KafkaProbe {
            consumer: Arc::new(config.create()?),
            topics: topics.into(),
            timeout,
        })
    }

    /// Runs `call` (blocking librdkafka calls) on the blocking pool.
    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        call: impl FnOnce(&KafkaProbe) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let probe = KafkaProbe {
            consumer: Arc::clone(&self.consumer),
            topics: Arc::clone(&self.topics),
            timeout: self.timeout,
        };
        tokio::task::spawn_blocking(move || call(&probe)).await
    }

    /// Each partition's low and high watermark.
    fn watermarks(&self) -> Result<Vec<(String, i32, i64, i64)>, SampleError> {
        let mut found = Vec::new();
        for topic in self.topics.iter() {
            let failed = |error| SampleError::Watermarks {
                topic: topic.clone(),
                error,
            };
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.timeout)
                .map_err(failed)?;
            for described in metadata.topics() {
                if let Some(error) = described.error() {
                    return Err(failed(KafkaError::MetadataFetch(error.into())));
                }
                for partition in described.partitions() {
                    let (low, high) = self
                        .consumer
                        .fetch_watermarks(topic, partition.id(), self.timeout)
                        .map_err(failed)?;
                    found.push((topic.clone(), partition.id(), low, high));
                }
            }
        }
        // Drain whatever librdkafka queued for the application (errors, logs).
        let _ = self.consumer.poll(Duration::ZERO);
        Ok(found)
    }

    fn high_watermarks(&self) -> Result<HighWatermarks, SampleError> {
        Ok(self
            .watermarks()?
            .into_iter()
            .map(|(topic, partition, _, high)| ((topic, partition), high))
            .collect())
    }

    /// How many messages of the topics `group` has not committed: a partition it never
    /// committed counts whole.
    fn lag(&self, group: &str) -> Result<u64, SampleError> {
        let watermarks = self.watermarks()?;
        let mut partitions = TopicPartitionList::new();
        for (topic, partition, _, _) in &watermarks {
            partitions.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(partitions, self.timeout)
            .map_err(|error| SampleError::Committed {
                group: group.to_owned(),
                error,
            })?;
        let mut lag = 0u64;
        for (topic, partition, low, high) in &watermarks {
            let position = match committed
                .find_partition(topic, *partition)
                .map(|found| found.offset())
            {
                Some(Offset::Offset(offset)) => offset.max(*low),
                _ => *low,
            };
            lag += (high - position).max(0) as u64;
        }
        Ok(lag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_signal(threshold: f64, recover_after_s: u64) -> SignalSpec {
        SignalSpec {
            kind: SignalKind::TopicRate {
                topics: vec!["registrations".into()],
            },
            threshold,
            interval: Duration::from_secs(1),
            recover_after: Duration::from_secs(recover_after_s),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn no_reading_yet_keeps_the_gate_closed() {
        let spec = rate_signal(800.0, 30);
        let history = Hysteresis::default();
        assert_eq!(history.status(&spec, at(0)), SignalStatus::NoReading);
        assert_eq!(
            spec.blocking_reason(&history.status(&spec, at(0))).unwrap(),
            "waiting for the first topic rate reading"
        );
    }

    #[test]
    fn below_from_the_start_is_clear_at_once() {
        let spec = rate_signal(800.0, 30);
        let mut history = Hysteresis::default();
        history.record(&spec, 100.0, at(0));
        assert_eq!(history.status(&spec, at(0)), SignalStatus::Clear);
        assert_eq!(history.clears_at(&spec), None);
    }

    #[test]
    fn above_closes_at_once_and_recovery_takes_recover_after() {
        let spec = rate_signal(800.0, 30);
        let mut history = Hysteresis::default();
        history.record(&spec, 100.0, at(0));
        history.record(&spec, 1240.0, at(1));
        assert_eq!(
            history.status(&spec, at(1)),
            SignalStatus::Above { value: 1240.0 }
        );
        assert_eq!(
            spec.blocking_reason(&history.status(&spec, at(1))).unwrap(),
            "topic rate 1,240/s > 800/s"
        );
        // Below from t=10: still closed at t=39, clear at t=40.
        history.record(&spec, 500.0, at(10));
        history.record(&spec, 800.0, at(20));
        assert_eq!(
            history.status(&spec, at(39)),
            SignalStatus::Recovering {
                value: 800.0,
                below_for: Duration::from_secs(29)
            }
        );
        assert_eq!(
            spec.blocking_reason(&history.status(&spec, at(22)))
                .unwrap(),
            "topic rate recovering: 800/s ≤ 800/s for 12s of 30s"
        );
        assert_eq!(history.clears_at(&spec), Some(at(40)));
        assert_eq!(history.status(&spec, at(40)), SignalStatus::Clear);
    }

    #[test]
    fn a_spike_during_recovery_starts_it_over() {
        let spec = rate_signal(800.0, 30);
        let mut history = Hysteresis::default();
        history.record(&spec, 900.0, at(0));
        history.record(&spec, 100.0, at(5));
        history.record(&spec, 801.0, at(30));
        history.record(&spec, 100.0, at(31));
        assert!(matches!(
            history.status(&spec, at(40)),
            SignalStatus::Recovering { .. }
        ));
        assert_eq!(history.clears_at(&spec), Some(at(61)));
        assert_eq!(history.status(&spec, at(61)), SignalStatus::Clear);
    }

    #[test]
    fn reasons_speak_each_signals_unit() {
        let lag = SignalSpec {
            kind: SignalKind::ConsumerLag {
                group: "registrations-validator".into(),
                topics: vec!["registrations".into()],
            },
            threshold: 5000.0,
            ..rate_signal(0.0, 30)
        };
        assert_eq!(
            lag.blocking_reason(&SignalStatus::Above { value: 12_000.0 })
                .unwrap(),
            "lag of group registrations-validator 12,000 > 5,000"
        );
        let latency = SignalSpec {
            kind: SignalKind::TargetLatency {
                url: "http://certs:8080/healthz".parse().unwrap(),
                timeout: Duration::from_secs(2),
                samples: 20,
            },
            threshold: 500.0,
            ..rate_signal(0.0, 30)
        };
        assert_eq!(
            latency
                .blocking_reason(&SignalStatus::Above { value: 910.0 })
                .unwrap(),
            "target p95 910 ms > 500 ms"
        );
        assert_eq!(latency.label(), "target_latency:http://certs:8080/healthz");
        assert_eq!(latency.metric_value(910.0), 0.91);
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let ms = |values: &[u64]| -> VecDeque<Duration> {
            values.iter().map(|&v| Duration::from_millis(v)).collect()
        };
        assert_eq!(p95(&ms(&[7])), Duration::from_millis(7));
        let twenty: Vec<u64> = (1..=20).collect();
        assert_eq!(p95(&ms(&twenty)), Duration::from_millis(19));
        let mut hundred: Vec<u64> = (1..=100).collect();
        hundred.reverse();
        assert_eq!(p95(&ms(&hundred)), Duration::from_millis(95));
    }
}
