use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::{CommonArgs, KafkaSection, Problems, at_least_one};

/// A small service's configuration, layered like the real ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Toy {
    batch: usize,
    topics: Vec<String>,
    kafka: retrace_sdk::KafkaSettings,
    tls: Option<TlsFiles>,
}

impl Reloadable for Toy {
    fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyFile {
    #[serde(default)]
    kafka: KafkaSection,
    batch: Option<usize>,
    #[serde(default)]
    topics: Vec<String>,
    tls: Option<TlsFiles>,
}

fn resolve(args: &CommonArgs) -> Result<Toy, ConfigError> {
    let file: ToyFile = args.read_file()?;
    let mut problems = Problems::default();
    let batch = problems
        .check(at_least_one("batch", file.batch.unwrap_or(10)))
        .unwrap_or(10);
    let kafka = problems.check(args.kafka(file.kafka, &[]));
    let tls = problems.check(args.tls(file.tls)).flatten();
    problems.finish(Toy {
        batch,
        topics: file.topics,
        kafka: kafka.unwrap_or_else(|| retrace_sdk::KafkaSettings::new("")),
        tls,
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    reloader: Reloader<Toy>,
}

fn setup(text: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toy.toml");
    std::fs::write(&path, text).unwrap();
    let args = CommonArgs {
        config: Some(path.clone()),
        // A flag wins over the file at every reload, as at start.
        kafka_bootstrap: Some("flag:9092".into()),
        ..CommonArgs::default()
    };
    let reloader = Reloader::new("toy", Some(path.clone()), move || resolve(&args)).unwrap();
    Setup {
        _dir: dir,
        path,
        reloader,
    }
}

#[test]
fn a_valid_change_is_published_with_a_new_version_and_its_fields() {
    let setup = setup("batch = 5\ntopics = [\"a\"]\n[kafka]\nbootstrap = \"file:9092\"\n");
    let mut following = setup.reloader.subscribe();
    let first = setup.reloader.current();
    assert_eq!(first.config.batch, 5);
    assert_eq!(first.config.kafka.bootstrap_servers, "flag:9092");
    assert_eq!(first.version.len(), 12);

    std::fs::write(
        &setup.path,
        "batch = 7\ntopics = [\"a\", \"b\"]\n[kafka]\nbootstrap = \"file:9092\"\n",
    )
    .unwrap();
    let ReloadOutcome::Applied { version, changed } = setup.reloader.reload(Trigger::Request)
    else {
        panic!("a valid change is applied");
    };
    assert_ne!(version, first.version);
    assert_eq!(changed, ["batch", "topics"]);
    assert!(following.has_changed().unwrap());
    let now = following.borrow_and_update();
    assert_eq!(
        (now.config.batch, now.version.as_str()),
        (7, version.as_str())
    );
    assert_eq!(now.config.kafka.bootstrap_servers, "flag:9092");
}

#[test]
fn an_invalid_file_keeps_the_running_configuration_and_names_every_problem() {
    let setup = setup("batch = 5\n");
    let before = setup.reloader.current();
    std::fs::write(
        &setup.path,
        "batch = 0\n[kafka]\nproperties = { x = \"1\" }\n",
    )
    .unwrap();
    let ReloadOutcome::Invalid(error) = setup.reloader.reload(Trigger::Request) else {
        panic!("a zero batch is refused");
    };
    assert_eq!(error.problems().len(), 1, "{error}");
    assert!(error.to_string().contains("batch"), "{error}");
    std::fs::write(&setup.path, "batch = 5\nbatchh = 1\n").unwrap();
    let ReloadOutcome::Invalid(error) = setup.reloader.reload(Trigger::Request) else {
        panic!("an unknown setting is refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("batchh") && message.contains("toy.toml"),
        "{message}"
    );
    assert_eq!(setup.reloader.current().version, before.version);
    assert!(matches!(
        setup.reloader.reload(Trigger::Signal),
        ReloadOutcome::Invalid(_)
    ));
}

#[test]
fn the_same_configuration_again_is_unchanged() {
    let setup = setup("batch = 5\n");
    let before = setup.reloader.current().version.clone();
    // Spelt differently, same effect.
    std::fs::write(&setup.path, "# a comment\nbatch = 5\ntopics = []\n").unwrap();
    assert!(matches!(
        setup.reloader.reload(Trigger::Signal),
        ReloadOutcome::Unchanged
    ));
    assert_eq!(setup.reloader.current().version, before);
}

#[tokio::test]
async fn an_edited_file_is_reloaded_by_the_running_task() {
    let setup = setup("batch = 5\n");
    let mut following = setup.reloader.subscribe();
    following.mark_unchanged();
    let path = setup.path.clone();
    let reloader = setup.reloader.poll_every(Some(Duration::from_millis(20)));
    let shutdown = CancellationToken::new();
    let watching = reloader.run(shutdown.clone());
    let edit = async {
        std::fs::write(&path, "batch = 9\n").unwrap();
        following.changed().await.unwrap();
        assert_eq!(following.borrow().config.batch, 9);
        shutdown.cancel();
    };
    tokio::join!(watching, edit);
}

#[test]
fn secrets_are_redacted_in_the_document_and_the_diff() {
    let setup =
        setup("[kafka]\nproperties = { \"sasl.password\" = \"hunter2\", \"linger.ms\" = \"5\" }\n");
    let document = setup.reloader.document();
    assert_eq!(document.service, "toy");
    assert_eq!(document.file, Some(setup.path.display().to_string()));
    let properties = &document.config["kafka"]["properties"];
    assert_eq!(properties["sasl.password"], REDACTED);
    assert_eq!(properties["linger.ms"], "5");
    assert!(!document.config.to_string().contains("hunter2"));

    std::fs::write(
        &setup.path,
        "[kafka]\nproperties = { \"sasl.password\" = \"correct horse\", \"linger.ms\" = \"5\" }\n",
    )
    .unwrap();
    // A changed secret is a new version, and the diff says so without the values.
    let before = json!(setup.reloader.current().config);
    assert!(matches!(
        setup.reloader.reload(Trigger::Request),
        ReloadOutcome::Applied { .. }
    ));
    let after = json!(setup.reloader.current().config);
    let changes = diff(&before, &after);
    assert_eq!(
        changes,
        [Change {
            field: "kafka.properties.sasl.password".into(),
            from: REDACTED.into(),
            to: REDACTED.into(),
        }]
    );
}

#[test]
fn a_diff_names_added_removed_and_changed_leaves() {
    let before = json!({ "a": { "b": 1, "c": [1, 2] }, "gone": "x" });
    let after = json!({ "a": { "b": 2, "c": [1, 2] }, "new": { "d": true } });
    let fields: Vec<(String, String, String)> = diff(&before, &after)
        .into_iter()
        .map(|c| (c.field, c.from, c.to))
        .collect();
    assert_eq!(
        fields,
        [
            ("a.b".to_owned(), "1".to_owned(), "2".to_owned()),
            ("gone".to_owned(), "\"x\"".to_owned(), "null".to_owned()),
            ("new.d".to_owned(), "null".to_owned(), "true".to_owned()),
        ]
    );
}

#[test]
fn a_topic_set_hash_ignores_order_and_repetition() {
    let hash = topic_set_hash(["b", "a"]);
    assert_eq!(hash, topic_set_hash(["a", "b", "a"]));
    assert_ne!(hash, topic_set_hash(["a", "b", "c"]));
    assert_ne!(topic_set_hash(["ab"]), topic_set_hash(["a", "b"]));
}

#[test]
fn a_fixed_configuration_has_a_version_and_no_file() {
    let toy = Toy {
        batch: 1,
        topics: vec![],
        kafka: retrace_sdk::KafkaSettings::new("x:1"),
        tls: None,
    };
    let reloader = Reloader::fixed("toy", toy);
    assert_eq!(reloader.document().file, None);
    assert!(matches!(
        reloader.reload(Trigger::Signal),
        ReloadOutcome::Unchanged
    ));
}
