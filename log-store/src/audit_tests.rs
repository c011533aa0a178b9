use super::*;
use crate::StoreOptions;

fn open(dir: &tempfile::TempDir) -> LogStore {
    LogStore::open(dir.path(), &StoreOptions::default()).unwrap()
}

fn entry(n: i64, actor: &str, target: &str) -> AuditEntry {
    AuditEntry {
        at_ms: n,
        actor: actor.into(),
        actor_id: String::new(),
        role: "support".into(),
        origin: "10.0.0.7".into(),
        action: "transaction.read".into(),
        target: target.into(),
        reason: String::new(),
        result: "ok".into(),
    }
}

fn filled(dir: &tempfile::TempDir) -> LogStore {
    let store = open(dir);
    for n in 1..=5 {
        store
            .append_audit(entry(n, if n % 2 == 0 { "ana" } else { "ben" }, "t1"))
            .unwrap();
    }
    store
}

fn raw(store: &LogStore, seq: u64) -> AuditRecord {
    let bytes = store.inner().audit.get(seq.to_be_bytes()).unwrap().unwrap();
    AuditRecord::decode(&*bytes).unwrap()
}

fn put(store: &LogStore, key: u64, record: &AuditRecord) {
    store
        .inner()
        .audit
        .insert(key.to_be_bytes(), record.encode_to_vec())
        .unwrap();
}

#[test]
fn records_are_numbered_chained_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    drop(store);
    let store = open(&dir);
    let sixth = store.append_audit(entry(6, "ana", "t2")).unwrap();
    assert_eq!(sixth.seq, 6);
    assert_eq!(sixth.prev_hash, raw(&store, 5).hash);
    assert_eq!(
        store.verify_audit().unwrap(),
        AuditVerification {
            records: 6,
            problems: vec![],
        }
    );
}

#[test]
fn audit_records_are_listed_by_time_actor_and_target_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    let anas = AuditFilter {
        actor: Some("ana".into()),
        ..AuditFilter::default()
    };
    let page = store.audit(&anas, 1, None).unwrap();
    assert_eq!(page.items[0].seq, 2);
    let next = store.audit(&anas, 1, page.next_cursor.as_deref()).unwrap();
    assert_eq!(next.items[0].seq, 4);
    assert_eq!(next.next_cursor, None);
    let recent = AuditFilter {
        since_ms: Some(4),
        ..AuditFilter::default()
    };
    let seqs: Vec<u64> = store
        .audit(&recent, 10, None)
        .unwrap()
        .items
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [4, 5]);
    assert!(matches!(
        store.audit(&AuditFilter::default(), 10, Some("zz")),
        Err(StoreError::BadCursor(_))
    ));
}

#[test]
fn an_altered_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    let mut third = raw(&store, 3);
    third.actor = "mallory".into();
    put(&store, 3, &third);
    let problems = store.verify_audit().unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("#3") && problems[0].contains("altered"));
}

#[test]
fn an_altered_record_with_a_recomputed_hash_breaks_the_chain_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    let mut third = raw(&store, 3);
    third.result = "ok".into();
    third.target = "t9".into();
    third.hash = third.content_hash();
    put(&store, 3, &third);
    let problems = store.verify_audit().unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("#4 does not follow #3"),
        "{problems:?}"
    );
}

#[test]
fn a_removed_record_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    store.inner().audit.remove(2_u64.to_be_bytes()).unwrap();
    let report = store.verify_audit().unwrap();
    assert_eq!(report.records, 4);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("#2 to #2 are missing"));
}

#[test]
fn reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(&dir);
    let (second, third) = (raw(&store, 2), raw(&store, 3));
    put(&store, 2, &third);
    put(&store, 3, &second);
    let problems = store.verify_audit().unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("stored as #2 says it is #3")),
        "{problems:?}"
    );
    assert!(!problems.is_empty());
}

#[test]
fn audit_events_archived_with_records_are_chained_once_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append_audit(entry(1, "ana", "t1")).unwrap();
    let archived = |offset: i64| crate::ArchivedRecord {
        key: crate::RecordKey {
            topic: "retrace.audit".into(),
            partition: 0,
            epoch: 0,
            offset,
        },
        message_key: None,
        value: Some(b"audit event".to_vec()),
        headers: Vec::new(),
        kafka_timestamp_ms: Some(2),
        time_ms: 2,
        kind: crate::RecordKind::Untraceable,
        problem: None,
        ids: None,
        outcome: None,
        archived_at_ms: 2,
        erased_at_ms: None,
        audit: Some(AuditEntry {
            action: "denied".into(),
            ..entry(2, "gateway-caller", "registrations")
        }),
    };
    let prepared = || vec![crate::PreparedRecord::new(archived(0)).unwrap()];
    store.append(&prepared()).unwrap();
    store.append(&prepared()).unwrap();
    store.append_audit(entry(3, "ben", "t1")).unwrap();
    let all = store
        .audit(&AuditFilter::default(), 10, None)
        .unwrap()
        .items;
    let actions: Vec<(u64, &str)> = all.iter().map(|r| (r.seq, r.action.as_str())).collect();
    assert_eq!(
        actions,
        [
            (1, "transaction.read"),
            (2, "denied"),
            (3, "transaction.read")
        ],
        "the redelivered record is not chained again"
    );
    assert!(store.verify_audit().unwrap().problems.is_empty());
}

/// The audit record as it was before `actor_id` (tags 1 to 11), to prove the trail written
/// then still verifies.
#[derive(Clone, PartialEq, prost::Message)]
struct RecordBeforeActorId {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int64, tag = "2")]
    at_ms: i64,
    #[prost(string, tag = "3")]
    actor: String,
    #[prost(string, tag = "4")]
    role: String,
    #[prost(string, tag = "5")]
    origin: String,
    #[prost(string, tag = "6")]
    action: String,
    #[prost(string, tag = "7")]
    target: String,
    #[prost(string, tag = "8")]
    reason: String,
    #[prost(string, tag = "9")]
    result: String,
    #[prost(bytes = "vec", tag = "10")]
    prev_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "11")]
    hash: Vec<u8>,
}

#[test]
fn records_without_a_credential_id_hash_as_before_it_existed_and_one_with_it_is_chained() {
    let entry = entry(7, "ana", "t1");
    let record = AuditRecord::after(&None, entry.clone());
    let before = RecordBeforeActorId {
        seq: 1,
        at_ms: entry.at_ms,
        actor: entry.actor.clone(),
        role: entry.role.clone(),
        origin: entry.origin.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        reason: entry.reason.clone(),
        result: entry.result.clone(),
        prev_hash: ZERO_HASH.to_vec(),
        hash: Vec::new(),
    };
    assert_eq!(
        record.hash,
        Sha256::digest(before.encode_to_vec()).to_vec(),
        "a record without actor_id hashes exactly as records written before the field"
    );
    let with_id = AuditRecord::after(
        &None,
        AuditEntry {
            actor_id: "3f9a2c".into(),
            ..entry
        },
    );
    assert_ne!(
        with_id.hash, record.hash,
        "the credential id is covered by the chain"
    );
}
