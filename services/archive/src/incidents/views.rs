//! The incidents as a caller reads them: the listing, one incident with a page of its
//! transactions, and the subjects it touched. Causes and error texts are a consumer's words
//! and are masked like error texts in traces for a caller who may not read payloads.

use std::cmp::Reverse;

use retrace_api::{
    CauseKind, IncidentDetail, IncidentStatus, IncidentSubject, IncidentTransaction, IncidentView,
    MinuteCount, Page,
};
use retrace_http::ApiError;
use retrace_log_store::{Incident, IncidentMember, MINUTE_MS, minute_of};

use crate::masking::MASK;
use crate::reads::{Reader, store_error};
use crate::trace::rfc3339;

/// The listing's sparkline: the hour up to an incident's last failure.
const RECENT_MINUTES: i64 = 60;
/// The detail's chart: at most the week up to its last failure.
const CHART_MINUTES: i64 = 7 * 24 * 60;

/// What `/v1/incidents` selects.
pub(crate) struct IncidentFilter {
    pub status: Option<IncidentStatus>,
    /// Incidents with a failure in `from <= time < until`.
    pub window: (i64, i64),
}

impl Reader {
    /// Incidents newest last failure first, resuming after `cursor`. Reads one index entry
    /// per incident, whatever their failures.
    pub fn incidents(
        &self,
        filter: &IncidentFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<IncidentView>, ApiError> {
        let after = cursor.map(parse_cursor).transpose()?;
        let (from, until) = filter.window;
        let mut incidents: Vec<Incident> = self
            .store
            .incidents()
            .map_err(store_error)?
            .into_iter()
            .filter(|i| i.last_seen_ms >= from && i.first_seen_ms < until)
            .filter(|i| filter.status.is_none_or(|s| s == status(i)))
            .filter(|i| after.as_ref().is_none_or(|after| sort_key(i) > *after))
            .collect();
        incidents.sort_by_key(sort_key);
        let next_cursor = (incidents.len() > limit).then(|| {
            let last = &incidents[limit - 1];
            format!("{}.{}", last.last_seen_ms, last.id())
        });
        let items = incidents
            .iter()
            .take(limit)
            .map(|incident| self.incident_view(incident))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next_cursor,
            behind: self.lag.behind(None),
            incomplete: self.other_shards(),
        })
    }

    /// One incident, its failures per minute, and a page of its transactions.
    pub fn incident(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<IncidentDetail, ApiError> {
        let incident = self.known_incident(id)?;
        let last_minute = minute_of(incident.last_seen_ms);
        let minutes = self
            .store
            .incident_minutes(
                id,
                last_minute - (CHART_MINUTES - 1) * MINUTE_MS,
                last_minute + MINUTE_MS,
            )
            .map_err(store_error)?
            .into_iter()
            .map(|(minute, failures)| MinuteCount {
                minute: rfc3339(minute),
                failures,
            })
            .collect();
        let page = self
            .store
            .incident_members(id, limit, cursor)
            .map_err(store_error)?;
        Ok(IncidentDetail {
            incident: self.incident_view(&incident)?,
            minutes,
            transactions: page.items.into_iter().map(member_view).collect(),
            next_cursor: page.next_cursor,
            subjects: self.store.incident_subject_count(id).map_err(store_error)?,
            incomplete: self.other_shards(),
        })
    }

    /// A page of the subjects incident `id` touched, in subject order.
    pub fn incident_subjects(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<IncidentSubject>, ApiError> {
        self.known_incident(id)?;
        let page = self
            .store
            .incident_subjects(id, limit, cursor)
            .map_err(store_error)?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|subject| IncidentSubject {
                    failing: subject.transactions.iter().any(|(_, failing)| *failing),
                    transaction_ids: subject.transactions.into_iter().map(|(t, _)| t).collect(),
                    subject_id: subject.subject_id,
                })
                .collect(),
            next_cursor: page.next_cursor,
            behind: Vec::new(),
            incomplete: self.other_shards(),
        })
    }

    fn known_incident(&self, id: &str) -> Result<Incident, ApiError> {
        self.store
            .incident(id)
            .map_err(store_error)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no incident has the id {id:?}: list them with `retrace incidents` or \
                     GET /v1/incidents"
                ))
            })
    }

    fn incident_view(&self, incident: &Incident) -> Result<IncidentView, ApiError> {
        let cause = incident.cause.clone().unwrap_or_default();
        let last_minute = minute_of(incident.last_seen_ms);
        let first_minute = last_minute - (RECENT_MINUTES - 1) * MINUTE_MS;
        let counted = self
            .store
            .incident_minutes(&cause.id, first_minute, last_minute + MINUTE_MS)
            .map_err(store_error)?;
        let recent = (0..RECENT_MINUTES)
            .map(|i| {
                let minute = first_minute + i * MINUTE_MS;
                MinuteCount {
                    minute: rfc3339(minute),
                    failures: counted
                        .iter()
                        .find(|(m, _)| *m == minute)
                        .map_or(0, |(_, n)| *n),
                }
            })
            .collect();
        let masked = |text: String| match self.masking {
            Some(_) if !text.is_empty() => MASK.to_owned(),
            _ => text,
        };
        Ok(IncidentView {
            incident_id: cause.id,
            status: status(incident),
            topic: cause.topic,
            event_type: cause.event_type,
            consumer: cause.consumer,
            cause_kind: if cause.is_code {
                CauseKind::Code
            } else {
                CauseKind::Text
            },
            // A code is the consumer's chosen word for the cause, never a person's data.
            cause: if cause.is_code {
                cause.cause
            } else {
                masked(cause.cause)
            },
            example_error: masked(incident.example_error.clone()),
            first_seen: rfc3339(incident.first_seen_ms),
            last_seen: rfc3339(incident.last_seen_ms),
            opened_at: rfc3339(incident.opened_at_ms),
            resolved_at: incident.resolved_at_ms.map(rfc3339),
            reopened: incident.reopened,
            transactions: incident.transactions,
            failing: incident.failing,
            failures: incident.failures,
            recent,
        })
    }
}

fn member_view(member: IncidentMember) -> IncidentTransaction {
    IncidentTransaction {
        failing: member.is_failing(),
        first_failed_at: member
            .failure_times_ms
            .first()
            .copied()
            .map(rfc3339)
            .unwrap_or_default(),
        last_failed_at: member
            .failure_times_ms
            .last()
            .copied()
            .map(rfc3339)
            .unwrap_or_default(),
        failures: member.failure_times_ms.len() as u64,
        recovered_at: member.recovered_at_ms.map(rfc3339),
        transaction_id: member.transaction_id,
        failing_event_ids: member.failing_event_ids,
        subject_ids: member.subject_ids,
    }
}

fn status(incident: &Incident) -> IncidentStatus {
    if incident.is_open() {
        IncidentStatus::Open
    } else {
        IncidentStatus::Resolved
    }
}

/// Newest last failure first, then by id.
fn sort_key(incident: &Incident) -> (Reverse<i64>, String) {
    (Reverse(incident.last_seen_ms), incident.id().to_owned())
}

/// `last_seen.id` of the last incident of the previous page.
fn parse_cursor(cursor: &str) -> Result<(Reverse<i64>, String), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(last_seen, id)| Some((Reverse(last_seen.parse::<i64>().ok()?), id.to_owned())))
        .ok_or_else(|| {
            ApiError::invalid(
                "cursor",
                format!("{cursor:?} is not a cursor this listing gave: start again without it"),
            )
        })
}
