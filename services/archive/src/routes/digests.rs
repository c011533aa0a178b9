//! `/v1/digests`: the partitions the archive holds, and a digest of one partition's records
//! below an offset, by which two archive replicas prove they hold the same records
//! (`retrace archive compare`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use retrace_api::{DigestPartition, ErrorBody, PartitionDigestView};
use retrace_http::ApiError;
use retrace_log_store::{DIGEST_ALGORITHM, LogStore, PartitionDigest};

use super::Api;
use super::plumbing::{Params, ReadRequest, answer};
use super::responses::InvalidParameter;
use crate::audit::Audit;
use crate::reads::store_error;

/// What a digest takes.
pub(super) const DIGEST_PARAMETERS: &[&str] = &["until"];

/// The parameter of a digest (read by [`Params`], declared here for the document).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Until {
    /// Cover the records with an offset below this (default: the partition's
    /// `next_offset`, everything archived so far).
    #[param(required = false, minimum = 0)]
    until: i64,
}

/// Not audited, like `/v1/positions`: it reads where each partition stands, no record.
#[utoipa::path(
    get,
    path = "/v1/digests",
    operation_id = "list_digest_partitions",
    tag = "digests",
    summary = "Every partition the archive holds records of, with its next offset: what a digest can cover",
    responses(
        (status = 200, description = "The partitions, by topic and partition", body = Vec<DigestPartition>, links(
            ("first_digest" = (
                operation_id = "get_partition_digest",
                parameters(
                    ("topic" = "$response.body#/0/topic"),
                    ("partition" = "$response.body#/0/partition"),
                ),
                description = "The first partition's digest",
            )),
        )),
        InvalidParameter,
    ),
)]
pub(super) async fn partitions(
    State(api): State<Api>,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let store = api.store().clone();
    answer("digests", move || {
        Params::new(raw, &[])?;
        let mut partitions: Vec<DigestPartition> = store
            .positions()
            .map_err(store_error)?
            .into_iter()
            .map(|p| DigestPartition {
                topic: p.topic,
                partition: p.partition,
                epoch: p.epoch,
                next_offset: p.next_offset,
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok((StatusCode::OK, partitions))
    })
    .await
}

/// Audited as a read: the digest of a single record confirms or refutes a guess of its
/// contents.
#[utoipa::path(
    get,
    path = "/v1/digests/{topic}/{partition}",
    operation_id = "get_partition_digest",
    tag = "digests",
    summary = "A digest of a partition's archived records below an offset",
    description = "Two archives that consumed the same log answer the same `digest` for the same `until`, whenever and in whatever batches each archived it. `retrace archive compare` asks two replicas for it up to the smaller of their next offsets, and narrows `until` down to the first offset where they differ.",
    params(
        ("topic" = String, Path, description = "The topic"),
        ("partition" = i32, Path, description = "The partition", minimum = 0),
        Until,
    ),
    responses(
        (status = 200, description = "The digest", body = PartitionDigestView),
        InvalidParameter,
        (status = 404, description = "The archive holds no record of this partition", body = ErrorBody),
    ),
)]
pub(super) async fn digest(
    request: ReadRequest,
    Path((topic, partition)): Path<(String, String)>,
) -> Response {
    let target = format!("{topic}/{partition} {}", request.query());
    let audit = Audit::new(&request.caller, "digest.read", target);
    request
        .answer("digest", audit, DIGEST_PARAMETERS, move |reader, params| {
            let partition = partition
                .parse::<i32>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "partition",
                        format!("partition {partition:?} is not a partition number (0 or more)"),
                    )
                })?;
            let until = match params.number::<i64>("until")? {
                Some(until) if until < 0 => {
                    return Err(ApiError::invalid(
                        "until",
                        format!("until {until} is below 0: give an offset, 0 or more"),
                    ));
                }
                until => until,
            };
            partition_digest(&reader.store, &topic, partition, until)
        })
        .await
}

/// The digest of `topic`/`partition` below `until` (default: all it holds).
fn partition_digest(
    store: &LogStore,
    topic: &str,
    partition: i32,
    until: Option<i64>,
) -> Result<PartitionDigestView, ApiError> {
    let position = store.position(topic, partition).ok_or_else(|| {
        ApiError::not_found(format!(
            "the archive holds no record of {topic}/{partition}: `GET /v1/digests` lists \
             the partitions it holds"
        ))
    })?;
    let until = until.unwrap_or(position.next_offset);
    let PartitionDigest {
        topic,
        partition,
        epoch,
        until_offset,
        records,
        digest,
        first_offset,
        last_offset,
    } = store
        .partition_digest(topic, partition, until)
        .map_err(store_error)?;
    Ok(PartitionDigestView {
        topic,
        partition,
        epoch,
        until: until_offset,
        next_offset: position.next_offset,
        records,
        algorithm: DIGEST_ALGORITHM.to_owned(),
        digest,
        first_offset,
        last_offset,
    })
}
