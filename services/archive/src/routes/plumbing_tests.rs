use axum::http::StatusCode;

use super::*;

#[test]
fn unknown_parameters_are_refused_by_name() {
    let raw = HashMap::from([("stauts".to_owned(), "failed".to_owned())]);
    let error = Params::new(raw, &["status"]).err().unwrap();
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert_eq!(error.body.field.as_deref(), Some("stauts"));
}

#[test]
fn limits_flags_and_windows_are_checked() {
    let params = |pairs: &[(&str, &str)]| {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            &["limit", "payload", "since", "until"],
        )
        .unwrap()
    };
    assert_eq!(params(&[]).limit().unwrap(), DEFAULT_LIMIT);
    assert_eq!(params(&[("limit", "7")]).limit().unwrap(), 7);
    for bad in ["0", "501", "ten"] {
        let error = params(&[("limit", bad)]).limit().unwrap_err();
        assert_eq!(error.body.field.as_deref(), Some("limit"), "{bad}");
    }
    assert!(params(&[("payload", "true")]).flag("payload").unwrap());
    assert!(params(&[("payload", "yes")]).flag("payload").is_err());
    let reversed = params(&[
        ("since", "2026-11-23T08:00:00Z"),
        ("until", "2026-11-22T08:00:00Z"),
    ]);
    let error = reversed.window("since", "until").unwrap_err();
    assert_eq!(error.body.field.as_deref(), Some("until"));
}

#[test]
fn audit_targets_name_the_query_in_a_stable_order() {
    let raw = HashMap::from([
        ("status".to_owned(), "failed".to_owned()),
        ("since".to_owned(), "1h".to_owned()),
    ]);
    assert_eq!(describe_query(&raw), "since=1h status=failed");
    assert_eq!(describe_query(&HashMap::new()), "(everything)");
}
