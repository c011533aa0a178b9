use super::*;
use crate::test_records::{archived, change_record, erasure_here, prepared};
use crate::{Change, ReplayState};

fn open(dir: &tempfile::TempDir) -> LogStore {
    LogStore::open(dir.path(), &crate::StoreOptions::default()).unwrap()
}

fn replay(id: &str, key: &str) -> ReplayRecord {
    ReplayRecord {
        replay_id: id.into(),
        requested_by: "support:ana".into(),
        reason: "validation fixed".into(),
        requested_at_ms: 5,
        transaction_ids: vec!["tx-1".into(), "tx-2".into()],
        planned: 4,
        state: ReplayState::Running as i32,
        request_key: key.into(),
        ..ReplayRecord::default()
    }
}

#[test]
fn a_replay_is_found_by_id_transaction_and_key_and_its_progress_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut kept = replay("r1", "ticket-7");
    store
        .append(&[change_record(0, Change::Replay(kept.clone()))])
        .unwrap();
    kept.published = 4;
    kept.state = ReplayState::Done as i32;
    store
        .append(&[change_record(1, Change::Replay(kept.clone()))])
        .unwrap();
    assert_eq!(store.replay("r1").unwrap(), Some(kept.clone()));
    assert_eq!(
        store.replay_for_request("ticket-7").unwrap(),
        Some(kept.clone())
    );
    assert_eq!(store.transaction_replays("tx-2").unwrap(), [kept]);
    assert_eq!(store.transaction_replays("tx-3").unwrap(), []);
}

#[test]
fn the_first_claim_of_an_idempotency_key_wins_in_one_batch_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append(&[
            change_record(0, Change::Replay(replay("first", "ticket-7"))),
            change_record(1, Change::Replay(replay("second", "ticket-7"))),
        ])
        .unwrap();
    store
        .append(&[change_record(
            2,
            Change::Replay(replay("third", "ticket-7")),
        )])
        .unwrap();
    let winner = store.replay_for_request("ticket-7").unwrap().unwrap();
    assert_eq!(winner.replay_id, "first");
    assert_eq!(
        store.replay("second").unwrap(),
        None,
        "a lost claim is not kept"
    );
    assert_eq!(store.replay("third").unwrap(), None);
    assert_eq!(store.transaction_replays("tx-1").unwrap().len(), 1);
    // Replays without a key never meet.
    store
        .append(&[
            change_record(3, Change::Replay(replay("a", ""))),
            change_record(4, Change::Replay(replay("b", ""))),
        ])
        .unwrap();
    assert!(store.replay("a").unwrap().is_some() && store.replay("b").unwrap().is_some());
}

/// Two replicas: `asked` archived offsets 0..30 when the erasure was asked; `behind` had 0..10
/// and archives the rest after it read the erasure; `ahead` had 0..40. Offsets 0..40 all
/// name beneficiary:7 (four transactions of ten records).
#[test]
fn an_erasure_erases_the_same_records_on_replicas_behind_and_ahead_of_its_bound() {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let [asked, behind, ahead] = [0, 1, 2].map(|i| open(&dirs[i]));
    asked.append(&prepared(0..30)).unwrap();
    behind.append(&prepared(0..10)).unwrap();
    ahead.append(&prepared(0..40)).unwrap();
    let erasure = erasure_here(&asked, "beneficiary:7", 99);
    let change = |store: &LogStore| {
        store
            .append(&[change_record(0, Change::Erasure(erasure.clone()))])
            .unwrap();
    };
    change(&asked);
    change(&behind);
    change(&ahead);

    assert_eq!(
        behind.due_erasures(|_, _| true).unwrap(),
        [],
        "not archived up to its bound yet"
    );
    assert_eq!(behind.erasure_summary(&erasure.erasure_id).unwrap(), None);
    behind.append(&prepared(10..30)).unwrap();
    for store in [&asked, &behind, &ahead] {
        assert_eq!(
            store.due_erasures(|_, _| true).unwrap(),
            std::slice::from_ref(&erasure)
        );
        let summary = store.apply_erasure(&erasure, |_| None).unwrap();
        assert_eq!((summary.transactions, summary.records), (3, 30));
        assert_eq!(store.due_erasures(|_, _| true).unwrap(), []);
        assert_eq!(
            store.erasure_summary(&erasure.erasure_id).unwrap(),
            Some(summary)
        );
    }
    let digest = |store: &LogStore| store.partition_digest("registrations", 0, 30).unwrap();
    assert_eq!(digest(&asked), digest(&behind));
    assert_eq!(digest(&asked), digest(&ahead));
    let after_bound = ahead.transaction("tx-3").unwrap();
    assert!(
        after_bound.iter().all(|r| r.erased_at_ms.is_none()),
        "archived after the bound: kept, as on the replica that was asked"
    );
    assert_eq!(after_bound[0].value, archived(30).value);
}
