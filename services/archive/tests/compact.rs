//! `retrace-archive compact --data-dir DIR`: the operator's offline compaction.

use std::process::Command;

use retrace_log_store::{AuditEntry, LogStore, StoreOptions};

#[test]
fn compact_rewrites_a_stopped_archive_and_prints_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("archive");
    {
        let store = LogStore::open(&data, &StoreOptions::default()).unwrap();
        store
            .append_audit(AuditEntry {
                actor: "ops".into(),
                action: "test".into(),
                ..AuditEntry::default()
            })
            .unwrap();
    }
    let run = Command::new(env!("CARGO_BIN_EXE_retrace-archive"))
        .args(["compact", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("entries") && stdout.contains("bytes after"),
        "{stdout}"
    );
    let store = LogStore::open(&data, &StoreOptions::default()).unwrap();
    assert_eq!(store.verify_audit().unwrap().records, 1);

    let missing = Command::new(env!("CARGO_BIN_EXE_retrace-archive"))
        .args(["compact", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not an archive directory"));
}
