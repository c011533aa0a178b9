use proptest::prelude::*;

use super::*;

/// Texts that are one cause, and the normalised text each of them gives.
const GROUPED: &[(&[&str], &str)] = &[
    // The demo's two causes (`retrace dev --demo`). The timeout's "2 s" is replaced too:
    // numbers in a text are values more often than names, and a consumer that wants "2 s"
    // and "5 s" apart says so with an error code.
    (
        &[
            "population register did not answer within 2 s (timeout)",
            "population register did not answer within 5 s (timeout)",
        ],
        "population register did not answer within <n> s (timeout)",
    ),
    (
        &[
            "certificate renderer unavailable: HTTP 503 from pdf-renderer:8080",
            "certificate renderer unavailable: HTTP 503 from pdf-renderer:8081",
        ],
        "certificate renderer unavailable: HTTP <n> from pdf-renderer:<n>",
    ),
    // Subject ids keep their kind.
    (
        &[
            "beneficiary:42 not found in the population register",
            "beneficiary:977 not found in the population register",
        ],
        "beneficiary:<n> not found in the population register",
    ),
    (
        &[
            "birth-registration:BR-2026-0001 is already registered",
            "birth-registration:BR-2025-1234 is already registered",
        ],
        "birth-registration:BR-<n>-<n> is already registered",
    ),
    (
        &[
            "event 0195f3a0-7c00-7000-8000-000000000001 has no transaction",
            "event 0195F3A0-7C3E-7002-8000-00000000ABCD has no transaction",
        ],
        "event <uuid> has no transaction",
    ),
    // Hex ids with and without letters or digits, and long numbers, are one kind of id.
    (
        &[
            "object 7f9c8d2a4b not in bucket",
            "object deadbeef00 not in bucket",
            "object 1234567890 not in bucket",
            "object 0x7ffd5e3c not in bucket",
            "object abcdefab not in bucket",
        ],
        "object <id> not in bucket",
    ),
    // Quoted values of any length, in any of three quotes; an apostrophe is no quote.
    (
        &[
            "can't use form 'BR-7' for mother \"Ada Lovelace\" (`v2`)",
            "can't use form 'death certificate' for mother \"Grace Hopper\" (`v10`)",
            "can't use form '' for mother \"O'Hara\" (`x`)",
        ],
        "can't use form '…' for mother \"…\" (`…`)",
    ),
    (
        &[
            "cannot send to ada@example.org: mailbox full",
            "cannot send to grace.hopper+sms@mail.example.com: mailbox full",
        ],
        "cannot send to <email>: mailbox full",
    ),
    // A URL keeps its scheme and host; port, path, query and credentials go.
    (
        &[
            "HTTP 502 from http://pdf-renderer:8080/render/BR-2026-0001?copy=2",
            "HTTP 503 from http://pdf-renderer:8443/render",
            "HTTP 500 from http://robot:s3cret@pdf-renderer:8080/render?copy=1",
        ],
        "HTTP <n> from http://pdf-renderer:<n>/…",
    ),
    (
        &[
            "see https://status.example.org/incidents/42.",
            "see https://status.example.org/incidents.",
        ],
        "see https://status.example.org/….",
    ),
    (
        &[
            "POST http://10.0.3.7:9000/jobs failed",
            "POST http://[fe80::1]:9000/jobs failed",
        ],
        "POST http://<ip>:<n>/… failed",
    ),
    // A scheme's digits are numbers too.
    (
        &[
            "upload to s3://archive-7/BR-1 failed",
            "upload to s3://archive-12/x failed",
        ],
        "upload to s<n>://archive-<n>/… failed",
    ),
    (
        &[
            "connection refused by 10.0.3.7:5432",
            "connection refused by 192.168.1.20:5433",
        ],
        "connection refused by <ip>:<n>",
    ),
    (
        &[
            "connection refused by [fe80::1]:5432",
            "connection refused by [2001:db8::8a2e:370:7334]:443",
            "connection refused by [2001:0db8:0000:0000:0000:ff00:0042:8329]:443",
        ],
        "connection refused by [<ip>]:<n>",
    ),
    (
        &[
            "token expired at 2026-03-01T09:30:00Z",
            "token expired at 2026-03-02T17:05:59.123+01:00",
            "token expired at 2025-12-31 23:59:59",
            "token expired at 2025-12-31",
        ],
        "token expired at <time>",
    ),
    (
        &[
            "register closed since 09:30:00",
            "register closed since 7:05:01.5",
        ],
        "register closed since <time>",
    ),
    // Signs, decimals, thousands and units.
    (
        &[
            "retry 3 of 5 after 2.5s",
            "retry 4 of 5 after 10s",
            "retry -1 of 1,000 after 0.25s",
        ],
        "retry <n> of <n> after <n>s",
    ),
    (
        &["register  down\n\tretrying", " register down retrying "],
        "register down retrying",
    ),
    (
        &[
            "état civil : acte n° 42 introuvable",
            "état civil : acte n° 7 introuvable",
        ],
        "état civil : acte n° <n> introuvable",
    ),
];

/// Texts that are different causes, however alike.
const APART: &[(&str, &str)] = &[
    (
        "population register did not answer within 2 s (timeout)",
        "certificate renderer unavailable: HTTP 503 from pdf-renderer:8080",
    ),
    (
        "population register did not answer (timeout)",
        "population register refused the request",
    ),
    // The host names the dependency that failed.
    (
        "HTTP 503 from pdf-renderer:8080",
        "HTTP 503 from sms-gateway:8080",
    ),
    (
        "HTTP 503 from http://pdf-renderer/render",
        "HTTP 503 from https://pdf-renderer/render",
    ),
    ("unknown form 'x'", "unknown mother 'x'"),
    ("beneficiary:42 not found", "household:42 not found"),
    ("timeout", "Timeout"),
    // Two numbers are not one: their count is part of the text.
    ("retry 3 of 5", "retry 3"),
];

#[test]
fn texts_of_one_cause_normalise_to_one_text() {
    for (texts, expected) in GROUPED {
        for text in *texts {
            assert_eq!(normalise_error(text), *expected, "normalising {text:?}");
        }
    }
}

#[test]
fn texts_of_different_causes_stay_apart() {
    for (one, other) in APART {
        assert_ne!(
            normalise_error(one),
            normalise_error(other),
            "{one:?} and {other:?} must not group"
        );
    }
}

#[test]
fn a_long_text_is_cut_and_says_so() {
    let text = "register down ".repeat(100);
    let normalised = normalise_error(&text);
    assert_eq!(normalised.chars().count(), MAX_CAUSE_CHARS + 1);
    assert!(normalised.ends_with('…'));
    // What comes after the cut does not split the group.
    assert_eq!(normalise_error(&format!("{text} at 42")), normalised);
}

#[test]
fn an_unclosed_quote_is_text() {
    assert_eq!(
        normalise_error("expected \"name at line 3"),
        "expected \"name at line <n>"
    );
    // A quoted value runs to the end of its line at most.
    assert_eq!(
        normalise_error("bad 'first\nsecond' here"),
        "bad 'first second' here"
    );
}

fn fingerprint(topic: &str, event_type: &str, consumer: &str, cause: Cause) -> Fingerprint {
    Fingerprint::of(topic, event_type, consumer, cause)
}

fn validation_timeout(error: &str) -> Fingerprint {
    fingerprint(
        "registrations",
        "birth.registration.submitted.v1",
        "validation",
        Cause::of("", error),
    )
}

#[test]
fn failures_of_one_step_and_cause_have_one_fingerprint() {
    let one = validation_timeout("population register did not answer within 2 s (timeout)");
    let other = validation_timeout("population register did not answer within 3 s (timeout)");
    assert_eq!(one.id(), other.id());
    assert_eq!(one, other);
    assert_eq!(one.topic(), "registrations");
    assert_eq!(one.event_type(), "birth.registration.submitted.v1");
    assert_eq!(one.consumer(), "validation");
    assert_eq!(
        one.cause(),
        &Cause::Text("population register did not answer within <n> s (timeout)".into())
    );
}

#[test]
fn another_topic_type_or_consumer_is_another_incident() {
    let cause = || Cause::of("", "certificate renderer unavailable");
    let base = fingerprint("validations", "t.v1", "worker:certificates", cause());
    for other in [
        fingerprint("validations.eu", "t.v1", "worker:certificates", cause()),
        fingerprint("validations", "t.v2", "worker:certificates", cause()),
        fingerprint("validations", "t.v1", "worker:sms", cause()),
    ] {
        assert_ne!(base.id(), other.id(), "{other:?}");
    }
}

#[test]
fn a_code_beats_the_text_and_codes_tell_causes_apart() {
    let coded = |code: &str, error: &str| {
        fingerprint(
            "registrations",
            "t.v1",
            "validation",
            Cause::of(code, error),
        )
    };
    let timeout = coded("population_register_timeout", "no answer within 2 s");
    assert_eq!(
        timeout.cause(),
        &Cause::Code("population_register_timeout".into())
    );
    assert_eq!(
        timeout.id(),
        coded(
            "population_register_timeout",
            "register unreachable: connection reset"
        )
        .id(),
        "the code decides, whatever the text says"
    );
    assert_ne!(
        timeout.id(),
        coded("population_register_refused", "no answer within 2 s").id(),
        "another code is another cause, whatever the text says"
    );
    assert_ne!(
        timeout.id(),
        coded("", "no answer within 2 s").id(),
        "an uncoded failure is grouped by its text, apart from coded ones"
    );
    // A code and a text that read alike are still two causes.
    assert_ne!(
        fingerprint("t", "e", "c", Cause::Code("timeout".into())).id(),
        fingerprint("t", "e", "c", Cause::Text("timeout".into())).id()
    );
}

#[test]
fn parts_are_hashed_apart_not_run_together() {
    let cause = || Cause::Code("x".into());
    assert_ne!(
        fingerprint("ab", "c", "d", cause()).id(),
        fingerprint("a", "bc", "d", cause()).id()
    );
}

/// Ids are stored in the incident index: a change here starts new incidents for old causes,
/// so it must be deliberate (and `DOMAIN`'s version raised).
#[test]
fn the_id_is_stable_across_releases() {
    let id = validation_timeout("population register did not answer within 2 s (timeout)");
    assert_eq!(id.id(), "f84a0607b56bfc41");
    assert_eq!(id.id().len(), 16);
    assert!(
        id.id()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
}

proptest! {
    #[test]
    fn any_text_normalises_without_digits_within_the_limit(
        text in prop_oneof![
            ".{0,80}",
            "[ -~]{0,600}",
            "([a-z]{1,6}|[0-9]{1,10}|[-:.@/'\"` ]|https?://|::|[0-9a-f]{8}){0,40}",
        ],
    ) {
        let normalised = normalise_error(&text);
        prop_assert!(!normalised.bytes().any(|b| b.is_ascii_digit()), "{normalised:?}");
        prop_assert!(normalised.chars().count() <= MAX_CAUSE_CHARS + 1);
    }
}
