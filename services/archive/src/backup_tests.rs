use retrace_log_store::StoreOptions;

use super::*;

fn store_with_a_record(path: &Path) -> LogStore {
    let store = LogStore::open(path, &StoreOptions::default()).unwrap();
    store
        .append_audit(retrace_log_store::AuditEntry {
            actor: "ops".into(),
            action: "test".into(),
            ..Default::default()
        })
        .unwrap();
    store
}

#[test]
fn a_backup_restores_with_the_manifest_it_was_written_with() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_record(&dir.path().join("live"));
    let written = backup(&store, &dir.path().join("backup")).unwrap();
    assert_eq!(written.format_version, FORMAT_VERSION);
    let restored = restore(
        &dir.path().join("backup"),
        &dir.path().join("restored"),
        false,
    )
    .unwrap();
    assert_eq!(restored, written);
    let store = LogStore::open(dir.path().join("restored"), &StoreOptions::default()).unwrap();
    assert_eq!(store.verify_audit().unwrap().records, 1);
}

#[test]
fn a_restore_refuses_what_is_not_a_backup_and_a_newer_format() {
    let dir = tempfile::tempdir().unwrap();
    let error = restore(dir.path(), &dir.path().join("restored"), false)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("is not a Retrace backup") && error.contains("manifest.json"),
        "{error}"
    );

    let store = store_with_a_record(&dir.path().join("live"));
    let written = backup(&store, &dir.path().join("backup")).unwrap();
    let newer = BackupManifest {
        format_version: FORMAT_VERSION + 1,
        ..written
    };
    std::fs::write(
        dir.path().join("backup").join(MANIFEST),
        serde_json::to_vec(&newer).unwrap(),
    )
    .unwrap();
    let error = restore(
        &dir.path().join("backup"),
        &dir.path().join("restored"),
        false,
    )
    .expect_err("refused")
    .to_string();
    assert!(
        error.contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{error}"
    );
    assert!(!dir.path().join("restored").exists());
}
