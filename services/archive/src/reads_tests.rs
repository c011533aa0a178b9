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
