//! Erasing a subject's payloads from the records that name it, and the free text of its
//! transactions' outcomes, where the incident index keeps it too.

use std::collections::HashSet;

use fjall::PersistMode;

use super::{LogStore, check_id, dangling};
use crate::{ArchivedRecord, ErasureSummary, RecordKind, StoreError, codec, keys};

impl LogStore {
    /// Removes the payload of every record that names `subject_id` among its subjects: its
    /// value, and every header but Retrace's own ids. Ids, kind, times and outcomes stay, so
    /// traces still make sense. The outcomes of the subject's transactions pass through
    /// `redact_outcome`, which returns the value to keep instead (the outcome without its
    /// free text, where a consumer may have named the person) or `None` to keep it as it is:
    /// the store does not read outcomes. The old bytes remain on disk until the archive is
    /// compacted ([`crate::compact()`]).
    pub fn erase_subject(
        &self,
        subject_id: &str,
        erased_at_ms: i64,
        redact_outcome: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<ErasureSummary, StoreError> {
        check_id("subject_id", subject_id)?;
        let inner = &*self.inner;
        let mut summary = ErasureSummary::default();
        let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
        let mut transactions = HashSet::new();
        for guard in inner.by_subject.prefix(keys::id_prefix(subject_id)) {
            let key = guard
                .key()
                .map_err(self.error("list a subject's transactions"))?;
            let transaction = keys::after_id(&key)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .ok_or_else(|| dangling("by_subject", &key))?;
            summary.transactions += 1;
            for record in self.transaction(&transaction)? {
                if record.kind == RecordKind::Outcome {
                    if let Some(redacted) = record.value.as_deref().and_then(&redact_outcome) {
                        let primary = keys::record(&record.key);
                        let redacted = ArchivedRecord {
                            value: Some(redacted),
                            ..record
                        };
                        batch.insert(&inner.records, primary, codec::encode(redacted));
                        summary.outcomes += 1;
                    }
                    continue;
                }
                let touches = record
                    .ids
                    .as_ref()
                    .is_some_and(|ids| ids.subject_ids.iter().any(|s| s == subject_id));
                if !touches {
                    continue;
                }
                if record.erased_at_ms.is_some() {
                    summary.already_erased += 1;
                    continue;
                }
                let primary = keys::record(&record.key);
                let erased = ArchivedRecord {
                    value: None,
                    headers: record
                        .headers
                        .into_iter()
                        .filter(|h| h.name.starts_with("retrace-") || h.name == "traceparent")
                        .collect(),
                    erased_at_ms: Some(erased_at_ms),
                    ..record
                };
                batch.insert(&inner.records, primary, codec::encode(erased));
                summary.records += 1;
            }
            transactions.insert(transaction);
        }
        inner.forget_examples(&transactions, &mut batch)?;
        batch
            .commit()
            .map_err(self.error("erase a subject's payloads"))?;
        Ok(summary)
    }
}
