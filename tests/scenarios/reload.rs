//! Live configuration reload, end to end: an archive configured by a file is edited while it
//! runs. A new topic list starts archiving the new topic (its consumer re-created once), an
//! unrelated change leaves the consumer alone, new masking rules mask the next answer, a
//! rotated bootstrap admin token replaces the old one, and an invalid file is refused and reported while the running configuration goes on; `/v1/config`
//! shows each new version. A worker's reloaded gate window shows on `/v1/jobs/queues`.

use std::path::Path;

use retrace_api::QueueStatus;
use retrace_proto::Envelope;
use retrace_sdk::Publisher;
use retrace_tests::{
    Broker, PATIENCE, RunningArchive, eventually, free_port, json_answer, on_every_broker,
    unique_topic,
};
use retrace_worker::WorkerArgs;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The value of the first sample of `name` whose labels include every one of `labels`
/// (`group="…"`), 0 when there is none yet.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn write(path: &Path, text: &str) {
    // Written aside and renamed, as editors and config-map mounts do: never read half-way.
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

async fn publish(broker: &Broker, topic: &str, payload: &Value) -> Envelope {
    let publisher = Publisher::new(&broker.settings()).unwrap();
    let event = Envelope::root("registration", "birth.registration.submitted.v1")
        .with_subject("beneficiary:1")
        .with_payload("application/json", serde_json::to_vec(payload).unwrap());
    publisher.publish(topic, &event).await.unwrap();
    event
}

fn archive_file(topics: &[&str], group: &str, batch_records: usize) -> String {
    format!(
        "[archive]\ntopics = {topics:?}\ngroup = \"{group}\"\nbatch_records = {batch_records}\n\n\
         [auth]\nenabled = false\n"
    )
}

async fn a_new_topic_list_reloads_and_only_it_recreates_the_consumer(broker: Broker) {
    let (first, second) = (unique_topic("reload-a"), unique_topic("reload-b"));
    for topic in [&first, &second] {
        broker.create_topic(topic, 2).await;
    }
    let group = unique_topic("reload-group");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.toml");
    write(&file, &archive_file(&[&first], &group, 1000));
    let archive = RunningArchive::start_from_file(&broker, &file).await;
    let started = archive.config().await;
    assert_eq!(started["service"], "archive");
    assert_eq!(started["file"], json!(file));
    assert_eq!(started["config"]["topics"], json!({ "names": [first] }));
    let recreated = format!("group=\"{group}\"");
    let recreations = || async {
        sample(
            &archive.metrics().await,
            "retrace_consumer_recreated_total",
            &[&recreated],
        )
    };

    publish(&broker, &first, &json!({})).await;
    publish(&broker, &second, &json!({})).await;
    archive.wait_for_records(&first, 1).await;

    // An unrelated change: a new version, the same consumer.
    write(&file, &archive_file(&[&first], &group, 500));
    let unrelated = archive
        .config_after(started["version"].as_str().unwrap())
        .await;
    assert_eq!(unrelated["config"]["batch"]["max_records"], 500);
    // Published once the new version is visible, so archived only after the archiver has
    // followed it (it stops collecting at each new configuration).
    publish(&broker, &first, &json!({})).await;
    archive.wait_for_records(&first, 2).await;
    assert_eq!(
        recreations().await,
        0.0,
        "an unrelated change kept the consumer"
    );

    // The second topic joins: its waiting record is archived by a new consumer.
    write(&file, &archive_file(&[&second, &first], &group, 500));
    let widened = archive
        .config_after(unrelated["version"].as_str().unwrap())
        .await;
    assert_eq!(
        widened["config"]["topics"],
        json!({ "names": [second, first] })
    );
    archive.wait_for_records(&second, 1).await;
    assert_eq!(recreations().await, 1.0);
    assert_eq!(archive.archived_count(&first).await, Some(2));

    // The same set in another order is the same subscription.
    write(&file, &archive_file(&[&first, &second], &group, 500));
    archive
        .config_after(widened["version"].as_str().unwrap())
        .await;
    publish(&broker, &first, &json!({})).await;
    archive.wait_for_records(&first, 3).await;
    assert_eq!(recreations().await, 1.0, "the topic set did not change");
    archive.shut_down().await;
}

async fn an_invalid_file_is_refused_and_the_running_configuration_stays(broker: Broker) {
    let topic = unique_topic("reload-invalid");
    broker.create_topic(&topic, 1).await;
    let group = unique_topic("reload-group");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.toml");
    write(&file, &archive_file(&[&topic], &group, 1000));
    let archive = RunningArchive::start_from_file(&broker, &file).await;
    let running = archive.config().await;
    let refusals = || async {
        sample(
            &archive.metrics().await,
            "retrace_config_reloads_total",
            &["outcome=\"invalid\"", "service=\"archive\""],
        )
    };
    let before = refusals().await;

    write(
        &file,
        &format!(
            "{}\n[masking]\njson_paths = [\"child..name\"]\n",
            archive_file(&[&topic], &group, 0)
        ),
    );
    eventually("the reload to be refused", PATIENCE, || async {
        (refusals().await > before).then_some(())
    })
    .await;
    assert_eq!(
        archive.config().await,
        running,
        "the running configuration stays"
    );
    publish(&broker, &topic, &json!({})).await;
    archive.wait_for_records(&topic, 1).await;

    // Fixed, it applies.
    write(&file, &archive_file(&[&topic], &group, 10));
    let fixed = archive
        .config_after(running["version"].as_str().unwrap())
        .await;
    assert_eq!(fixed["config"]["batch"]["max_records"], 10);
    archive.shut_down().await;
}

async fn new_masking_rules_mask_the_next_answer(broker: Broker) {
    let topic = unique_topic("reload-masking");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(retrace_proto::OUTCOMES_TOPIC, 1).await;
    if let Broker::Mock(_) = broker {
        // The mock cluster has no admin API; elsewhere the archive creates the topic.
        broker
            .create_topic(retrace_auth::DEFAULT_TOKENS_TOPIC, 1)
            .await;
    }
    let (bootstrap, digest) = retrace_auth::generate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.toml");
    let configured = |paths: &str| {
        format!(
            "[archive]\ntopics = [\"{topic}\"]\n\n[auth]\nbootstrap_admin_sha256 = \
             \"{digest}\"\n\n[masking]\njson_paths = {paths}\n"
        )
    };
    write(&file, &configured("[]"));
    let mut archive = RunningArchive::start_from_file(&broker, &file).await;
    archive.token = Some(bootstrap);
    let running = archive.config().await;
    assert_eq!(running["config"]["auth"]["bootstrap_admin_sha256"], "***");

    let client = reqwest::Client::new();
    let created: Value = json_answer(
        client
            .post(archive.url("/v1/tokens"))
            .bearer_auth(archive.token.as_deref().unwrap())
            .json(&json!({"name": "analyst", "role": "analyst", "expires_in_s": 3600})),
    )
    .await;
    let analyst = created["token"].as_str().unwrap().to_owned();
    let event = publish(
        &broker,
        &topic,
        &json!({"child": {"given_name": "Amina", "sex": "F"}}),
    )
    .await;
    let given_name = || async {
        let response = client
            .get(archive.url(&format!("/v1/events/{}?payload=true", event.event_id)))
            .bearer_auth(&analyst)
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        let payload = &body["copies"][0]["payload"]["json"];
        Some(payload["child"]["given_name"].clone())
    };
    let seen = eventually("the analyst to read the event", PATIENCE, || async {
        given_name().await.filter(|name| !name.is_null())
    })
    .await;
    assert_eq!(seen, "Amina");
    // Only admins read the configuration.
    let denied = client
        .get(archive.url("/v1/config"))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    write(&file, &configured("[\"child.given_name\"]"));
    let masked = archive
        .config_after(running["version"].as_str().unwrap())
        .await;
    assert_eq!(
        masked["config"]["masking"]["json_paths"],
        json!(["child.given_name"])
    );
    assert_eq!(given_name().await.unwrap(), retrace_archive::MASK);

    // [auth] reloads too: a new bootstrap admin token replaces the old one.
    let (rotated, rotated_digest) = retrace_auth::generate();
    write(
        &file,
        &configured("[\"child.given_name\"]").replace(&digest, &rotated_digest),
    );
    let old_token = archive.token.replace(rotated);
    eventually(
        "the rotated bootstrap token to be accepted",
        PATIENCE,
        || async {
            let response = client
                .get(archive.url("/v1/config"))
                .bearer_auth(archive.token.as_deref().unwrap())
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    let refused = client
        .get(archive.url("/v1/config"))
        .bearer_auth(old_token.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    archive.shut_down().await;
}

/// A `[queues.<queue>]` section whose gate, with `window`, is open only then.
fn worker_file(queue: &str, window: Option<(&str, &str)>) -> String {
    let windows = window.map_or_else(String::new, |(from, to)| {
        format!(
            "time_zone = \"UTC\"\nwindows = [{{ days = \"daily\", from = \"{from}\", to = \
             \"{to}\" }}]\n"
        )
    });
    format!(
        "[auth]\nenabled = false\n\n[queues.{queue}]\nwebhook = \"http://127.0.0.1:9/never\"\n\n\
         [queues.{queue}.gate]\n{windows}"
    )
}

async fn a_reloaded_gate_window_shows_on_the_queue_status(broker: Broker) {
    let queue = unique_topic("reload-queue");
    broker.create_queue(&queue).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.toml");
    // A window starting in two hours: closed for the whole test.
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let at = |hours: i64| {
        let time = now
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .unwrap();
        format!("{:02}:{:02}", time.hour(), time.minute())
    };
    write(&file, &worker_file(&queue, Some((&at(2), &at(3)))));
    let port = free_port();
    let args = WorkerArgs {
        common: retrace_tests::config_args(&broker, &file),
        http: Some(([127, 0, 0, 1], port).into()),
        instance_id: None,
    };
    let reloader = args
        .common
        .clone()
        .reloader("worker", move || args.clone().resolve())
        .unwrap();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(retrace_worker::serve(reloader, shutdown.clone()));
    let base = format!("http://127.0.0.1:{port}");
    let status = || async {
        let statuses: Vec<QueueStatus> = reqwest::get(format!("{base}/v1/jobs/queues"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        statuses.into_iter().find(|status| status.queue == queue)
    };
    let config = || async {
        reqwest::get(format!("{base}/v1/config"))
            .await
            .ok()?
            .json::<Value>()
            .await
            .ok()
    };
    let closed = eventually("the queue's status", PATIENCE, status).await;
    assert!(!closed.gate_open, "{}", closed.gate_reason);
    let before = eventually("the worker's configuration", PATIENCE, config).await;
    assert_eq!(before["service"], "worker");

    write(&file, &worker_file(&queue, None));
    let opened = eventually("the reloaded gate to open", PATIENCE, || async {
        status().await.filter(|status| status.gate_open)
    })
    .await;
    assert!(
        opened.gate_reason.starts_with("open"),
        "{}",
        opened.gate_reason
    );
    let after = config().await.unwrap();
    assert_ne!(after["version"], before["version"]);
    assert_eq!(
        after["config"]["queues"][&queue]["gate"]["windows"],
        json!([])
    );
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

on_every_broker!(
    a_new_topic_list_reloads_and_only_it_recreates_the_consumer,
    an_invalid_file_is_refused_and_the_running_configuration_stays,
    new_masking_rules_mask_the_next_answer,
    a_reloaded_gate_window_shows_on_the_queue_status,
);
