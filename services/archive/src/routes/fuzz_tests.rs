//! Fuzzing of the API's query parameters, path ids and paging cursors, through the router
//! (`tower::ServiceExt::oneshot`, no socket) over a store with records in it: every request is
//! answered 200, 400 naming its parameter, or 404, never a 500 or a panic; and following
//! `next_cursor` lists every record exactly once. `PROPTEST_CASES` sets how many cases (256
//! by default; docs/reliability.md has the long run).

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use prost::Message as _;
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use retrace_proto::Envelope;
use tower::ServiceExt as _;

use super::digests::DIGEST_PARAMETERS;
use super::events::MESSAGES_PARAMETERS;
use super::*;
use crate::classify::{classify, prepare};
use crate::{Archive, ArchiveConfig};

const TOPIC: &str = "registrations";
const RECORDS: i64 = 40;

/// An archive over a temporary directory, with [`RECORDS`] envelopes of [`TOPIC`] on two
/// partitions, a few per subject and transaction, and some garbage. Its Kafka clients point
/// at a closed port: the API does not need Kafka.
async fn archive() -> (Archive, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ArchiveConfig::new(
        format!("127.0.0.1:{}", retrace_tests::free_port()),
        dir.path(),
    );
    config.auth.enabled = false;
    let archive = Archive::open(&config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let mut root = Envelope::root("registration", "registration.submitted.v1");
    let records: Vec<_> = (0..RECORDS)
        .map(|n| {
            let envelope = if n % 4 == 0 {
                root = Envelope::root("registration", "registration.submitted.v1")
                    .with_subject(format!("beneficiary:{}", n % 3));
                root.clone()
            } else {
                Envelope::caused_by(&root, "validation", "registration.validated.v1")
            };
            let value = if n % 7 == 6 {
                vec![0xff; 5]
            } else {
                envelope.encode_to_vec()
            };
            let message = OwnedMessage::new(
                Some(value),
                None,
                TOPIC.to_owned(),
                Timestamp::CreateTime(1_700_000_000_000 + n),
                (n % 2) as i32,
                n / 2,
                None,
            );
            let record = classify(
                &message,
                1_700_000_000_000 + n,
                &retrace_auth::SigningKeys::default(),
                None,
            );
            prepare(record, "")
        })
        .collect();
    archive.api.store().append(&records).unwrap();
    (archive, dir)
}

/// A runtime, and the router of an [`archive`] (kept alive by the last item).
fn served() -> (
    tokio::runtime::Runtime,
    Router,
    (Archive, tempfile::TempDir),
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let archive = runtime.block_on(archive());
    let router = archive.0.router();
    (runtime, router, archive)
}

/// (path, the parameters it takes): every listing and lookup of the read API.
const ENDPOINTS: &[(&str, &[&str])] = &[
    (
        "/v1/transactions",
        &[
            "status", "since", "until", "topic", "type", "service", "limit", "cursor",
        ],
    ),
    ("/v1/transactions/{id}", &["payload"]),
    (
        "/v1/subjects/{id}/transactions",
        &["since", "until", "limit", "cursor"],
    ),
    ("/v1/events/{id}", &["payload"]),
    ("/v1/messages", MESSAGES_PARAMETERS),
    (
        "/v1/audit",
        &["since", "actor", "target", "limit", "cursor"],
    ),
    ("/v1/audit/verify", &[]),
    ("/v1/positions", &[]),
    ("/v1/digests", &[]),
    ("/v1/digests/{id}/0", DIGEST_PARAMETERS),
    ("/v1/digests/registrations/{id}", DIGEST_PARAMETERS),
];

/// Parameter values: text, numbers of every size, times and durations (some huge), hex
/// cursors, flags.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "-?[0-9]{1,25}",
        "[0-9]{1,20}(s|m|h|d|ms|y)",
        "-?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?",
        "[0-9a-fA-F+-]{0,90}",
        "(true|false|1|0|yes)",
        Just(TOPIC.to_owned()),
        "[a-z-]{1,12}:[ -~]{0,8}",
    ]
}

/// A request: one endpoint, an id for its path, and parameters it knows (mostly) or not.
fn request() -> impl Strategy<Value = String> {
    let params = |known: &'static [&'static str]| {
        let name = if known.is_empty() {
            "[a-z_]{1,8}".boxed()
        } else {
            prop_oneof![4 => prop::sample::select(known).prop_map(str::to_owned), 1 => "[a-z_]{1,8}"]
                .boxed()
        };
        prop::collection::vec((name, value()), 0..5)
    };
    (prop::sample::select(ENDPOINTS), ".{0,40}")
        .prop_flat_map(move |((path, known), id)| (Just(path), Just(id), params(known)))
        .prop_map(|(path, id, params)| {
            let mut url = reqwest::Url::parse("http://archive/").unwrap();
            url.path_segments_mut()
                .unwrap()
                .pop_if_empty()
                .extend(path.split('/').skip(1).map(|segment| {
                    if segment == "{id}" {
                        id.as_str()
                    } else {
                        segment
                    }
                }));
            url.query_pairs_mut().extend_pairs(&params);
            path_and_query(&url)
        })
}

fn path_and_query(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn get(router: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[test]
fn any_request_is_answered_or_refused_by_parameter() {
    let (runtime, router, _archive) = served();
    TestRunner::default()
        .run(&request(), |uri| {
            let (status, body) = runtime.block_on(get(&router, &uri));
            match status.as_u16() {
                200 | 404 => {}
                400 => {
                    let field = body["field"].as_str().unwrap_or_default();
                    prop_assert!(!field.is_empty(), "{uri}: 400 without a field: {body}");
                    prop_assert_eq!(body["code"].as_str(), Some("invalid"), "{}: {}", uri, body);
                    prop_assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
                }
                _ => prop_assert!(false, "{uri}: {status} {body}"),
            }
            Ok(())
        })
        .unwrap();
}

/// A cursor is only good for the listing that issued it: any other string, including a real
/// cursor damaged, is refused as `cursor` or resumes somewhere in the same listing.
#[test]
fn damaged_cursors_are_refused_by_name() {
    let (runtime, router, _archive) = served();
    let listings = [
        format!("/v1/messages?topic={TOPIC}&limit=3"),
        format!("/v1/messages?topic={TOPIC}&partition=1&limit=3"),
        "/v1/transactions?limit=3".to_owned(),
        "/v1/subjects/beneficiary:1/transactions?limit=2".to_owned(),
    ];
    let cursors: Vec<(String, String)> = runtime.block_on(async {
        let mut cursors = Vec::new();
        for listing in &listings {
            let (status, body) = get(&router, listing).await;
            assert_eq!(status, StatusCode::OK, "{listing}: {body}");
            let cursor = body["next_cursor"].as_str();
            let cursor =
                cursor.unwrap_or_else(|| panic!("{listing}: no cursor on the first page: {body}"));
            cursors.push((listing.clone(), cursor.to_owned()));
        }
        cursors
    });
    let damaged = (
        prop::sample::select(cursors),
        prop::collection::vec(retrace_proto::arbitrary::mutation(), 1..4),
    )
        .prop_map(|((listing, cursor), mutations)| {
            let mut bytes = cursor.into_bytes();
            for mutation in &mutations {
                mutation.apply(&mut bytes);
            }
            (listing, String::from_utf8_lossy(&bytes).into_owned())
        });
    TestRunner::default()
        .run(&damaged, |(listing, cursor)| {
            let mut url = reqwest::Url::parse(&format!("http://archive{listing}")).unwrap();
            url.query_pairs_mut().append_pair("cursor", &cursor);
            let uri = &path_and_query(&url);
            let (status, body) = runtime.block_on(get(&router, uri));
            match status.as_u16() {
                200 => {}
                400 => prop_assert_eq!(body["field"].as_str(), Some("cursor"), "{}: {}", uri, body),
                _ => prop_assert!(false, "{uri}: {status} {body}"),
            }
            Ok(())
        })
        .unwrap();
}

/// Following `next_cursor` from the first page lists every record once, whatever the page
/// size.
#[test]
fn pages_list_every_record_once() {
    let (runtime, router, _archive) = served();
    let listing = (1usize..=12, prop::option::of(0..2i32));
    TestRunner::default()
        .run(&listing, |(limit, partition)| {
            let seen = runtime.block_on(async {
                let mut seen = Vec::new();
                let mut cursor: Option<String> = None;
                loop {
                    let mut url = reqwest::Url::parse("http://archive/v1/messages").unwrap();
                    url.query_pairs_mut()
                        .append_pair("topic", TOPIC)
                        .append_pair("limit", &limit.to_string());
                    if let Some(partition) = partition {
                        url.query_pairs_mut()
                            .append_pair("partition", &partition.to_string());
                    }
                    if let Some(cursor) = &cursor {
                        url.query_pairs_mut().append_pair("cursor", cursor);
                    }
                    let (status, body) = get(&router, &path_and_query(&url)).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    for item in body["items"].as_array().unwrap() {
                        seen.push((
                            item["partition"].as_i64().unwrap(),
                            item["offset"].as_i64().unwrap(),
                        ));
                    }
                    match body["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_owned()),
                        None => break seen,
                    }
                }
            });
            let expected: BTreeSet<(i64, i64)> = (0..RECORDS)
                .map(|n| (n % 2, n / 2))
                .filter(|(p, _)| partition.is_none_or(|only| i64::from(only) == *p))
                .collect();
            // In time order (or offset order), each once.
            prop_assert_eq!(seen.len(), expected.len(), "{:?}", seen);
            prop_assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
            Ok(())
        })
        .unwrap();
}

proptest! {
    #[test]
    fn any_time_parameter_is_a_time_or_a_clear_refusal(text in prop_oneof![
        ".{0,30}",
        "-?[0-9]{1,25}(s|m|h|d|ms|w|y)?",
        "-?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ]) {
        if let Err(error) = parse_time(&text) {
            prop_assert!(error.contains("RFC 3339"), "{text:?}: {error}");
        }
    }
}
