//! The Helm chart started for real from its own manifests: `helm template` renders it, and every
//! pod it would run is started here as a process with the container's command, arguments and
//! environment, and its mounted ConfigMaps and Secrets, exactly as rendered
//! (`retrace_tests::helm`), on Apache Kafka with SASL/SCRAM (the launcher's). Their probes are
//! called on the ports and paths the manifests name, the `helm test` pod's own script is run, and
//! the event it publishes through the gateway is traced through every archive pod. This is what
//! lint and schemas cannot see: that the chart's wiring (ports, variables, paths, the archive's
//! replica ids and shard URLs, secrets) is what the services read.
//!
//! Two releases, one after the other on one broker: `ci/sasl-sharded-values.yaml` (2 shards, an
//! existing auth Secret, a worker queue) and `ci/ingress-no-console-values.yaml` (the console
//! off, a generated auth Secret).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use retrace_tests::helm::{self, Launch, Mapping, Pod};
use retrace_tests::{KafkaCluster, PATIENCE, ServiceProcess, Stop, eventually};
use serde_json::Value;

/// Where the service binaries are: `RETRACE_TEST_BIN_DIR`, else the target folder this test
/// was built in (`cargo test --workspace` builds them, each package having tests of its own).
fn bin_dir() -> PathBuf {
    let dir = match std::env::var_os("RETRACE_TEST_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .expect("the test knows its path")
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps")
            .to_owned(),
    };
    for binary in ["retrace-archive", "retrace-gateway", "retrace-worker"] {
        assert!(
            dir.join(binary).is_file(),
            "{binary} is not built in {}: `cargo build -p {binary}` (cargo test --workspace \
             builds it)",
            dir.display()
        );
    }
    dir
}

/// A release's pods, started; on a failure, each one's log is printed.
struct Running {
    pods: Vec<(Pod, ServiceProcess, PathBuf)>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (pod, _, log) in &self.pods {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- {} ({}), last lines:", pod.name, pod.ip);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The TOML file a pod's container reads (`RETRACE_CONFIG`), as the chart rendered it.
fn config_file(pod: &Pod, objects: &[Value]) -> toml::Table {
    let path = pod
        .env_value("RETRACE_CONFIG")
        .expect("RETRACE_CONFIG is set");
    let file = Path::new(path).file_name().unwrap().to_str().unwrap();
    let map = helm::of_kind(objects, "ConfigMap")
        .find(|c| c["data"][file].is_string())
        .unwrap_or_else(|| panic!("{}: no ConfigMap holds {file}", pod.name));
    map["data"][file]
        .as_str()
        .unwrap()
        .parse()
        .expect("the rendered file is TOML")
}

/// Checks the archive pods' identities: replica id = pod name, `i/N` from the StatefulSet, and
/// `shard_urls` naming exactly each shard's pods.
fn check_archive_layout(pods: &[Pod], objects: &[Value], shards: usize, launches: &[Launch]) {
    let archives: Vec<(&Pod, &Launch)> = pods
        .iter()
        .zip(launches)
        .filter(|(p, _)| p.component == "archive")
        .collect();
    let mut by_shard: Vec<Vec<String>> = vec![Vec::new(); shards];
    for (pod, launch) in &archives {
        let env: BTreeMap<&str, &str> = launch
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env.get("RETRACE_ARCHIVE_REPLICA_ID"),
            Some(&pod.name.as_str())
        );
        let shard: usize = pod.labels["retrace.dev/shard"].parse().unwrap();
        if shards > 1 {
            assert_eq!(
                env.get("RETRACE_ARCHIVE_SHARD").copied(),
                Some(format!("{shard}/{shards}").as_str()),
                "{}",
                pod.name
            );
        }
        let port = pod.port(&Value::from("http"));
        by_shard[shard].push(format!(
            "http://{}:{port}",
            pod.dns_name("cluster.local")
                .expect("an archive pod has a DNS name")
        ));
    }
    let config = config_file(archives[0].0, objects);
    match config["archive"].get("shard_urls") {
        Some(urls) => {
            let urls: Vec<Vec<String>> = urls.clone().try_into().unwrap();
            assert_eq!(urls, by_shard, "shard_urls names each shard's pods");
        }
        None => assert_eq!(shards, 1, "a sharded archive has shard_urls"),
    }
}

/// Every `RETRACE_*` variable a pod sets is one its binary reads.
fn check_variables_are_read(pod: &Pod, launch: &Launch) {
    let names = launch.env.iter().map(|(name, _)| name.clone());
    let unknown = match pod.component.as_str() {
        "archive" => retrace_service::unknown_env_vars::<retrace_archive::ArchiveArgs>(names),
        "gateway" => retrace_service::unknown_env_vars::<retrace_gateway::GatewayArgs>(names),
        "worker" => retrace_service::unknown_env_vars::<retrace_worker::WorkerArgs>(names),
        _ => return,
    };
    assert!(unknown.is_empty(), "{}: not read: {unknown:?}", pod.name);
}

/// Renders `values` with `sets`, starts every pod, and checks it end to end; returns nothing,
/// stops everything cleanly.
async fn release(
    release: &str,
    values: &str,
    sets: &[String],
    existing: &BTreeMap<String, BTreeMap<String, String>>,
    expect: Expect,
) {
    let values = helm::chart().join("ci").join(values);
    let chart = helm::chart();
    let mut args = vec![
        release,
        chart.to_str().unwrap(),
        "--namespace",
        helm::NAMESPACE,
        "-f",
        values.to_str().unwrap(),
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let objects = helm::template(&args);
    let net = [rand::random_range(1..=254u8), rand::random_range(0..=254u8)];
    let pods = helm::pods(&objects, net);
    let secrets = helm::secrets(&objects, existing);
    let mapping = Mapping::new(&objects, &pods, "cluster.local");
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir();
    let image_env = helm::image_env();
    let launches: Vec<Launch> = pods
        .iter()
        .map(|pod| {
            helm::prepare(
                pod,
                &objects,
                &secrets,
                &mapping,
                &image_env,
                dir.path(),
                &bin,
            )
        })
        .collect();
    check_archive_layout(&pods, &objects, expect.shards, &launches);
    let counted = |component: &str| pods.iter().filter(|p| p.component == component).count();
    assert_eq!(counted("archive"), expect.archives, "archive pods");
    assert_eq!(counted("test"), 1, "one helm test pod");

    let mut running = Running { pods: Vec::new() };
    let mut test_pod = None;
    for (pod, launch) in pods.into_iter().zip(launches) {
        check_variables_are_read(&pod, &launch);
        if pod.component == "test" {
            test_pod = Some((pod, launch));
            continue;
        }
        // The kubelet's SIGKILL comes after the service's own drain deadline.
        let drain = config_file(&pod, &objects)[pod.component.as_str()]["shutdown_grace_ms"]
            .as_integer()
            .expect("each service's file sets its drain deadline");
        let grace = pod.grace_seconds.expect("a grace period is set");
        assert!(
            grace * 1000 > drain,
            "{}: grace {grace} s, drain {drain} ms",
            pod.name
        );
        let log = dir.path().join(format!("{}.log", pod.name));
        let process = launch.start(&log);
        running.pods.push((pod, process, log));
    }

    let http = reqwest::Client::new();
    for (pod, process, log) in &mut running.pods {
        let readiness = &pod.container["readinessProbe"]["httpGet"];
        let url = format!(
            "http://{}:{}{}",
            pod.ip,
            pod.port(&readiness["port"]),
            readiness["path"].as_str().expect("readiness has a path")
        );
        eventually(
            &format!("{} ready at {url}", pod.name),
            PATIENCE * 2,
            || {
                if let Some(status) = process.exited() {
                    panic!("{} exited {status}; its log: {}", pod.name, log.display());
                }
                let request = http.get(&url).send();
                async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
            },
        )
        .await;
        let liveness = pod.port(&pod.container["livenessProbe"]["tcpSocket"]["port"]);
        TcpStream::connect((pod.ip, liveness))
            .unwrap_or_else(|e| panic!("{}: liveness port {liveness}: {e}", pod.name));
        if pod.component == "archive" {
            let console = http
                .get(format!("http://{}:{liveness}/ui/", pod.ip))
                .send()
                .await
                .unwrap();
            assert_eq!(console.status(), expect.console, "{}: /ui/", pod.name);
        }
    }

    // The helm test pod, as rendered: every /healthz, one event published and traced.
    let (pod, launch) = test_pod.expect("the chart has a helm test pod");
    assert_eq!(pod.container["command"][0], "/bin/sh");
    let output = Command::new(&launch.program)
        .args(&launch.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("sh runs");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the helm test pod failed: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let transaction = said
        .lines()
        .find_map(|l| l.strip_prefix("ok: transaction "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the helm test pod traced nothing: {said}"))
        .to_owned();

    // Any archive pod answers for the whole archive: with shards, those of the shard that
    // does not hold the event's partition ask the other.
    let token = &secrets[&expect_auth_secret(&objects, release)]["admin-token"];
    for (pod, _, _) in running
        .pods
        .iter()
        .filter(|(p, _, _)| p.component == "archive")
    {
        let url = format!("http://{}:7070/v1/transactions/{transaction}", pod.ip);
        let trace: Value = eventually(
            &format!("{} traces {transaction}", pod.name),
            PATIENCE,
            || {
                let request = http.get(&url).bearer_auth(token).send();
                async move {
                    let answer = request.await.ok().filter(|r| r.status() == 200)?;
                    answer.json().await.ok()
                }
            },
        )
        .await;
        assert_eq!(trace["events"].as_array().map(Vec::len), Some(1), "{trace}");
        assert_eq!(trace["events"][0]["topic"], "retrace-helm-test", "{trace}");
    }

    eprintln!(
        "{release}: {} pods ready; transaction {transaction} traced through every archive pod",
        running.pods.len()
    );

    // A rolling restart's SIGTERM: each drains and exits 0.
    for (_, process, _) in std::mem::take(&mut running.pods) {
        tokio::task::spawn_blocking(move || process.stop(Stop::Terminate))
            .await
            .unwrap();
    }
}

/// The auth Secret the release's pods read their admin token hash from.
fn expect_auth_secret(objects: &[Value], release: &str) -> String {
    let archive = helm::of_kind(objects, "StatefulSet")
        .next()
        .unwrap_or_else(|| panic!("{release}: no archive StatefulSet"));
    archive["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RETRACE_AUTH_BOOTSTRAP_ADMIN_SHA256")
        .and_then(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
        .expect("the archive reads the bootstrap hash from a Secret")
        .to_owned()
}

/// What a release should be.
struct Expect {
    shards: usize,
    archives: usize,
    console: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_as_rendered_on_kafka_with_sasl() {
    let cluster = KafkaCluster::start_sasl(&[]);
    let admin = cluster.admin_settings();
    let kafka_user = BTreeMap::from([
        (
            "username".to_owned(),
            admin.properties["sasl.username"].clone(),
        ),
        (
            "password".to_owned(),
            admin.properties["sasl.password"].clone(),
        ),
    ]);
    let (token, token_sha256) = retrace_auth::generate();
    let auth = BTreeMap::from([
        ("admin-token".to_owned(), token),
        ("admin-token-sha256".to_owned(), token_sha256),
        (
            "signing.keys".to_owned(),
            retrace_auth::SigningKeys::generate_hex() + "\n",
        ),
    ]);
    // The Secrets ci/sasl-sharded-values.yaml says the cluster holds (the CA's is not needed:
    // the launcher's listener is SASL_PLAINTEXT, so TLS is turned off below).
    let existing = BTreeMap::from([
        ("retrace-kafka-sasl".to_owned(), kafka_user),
        ("retrace-auth".to_owned(), auth),
    ]);
    let bootstrap = format!("kafka.bootstrap={}", cluster.bootstrap());

    // 2 shards × 2 replicas (not the set's 3: four archives, a gateway and a worker are what
    // two cores start in reasonable time), one broker so replication 1.
    release(
        "retrace",
        "sasl-sharded-values.yaml",
        &[
            bootstrap.clone(),
            "kafka.tls.enabled=false".into(),
            "archive.replicas=2".into(),
            "gateway.autoscaling.minReplicas=1".into(),
            "worker.replicas=1".into(),
            "topics.replication=1".into(),
        ],
        &existing,
        Expect {
            shards: 2,
            archives: 4,
            console: 200,
        },
    )
    .await;

    release(
        "crvs",
        "ingress-no-console-values.yaml",
        &[
            bootstrap,
            "kafka.sasl.enabled=true".into(),
            "kafka.sasl.existingSecret=retrace-kafka-sasl".into(),
            "archive.replicas=1".into(),
            "gateway.replicas=1".into(),
            "topics.replication=1".into(),
        ],
        &existing,
        Expect {
            shards: 1,
            archives: 1,
            console: 404,
        },
    )
    .await;
}

/// Each workload's `checksum/config` annotation, by workload name.
fn config_checksums(objects: &[Value]) -> BTreeMap<String, String> {
    objects
        .iter()
        .filter_map(|o| {
            let sum =
                o["spec"]["template"]["metadata"]["annotations"]["checksum/config"].as_str()?;
            Some((helm::name(o).to_owned(), sum.to_owned()))
        })
        .collect()
}

#[test]
fn a_service_s_settings_roll_its_pods_only() {
    let chart = helm::chart();
    let render = |set: &str| {
        config_checksums(&helm::template(&[
            "retrace",
            chart.to_str().unwrap(),
            "--set",
            set,
        ]))
    };
    let before = render("archive.batchRecords=5000");
    let after = render("archive.batchRecords=4000");
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["retrace-archive-0", "retrace-gateway", "retrace-worker"]
    );
    for (workload, sum) in &before {
        assert_eq!(
            sum != &after[workload],
            workload.contains("archive"),
            "{workload}: its checksum changes exactly when its own file does"
        );
    }
    // A setting every service's file shares rolls them all.
    let shared = render("log.filter=debug");
    assert!(before.iter().all(|(w, sum)| shared[w] != *sum));
}

#[test]
fn every_checkov_finding_left_is_listed_with_its_reason() {
    let chart = helm::chart();
    let config: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(chart.join(".checkov.yaml")).unwrap())
            .unwrap();
    let mut skipped: Vec<String> = serde_json::from_value(config["skip-check"].clone()).unwrap();
    let objects = helm::template(&["retrace", chart.to_str().unwrap()]);
    for object in &objects {
        for (key, value) in object["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if key.starts_with("checkov.io/skip") {
                let (check, reason) = value.as_str().unwrap().split_once('=').unwrap();
                assert!(!reason.trim().is_empty(), "{key} gives no reason");
                skipped.push(check.to_owned());
            }
        }
    }
    skipped.sort();
    skipped.dedup();
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let mut listed: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("## Security checks"))
        .filter(|l| l.starts_with("| CKV"))
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("CKV"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, skipped, "the README's table and the skips differ");
}
