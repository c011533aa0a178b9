//! The web console in a real browser: headless Chromium, driven through chromedriver, against
//! `retrace dev --demo`. A support person finds a failed transaction, sees where it failed,
//! plans and runs a replay and sees the replayed copy arrive under the event it replays;
//! exports a subject's history; reads a dead-lettered job's attempts, folded under its one
//! row; finds the demo's two causes as two incidents, charted, opens one on its transactions
//! and subjects, exports them and replays it; redrives a dead-lettered job; an analyst sees
//! neither payloads nor the replay button, and the server refuses the replay when the
//! analyst's token asks for it anyway; support replays an incident but may not export whom
//! it touched.
//!
//! Needs `chromium` and `chromium-driver` (Debian; `.ci/run` installs them). Screenshots of
//! the main pages are written under the cargo target directory (the path is printed);
//! `docs/screenshots/` holds copies for docs/console.md.

mod common;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::DevServer;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use retrace_api::{
    CreatedToken, IncidentView, Page, RecordRole, Trace, TransactionSummary, WhoAmI,
};
use retrace_tests::{KafkaCluster, PATIENCE, eventually, free_port};
use serde_json::json;

/// How long the demo may take to produce a transaction failed at validation.
const DEMO_PATIENCE: Duration = Duration::from_secs(120);

/// chromedriver on a free port, stopped with the browsers it started when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, which its Chromium joins: a test that fails before
            // closing the session still takes the browser down with the driver.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start chromedriver ({e}): install Chromium and its driver \
                     (`apt-get install -y chromium chromium-driver`), as .ci/run does"
                )
            });
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        eventually("chromedriver to be ready", PATIENCE, || async {
            let answer: serde_json::Value = reqwest::get(&status).await.ok()?.json().await.ok()?;
            answer["value"]["ready"].as_bool()?.then_some(())
        })
        .await;
        driver
    }

    async fn browser(&self, downloads: &Path) -> Client {
        let capabilities = json!({
            "goog:chromeOptions": {
                // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1366,900", "--lang=en-GB"],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("chromedriver starts a headless Chromium session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// The page as a person sees it, with waits that give up after a deadline.
struct Console<'a> {
    browser: &'a Client,
    screenshots: PathBuf,
}

impl Console<'_> {
    /// The text of the first element matching `css` once it contains `wanted`.
    async fn wait_text(&self, css: &str, wanted: &str) -> String {
        eventually(&format!("{css} to show {wanted:?}"), PATIENCE, || async {
            let text = self
                .browser
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(wanted).then_some(text)
        })
        .await
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.browser
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear within {PATIENCE:?}: {e}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.browser
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |found| found.len())
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    async fn sign_in(&self, token: &str) {
        self.fill("#token", token).await;
        self.click("#sign-in").await;
    }

    /// Saves a screenshot of the page, after checking it shows no trace of a value the
    /// script failed to render (`null`, `undefined`, `[object …]`).
    async fn screenshot(&self, name: &str) {
        let text = self.wait_for("main").await.text().await.unwrap();
        let leaked = text
            .split_whitespace()
            .find(|word| ["null", "undefined"].contains(word) || word.starts_with("[object"));
        assert_eq!(leaked, None, "the {name} page shows a placeholder:\n{text}");
        let png = self.browser.screenshot().await.unwrap();
        std::fs::write(self.screenshots.join(format!("{name}.png")), png).unwrap();
    }
}

async fn api<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    token: &str,
) -> Option<T> {
    let response = request.bearer_auth(token).send().await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// A token of `role`, created by the admin.
async fn create_token(
    client: &reqwest::Client,
    http: &str,
    admin: &str,
    role: &str,
) -> CreatedToken {
    let request = client
        .post(format!("{http}/v1/tokens"))
        .json(&json!({"name": format!("console-{role}"), "role": role}));
    api(request, admin)
        .await
        .unwrap_or_else(|| panic!("the admin creates a {role} token"))
}

/// What a Node.js service publishes beside the SDK's events (proto/README.md): JSON, with the
/// ids in `retrace-*` headers. Its event id.
async fn publish_node_sms(bootstrap: &str, transaction: &str, cause: &str) -> String {
    let event_id = retrace_proto::new_event_id();
    let headers = [
        ("retrace-event-id", event_id.as_str()),
        ("retrace-transaction-id", transaction),
        ("retrace-causation-id", cause),
        ("retrace-source", "node-sms"),
        ("retrace-type", "notification.sms.queued.v1"),
    ]
    .iter()
    .fold(OwnedHeaders::new(), |all, (key, value)| {
        all.insert(Header {
            key,
            value: Some(*value),
        })
    });
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("notifications")
                .key(transaction)
                .payload(r#"{"template": "registration-delayed", "to": "+000"}"#)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    event_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_replays_a_failed_transaction_from_the_console_and_an_analyst_cannot() {
    let data = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    // On Apache Kafka, where a user runs it; the CLI's tests cover the in-process mock.
    let kafka = KafkaCluster::shared();
    let dev = DevServer::start(data.path(), 10, Some(kafka.bootstrap()));
    let (http, admin) = (dev.http().to_owned(), dev.token().to_owned());
    let client = reqwest::Client::new();

    // A registration the population register timed out on: a replay makes it through.
    let failed: TransactionSummary = eventually(
        "the demo to fail a registration at validation",
        DEMO_PATIENCE,
        || async {
            let page: Page<TransactionSummary> = api(
                client.get(format!(
                    "{http}/v1/transactions?status=failed&service=validation"
                )),
                &admin,
            )
            .await?;
            page.items.into_iter().find(|t| {
                t.failure
                    .as_ref()
                    .is_some_and(|f| f.consumer == "validation")
            })
        },
    )
    .await;
    let transaction = failed.transaction_id.clone();
    let failed_event = failed.failure.as_ref().unwrap().event_id.clone();
    let sms = publish_node_sms(kafka.bootstrap(), &transaction, &failed_event).await;
    eventually("the Node.js event in the trace", PATIENCE, || async {
        let trace: Trace = api(
            client.get(format!("{http}/v1/transactions/{transaction}")),
            &admin,
        )
        .await?;
        trace
            .events
            .iter()
            .any(|e| e.message.event_id == sms)
            .then_some(())
    })
    .await;
    let analyst = create_token(&client, &http, &admin, "analyst").await;
    let support = create_token(&client, &http, &admin, "support").await;

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let driver = Chromedriver::start().await;
    let browser = driver.browser(downloads.path()).await;
    let page = Console {
        browser: &browser,
        screenshots: screenshots.clone(),
    };

    // Sign in with the admin token; the home page lists failed transactions.
    browser.goto(&format!("{http}/ui/")).await.unwrap();
    page.screenshot("sign-in").await;
    page.sign_in(&admin).await;
    page.wait_text("#who", "admin").await;
    page.wait_text("#failed", "validation").await;
    page.screenshot("failed").await;

    // Search the transaction; its page says where it failed and why.
    page.fill("#search-box", &transaction).await;
    page.click("#search button").await;
    let failure = page.wait_text("#failure", "Failed at validation").await;
    assert!(
        failure.contains("population register did not answer"),
        "{failure}"
    );
    assert!(
        page.count("#timeline details[data-outcome=failed]").await >= 1,
        "the failed step is red in the timeline"
    );
    page.click("#toggle-payloads").await;
    page.wait_text("#toggle-payloads", "Hide payloads").await;
    page.click("#timeline details[data-outcome=failed] summary")
        .await;
    let payload = page
        .wait_text("#timeline details[open] pre.payload", "mother_id")
        .await;
    assert!(!payload.contains("***"), "support sees payloads: {payload}");
    // The Node.js event: its JSON, traced from its headers, no warning.
    let node = format!("#timeline details[data-event-id='{sms}']");
    page.click(&format!("{node} summary")).await;
    let detail = page
        .wait_text(
            &format!("{node} .event-detail"),
            "traced from its retrace-* headers",
        )
        .await;
    assert!(
        detail.contains(r#""template": "registration-delayed""#),
        "{detail}"
    );
    assert_eq!(page.count(&format!("{node} .warning")).await, 0, "{detail}");
    page.screenshot("transaction").await;

    // Replay only the failed event: the plan first, then the replay.
    page.click("#plan-replay").await;
    page.wait_text("#replay-plan", "Give a reason").await;
    page.fill("#replay-reason", "console test: the register is back")
        .await;
    page.click("#plan-replay").await;
    let plan = page.wait_text("#plan-table", "registrations").await;
    assert_eq!(page.count("#plan-table tbody tr").await, 1, "{plan}");
    page.screenshot("replay-plan").await;
    page.click("#confirm-replay").await;
    page.wait_for("#replay-started").await;
    page.wait_text("#replay-progress", "Replay done: 1 replayed event")
        .await;
    let replays = page
        .wait_text("#replays", "console test: the register is back")
        .await;
    assert!(replays.contains("done"), "{replays}");
    let trace: Trace = api(
        client.get(format!("{http}/v1/transactions/{transaction}")),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(trace.replays.len(), 1, "one replay, recorded by the server");
    // The replayed copy is not an event of its own: it is the second attempt of the event it
    // replays, in that event's row, with its mark and its replay id.
    let replayed_row = format!("#timeline details[data-event-id='{failed_event}']");
    assert_eq!(
        page.count(&replayed_row).await,
        1,
        "the replayed event is one row"
    );
    page.wait_text(
        &format!("{replayed_row} details.attempts > summary"),
        "2 attempts, processed",
    )
    .await;
    page.click(&format!("{replayed_row} details.attempts > summary"))
        .await;
    let copy = page
        .wait_text(
            &format!("{replayed_row} details.attempts[open] li[data-role=replayed]"),
            &trace.replays[0].replay_id,
        )
        .await;
    assert!(copy.starts_with("↻ replayed to registrations at"), "{copy}");
    page.screenshot("replayed").await;

    // An event id finds its transaction, opened at that event.
    page.fill("#search-box", &failed_event).await;
    page.click("#search button").await;
    page.wait_for(&format!(
        "#timeline details[open][data-event-id='{failed_event}']"
    ))
    .await;

    // The subject's history, exported as CSV.
    let subject = failed
        .subject_ids
        .iter()
        .find(|s| s.starts_with("beneficiary:"))
        .unwrap()
        .clone();
    page.fill("#search-box", &subject).await;
    page.click("#search button").await;
    page.wait_text("#subject-transactions", &transaction).await;
    page.screenshot("subject").await;
    page.click("#export-csv").await;
    page.wait_text("#export-status", "Exported").await;
    let file = downloads
        .path()
        .join(format!("retrace-{}.csv", subject.replace(':', "_")));
    let csv = eventually("the CSV download", PATIENCE, || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    assert!(csv.starts_with("transaction_id,status,started_at"), "{csv}");
    assert!(csv.contains(&transaction), "{csv}");
    // A cell a spreadsheet would run as a formula is written as text, by the page's own CSV
    // writer: an id or error text of `=HYPERLINK(…)` cannot become a link or a command.
    let cells = browser
        .execute(
            "return arguments[0].map(csvField)",
            vec![json!([
                "=HYPERLINK(\"http://evil\")",
                "+1",
                "-2",
                "@SUM(A1)",
                "\tx",
                "\rx",
                "NID-1"
            ])],
        )
        .await
        .unwrap();
    assert_eq!(
        cells,
        json!([
            "\"'=HYPERLINK(\"\"http://evil\"\")\"",
            "'+1",
            "'-2",
            "'@SUM(A1)",
            "'\tx",
            "\"'\rx\"",
            "NID-1"
        ])
    );

    // A certificate job the renderer kept failing: its three attempts and its dead letter are
    // one step of the transaction, folded under its row, in the order they happened.
    let (dead, job) = eventually(
        "the demo to dead-letter a certificate job, its records archived",
        DEMO_PATIENCE,
        || async {
            let page: Page<TransactionSummary> = api(
                client.get(format!("{http}/v1/transactions")).query(&[
                    ("status", "failed"),
                    ("service", "worker:certificates"),
                    ("limit", "500"),
                ]),
                &admin,
            )
            .await?;
            for summary in page.items {
                let Some(failure) = summary
                    .failure
                    .filter(|f| f.consumer == "worker:certificates")
                else {
                    continue;
                };
                let trace: Trace = api(
                    client.get(format!("{http}/v1/transactions/{}", summary.transaction_id)),
                    &admin,
                )
                .await?;
                let job = trace
                    .events
                    .iter()
                    .find(|e| e.message.event_id == failure.event_id)?;
                let retries = job
                    .records
                    .iter()
                    .filter(|r| r.role == RecordRole::Retry)
                    .count();
                let attempts: Vec<u32> = job.outcomes().map(|o| o.attempt).collect();
                if retries == 2
                    && job
                        .records
                        .last()
                        .is_some_and(|r| r.role == RecordRole::DeadLettered)
                    && attempts == [1, 2, 3]
                {
                    return Some((trace, failure.event_id));
                }
            }
            None
        },
    )
    .await;
    browser
        .goto(&format!("{http}/ui/#/tx/{}", dead.transaction_id))
        .await
        .unwrap();
    page.wait_text(
        "#tx-summary .meta",
        &format!("{} events", dead.events.len()),
    )
    .await;
    let rows = browser
        .execute(
            "return Array.from(document.querySelectorAll('#timeline .waterfall > li > details'), \
             (row) => row.dataset.eventId || '')",
            vec![],
        )
        .await
        .unwrap();
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows.len(), dead.events.len(), "one row per event: {rows:?}");
    let ids: HashSet<&String> = rows.iter().filter(|id| !id.is_empty()).collect();
    assert_eq!(
        ids.len(),
        rows.iter().filter(|id| !id.is_empty()).count(),
        "no event id twice: {rows:?}"
    );
    assert!(ids.contains(&job), "the job is a row: {rows:?}");
    let row = format!("#timeline details[data-event-id='{job}']");
    page.wait_text(&format!("{row} > summary"), "3 attempts")
        .await;
    page.click(&format!("{row} > summary")).await;
    let fold = format!("{row} details.attempts");
    let folded = page
        .wait_text(&format!("{fold} > summary"), "3 attempts, dead-lettered")
        .await;
    let job_event = dead
        .events
        .iter()
        .find(|e| e.message.event_id == job)
        .unwrap();
    let records = format!("{} Kafka records", job_event.records.len());
    assert!(folded.contains(&records), "{folded}");
    assert_eq!(
        page.count(&format!("{fold}[open]")).await,
        0,
        "the attempts are folded until asked for"
    );
    page.click(&format!("{fold} > summary")).await;
    let attempts = page
        .wait_text(&format!("{fold}[open] .records"), "dead-lettered to")
        .await;
    // Each record of the job, then the outcomes reported on it: the same order as the API's.
    let record = |role: RecordRole, topic: &str| match role {
        RecordRole::Published => format!("published to {topic} at "),
        RecordRole::Retry => "retry due ".to_owned(),
        RecordRole::DeadLettered => format!("dead-lettered to {topic} at "),
        other => panic!("a {other:?} record in a job the renderer kept failing: {attempts}"),
    };
    let expected: Vec<String> = job_event
        .records
        .iter()
        .flat_map(|r| {
            let outcomes = r.outcomes.iter().map(|o| {
                format!(
                    "attempt {} · worker:certificates {} at ",
                    o.attempt,
                    o.status.replace('_', " ")
                )
            });
            std::iter::once(record(r.role, &r.topic)).chain(outcomes)
        })
        .collect();
    let lines: Vec<&str> = attempts.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{attempts}");
    for (line, start) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(start.as_str()),
            "{line:?} is not {start:?}…:\n{attempts}"
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("attempt ")).count(),
        3,
        "{attempts}"
    );
    for line in lines.iter().filter(|l| l.starts_with("attempt ")) {
        assert!(line.ends_with("HTTP 503 from pdf-renderer:8080"), "{line}");
    }
    for line in lines.iter().filter(|l| l.starts_with("retry due ")) {
        assert!(
            line.contains(" (after ") && line.ends_with(" on retrace.jobs.certificates.retry"),
            "{line}"
        );
    }
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("dead-lettered to retrace.jobs.certificates.dlq at ")
            && last.ends_with(" after attempt 3"),
        "the dead letter comes last: {attempts}"
    );
    // Each attempt's outcome at the time it was reported, each later than the one before.
    let times = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0]), (t) => t.dateTime)",
            vec![json!(format!("{fold} .record-outcomes time"))],
        )
        .await
        .unwrap();
    let times: Vec<String> = serde_json::from_value(times).unwrap();
    assert_eq!(times.len(), 3, "{attempts}");
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "{times:?}\n{attempts}"
    );
    page.screenshot("attempts").await;

    // Incidents: the demo's two causes, each one incident with a chart of its failures.
    let incidents: Vec<IncidentView> =
        eventually("the demo's two causes as incidents", PATIENCE, || async {
            let page: Page<IncidentView> =
                api(client.get(format!("{http}/v1/incidents")), &admin).await?;
            (page.items.len() >= 2).then_some(page.items)
        })
        .await;
    let mut steps: Vec<&str> = incidents.iter().map(|i| i.consumer.as_str()).collect();
    steps.sort_unstable();
    assert_eq!(
        steps,
        ["validation", "worker:certificates"],
        "one incident per cause: {incidents:#?}"
    );
    let register = incidents
        .iter()
        .find(|i| i.consumer == "validation")
        .unwrap();
    browser
        .goto(&format!("{http}/ui/#/incidents"))
        .await
        .unwrap();
    let listed = page
        .wait_text("#incidents", "population register did not answer")
        .await;
    assert!(
        listed.contains("certificate renderer unavailable"),
        "{listed}"
    );
    assert_eq!(page.count("#incidents tbody tr").await, 2, "{listed}");
    assert_eq!(
        page.count("#incidents tbody tr svg.chart").await,
        2,
        "a chart per incident"
    );
    assert!(
        page.count("#incidents tbody tr svg.chart rect.column")
            .await
            >= 2,
        "each chart has its failures' bars"
    );
    // Both opened within the hour and still fail: the banner says so on every page.
    let banner = page.wait_text("#incident-banner", "New incident: ").await;
    assert!(banner.contains(" failing"), "{banner}");
    page.screenshot("incidents").await;

    // An incident's page: its chart, its transactions (failing first) and whom it touched.
    page.click(&format!(
        "#incidents tr[data-incident-id='{}'] a",
        register.incident_id
    ))
    .await;
    page.wait_text("#incident-summary h1", "population register did not answer")
        .await;
    page.wait_for("#incident-chart rect.column").await;
    page.wait_text("#incident-transaction-list tbody", "failing")
        .await;
    let failing = browser
        .execute(
            "return Array.from(document.querySelectorAll('#incident-transaction-list tbody tr'), \
             (row) => row.dataset.failing === 'true')",
            vec![],
        )
        .await
        .unwrap();
    let failing: Vec<bool> = serde_json::from_value(failing).unwrap();
    assert!(
        failing.is_sorted_by(|a, b| a >= b),
        "the failing first: {failing:?}"
    );
    page.wait_text("#incident-subjects", "beneficiary:").await;
    page.screenshot("incident").await;
    // Whom it touched, exported as `retrace export --incident` writes them.
    page.click("#export-csv").await;
    page.wait_text("#export-status", "Exported").await;
    let file = downloads
        .path()
        .join(format!("retrace-incident-{}.csv", register.incident_id));
    let csv = eventually("the incident's CSV download", PATIENCE, || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    assert!(
        csv.starts_with("subject_id,transaction_ids,failing\r\n"),
        "{csv}"
    );
    assert!(csv.contains("beneficiary:"), "{csv}");
    // A failing transaction opens on its trace.
    page.click("#incident-transaction-list tbody tr[data-failing=true] a")
        .await;
    page.wait_text("#failure", "Failed at validation").await;
    browser.back().await.unwrap();
    page.wait_for("#incident-summary").await;

    // Replaying the incident: its plan, then the replay, followed until it has published.
    page.fill(
        "#replay-reason",
        "console test: the register is back for all",
    )
    .await;
    page.click("#plan-replay").await;
    let plan = page
        .wait_text("#replay-plan", "Plan (nothing is published yet)")
        .await;
    assert!(plan.contains("registrations"), "{plan}");
    page.click("#confirm-replay").await;
    page.wait_for("#replay-started").await;
    page.wait_text("#replay-progress", "Replay done:").await;

    // A certificate job the renderer kept failing, redriven from the jobs page.
    browser.goto(&format!("{http}/ui/#/jobs")).await.unwrap();
    let queue = "section[aria-labelledby=queue-certificates]";
    eventually("a dead-lettered certificate job", DEMO_PATIENCE, || async {
        browser.refresh().await.ok()?;
        page.wait_for(queue).await;
        (page.count(&format!("{queue} input.pick-job")).await > 0).then_some(())
    })
    .await;
    page.click(&format!("{queue} input.pick-job")).await;
    page.fill(&format!("{queue} textarea"), "console test: renderer fixed")
        .await;
    page.click(&format!("{queue} .replay-form button")).await;
    page.wait_text(queue, "Would move").await;
    page.click(&format!("{queue} button.danger")).await;
    page.wait_text(queue, "Redriven 1 job.").await;
    page.screenshot("jobs").await;

    // The audit trail, by target.
    browser.goto(&format!("{http}/ui/#/audit")).await.unwrap();
    page.fill("form[aria-label=Filters] input[name=target]", &transaction)
        .await;
    page.click("form[aria-label=Filters] button").await;
    page.wait_text("#audit", "replay.start").await;
    page.screenshot("audit").await;

    // An analyst: no payloads, no replay, no audit page.
    page.click("#sign-out").await;
    page.sign_in(&analyst.token).await;
    page.wait_text("#who", "analyst").await;
    browser
        .goto(&format!("{http}/ui/#/tx/{transaction}"))
        .await
        .unwrap();
    page.wait_for("#timeline details").await;
    assert_eq!(page.count("#toggle-payloads").await, 0, "no payload button");
    assert_eq!(page.count("#replay-form").await, 0, "no replay form");
    assert_eq!(
        page.count("#timeline button.secondary").await,
        0,
        "no 'replay from this event'"
    );
    let audit_link_shown = browser
        .execute(
            "return document.querySelector(\"#nav a[href='#/audit']\").offsetParent !== null",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(audit_link_shown, json!(false), "no audit link for analysts");
    page.screenshot("analyst").await;
    // Incidents too, their causes masked as error texts are.
    browser
        .goto(&format!("{http}/ui/#/incidents"))
        .await
        .unwrap();
    page.wait_for("#incidents tbody tr").await;
    let causes = browser
        .execute(
            "return Array.from(document.querySelectorAll('#incidents tbody td:nth-child(2)'), \
             (cell) => cell.textContent)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(causes, json!(["***", "***"]), "the analyst's incidents");

    // What the page does not offer, the server refuses: the replay, from this very session.
    let forged = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/transactions/' + arguments[0] + '/replay', {
               method: 'POST',
               headers: { Authorization: 'Bearer ' + sessionStorage.getItem('retrace.token'),
                          'Content-Type': 'application/json' },
               body: JSON.stringify({ reason: 'forged', only_failed: false }),
             }).then((r) => done(r.status), (e) => done(String(e)));",
            vec![json!(transaction)],
        )
        .await
        .unwrap();
    assert_eq!(forged, json!(403), "the server refuses an analyst's replay");
    let me: WhoAmI = api(client.get(format!("{http}/v1/whoami")), &analyst.token)
        .await
        .unwrap();
    assert_eq!(me.role, "analyst");
    assert!(
        !me.permissions
            .iter()
            .any(|p| p == "replay" || p == "payload:read")
    );
    let masked: Trace = api(
        client.get(format!("{http}/v1/transactions/{transaction}?payload=true")),
        &analyst.token,
    )
    .await
    .unwrap();
    let first = masked.events[0].message.payload.as_ref().unwrap();
    assert_eq!(
        first.json.as_ref().unwrap()["mother_id"],
        json!("***"),
        "payloads asked for anyway come masked"
    );

    // Support replays an incident and reads whom it touched, but may not export them.
    page.click("#sign-out").await;
    page.sign_in(&support.token).await;
    page.wait_text("#who", "support").await;
    browser
        .goto(&format!("{http}/ui/#/incident/{}", register.incident_id))
        .await
        .unwrap();
    page.wait_text("#incident-subjects", "beneficiary:").await;
    page.wait_for("#replay-form").await;
    assert_eq!(page.count("#export-csv").await, 0, "no export for support");

    browser.close().await.unwrap();
    println!("console screenshots: {}", screenshots.display());
}
