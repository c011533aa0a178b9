//! Erasing a subject's payloads from the records that name it, and the free text of its
//! transactions' outcomes, where the incident index keeps it too.

use std::collections::HashSet;

use fjall::PersistMode;

use super::{LogStore, check_id, dangling};
use crate::{ArchivedRecord, Erasure, ErasureSummary, RecordKind, StoreError, codec, keys};

impl LogStore {
    /// Whether an archived record names `subject_id` among its subjects.
    pub fn knows_subject(&self, subject_id: &str) -> Result<bool, StoreError> {
        check_id("subject_id", subject_id)?;
        match self
            .inner
            .by_subject
            .prefix(keys::id_prefix(subject_id))
            .next()
        {
            Some(guard) => guard
                .key()
                .map(|_| true)
                .map_err(self.error("look up a subject")),
            None => Ok(false),
        }
    }

    /// Applies `erasure` to the records archived below its bound: every record that names
    /// the subject among its subjects loses its payload (its value, and every header but
    /// Retrace's own ids); ids, kind, times and outcomes stay, so traces still make sense.
    /// The outcomes of the subject's transactions pass through `redact_outcome`, which
    /// returns the value to keep instead (the outcome without its free text, where a
    /// consumer may have named the person) or `None` to keep it as it is: the store does not
    /// read outcomes. A transaction counts only when a record naming the subject is within
    /// the bound, so replicas ahead of the bound erase what the first one did. The erasure
    /// is marked applied in the same write. The old bytes remain on disk until the archive
    /// is compacted ([`crate::compact()`]).
    pub fn apply_erasure(
        &self,
        erasure: &Erasure,
        redact_outcome: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<ErasureSummary, StoreError> {
        let subject_id = erasure.subject_id.as_str();
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
            let records: Vec<ArchivedRecord> = self
                .transaction(&transaction)?
                .into_iter()
                .filter(|record| erasure.covers(&record.key))
                .collect();
            let names_subject = |record: &ArchivedRecord| {
                record
                    .ids
                    .as_ref()
                    .is_some_and(|ids| ids.subject_ids.iter().any(|s| s == subject_id))
            };
            if !records.iter().any(names_subject) {
                continue;
            }
            summary.transactions += 1;
            for record in records {
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
                if !names_subject(&record) {
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
                    erased_at_ms: Some(erasure.erased_at_ms),
                    ..record
                };
                batch.insert(&inner.records, primary, codec::encode(erased));
                summary.records += 1;
            }
            transactions.insert(transaction);
        }
        inner.forget_examples(&transactions, &mut batch)?;
        self.erasure_applied(erasure, &summary, &mut batch);
        batch
            .commit()
            .map_err(self.error("erase a subject's payloads"))?;
        Ok(summary)
    }
}
