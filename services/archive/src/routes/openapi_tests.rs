use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::openapi;
use crate::routes::{audit, digests, events, transactions};

fn document() -> Value {
    serde_json::to_value(openapi()).unwrap()
}

/// The checked-in copy the SDKs generate from.
fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/openapi.json")
}

/// `services/api/openapi.json` is the generated document, pretty-printed;
/// `RETRACE_WRITE_OPENAPI=1 cargo test -p retrace-archive openapi` writes it again.
#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    let expected = format!("{}\n", openapi().to_pretty_json().unwrap());
    let path = checked_in();
    if std::env::var_os("RETRACE_WRITE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    if found != expected {
        let line = found
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| found.lines().count().min(expected.lines().count()));
        panic!(
            "{} differs from the OpenAPI document the routes and retrace-api's types generate \
             (first at line {}): a route, its annotations or a wire type changed, or the file \
             was edited. If the change is intended, regenerate it with \
             `RETRACE_WRITE_OPENAPI=1 cargo test -p retrace-archive openapi` and commit it \
             (the SDKs generate from it).\n  file: {:?}\n  code: {:?}",
            path.display(),
            line + 1,
            found.lines().nth(line).unwrap_or("<end of file>"),
            expected.lines().nth(line).unwrap_or("<end of output>"),
        );
    }
}

#[test]
fn the_openapi_document_names_every_route_and_its_permission() {
    let document = document();
    let expected = [
        ("/v1/transactions/{id}", "get", "trace:read"),
        ("/v1/transactions", "get", "trace:read"),
        ("/v1/subjects/{id}/transactions", "get", "trace:read"),
        ("/v1/events/{id}", "get", "trace:read"),
        ("/v1/messages", "get", "trace:read"),
        ("/v1/replays/{id}", "get", "trace:read"),
        ("/v1/positions", "get", "trace:read"),
        ("/v1/digests", "get", "audit:read"),
        ("/v1/digests/{topic}/{partition}", "get", "audit:read"),
        ("/v1/transactions/{id}/replay", "post", "replay"),
        ("/v1/replays", "post", "replay"),
        ("/v1/subjects/{id}/erase", "post", "erase"),
        ("/v1/audit", "get", "audit:read"),
        ("/v1/audit/verify", "get", "audit:read"),
        ("/v1/tokens", "get", "token:admin"),
        ("/v1/tokens", "post", "token:admin"),
        ("/v1/tokens/{id}/revoke", "post", "token:admin"),
        ("/v1/whoami", "get", "any authenticated caller"),
        ("/v1/config", "get", "config:read"),
    ];
    for (path, method, permission) in expected {
        let operation = &document["paths"][path][method];
        let documented = operation["x-permission"].as_str().unwrap_or_default();
        assert!(
            documented.starts_with(permission),
            "{method} {path}: {documented:?}"
        );
        assert!(operation["responses"].get("401").is_some(), "{path}");
    }
    assert_eq!(
        document["paths"]["/v1/openapi.json"]["get"]["security"],
        serde_json::json!([])
    );
}

/// Every operation has a unique id, a summary, a 2xx answer, and (behind a permission) the
/// guard's 401, 403 and 503; every `$ref` resolves.
#[test]
fn every_operation_is_described_and_every_reference_resolves() {
    let document = document();
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: id {id:?} again"
            );
            assert!(operation["summary"].is_string(), "{method} {path}: summary");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path}: no success documented"
            );
            let permission = operation["x-permission"].as_str();
            if permission.is_some_and(|p| p != "any authenticated caller") {
                for status in ["401", "403", "503"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
        }
    }
    let text = document.to_string();
    for (at, _) in text.match_indices("\"$ref\":\"#/") {
        let target = &text[at + "\"$ref\":\"#/".len()..];
        let target = &target[..target.find('"').unwrap()];
        let found = target
            .split('/')
            .try_fold(&document, |node, key| node.get(key));
        assert!(found.is_some(), "#/{target} does not resolve");
    }
}

/// The query parameters each operation documents are exactly those its handler accepts
/// (any other is refused, 400).
#[test]
fn documented_query_parameters_are_the_accepted_ones() {
    let document = document();
    let accepted: &[(&str, &[&str])] = &[
        ("/v1/transactions", transactions::LISTING_PARAMETERS),
        ("/v1/exports/transactions", transactions::LISTING_PARAMETERS),
        ("/v1/transactions/{id}", events::PAYLOAD_PARAMETERS),
        (
            "/v1/subjects/{id}/transactions",
            transactions::SUBJECT_PARAMETERS,
        ),
        (
            "/v1/exports/subjects/{id}/transactions",
            transactions::SUBJECT_PARAMETERS,
        ),
        ("/v1/events/{id}", events::PAYLOAD_PARAMETERS),
        ("/v1/messages", events::MESSAGES_PARAMETERS),
        ("/v1/audit", audit::TRAIL_PARAMETERS),
        (
            "/v1/digests/{topic}/{partition}",
            digests::DIGEST_PARAMETERS,
        ),
    ];
    for (path, names) in accepted {
        let documented: BTreeSet<&str> = document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            documented,
            names.iter().copied().collect::<BTreeSet<_>>(),
            "{path}"
        );
        assert!(
            document["paths"][path]["get"]["responses"]
                .get("400")
                .is_some(),
            "{path}: an unknown parameter is refused with a 400"
        );
    }
}

/// Every kind of record the store keeps is one the document says a message may be: a
/// client validating answers (schemathesis did) would refuse the others.
#[test]
fn the_document_names_every_kind_of_record() {
    let kinds =
        document()["components"]["schemas"]["Message"]["properties"]["kind"]["enum"].clone();
    let kinds: BTreeSet<String> = serde_json::from_value(kinds).unwrap();
    let stored: BTreeSet<String> = retrace_log_store::RecordKind::ALL
        .iter()
        .map(|kind| kind.as_str().to_owned())
        .collect();
    assert_eq!(kinds, stored);
}
