//! `retrace incidents`, `incidents show`, `export --incident` and `replay --incident` against
//! `retrace dev --demo`, whose two failure causes (the population register's timeout at
//! `validation`, the certificate renderer's 503 at `worker:certificates`) are two incidents:
//! listed, shown, exported (whom they touched) and replayed (the failing transactions
//! recover).

mod common;

use std::collections::BTreeSet;

use common::{DevServer, Run, assert_exit, retrace_as};
use retrace_api::{IncidentDetail, IncidentStatus, IncidentSubject, IncidentView};
use retrace_tests::{PATIENCE, eventually};

/// Demo registrations a second: below the job gate's 20, so certificate jobs run (and some
/// fail), and about one validation failure a second.
const DEMO_RATE: u32 = 10;

/// The demo's server and its token, and `retrace` run against them.
struct Demo {
    server: DevServer,
}

impl Demo {
    async fn run(&self, args: &[&str]) -> Run {
        retrace_as(self.server.http(), self.server.token(), args).await
    }

    /// `args` run, exit 0 expected, and stdout read as JSON.
    async fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let run = self.run(args).await;
        assert_exit(&run, 0);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("retrace {args:?} printed no such JSON ({e}): {run:#?}"))
    }

    async fn incidents(&self) -> Vec<IncidentView> {
        self.json(&["incidents", "--json"]).await
    }

    async fn detail(&self, id: &str) -> IncidentDetail {
        self.json(&["incidents", "show", id, "--limit", "500", "--json"])
            .await
    }
}

/// The incident at `consumer`.
fn at<'a>(incidents: &'a [IncidentView], consumer: &str) -> &'a IncidentView {
    incidents
        .iter()
        .find(|i| i.consumer == consumer)
        .unwrap_or_else(|| panic!("no incident at {consumer}: {incidents:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_two_causes_are_two_incidents_listed_shown_exported_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::task::block_in_place(|| DevServer::start(dir.path(), DEMO_RATE, None));
    let demo = Demo { server };

    // Both causes have failed, the register's timeout on two transactions at least (for the
    // replay's --max below).
    let listed = eventually("the demo's two incidents", PATIENCE * 2, || {
        let demo = &demo;
        async move {
            let incidents = demo.incidents().await;
            let renderer_down = incidents
                .iter()
                .any(|i| i.consumer == "worker:certificates");
            let register_down = incidents.iter().find(|i| i.consumer == "validation")?;
            (renderer_down && register_down.failing >= 2).then_some(incidents)
        }
    })
    .await;
    assert_eq!(listed.len(), 2, "exactly two causes: {listed:#?}");
    let register = at(&listed, "validation");
    let renderer = at(&listed, "worker:certificates");
    assert!(
        register
            .example_error
            .contains("population register did not answer within 2 s"),
        "{register:#?}"
    );
    assert!(
        renderer
            .example_error
            .contains("certificate renderer unavailable: HTTP 503"),
        "{renderer:#?}"
    );
    assert_eq!(register.status, IncidentStatus::Open);
    assert!(
        register.recent.iter().any(|m| m.failures > 0),
        "{register:#?}"
    );
    let id = register.incident_id.clone();

    // The table: a header and one line per incident, each with its step, counts and id.
    let table = demo.run(&["incidents"]).await;
    assert_exit(&table, 0);
    println!("$ retrace incidents\n{}", table.stdout);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[0].starts_with("STATUS  "), "{}", table.stdout);
    for incident in [register, renderer] {
        let line = lines
            .iter()
            .find(|l| l.ends_with(&incident.incident_id))
            .unwrap_or_else(|| panic!("no line for {}: {}", incident.incident_id, table.stdout));
        assert!(
            line.contains(&format!("{} → {}", incident.event_type, incident.consumer)),
            "{line}"
        );
        assert!(
            line.contains(['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']),
            "{line}"
        );
    }
    let open: Vec<IncidentView> = demo
        .json(&["incidents", "--status", "open", "--json"])
        .await;
    assert!(open.iter().all(|i| i.status == IncidentStatus::Open));
    assert!(open.iter().any(|i| i.incident_id == id), "{open:#?}");

    // One incident: its figures, chart, transactions and what to do next.
    let shown = demo.run(&["incidents", "show", &id]).await;
    assert_exit(&shown, 0);
    println!("$ retrace incidents show {id}\n{}", shown.stdout);
    let detail = demo.detail(&id).await;
    for expected in [
        format!("Incident {id}: OPEN since "),
        "population register did not answer within".to_owned(),
        "\nFailures a minute, ".to_owned(),
        "\nTransactions, still failing first\n".to_owned(),
        detail.transactions[0].transaction_id.clone(),
        format!("retrace export --incident {id} --format csv"),
        format!("retrace replay --incident {id} --reason"),
    ] {
        assert!(
            shown.stdout.contains(&expected),
            "no {expected:?} in\n{}",
            shown.stdout
        );
    }
    let unknown = demo.run(&["incidents", "show", "0000000000000000"]).await;
    assert_exit(&unknown, 1);

    // Whom it touched: every subject of its transactions, as JSON and as CSV.
    let subjects: Vec<IncidentSubject> = demo
        .json(&["export", "--incident", &id, "--format", "json"])
        .await;
    let exported: BTreeSet<&str> = subjects.iter().map(|s| s.subject_id.as_str()).collect();
    for transaction in &detail.transactions {
        for subject in &transaction.subject_ids {
            assert!(
                exported.contains(subject.as_str()),
                "{subject} not exported"
            );
        }
    }
    assert!(exported.iter().any(|s| s.starts_with("beneficiary:")));
    let csv = demo
        .run(&["export", "--incident", &id, "--format", "csv"])
        .await;
    assert_exit(&csv, 0);
    assert!(
        csv.stdout
            .starts_with("subject_id,transaction_ids,failing\r\n")
    );
    for subject in &subjects {
        assert!(
            csv.stdout.contains(&format!("\r\n{},", subject.subject_id)),
            "{} not in the CSV",
            subject.subject_id
        );
    }

    // Re-run it as one: --max is the plan's ceiling; then its failing transactions recover.
    let capped = demo
        .run(&[
            "replay",
            "--incident",
            &id,
            "--reason",
            "test",
            "--max",
            "1",
        ])
        .await;
    assert_exit(&capped, 2);
    assert!(capped.stderr.contains("max"), "{}", capped.stderr);
    let dry = demo
        .run(&["replay", "--incident", &id, "--reason", "test", "--dry-run"])
        .await;
    assert_exit(&dry, 0);
    assert!(dry.stdout.starts_with("Replay plan: "), "{}", dry.stdout);
    assert!(dry.stdout.ends_with("dry run: nothing was replayed\n"));
    let failing: Vec<String> = demo
        .detail(&id)
        .await
        .transactions
        .into_iter()
        .filter(|t| t.failing)
        .map(|t| t.transaction_id)
        .collect();
    let replayed = demo
        .run(&[
            "replay",
            "--incident",
            &id,
            "--reason",
            "the population register is back",
            "--rate",
            "200",
            "--yes",
        ])
        .await;
    assert_exit(&replayed, 0);
    println!("$ retrace replay --incident {id} …\n{}", replayed.stdout);
    assert!(
        replayed.stdout.contains("state: done"),
        "{}",
        replayed.stdout
    );
    eventually("the replayed transactions to recover", PATIENCE, || {
        let (demo, id, failing) = (&demo, &id, &failing);
        async move {
            let detail = demo.detail(id).await;
            let recovered = detail
                .transactions
                .iter()
                .filter(|t| failing.contains(&t.transaction_id))
                .all(|t| !t.failing && t.recovered_at.is_some());
            recovered.then_some(())
        }
    })
    .await;
    let after = demo.run(&["incidents", "show", &id]).await;
    assert!(after.stdout.contains("  recovered "), "{}", after.stdout);
}
