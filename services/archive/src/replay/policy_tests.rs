use retrace_auth::Caller;

use super::*;

#[test]
fn a_replay_needs_a_reason() {
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
fn the_caller_says_who_replays_unless_authentication_is_off() {
    let caller = Caller {
        actor: "ana".into(),
        actor_id: String::new(),
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
