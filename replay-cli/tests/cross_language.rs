//! One transaction across the four SDKs, on Apache Kafka. The Rust SDK publishes a birth
//! registration; a TypeScript service consumes it with its SDK and publishes the next step,
//! caused by it; a Python service does the same with that step, then a Java service with
//! the Python one. A Python notification service consumes the Java step and fails: its SMS
//! gateway is down. `retrace trace` shows the four events in causal order, each processed by
//! the next language's service, and the failure at the notifier. `retrace replay
//! --only-failed` republishes the Java step, the notifier processes the replayed copy, and the
//! transaction turns `ok`.
//!
//! Each service is a process running its SDK's own `consume` and `publish`: the drivers kept
//! beside each SDK (`sdks/typescript/test/cross-language/step.ts`,
//! `sdks/python/tests/cross_language/step.py` and `notifier.py`,
//! `sdks/java/src/test/java/org/retrace/sdk/CrossLanguageStep.java`), configured by
//! `RETRACE_STEP_*` variables. They start side by side and each waits for its event on Kafka,
//! so the JVM's start overlaps the rest. They use what `tests/setup` installed for the SDKs'
//! own tests (`tests/scenarios/sdk_*.rs`) and nothing else: the TypeScript SDK's
//! `node_modules` (built with `npm run build`), the Python SDK's virtualenv, and Maven offline
//! (`mvn -o test -Dtest=CrossLanguageStep` builds the Java SDK as `mvn test` does).

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_exit, retrace};
use retrace_api::{RecordRole, Trace, TraceEvent, TransactionStatus};
use retrace_proto::{Envelope, OUTCOMES_TOPIC};
use retrace_sdk::Publisher;
use retrace_tests::{Broker, PATIENCE, eventually, repo, start_archive, unique_topic};
use tokio::process::{Child, Command};

/// How long each driver waits for its event before it gives up (`RETRACE_STEP_DEADLINE_S`).
const STEP_DEADLINE_S: u64 = 120;
/// A bound on a driver's whole run, Maven's offline build of the Java SDK included.
const STEP_RUN: Duration = Duration::from_secs(300);
/// What the notifier's handler raises while its SMS gateway is down (notifier.py).
const GATEWAY_DOWN: &str = "SMS gateway unavailable: HTTP 503 from sms-gateway";
const GATEWAY_DOWN_CODE: &str = "sms_gateway_unavailable";
const NOTIFIER: &str = "notification-python";

/// One service of the transaction: the event it publishes and where.
struct Step {
    /// The service: its event's source, and the consumer in its outcome on the previous step.
    source: &'static str,
    event_type: &'static str,
    topic: String,
}

/// `program` run in `dir` as a driver: on `broker`, its output captured, killed if the test
/// ends first.
fn step_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path, broker: &Broker) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env("RETRACE_STEP_BOOTSTRAP", broker.bootstrap())
        .env("RETRACE_STEP_DEADLINE_S", STEP_DEADLINE_S.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// The driver is service `to`: it consumes `from`'s topic, in a group of its own, and
/// publishes its event on its topic.
fn consume_and_publish(command: &mut Command, from: &Step, to: &Step) {
    command
        .env("RETRACE_STEP_FROM", &from.topic)
        .env("RETRACE_STEP_GROUP", unique_topic(to.source))
        .env("RETRACE_STEP_SOURCE", to.source)
        .env("RETRACE_STEP_TYPE", to.event_type)
        .env("RETRACE_STEP_TO", &to.topic);
}

/// Runs `command` to its end (within [`STEP_RUN`]); it must succeed. Its output, and how long
/// it took.
async fn run(what: &str, command: &mut Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(STEP_RUN, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {STEP_RUN:?}"))
        .unwrap_or_else(|error| panic!("{what} could not start: {error}"));
    assert!(
        output.status.success(),
        "{what} failed ({}) after {:.1?}:\n{}\n{}",
        output.status,
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, started.elapsed())
}

/// The archive's trace of `transaction` once `done` holds.
async fn trace_when(server: &str, transaction: &str, done: impl Fn(&Trace) -> bool) -> Trace {
    let url = format!("{server}/v1/transactions/{transaction}");
    eventually(&format!("the trace of {transaction}"), PATIENCE, || {
        let url = url.clone();
        let done = &done;
        async move {
            let trace: Trace = reqwest::get(&url).await.ok()?.json().await.ok()?;
            done(&trace).then_some(trace)
        }
    })
    .await
}

/// `(consumer, status, error)` of every outcome reported on `event`, in order.
fn outcomes(event: &TraceEvent) -> Vec<(&str, &str, &str)> {
    event
        .outcomes()
        .map(|o| (o.consumer.as_str(), o.status.as_str(), o.error.as_str()))
        .collect()
}

/// A line `retrace trace` must print.
enum Want {
    /// A line with these words in this order (the timeline pads its columns).
    Words(String),
    /// This line exactly (the causation tree's indentation is the point).
    Line(String),
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Fails unless every line of `expected` is in `text`, in that order.
#[track_caller]
fn assert_lines_in_order(text: &str, expected: &[Want]) {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    for wanted in expected {
        let found = lines[from..].iter().position(|line| match wanted {
            Want::Words(w) => words(line).contains(&words(w)),
            Want::Line(l) => line == l,
        });
        let Some(at) = found else {
            let (Want::Words(w) | Want::Line(w)) = wanted;
            panic!("no line {w:?} after line {from} of\n{text}");
        };
        from += at + 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_through_four_sdks_is_traced_in_causal_order_and_its_failure_replayed() {
    let started = Instant::now();
    let (typescript, python, java) = (
        repo().join("sdks/typescript"),
        repo().join("sdks/python"),
        repo().join("sdks/java"),
    );
    let venv_python = python.join(".venv/bin/python");
    for (needed, what) in [
        (
            typescript.join("node_modules/.package-lock.json"),
            "npm ci in sdks/typescript",
        ),
        (venv_python.clone(), "the Python SDK's virtualenv"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run `tests/setup` ({what})",
            needed.display()
        );
    }

    let broker = Broker::real();
    let steps = [
        (
            "registration-rust",
            "registration.submitted.v1",
            "registrations",
        ),
        (
            "workflow-typescript",
            "registration.declared.v1",
            "declarations",
        ),
        (
            "validation-python",
            "registration.validated.v1",
            "validations",
        ),
        ("certificates-java", "certificate.issued.v1", "certificates"),
    ]
    .map(|(source, event_type, topic)| Step {
        source,
        event_type,
        topic: unique_topic(&format!("xl-{topic}")),
    });
    for step in &steps {
        broker.create_topic(&step.topic, 3).await;
    }
    broker.create_topic(OUTCOMES_TOPIC, 3).await;
    let archive = start_archive(&broker).await;
    let server = archive.url("");

    // The three services after the Rust one, and the notifier, all waiting for their event.
    let typescript_step = async {
        let (_, built) = run(
            "npm run build (sdks/typescript)",
            Command::new("npm")
                .args(["run", "--silent", "build"])
                .current_dir(&typescript)
                .kill_on_drop(true),
        )
        .await;
        let mut command = step_command("node", &typescript, &broker);
        command.arg("dist/test/cross-language/step.js");
        consume_and_publish(&mut command, &steps[0], &steps[1]);
        let (output, ran) = run("the TypeScript SDK's step", &mut command).await;
        (output, built + ran)
    };
    let python_step = async {
        let mut command = step_command(&venv_python, &python, &broker);
        command.arg("tests/cross_language/step.py");
        consume_and_publish(&mut command, &steps[1], &steps[2]);
        run("the Python SDK's step", &mut command).await
    };
    let java_step = async {
        let mut command = step_command("mvn", &java, &broker);
        command.args(["-q", "-B", "-o", "test", "-Dtest=CrossLanguageStep"]);
        consume_and_publish(&mut command, &steps[2], &steps[3]);
        run(
            "the Java SDK's step (mvn -o test -Dtest=CrossLanguageStep)",
            &mut command,
        )
        .await
    };
    let notifier: Child = step_command(&venv_python, &python, &broker)
        .arg("tests/cross_language/notifier.py")
        .env("RETRACE_STEP_FROM", &steps[3].topic)
        .env("RETRACE_STEP_GROUP", unique_topic(NOTIFIER))
        .env("RETRACE_STEP_SOURCE", NOTIFIER)
        .spawn()
        .expect("the notifier starts");

    // The first step, from Rust.
    let subject = format!("beneficiary:{}", std::process::id());
    let submitted = Envelope::root(steps[0].source, steps[0].event_type)
        .with_subject(subject.clone())
        .with_payload("application/json", r#"{"child":"Zoë"}"#.as_bytes().to_vec());
    let transaction = submitted.transaction_id.clone();
    let publisher = Publisher::new(&broker.settings()).unwrap();
    publisher
        .publish(&steps[0].topic, &submitted)
        .await
        .unwrap();

    let ((_, typescript_took), (_, python_took), (_, java_took)) =
        tokio::join!(typescript_step, python_step, java_step);
    let chained = started.elapsed();
    println!(
        "steps done {chained:.1?} into the test: TypeScript {typescript_took:.1?} (its build \
         included), Python {python_took:.1?}, Java {java_took:.1?} (Maven included)"
    );

    // Traced: four events, each processed by the next service, the last failed at the notifier.
    let failed = trace_when(&server, &transaction, |t| {
        t.events.len() == 4 && t.events.iter().all(|e| e.outcomes().next().is_some())
    })
    .await;
    let names: Vec<(&str, &str, &str)> = failed
        .events
        .iter()
        .map(|e| {
            let m = &e.message;
            (m.source.as_str(), m.event_type.as_str(), m.topic.as_str())
        })
        .collect();
    let expected: Vec<(&str, &str, &str)> = steps
        .iter()
        .map(|s| (s.source, s.event_type, s.topic.as_str()))
        .collect();
    assert_eq!(names, expected, "the events, in time order: {failed:#?}");
    assert_eq!(failed.events[0].message.event_id, submitted.event_id);
    for pair in failed.events.windows(2) {
        let (cause, effect) = (&pair[0].message, &pair[1].message);
        assert_eq!(
            effect.causation_id, cause.event_id,
            "{} is caused by {}'s event",
            effect.source, cause.source
        );
    }
    for event in &failed.events {
        let m = &event.message;
        assert_eq!(m.kind, "envelope", "{} published an envelope", m.source);
        assert_eq!(m.transaction_id, transaction);
        assert_eq!(
            m.subject_ids,
            [subject.as_str()],
            "{} kept the subject",
            m.source
        );
    }
    // Every SDK keyed its event by the transaction id and put it on the partition murmur2
    // gives: the same in each topic (all have 3 partitions).
    let partitions: Vec<i32> = failed.events.iter().map(|e| e.message.partition).collect();
    assert!(
        partitions.iter().all(|&p| p == partitions[0]),
        "one partition for the transaction, whichever SDK published: {partitions:?}"
    );
    for (index, event) in failed.events.iter().enumerate() {
        let expected = match steps.get(index + 1) {
            Some(next) => vec![(next.source, "processed", "")],
            None => vec![(NOTIFIER, "failed", GATEWAY_DOWN)],
        };
        assert_eq!(
            outcomes(event),
            expected,
            "outcomes on {}'s event",
            steps[index].source
        );
    }
    let last = failed.events[3].outcomes().next().unwrap();
    assert_eq!(last.error_code, GATEWAY_DOWN_CODE);
    assert_eq!(failed.status, TransactionStatus::Failed);
    let failure = failed.failure.as_ref().expect("the failure");
    assert_eq!(
        (
            failure.event_id.as_str(),
            failure.topic.as_str(),
            failure.consumer.as_str(),
            failure.error.as_str()
        ),
        (
            failed.events[3].message.event_id.as_str(),
            steps[3].topic.as_str(),
            NOTIFIER,
            GATEWAY_DOWN
        )
    );

    // What a person sees: `retrace trace`.
    let traced = retrace(&server, &["trace", &transaction]).await;
    assert_exit(&traced, 0);
    println!("$ retrace trace {transaction}\n{}", traced.stdout);
    assert!(
        traced
            .stdout
            .starts_with(&format!("Transaction {transaction}: FAILED\n")),
        "{}",
        traced.stdout
    );
    // The timeline: each event, then the outcome the next service reported on it.
    let mut timeline = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        timeline.push(Want::Words(format!(
            "{} {} from {}",
            step.topic, step.event_type, step.source
        )));
        timeline.push(Want::Words(match steps.get(index + 1) {
            Some(next) => format!("{}: processed", next.source),
            None => format!("{NOTIFIER}: failed ({GATEWAY_DOWN})"),
        }));
    }
    timeline.push(Want::Line(format!(
        "Failed at {} / {} / {NOTIFIER}: {GATEWAY_DOWN}",
        steps[3].topic, steps[3].event_type
    )));
    // The causation tree: each event under the one that caused it.
    timeline.push(Want::Line("Causation".to_owned()));
    let mut indent = String::new();
    for (index, (step, event)) in steps.iter().zip(&failed.events).enumerate() {
        let branch = if index == 0 { "" } else { "└─ " };
        timeline.push(Want::Line(format!(
            "  {indent}{branch}{} on {}  {}",
            step.event_type, step.topic, event.message.event_id
        )));
        if index > 0 {
            indent.push_str("   ");
        }
    }
    assert_lines_in_order(&traced.stdout, &timeline);

    // The failed step replayed: the notifier gets the copy again, and processes it.
    let replayed = retrace(
        &server,
        &[
            "replay",
            &transaction,
            "--only-failed",
            "--reason",
            "SMS gateway back up",
            "--yes",
        ],
    )
    .await;
    assert_exit(&replayed, 0);
    println!(
        "$ retrace replay {transaction} --only-failed ... --yes\n{}",
        replayed.stdout
    );
    let replay_id = replayed
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay id: "))
        .unwrap_or_else(|| panic!("no replay id in {replayed:#?}"))
        .to_owned();
    assert!(
        replayed.stdout.contains("1 of 1 message published"),
        "only the failed step is replayed: {}",
        replayed.stdout
    );
    let notified = tokio::time::timeout(PATIENCE, notifier.wait_with_output())
        .await
        .expect("the notifier ends once it has processed the replayed copy")
        .unwrap();
    assert!(
        notified.status.success(),
        "the notifier failed ({}):\n{}\n{}",
        notified.status,
        String::from_utf8_lossy(&notified.stdout),
        String::from_utf8_lossy(&notified.stderr)
    );

    let ok = trace_when(&server, &transaction, |t| t.status == TransactionStatus::Ok).await;
    assert!(ok.failure.is_none(), "{ok:#?}");
    assert_eq!(
        ok.events.len(),
        4,
        "the replayed copy is under its event: {ok:#?}"
    );
    let certificate = &ok.events[3];
    let roles: Vec<_> = certificate
        .records
        .iter()
        .map(|r| {
            let said: Vec<(&str, &str)> = r
                .outcomes
                .iter()
                .map(|o| (o.consumer.as_str(), o.status.as_str()))
                .collect();
            (r.role, r.replay_id.as_deref(), said)
        })
        .collect();
    assert_eq!(
        roles,
        [
            (RecordRole::Published, None, vec![(NOTIFIER, "failed")]),
            (
                RecordRole::Replayed,
                Some(replay_id.as_str()),
                vec![(NOTIFIER, "processed")]
            ),
        ],
        "the Java step's records and the notifier's outcomes on each"
    );
    let after = retrace(&server, &["trace", &transaction]).await;
    assert_exit(&after, 0);
    println!("$ retrace trace {transaction}\n{}", after.stdout);
    assert!(
        after
            .stdout
            .starts_with(&format!("Transaction {transaction}: ok\n")),
        "{}",
        after.stdout
    );
    assert_lines_in_order(
        &after.stdout,
        &[
            Want::Words(format!(
                "{} {} from {}",
                steps[3].topic, steps[3].event_type, steps[3].source
            )),
            Want::Words(format!("{NOTIFIER}: failed ({GATEWAY_DOWN})")),
            Want::Words(format!("↻ replayed to {} at", steps[3].topic)),
            Want::Words(format!("{NOTIFIER}: processed at")),
            Want::Line("Replays".to_owned()),
            Want::Words(format!("{replay_id} done, 1 of 1 message published")),
        ],
    );
    println!(
        "cross-language scenario: {:.1?} in all ({chained:.1?} until every step was published)",
        started.elapsed()
    );
}
