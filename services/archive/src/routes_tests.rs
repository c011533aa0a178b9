use super::*;

#[test]
fn times_are_rfc3339_or_a_duration_back_from_now() {
    assert_eq!(parse_time("2026-11-23T08:00:00Z"), Ok(1_795_420_800_000));
    let now = now_ms();
    for (text, back_ms) in [
        ("90s", 90_000),
        ("15m", 900_000),
        ("2h", 7_200_000),
        ("7d", 604_800_000),
    ] {
        let at = parse_time(text).unwrap();
        assert!(
            (now - back_ms - at).abs() < 60_000,
            "{text} is {back_ms} ms back from now"
        );
    }
    for bad in ["yesterday", "-2h", "2026-13-01T00:00:00Z", ""] {
        let error = parse_time(bad).unwrap_err();
        assert!(error.contains("RFC 3339"), "{bad:?}: {error}");
    }
}

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
fn a_request_body_error_names_the_field() {
    let missing: ApiError = json_body::<ReplayRequest>(b"{}").unwrap_err();
    assert_eq!(missing.body.field.as_deref(), Some("reason"));
    let unknown = json_body::<ReplayRequest>(br#"{"reason":"x","dryrun":true}"#).unwrap_err();
    assert_eq!(unknown.body.field.as_deref(), Some("dryrun"));
    let wrong_type = json_body::<ReplayRequest>(br#"{"reason":"x","dry_run":"yes"}"#).unwrap_err();
    assert_eq!(wrong_type.body.field.as_deref(), Some("body"));
    assert!(wrong_type.body.error.contains("invalid type"));
    assert_eq!(
        required_reason("  ").unwrap_err().body.field.as_deref(),
        Some("reason")
    );
}

#[test]
fn a_bad_target_topic_is_refused_by_field() {
    let error = check_target_topic("a b").unwrap_err();
    assert_eq!(error.body.field.as_deref(), Some("target_topic"));
    assert!(error.body.error.contains("' '"), "{}", error.body.error);
}

#[test]
fn a_replay_never_targets_retraces_own_topics() {
    for topic in [
        "retrace.audit",
        "retrace.tokens",
        "retrace.outcomes",
        "retrace.jobs.certificates",
        "retrace.anything",
    ] {
        let error = check_target_topic(topic).unwrap_err();
        assert_eq!(error.body.field.as_deref(), Some("target_topic"));
        assert!(
            error.body.error.contains("Retrace's own topic"),
            "{topic}: {}",
            error.body.error
        );
    }
    check_target_topic("registrations").unwrap();
}

#[test]
fn the_openapi_document_names_every_route_and_its_permission() {
    let document: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
    let expected = [
        ("/v1/transactions/{id}", "get", "trace:read"),
        ("/v1/transactions", "get", "trace:read"),
        ("/v1/subjects/{id}/transactions", "get", "trace:read"),
        ("/v1/events/{id}", "get", "trace:read"),
        ("/v1/messages", "get", "trace:read"),
        ("/v1/replays/{id}", "get", "trace:read"),
        ("/v1/positions", "get", "trace:read"),
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

#[test]
fn the_caller_says_who_replays_unless_authentication_is_off() {
    let caller = Caller {
        actor: "ana".into(),
        role: retrace_auth::Role::Support,
        extra: vec![],
        topics: None,
        origin: "127.0.0.1:1".into(),
        credential: retrace_auth::CredentialKind::ApiToken,
    };
    assert_eq!(requested_by(&caller, true, None).unwrap(), "ana");
    let refused = requested_by(&caller, true, Some("bob".into())).unwrap_err();
    assert_eq!(refused.body.field.as_deref(), Some("requested_by"));
    assert_eq!(
        requested_by(&caller, false, Some(" bob ".into())).unwrap(),
        "bob"
    );
    assert_eq!(
        requested_by(&caller, true, Some("  ".into())).unwrap(),
        "ana"
    );
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
