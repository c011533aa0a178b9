//! Payload masking: what a caller without `payload:read` sees of a message.
//!
//! Configured JSON paths (`[masking] json_paths`) are shown as `"***"`; payloads that are not
//! JSON (text, base64) and header values other than Retrace's own (`retrace-*`,
//! `traceparent`) are hidden whole, since no path can say which part of them is personal.
//! So is the error text of an outcome: a consumer writes what it likes there ("mother_id
//! NID-99887766 for child Amina").
//!
//! A shard hands the records it holds to another that builds the answer
//! ([`Masking::record`]): they are masked before they leave, the same way, so a caller
//! asking a shard directly sees no more than its traces show.

use prost::Message as _;
use retrace_api::{MessageView, OutcomeView, Payload, Trace, TransactionSummary};
use retrace_log_store::{ArchivedRecord, RecordKind};
use retrace_proto::{Envelope, Outcome};
use serde_json::Value;

use crate::admin::ERASED_ERROR;

/// What a masked value reads as.
pub const MASK: &str = "***";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskingError {
    #[error(
        "masking path {0:?} has an empty segment: write dotted keys such as \
         `child.given_name`, with `*` for any key at one level"
    )]
    EmptySegment(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Key(String),
}

impl Segment {
    fn matches(&self, key: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Key(name) => name == key,
        }
    }
}

/// The configured paths, parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masking {
    paths: Vec<Vec<Segment>>,
}

impl Masking {
    pub fn new(paths: &[String]) -> Result<Masking, MaskingError> {
        let paths = paths
            .iter()
            .map(|path| {
                path.split('.')
                    .map(|segment| match segment.trim() {
                        "" => Err(MaskingError::EmptySegment(path.clone())),
                        "*" => Ok(Segment::Any),
                        key => Ok(Segment::Key(key.to_owned())),
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        Ok(Masking { paths })
    }

    /// Masks a message's payload, if it carries one.
    /// A trace: its messages, and the error text of its outcomes and failure.
    pub fn trace(&self, trace: &mut Trace) {
        for event in &mut trace.events {
            self.message(&mut event.message);
            for record in &mut event.records {
                self.outcomes(&mut record.outcomes);
            }
        }
        if let Some(failure) = &mut trace.failure {
            error_text(&mut failure.error);
        }
    }

    /// A line of a listing: the error text of its failure.
    pub fn summary(&self, summary: &mut TransactionSummary) {
        if let Some(failure) = &mut summary.failure {
            error_text(&mut failure.error);
        }
    }

    pub fn outcomes(&self, outcomes: &mut [OutcomeView]) {
        for outcome in outcomes {
            error_text(&mut outcome.error);
        }
    }

    pub fn message(&self, view: &mut MessageView) {
        if let Some(payload) = view.payload.as_mut() {
            self.payload(payload);
        }
    }

    /// Masks the configured JSON paths, and hides text, binary and non-Retrace header values.
    pub fn payload(&self, payload: &mut Payload) {
        if let Some(json) = payload.json.as_mut() {
            for path in &self.paths {
                mask_at(json, path);
            }
        }
        for hidden in [&mut payload.text, &mut payload.base64] {
            if hidden.is_some() {
                *hidden = Some(MASK.to_owned());
            }
        }
        for (name, value) in &mut payload.headers {
            if value.is_some() && !is_retrace_header(name) {
                *value = Some(MASK.to_owned());
            }
        }
    }
}

impl Masking {
    /// Masks a record as [`Masking::trace`] masks what is traced from it: an envelope's
    /// payload (and its attributes, which no trace shows), an outcome's error text, any
    /// other value, and header values other than Retrace's own.
    pub fn record(&self, record: &mut ArchivedRecord) {
        for header in &mut record.headers {
            if header.value.is_some() && !is_retrace_header(&header.name) {
                header.value = Some(MASK.as_bytes().to_vec());
            }
        }
        let Some(value) = record.value.as_mut() else {
            return;
        };
        match record.kind {
            RecordKind::Envelope => match Envelope::decode(value.as_slice()) {
                Ok(mut envelope) => {
                    self.bytes(&mut envelope.payload);
                    envelope
                        .attributes
                        .values_mut()
                        .for_each(|value| *value = MASK.to_owned());
                    *value = envelope.encode_to_vec();
                }
                Err(_) => self.bytes(value),
            },
            RecordKind::Outcome => match Outcome::decode(value.as_slice()) {
                Ok(mut outcome) => {
                    error_text(&mut outcome.error);
                    *value = outcome.encode_to_vec();
                }
                Err(_) => self.bytes(value),
            },
            _ => self.bytes(value),
        }
    }

    /// JSON with the configured paths masked; anything else hidden whole.
    fn bytes(&self, bytes: &mut Vec<u8>) {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(mut json) => {
                for path in &self.paths {
                    mask_at(&mut json, path);
                }
                *bytes = serde_json::to_vec(&json).expect("a JSON value serializes");
            }
            Err(_) if !bytes.is_empty() => *bytes = MASK.as_bytes().to_vec(),
            Err(_) => {}
        }
    }
}

/// Free text hidden whole; what an erasure left of it says so and stays.
fn error_text(error: &mut String) {
    if !error.is_empty() && error != ERASED_ERROR {
        *error = MASK.to_owned();
    }
}

/// Retrace's own headers: ids, never personal data, kept even by an erasure.
pub fn is_retrace_header(name: &str) -> bool {
    name.starts_with("retrace-") || name == "traceparent"
}

fn mask_at(value: &mut Value, path: &[Segment]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match value {
        // A path applies to every element of an array it meets.
        Value::Array(items) => items.iter_mut().for_each(|item| mask_at(item, path)),
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if !first.matches(key) {
                    continue;
                }
                if rest.is_empty() {
                    *child = Value::String(MASK.to_owned());
                } else {
                    mask_at(child, rest);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn masking(paths: &[&str]) -> Masking {
        Masking::new(&paths.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn json_payload(json: Value) -> Payload {
        Payload {
            content_type: "application/json".into(),
            json: Some(json),
            text: None,
            base64: None,
            headers: vec![],
        }
    }

    #[test]
    fn configured_paths_are_masked_and_the_rest_kept() {
        let mut payload = json_payload(json!({
            "child": {"given_name": "Amina", "sex": "F"},
            "mother_id": "NIN-123",
            "mother": {"phone": "+254700", "town": "Kisumu"},
            "father": {"phone": "+254711"},
            "phone": "+1",
        }));
        masking(&["child.given_name", "mother_id", "*.phone"]).payload(&mut payload);
        assert_eq!(
            payload.json.unwrap(),
            json!({
                "child": {"given_name": "***", "sex": "F"},
                "mother_id": "***",
                "mother": {"phone": "***", "town": "Kisumu"},
                "father": {"phone": "***"},
                "phone": "+1",
            })
        );
    }

    #[test]
    fn a_path_applies_to_every_element_of_an_array() {
        let mut payload = json_payload(json!([
            {"children": [{"name": "A", "age": 1}, {"name": "B", "age": 2}]},
            {"children": []},
            {"children": {"name": "C"}},
        ]));
        masking(&["children.name"]).payload(&mut payload);
        assert_eq!(
            payload.json.unwrap(),
            json!([
                {"children": [{"name": "***", "age": 1}, {"name": "***", "age": 2}]},
                {"children": []},
                {"children": {"name": "***"}},
            ])
        );
        let mut whole = json_payload(json!({"ids": ["a", "b"], "n": {"x": 1}}));
        masking(&["ids", "n"]).payload(&mut whole);
        assert_eq!(whole.json.unwrap(), json!({"ids": "***", "n": "***"}));
    }

    #[test]
    fn paths_that_lead_nowhere_change_nothing() {
        let original = json!({"child": "Amina", "n": 3, "list": [1, 2]});
        let mut payload = json_payload(original.clone());
        masking(&["child.given_name", "n.x", "list.x", "missing"]).payload(&mut payload);
        assert_eq!(payload.json.unwrap(), original);
    }

    #[test]
    fn text_binary_and_foreign_headers_are_hidden_whole() {
        let mut payload = Payload {
            content_type: String::new(),
            json: None,
            text: Some("SMS to +254700".into()),
            base64: None,
            headers: vec![
                ("retrace-event-id".into(), Some("e-1".into())),
                ("traceparent".into(), Some("00-ab-cd-01".into())),
                ("x-national-id".into(), Some("NIN-123".into())),
                ("empty".into(), None),
            ],
        };
        Masking::default().payload(&mut payload);
        assert_eq!(payload.text.as_deref(), Some(MASK));
        assert_eq!(
            payload.headers,
            vec![
                ("retrace-event-id".into(), Some("e-1".into())),
                ("traceparent".into(), Some("00-ab-cd-01".into())),
                ("x-national-id".into(), Some(MASK.into())),
                ("empty".into(), None),
            ]
        );
        let mut binary = Payload {
            base64: Some("AAEC".into()),
            text: None,
            ..payload
        };
        Masking::default().payload(&mut binary);
        assert_eq!(binary.base64.as_deref(), Some(MASK));
    }

    #[test]
    fn an_empty_segment_is_refused_by_path() {
        for bad in ["child..name", ".x", "x.", ""] {
            let error = Masking::new(&[bad.to_owned()]).unwrap_err().to_string();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
