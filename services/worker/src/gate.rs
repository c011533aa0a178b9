//! The gate: whether now is a good time to run a queue's jobs.
//!
//! A gate opens only inside its schedule's windows (days and times of day in a named time
//! zone) and while every load signal is at or below its threshold: the message rate on named
//! topics, the lag of named consumer groups, the p95 latency of a target's health URL. A
//! reading above its threshold closes the gate at once; it reopens only once readings have
//! stayed below for the signal's `recover_after` (hysteresis), so a peak that dips for a
//! moment does not let the backlog loose on it.
//!
//! The pieces:
//! - [`GateConfig`] is the TOML section; [`GateConfig::validate`] turns it into a
//!   [`GateSpec`], with errors naming the field.
//! - [`evaluate`] is the decision, a pure function of the schedule, each signal's readings
//!   ([`Hysteresis`]) and the time, so every rule is tested with synthetic readings and an
//!   injected clock.
//! - [`Gate::run`] is the task: it samples the signals, evaluates, and publishes
//!   [`GateState`] to every [`GateHandle`]; the caller owns it (`await` it, or
//!   [`Gate::spawn`] and keep the `JoinHandle`) and stops it with the cancellation token.
//! - [`admits`] decides per job: urgent jobs bypass the gate, near deadlines run regardless,
//!   bulk jobs wait until the gate has been open a while.
//!
//! Metrics: `retrace_worker_gate_open{queue}` (1 open, 0 closed),
//! `retrace_worker_gate_changes_total{queue,open}`, `retrace_worker_gate_signal{queue,signal}`
//! (latest reading: messages/s, messages, or seconds), and
//! `retrace_worker_gate_signal_errors_total{queue,signal}`; a log line at every open and close
//! with the reason (`gate/events.rs`).

mod admission;
mod config;
mod events;
mod format;
mod schedule;
mod signals;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use retrace_sdk::KafkaSettings;
use retrace_telemetry::InternalEvent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admission::{Admission, AdmissionPolicy, admits};
pub use config::{GateConfig, GateConfigError, GateSpec, SignalConfig, WindowConfig};
pub use schedule::{Days, Schedule, TimeOfDay, Window};
pub use signals::{GateError, Hysteresis, SampleError, SignalKind, SignalSpec};

pub(crate) use events::register_metrics;
use events::{GateChanged, GateNotReconfigured, GateReconfigured, SignalRead, SignalUnreadable};
use signals::Sampler;

/// What a queue's gate says right now, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    pub open: bool,
    /// E.g. "outside window until 19:00", "topic rate 1,240/s > 800/s".
    pub reason: String,
    /// How long it has been open; `None` while closed.
    pub open_for: Option<Duration>,
}

/// What the gate's task publishes; [`GateHandle::state`] turns it into a [`GateState`] whose
/// `open_for` is current when read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    open: bool,
    reason: String,
    since: OpenSince,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenSince {
    Closed,
    At(Instant),
    Always,
}

/// The queue runner's view of its gate, kept current by the gate's own task.
#[derive(Debug, Clone)]
pub struct GateHandle {
    state: watch::Receiver<Published>,
}

impl GateHandle {
    /// A gate that never closes, for queues with no schedule and no signals.
    pub fn always_open() -> Self {
        let (_, state) = watch::channel(Published {
            open: true,
            reason: "no schedule or load signal configured".to_owned(),
            since: OpenSince::Always,
        });
        GateHandle { state }
    }

    pub fn state(&self) -> GateState {
        let published = self.state.borrow();
        GateState {
            open: published.open,
            reason: published.reason.clone(),
            open_for: match published.since {
                OpenSince::Closed => None,
                OpenSince::At(opened) => Some(opened.elapsed()),
                OpenSince::Always => Some(Duration::MAX),
            },
        }
    }

    /// Resolves when the state changes (or the gate's task stopped).
    pub async fn changed(&mut self) {
        let _ = self.state.changed().await;
    }
}

/// The gate's decision at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub open: bool,
    /// "open: inside window until 07:00, all signals below thresholds", or every reason it
    /// is closed, joined by "; ".
    pub reason: String,
    /// When the verdict may change with no new reading: a window edge, or a recovering
    /// signal's `recover_after` running out.
    pub next_check: Option<Timestamp>,
}

/// Whether the gate is open at `now`, given its schedule and each signal's readings
/// (`histories[i]` belongs to `signals[i]`).
pub fn evaluate(
    schedule: &Schedule,
    signals: &[SignalSpec],
    histories: &[Hysteresis],
    now: Timestamp,
) -> Verdict {
    let mut closed_because = Vec::new();
    let schedule_change = schedule.next_change(now);
    if let Err(reason) = schedule.check(now) {
        closed_because.push(reason);
    }
    let mut next_check = schedule_change;
    for (spec, history) in signals.iter().zip(histories) {
        let status = history.status(spec, now);
        if let Some(reason) = spec.blocking_reason(&status) {
            closed_because.push(reason);
        }
        if let Some(clears) = history.clears_at(spec).filter(|&at| at > now) {
            next_check = Some(next_check.map_or(clears, |next| next.min(clears)));
        }
    }
    if !closed_because.is_empty() {
        return Verdict {
            open: false,
            reason: closed_because.join("; "),
            next_check,
        };
    }
    let window = match schedule_change {
        _ if schedule.is_always() => None,
        Some(closes) => Some(format!(
            "inside window until {}",
            schedule.local_time(closes, now)
        )),
        None => Some("inside window".to_owned()),
    };
    let load = (!signals.is_empty()).then(|| "all signals below thresholds".to_owned());
    let reason = match (window, load) {
        (None, None) => "open: no schedule or load signal configured".to_owned(),
        (Some(one), None) | (None, Some(one)) => format!("open: {one}"),
        (Some(window), Some(load)) => format!("open: {window}, {load}"),
    };
    Verdict {
        open: true,
        reason,
        next_check,
    }
}

/// A queue's gate task: samples its signals, evaluates, publishes its state.
pub struct Gate {
    queue: String,
    spec: GateSpec,
    samplers: Vec<Sampler>,
    publisher: watch::Sender<Published>,
    kafka: KafkaSettings,
    /// Reloaded specs, when the gate follows the configuration.
    specs: Option<watch::Receiver<GateSpec>>,
}

/// The longest the gate waits before evaluating again, whatever it expects: bounds the
/// effect of a wall-clock jump.
const MAX_WAIT: Duration = Duration::from_secs(60);

impl Gate {
    /// A gate for `queue` and the handle that follows it. Creates the signals' clients
    /// (Kafka consumers that never join a group, an HTTP client) but reads nothing yet.
    pub fn new(
        queue: &str,
        spec: &GateSpec,
        kafka: &KafkaSettings,
    ) -> Result<(Gate, GateHandle), GateError> {
        let samplers = samplers(spec, kafka)?;
        let histories = vec![Hysteresis::default(); spec.signals.len()];
        let verdict = evaluate(&spec.schedule, &spec.signals, &histories, Timestamp::now());
        let (publisher, state) = watch::channel(Published {
            open: verdict.open,
            reason: verdict.reason,
            since: if verdict.open {
                OpenSince::At(Instant::now())
            } else {
                OpenSince::Closed
            },
        });
        let gate = Gate {
            queue: queue.to_owned(),
            spec: spec.clone(),
            samplers,
            publisher,
            kafka: kafka.clone(),
            specs: None,
        };
        Ok((gate, GateHandle { state }))
    }

    /// Makes the gate take each spec `specs` publishes (a reloaded schedule, new signals or
    /// thresholds) while it runs. Readings start afresh with a new spec.
    pub fn following(mut self, specs: watch::Receiver<GateSpec>) -> Gate {
        self.specs = Some(specs);
        self
    }

    /// [`Gate::new`], with [`Gate::run`] on a task whose handle the caller keeps and joins
    /// after cancelling `shutdown`.
    pub fn spawn(
        queue: &str,
        spec: &GateSpec,
        kafka: &KafkaSettings,
        shutdown: CancellationToken,
    ) -> Result<(GateHandle, JoinHandle<()>), GateError> {
        let (gate, handle) = Gate::new(queue, spec, kafka)?;
        Ok((handle, tokio::spawn(gate.run(shutdown))))
    }

    /// Samples every signal at its interval and publishes the gate's state until `shutdown`
    /// is cancelled; with [`following`](Self::following), starts over with each new spec. A
    /// sample in flight then finishes (within its timeout) before this returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Gate {
            queue,
            mut spec,
            mut samplers,
            publisher,
            kafka,
            mut specs,
        } = self;
        loop {
            let next = async {
                match specs.as_mut() {
                    Some(specs) => match specs.changed().await {
                        Ok(()) => specs.borrow_and_update().clone(),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                () = decide(&queue, &spec, &mut samplers, &publisher, &shutdown) => return,
                next = next => next,
            };
            match self::samplers(&next, &kafka) {
                Ok(fresh) => {
                    samplers = fresh;
                    spec = next;
                    GateReconfigured {
                        queue: &queue,
                        spec: &spec,
                    }
                    .emit();
                }
                Err(error) => GateNotReconfigured {
                    queue: &queue,
                    error: &error,
                }
                .emit(),
            }
        }
    }
}

fn samplers(spec: &GateSpec, kafka: &KafkaSettings) -> Result<Vec<Sampler>, GateError> {
    spec.signals
        .iter()
        .map(|signal| Sampler::new(signal, kafka))
        .collect()
}

/// Samples `spec`'s signals and publishes the verdicts until `shutdown`.
async fn decide(
    queue: &str,
    spec: &GateSpec,
    samplers: &mut [Sampler],
    publisher: &watch::Sender<Published>,
    shutdown: &CancellationToken,
) {
    let (readings_tx, mut readings) = mpsc::channel(16);
    let sampling =
        futures::future::join_all(samplers.iter_mut().enumerate().map(|(index, sampler)| {
            let readings = readings_tx.clone();
            let interval = spec.signals[index].interval;
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = ticks.tick() => {}
                    }
                    let reading = sampler.sample().await;
                    if readings
                        .send((index, reading, Timestamp::now()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }));
    // Owns the receiver: when it returns at shutdown, a sampler waiting to send ends too.
    let deciding = async move {
        // Held so that `recv` waits (rather than ends) when there are no signals.
        let _sender = readings_tx;
        let labels: Vec<String> = spec.signals.iter().map(SignalSpec::label).collect();
        let mut histories = vec![Hysteresis::default(); spec.signals.len()];
        let mut announced: Option<bool> = None;
        let mut opened_at = match publisher.borrow().since {
            OpenSince::At(at) => Some(at),
            _ => None,
        };
        loop {
            let now = Timestamp::now();
            let verdict = evaluate(&spec.schedule, &spec.signals, &histories, now);
            if announced != Some(verdict.open) {
                GateChanged {
                    queue,
                    open: verdict.open,
                    reason: &verdict.reason,
                }
                .emit();
                announced = Some(verdict.open);
            }
            let since = if verdict.open {
                OpenSince::At(*opened_at.get_or_insert_with(Instant::now))
            } else {
                opened_at = None;
                OpenSince::Closed
            };
            let next = Published {
                open: verdict.open,
                reason: verdict.reason,
                since,
            };
            publisher.send_if_modified(|published| {
                let modified = *published != next;
                if modified {
                    *published = next;
                }
                modified
            });
            let wait = verdict
                .next_check
                .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
                .unwrap_or(MAX_WAIT)
                .clamp(Duration::from_millis(10), MAX_WAIT);
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some((index, reading, at)) = readings.recv() => {
                    let index: usize = index;
                    match reading {
                        Ok(Some(value)) => {
                            histories[index].record(&spec.signals[index], value, at);
                            SignalRead {
                                queue,
                                signal: &labels[index],
                                value: spec.signals[index].metric_value(value),
                            }
                            .emit();
                        }
                        Ok(None) => {}
                        Err(error) => SignalUnreadable {
                            queue,
                            signal: &labels[index],
                            error: &error,
                        }
                        .emit(),
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    };
    tokio::join!(sampling, deciding);
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;

    use super::*;

    fn at(local: &str) -> Timestamp {
        let civil: jiff::civil::DateTime = local.parse().unwrap();
        civil.to_zoned(TimeZone::UTC).unwrap().timestamp()
    }

    fn evenings() -> Schedule {
        Schedule::new(
            TimeZone::UTC,
            vec![Window {
                days: Days::EVERY_DAY,
                from: TimeOfDay::parse("19:00", false).unwrap(),
                to: TimeOfDay::parse("07:00", true).unwrap(),
            }],
        )
    }

    fn rate_signal() -> SignalSpec {
        SignalSpec {
            kind: SignalKind::TopicRate {
                topics: vec!["registrations".into()],
            },
            threshold: 800.0,
            interval: Duration::from_secs(1),
            recover_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn open_inside_the_window_with_quiet_signals() {
        let signals = [rate_signal()];
        let mut history = Hysteresis::default();
        history.record(&signals[0], 120.0, at("2026-03-02T20:00"));
        let verdict = evaluate(&evenings(), &signals, &[history], at("2026-03-02T20:00"));
        assert_eq!(
            verdict,
            Verdict {
                open: true,
                reason: "open: inside window until 07:00, all signals below thresholds".into(),
                next_check: Some(at("2026-03-03T07:00")),
            }
        );
    }

    #[test]
    fn closed_outside_the_window_and_above_a_threshold_says_both() {
        let signals = [rate_signal()];
        let mut history = Hysteresis::default();
        history.record(&signals[0], 1240.0, at("2026-03-02T12:00"));
        let verdict = evaluate(&evenings(), &signals, &[history], at("2026-03-02T12:00"));
        assert!(!verdict.open);
        assert_eq!(
            verdict.reason,
            "outside window until 19:00; topic rate 1,240/s > 800/s"
        );
        assert_eq!(verdict.next_check, Some(at("2026-03-02T19:00")));
    }

    #[test]
    fn hysteresis_closes_at_once_and_reopens_after_recover_after() {
        let signals = [rate_signal()];
        let schedule = Schedule::always();
        let mut history = Hysteresis::default();
        let t0 = at("2026-03-02T12:00:00");
        let seconds = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        history.record(&signals[0], 100.0, t0);
        assert!(evaluate(&schedule, &signals, &[history.clone()], t0).open);
        // One reading above: closed at once.
        history.record(&signals[0], 900.0, seconds(1));
        let verdict = evaluate(&schedule, &signals, &[history.clone()], seconds(1));
        assert_eq!(verdict.reason, "topic rate 900/s > 800/s");
        // Below from t=2: closed until t=32, and the gate knows when to look again.
        history.record(&signals[0], 300.0, seconds(2));
        let verdict = evaluate(&schedule, &signals, &[history.clone()], seconds(31));
        assert!(!verdict.open);
        assert_eq!(
            verdict.reason,
            "topic rate recovering: 300/s ≤ 800/s for 29s of 30s"
        );
        assert_eq!(verdict.next_check, Some(seconds(32)));
        let verdict = evaluate(&schedule, &signals, &[history], seconds(32));
        assert_eq!(
            verdict,
            Verdict {
                open: true,
                reason: "open: all signals below thresholds".into(),
                next_check: None,
            }
        );
    }

    #[test]
    fn no_reading_yet_keeps_it_closed() {
        let verdict = evaluate(
            &Schedule::always(),
            &[rate_signal()],
            &[Hysteresis::default()],
            at("2026-03-02T12:00"),
        );
        assert!(!verdict.open);
        assert_eq!(verdict.reason, "waiting for the first topic rate reading");
    }

    #[test]
    fn nothing_configured_is_open() {
        let verdict = evaluate(&Schedule::always(), &[], &[], at("2026-03-02T12:00"));
        assert!(verdict.open);
        assert_eq!(
            verdict.reason,
            "open: no schedule or load signal configured"
        );
        assert_eq!(verdict.next_check, None);
    }

    #[test]
    fn always_open_handle() {
        let state = GateHandle::always_open().state();
        assert!(state.open);
        assert_eq!(state.open_for, Some(Duration::MAX));
    }

    #[tokio::test]
    async fn a_gate_without_signals_runs_until_shutdown() {
        let shutdown = CancellationToken::new();
        let (handle, task) = Gate::spawn(
            "unit",
            &GateSpec::always_open(),
            &KafkaSettings::new("127.0.0.1:1"),
            shutdown.clone(),
        )
        .unwrap();
        let state = handle.state();
        assert!(state.open, "{state:?}");
        assert!(state.open_for.is_some());
        shutdown.cancel();
        task.await.unwrap();
    }
}
