//! What a replay request must pass before anything is re-published: a reason, the caller as
//! the one who asked, a target that is not one of Retrace's own topics, nothing erased, a
//! bulk rate and size within bounds (above the threshold only with `replay:bulk`), and an
//! `Idempotency-Key` that is the caller's and meant this request; then the plan is shown (a
//! dry run) or the replay recorded and started.

use retrace_api::{
    BulkReplayRequest, ReplayPlan, ReplayRequest, ReplayResponse, ReplayView, TransactionStatus,
};
use retrace_auth::{Caller, Guard, Permission};
use retrace_http::ApiError;
use retrace_log_store::ReplayRecord;
use serde::Serialize;

use super::{Claim, ClaimError, Planned, Replayer, Selection, now_ms, plan};
use crate::audit::Audit;
use crate::holdings::Holdings;
use crate::reads::{Filter, parse_time, select_transactions, store_error};
use crate::shards::fanout::Fanout;
use crate::trace::{replay_view, rfc3339};

/// A bulk replay considers this many transactions at most.
const MAX_BULK_TRANSACTIONS: usize = 100_000;

/// What a replay request came to.
pub(crate) enum Replied {
    /// The plan only: a dry run, or the replay an `Idempotency-Key` already started.
    Shown(ReplayResponse),
    /// The replay, recorded and running in the background.
    Started(ReplayResponse),
}

/// Replay requests, checked and carried out on behalf of their callers.
pub(crate) struct Replays {
    pub replayer: Replayer,
    /// Says whether authentication is on, and records refusals.
    pub guard: Guard,
    /// A replay of more messages than this needs `replay:bulk`.
    pub bulk_admin_above: usize,
    /// The other shards, asked with the caller's credential; `None` unless a shard.
    pub fanout: Option<Fanout>,
}

impl Replays {
    /// A replay, by id.
    pub fn view(&self, id: &str) -> Result<ReplayView, ApiError> {
        let replay = self
            .replayer
            .store()
            .replay(id)
            .map_err(store_error)?
            .ok_or_else(|| ApiError::not_found(format!("no replay has id {id:?}")))?;
        Ok(replay_view(&replay))
    }

    /// `POST /v1/transactions/{id}/replay`: one transaction's messages, or those from an
    /// event on, or its failed ones. `audit` is completed as the request is understood.
    pub fn transaction(
        &self,
        caller: &Caller,
        transaction_id: String,
        request: ReplayRequest,
        request_key: Option<String>,
        audit: &mut Audit,
    ) -> Result<Replied, ApiError> {
        let request_key = request_key.map(|key| {
            IdempotencyKey::new(caller, key, &["transaction", &transaction_id], &request)
        });
        if request.dry_run {
            audit.action = "replay.plan";
        }
        audit.reason = request.reason.trim().to_owned();
        let reason = required_reason(&request.reason)?;
        let auth_enabled = self.guard.authenticator().enabled();
        let requested_by = requested_by(caller, auth_enabled, request.requested_by)?;
        if let Some(topic) = &request.target_topic {
            audit.target = format!("{transaction_id} to {topic}");
            check_target_topic(topic)?;
        }
        let holdings = self.holdings(caller, "/v1/transactions/{id}/replay")?;
        let records = holdings.transaction(&transaction_id)?;
        refuse_incomplete(&holdings)?;
        if records.is_empty() {
            return Err(ApiError::not_found(format!(
                "no archived message belongs to transaction {transaction_id:?}"
            )));
        }
        let selection = Selection {
            from_event_id: request.from_event_id.clone(),
            only_failed: request.only_failed,
            target_topic: request.target_topic.clone(),
            ..Selection::default()
        };
        let planned = plan(&records, &selection)
            .map_err(|e| ApiError::invalid("from_event_id", e.to_string()))?;
        refuse_erased(&planned)?;
        refuse_internal_sources(&planned)?;
        if planned.is_empty() {
            return Err(ApiError::conflict(format!(
                "nothing to replay: transaction {transaction_id} has no {}",
                if request.only_failed {
                    "failed event"
                } else {
                    "event"
                }
            )));
        }
        let describe = [
            request
                .from_event_id
                .as_ref()
                .map(|e| format!("from_event_id={e}")),
            request.only_failed.then(|| "only_failed".to_owned()),
        ];
        let selection_text = describe.into_iter().flatten().collect::<Vec<_>>();
        self.carry_out(ReplayOrder {
            planned,
            transactions: vec![transaction_id],
            selection: if selection_text.is_empty() {
                "whole transaction".to_owned()
            } else {
                selection_text.join(" ")
            },
            reason,
            requested_by,
            target_topic: request.target_topic,
            request_key,
            dry_run: request.dry_run,
            rate: None,
        })
    }

    /// `POST /v1/replays`: every transaction a query selects (failed ones by default), at a
    /// bounded rate. `audit` is completed as the request is understood.
    pub fn bulk(
        &self,
        caller: &Caller,
        request: BulkReplayRequest,
        request_key: Option<String>,
        audit: &mut Audit,
    ) -> Result<Replied, ApiError> {
        let request_key =
            request_key.map(|key| IdempotencyKey::new(caller, key, &["bulk"], &request));
        if request.dry_run {
            audit.action = "replay.plan";
        }
        audit.reason = request.reason.trim().to_owned();
        let reason = required_reason(&request.reason)?;
        let requested_by = requested_by(
            caller,
            self.guard.authenticator().enabled(),
            request.requested_by.clone(),
        )?;
        if let Some(topic) = &request.target_topic {
            audit.target = format!("query to {topic}");
            check_target_topic(topic)?;
        }
        if !(1..=100_000).contains(&request.rate) {
            return Err(ApiError::invalid(
                "rate",
                "rate must be 1 to 100000 messages a second",
            ));
        }
        let holdings = self.holdings(caller, "/v1/replays")?;
        let (chosen, described) = match &request.incident {
            Some(incident) => self.incident_selection(incident, &request)?,
            None => self.query_selection(&holdings, &request)?,
        };
        audit.target = match &request.target_topic {
            Some(topic) => format!("{described} to {topic}"),
            None => described.clone(),
        };
        let ids: Vec<String> = chosen.iter().map(|(id, _)| id.clone()).collect();
        let mut records = holdings.transactions(&ids)?;
        refuse_incomplete(&holdings)?;
        let mut planned = Vec::new();
        let mut transactions = Vec::new();
        for (transaction_id, selection) in chosen {
            let records = records.remove(&transaction_id).unwrap_or_default();
            let messages = plan(&records, &selection).unwrap_or_default();
            if !messages.is_empty() {
                transactions.push(transaction_id);
                planned.extend(messages);
            }
            if planned.len() > request.max {
                return Err(ApiError::invalid(
                    "max",
                    format!(
                        "the {described} selects more than {} messages to replay: narrow it \
                         or raise max",
                        request.max
                    ),
                ));
            }
        }
        if planned.is_empty() {
            return Err(ApiError::conflict(format!(
                "nothing to replay: no transaction of the {described} has a message to replay"
            )));
        }
        let bulk_admin_above = self.bulk_admin_above;
        if planned.len() > bulk_admin_above && !caller.can(Permission::BulkReplay) {
            let message = format!(
                "{} (role {}) may not replay {} messages at once: a bulk replay of more than \
                 {bulk_admin_above} needs the `{}` permission (an admin); narrow the query \
                 (since, until, topic, type) or ask an admin",
                caller.actor,
                caller.role,
                planned.len(),
                Permission::BulkReplay,
            );
            self.guard
                .forbid(caller, "POST", "/v1/replays", message.clone());
            return Err(ApiError::forbidden(message));
        }
        refuse_erased(&planned)?;
        refuse_internal_sources(&planned)?;
        self.carry_out(ReplayOrder {
            planned,
            transactions,
            selection: if request.only_failed && request.incident.is_none() {
                format!("{described} only_failed")
            } else {
                described
            },
            reason,
            requested_by,
            target_topic: request.target_topic,
            request_key,
            dry_run: request.dry_run,
            rate: Some(request.rate),
        })
    }

    /// The transactions a query selects (failed ones by default), each with the bulk
    /// replay's selection, and the query as the audit and the replay record describe it.
    fn query_selection(
        &self,
        holdings: &Holdings,
        request: &BulkReplayRequest,
    ) -> Result<(Vec<(String, Selection)>, String), ApiError> {
        let time = |field: &str, text: &Option<String>| {
            text.as_deref()
                .map(parse_time)
                .transpose()
                .map_err(|e| ApiError::invalid(field, e))
        };
        let filter = Filter {
            status: Some(request.status.unwrap_or(TransactionStatus::Failed)),
            window: (
                time("since", &request.since)?.unwrap_or(i64::MIN),
                time("until", &request.until)?.unwrap_or(i64::MAX),
            ),
            topic: request.topic.clone(),
            event_type: request.event_type.clone(),
            service: None,
        };
        let selected = select_transactions(
            holdings,
            &filter,
            MAX_BULK_TRANSACTIONS,
            MAX_BULK_TRANSACTIONS,
            None,
        )?;
        let selection = Selection {
            only_failed: request.only_failed,
            target_topic: request.target_topic.clone(),
            ..Selection::default()
        };
        let chosen = selected
            .items
            .into_iter()
            .map(|found| (found.transaction_id, selection.clone()))
            .collect();
        Ok((chosen, format!("query {}", filter.describe())))
    }

    /// The transactions of `incident` still failing with its cause, each with only the
    /// events whose step fails with it.
    fn incident_selection(
        &self,
        incident: &str,
        request: &BulkReplayRequest,
    ) -> Result<(Vec<(String, Selection)>, String), ApiError> {
        let query = [
            ("status", request.status.is_some()),
            ("since", request.since.is_some()),
            ("until", request.until.is_some()),
            ("topic", request.topic.is_some()),
            ("type", request.event_type.is_some()),
        ];
        if let Some((field, _)) = query.iter().find(|(_, given)| *given) {
            return Err(ApiError::invalid(
                field,
                format!(
                    "{field} selects transactions by a query, and incident by an incident: \
                     give one or the other"
                ),
            ));
        }
        let store = self.replayer.store();
        if store.incident(incident).map_err(store_error)?.is_none() {
            return Err(ApiError::not_found(format!(
                "no incident has the id {incident:?}: list them with `retrace incidents`"
            )));
        }
        let mut chosen = Vec::new();
        let mut cursor = None;
        'pages: loop {
            let page = store
                .incident_members(incident, 1000, cursor.as_deref())
                .map_err(store_error)?;
            for member in page.items {
                // Failing members come first: the first that recovered ends the selection.
                if !member.is_failing() || chosen.len() == MAX_BULK_TRANSACTIONS {
                    break 'pages;
                }
                let selection = Selection {
                    events: Some(member.failing_event_ids.into_iter().collect()),
                    target_topic: request.target_topic.clone(),
                    ..Selection::default()
                };
                chosen.push((member.transaction_id, selection));
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok((chosen, format!("incident {incident}")))
    }

    /// What a replay reads: this store and, for a shard, the other shards, whose records
    /// come masked to a caller without `payload:read`: a replay of masked payloads would
    /// publish "***" in place of the data, so such a caller may not replay across shards.
    fn holdings(&self, caller: &Caller, path: &str) -> Result<Holdings, ApiError> {
        if self.fanout.is_some() && !caller.can(Permission::PayloadRead) {
            let message = format!(
                "{} (role {}) may not replay in a sharded archive: a replay carries the \
                 payloads the other shards hold, which only a caller with `{}` may fetch; \
                 ask someone with support or admin",
                caller.actor,
                caller.role,
                Permission::PayloadRead,
            );
            self.guard.forbid(caller, "POST", path, message.clone());
            return Err(ApiError::forbidden(message));
        }
        Ok(Holdings::new(
            self.replayer.store().clone(),
            self.fanout.clone(),
        ))
    }

    /// Shows `order` (a dry run, or a repeat of an `Idempotency-Key`), or records and starts
    /// it.
    fn carry_out(&self, order: ReplayOrder) -> Result<Replied, ApiError> {
        let replayer = &self.replayer;
        let plan_view = ReplayPlan {
            transactions: order.transactions.len(),
            messages: order.planned.iter().map(Planned::view).collect(),
        };
        if order.dry_run {
            return Ok(Replied::Shown(ReplayResponse {
                dry_run: true,
                plan: plan_view,
                replay: None,
            }));
        }
        if let Some(key) = &order.request_key
            && let Some(earlier) = replayer
                .store()
                .replay_for_request(&key.scoped)
                .map_err(store_error)?
        {
            return earlier_replay(key, &earlier, plan_view);
        }
        let replay = ReplayRecord {
            replay_id: uuid::Uuid::now_v7().to_string(),
            requested_by: order.requested_by,
            reason: order.reason,
            requested_at_ms: now_ms(),
            transaction_ids: order.transactions,
            selection: order.selection,
            target_topic: order.target_topic.unwrap_or_default(),
            request_fingerprint: order
                .request_key
                .as_ref()
                .map(|key| key.fingerprint.clone())
                .unwrap_or_default(),
            request_key: order
                .request_key
                .as_ref()
                .map(|key| key.scoped.clone())
                .unwrap_or_default(),
            ..ReplayRecord::default()
        };
        let claimed = replayer
            .claim(replay, order.planned.len())
            .map_err(|error| match error {
                ClaimError::Store(error) => store_error(error),
                ClaimError::Change(error) => ApiError::unavailable(error.to_string()),
                not_kept @ ClaimError::NotKept(_) => ApiError::internal(not_kept.to_string()),
            })?;
        match claimed {
            Claim::Won(replay) => {
                let view = replay_view(&replay);
                replayer.start(replay, order.planned, order.rate);
                Ok(Replied::Started(ReplayResponse {
                    dry_run: false,
                    plan: plan_view,
                    replay: Some(view),
                }))
            }
            // Another replica took the key a moment before: its replay is the answer.
            Claim::Lost(earlier) => match &order.request_key {
                Some(key) => earlier_replay(key, &earlier, plan_view),
                None => Err(ApiError::internal(format!(
                    "replay {} holds no idempotency key, yet took this one's place",
                    earlier.replay_id
                ))),
            },
        }
    }
}

/// The answer to a request whose `Idempotency-Key` an earlier replay holds: that replay, or
/// a refusal when the key came with another request.
fn earlier_replay(
    key: &IdempotencyKey,
    earlier: &ReplayRecord,
    plan: ReplayPlan,
) -> Result<Replied, ApiError> {
    if earlier.request_fingerprint != key.fingerprint {
        return Err(ApiError::conflict(format!(
            "Idempotency-Key {:?} was already used for replay {} with another request \
             (transaction, target topic or selection); send a new key for a new request",
            key.given, earlier.replay_id
        )));
    }
    Ok(Replied::Shown(ReplayResponse {
        dry_run: false,
        plan,
        replay: Some(replay_view(earlier)),
    }))
}

/// A replay ready to be shown (dry run) or started.
struct ReplayOrder {
    planned: Vec<Planned>,
    transactions: Vec<String>,
    selection: String,
    reason: String,
    requested_by: String,
    target_topic: Option<String>,
    request_key: Option<IdempotencyKey>,
    dry_run: bool,
    rate: Option<u32>,
}

/// An `Idempotency-Key` as the store keeps it: scoped to the caller who sent it, with the
/// fingerprint of the request it came with. The same caller sending the same key with the
/// same request gets the first replay back; another caller's key never meets it; the same
/// key with another request (transaction, target, selection) is refused.
struct IdempotencyKey {
    /// What the caller sent.
    given: String,
    /// The caller's credential kind and name, then the key.
    scoped: String,
    fingerprint: String,
}

impl IdempotencyKey {
    fn new(caller: &Caller, given: String, route: &[&str], request: &impl Serialize) -> Self {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        for part in route {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(serde_json::to_vec(request).expect("requests serialise to JSON"));
        IdempotencyKey {
            scoped: format!(
                "{}\u{1f}{}\u{1f}{given}",
                caller.credential.as_str(),
                caller.actor
            ),
            given,
            fingerprint: format!("{:x}", hash.finalize()),
        }
    }
}

/// Who a replay is recorded under: the authenticated caller. A `requested_by` in the body is
/// refused, unless authentication is disabled (development), where it is all there is.
fn requested_by(
    caller: &Caller,
    auth_enabled: bool,
    given: Option<String>,
) -> Result<String, ApiError> {
    match given.filter(|g| !g.trim().is_empty()) {
        Some(_) if auth_enabled => Err(ApiError::invalid(
            "requested_by",
            format!(
                "requested_by is not accepted: the replay is recorded under the authenticated \
                 caller ({}); remove the field",
                caller.actor
            ),
        )),
        Some(given) => Ok(given.trim().to_owned()),
        None => Ok(caller.actor.clone()),
    }
}

/// A replay must not bring back what a subject had erased.
fn refuse_erased(planned: &[Planned]) -> Result<(), ApiError> {
    let Some((record, at)) = planned
        .iter()
        .find_map(|p| Some((&p.original, p.original.erased_at_ms?)))
    else {
        return Ok(());
    };
    let event = record
        .ids
        .as_ref()
        .map(|ids| ids.event_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| record.key.to_string());
    Err(ApiError::conflict(format!(
        "event {event} was erased on {} at the subject's request; it cannot be replayed",
        rfc3339(at)
    )))
}

fn required_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "reason is required: say why these messages are replayed, for the audit trail",
        ));
    }
    Ok(reason.to_owned())
}

/// A replay's `target_topic`: a valid name, and never one of Retrace's own topics, which
/// hold what Retrace's services alone write (audit events, token records, outcomes, jobs).
fn check_target_topic(topic: &str) -> Result<(), ApiError> {
    retrace_sdk::check_topic_name(topic).map_err(|problem| {
        ApiError::invalid("target_topic", format!("topic {topic:?} {problem}"))
    })?;
    match retrace_sdk::internal_topic(topic) {
        Some(kind) => Err(ApiError::invalid(
            "target_topic",
            format!(
                "target_topic {topic:?} is Retrace's own topic of {}: a replay never writes \
                 Retrace's internal topics; replay to the topic the events came from, or to \
                 an application topic",
                kind.carries()
            ),
        )),
        None => Ok(()),
    }
}

/// A replay re-publishes to the topics its messages came from: never to the topics of
/// Retrace's security records (tokens, audit) or outcomes, whatever records got there. Jobs
/// go back to their queue.
fn refuse_internal_sources(planned: &[Planned]) -> Result<(), ApiError> {
    let Some((topic, kind)) = planned.iter().find_map(|p| {
        let kind = retrace_sdk::internal_topic(&p.target_topic)?;
        (kind != retrace_sdk::InternalTopic::Jobs).then_some((&p.target_topic, kind))
    }) else {
        return Ok(());
    };
    Err(ApiError::invalid(
        "target_topic",
        format!(
            "the replay would publish to {topic}, Retrace's own topic of {}, which a replay \
             never writes; replay the transaction's application events only",
            kind.carries()
        ),
    ))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

/// A replay planned without a shard's records would publish part of a transaction.
fn refuse_incomplete(holdings: &Holdings) -> Result<(), ApiError> {
    match holdings.incomplete().as_slice() {
        [] => Ok(()),
        missing => Err(ApiError::unavailable(format!(
            "shard {} did not answer, so the replay would miss what it holds: ask again, with \
             the same Idempotency-Key, once it is back",
            missing.join(", ")
        ))),
    }
}
