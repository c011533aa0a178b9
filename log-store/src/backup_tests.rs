use super::*;
use crate::test_records::{archived, prepared};

fn open(path: &Path) -> LogStore {
    LogStore::open(path, &StoreOptions::default()).unwrap()
}

#[test]
fn a_backup_taken_mid_stream_restores_to_where_it_was_and_resumes_without_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let live = open(&dir.path().join("live"));
    live.append(&prepared(0..50)).unwrap();
    let summary = live.backup(&dir.path().join("backup")).unwrap();
    live.append(&prepared(50..80)).unwrap();
    assert_eq!(summary.records, 50);
    assert_eq!(summary.format_version, FORMAT_VERSION);
    assert_eq!(summary.positions.len(), 1);
    assert_eq!(summary.positions[0].next_offset, 50);

    let restored_dir = dir.path().join("restored");
    let restored = restore(&dir.path().join("backup"), &restored_dir, false).unwrap();
    assert_eq!(restored.records, 50);
    assert_eq!(restored.positions, summary.positions);
    let store = open(&restored_dir);
    // Resuming re-reads from the stored position: what was already there is skipped.
    let resumed = store.append(&prepared(0..80)).unwrap();
    assert_eq!((resumed.appended, resumed.already_archived), (30, 50));
    assert_eq!(store.record_count(), live.record_count());
    for offset in 0..80 {
        assert_eq!(
            store.get(&archived(offset).key).unwrap(),
            live.get(&archived(offset).key).unwrap()
        );
    }
    assert!(store.check_consistency().unwrap().problems.is_empty());
}

#[test]
fn a_backup_refuses_a_directory_that_holds_files() {
    let dir = tempfile::tempdir().unwrap();
    let live = open(&dir.path().join("live"));
    std::fs::write(dir.path().join("note"), b"x").unwrap();
    let error = live.backup(dir.path()).expect_err("refused").to_string();
    assert!(error.contains("is not empty"), "{error}");
}

#[test]
fn a_restore_refuses_a_running_archive_and_replaces_a_stopped_one_only_when_forced() {
    let dir = tempfile::tempdir().unwrap();
    let live = open(&dir.path().join("live"));
    live.append(&prepared(0..5)).unwrap();
    live.backup(&dir.path().join("backup")).unwrap();
    let target = dir.path().join("target");
    let running = open(&target);
    running.append(&prepared(0..2)).unwrap();
    let error = restore(&dir.path().join("backup"), &target, true)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("running archive"), "{error}");
    drop(running);
    let error = restore(&dir.path().join("backup"), &target, false)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("--force"), "{error}");
    assert_eq!(
        restore(&dir.path().join("backup"), &target, true)
            .unwrap()
            .records,
        5
    );
    assert_eq!(open(&target).record_count(), 5);
    assert_eq!(open(&sibling(&target, "replaced")).record_count(), 2);
}
