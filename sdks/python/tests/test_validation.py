"""Envelope validation: errors name the field, worded as the Rust SDK's (proto/src/envelope.rs)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

import retrace_sdk as r


def envelope():
    return r.root("registration", "registration.submitted.v1", subjects=["beneficiary:42"])


def test_root_and_caused_by():
    parent = envelope()
    r.validate(parent)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", parent.event_id)
    assert parent.transaction_id != parent.event_id
    assert parent.HasField("occurred_at")
    child = r.caused_by(parent, "validation", "registration.validated.v1", subjects=["village:7"])
    assert child.transaction_id == parent.transaction_id
    assert child.causation_id == parent.event_id
    assert list(child.subject_ids) == ["beneficiary:42", "village:7"]
    assert child.event_id != parent.event_id
    r.validate(child)


def test_event_ids_are_sortable_by_time():
    ids = [r.new_event_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_payloads():
    as_json = r.root("s", "t.v1", payload={"name": "Zoë"})
    assert as_json.content_type == "application/json"
    assert as_json.payload == '{"name":"Zoë"}'.encode()
    as_text = r.root("s", "t.v1", payload="hello")
    assert as_text.content_type.startswith("text/plain")
    raw = r.root("s", "t.v1", payload=b"\x00\x01", content_type="application/x-thing")
    assert (raw.content_type, raw.payload) == ("application/x-thing", b"\x00\x01")


def test_a_job_carries_priority_and_times():
    not_before = dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.timezone.utc)
    job = r.with_job(envelope(), "certificate.render", priority="urgent", not_before=not_before,
                     deadline=not_before + dt.timedelta(hours=8), max_attempts=5)
    assert job.job.priority == r.JobPriority.JOB_PRIORITY_URGENT
    assert job.job.not_before.ToDatetime(tzinfo=dt.timezone.utc) == not_before
    assert job.job.deadline.seconds - job.job.not_before.seconds == 8 * 3600
    bulk = r.with_job(envelope(), "report.build", priority="bulk")
    assert not bulk.job.HasField("not_before") and not bulk.job.HasField("deadline")


@pytest.mark.parametrize(
    "change, error, field, message",
    [
        (lambda e: e.ClearField("transaction_id"), r.Missing, "transaction_id",
         "field `transaction_id` is missing: every Retrace event must carry it"),
        (lambda e: setattr(e, "event_id", "42"), r.NotUuid, "event_id",
         'field `event_id` is not a UUID ("42"): event ids are UUIDv7 strings'),
        (lambda e: setattr(e, "causation_id", "e-1"), r.NotUuid, "causation_id", None),
        (lambda e: e.ClearField("source"), r.Missing, "source", None),
        (lambda e: e.ClearField("type"), r.Missing, "type", None),
        (lambda e: e.subject_ids.append("beneficiary:\n42"), r.ControlCharacter, "subject_ids",
         "field `subject_ids` contains a control character: ids must be printable text"),
        (lambda e: setattr(e, "transaction_id", "é" * 257), r.TooLong, "transaction_id",
         "field `transaction_id` is 514 bytes long: the limit is 512"),
    ],
)
def test_validation_names_the_field(change, error, field, message):
    e = envelope()
    change(e)
    with pytest.raises(error) as raised:
        r.validate(e)
    assert raised.value.field == field
    assert f"`{field}`" in str(raised.value)
    assert isinstance(raised.value, r.EnvelopeError)
    if message:
        assert str(raised.value) == message


def test_uuid_forms_are_those_rust_accepts():
    e = envelope()
    for good in ["0195f3a07c0070008000000000000001", "{0195f3a0-7c00-7000-8000-000000000001}",
                 "urn:uuid:0195f3a0-7c00-7000-8000-000000000001", "0195F3A0-7C00-7000-8000-000000000001"]:
        e.event_id = good
        r.validate(e)
    for bad in ["0195f3a0-7c00-7000-8000-00000000000", "0195f3a07c00-7000-8000-0000-00000000001",
                "0195f3a0-7c00-7000-8000-00000000000g"]:
        e.event_id = bad
        with pytest.raises(r.NotUuid):
            r.validate(e)


def test_outcome_validation_names_the_field():
    outcome = r.outcome_of(envelope(), "certificates", r.OutcomeStatus.OUTCOME_STATUS_PROCESSED)
    r.validate_outcome(outcome)
    outcome.consumer = ""
    with pytest.raises(r.Missing) as raised:
        r.validate_outcome(outcome)
    assert raised.value.field == "consumer"


def test_an_error_code_is_ascii_letters_digits_and_three_marks():
    for good in ["", "population_register_timeout", "http_503", "ECONNREFUSED", "40001", "a.b-c", "x" * 64]:
        r.check_error_code(good)
    for bad in ["two words", "a/b", "café"]:
        with pytest.raises(r.NotACode) as raised:
            r.check_error_code(bad)
        assert raised.value.field == "error_code"
    with pytest.raises(r.NotACode) as raised:
        r.check_error_code("register timeout")
    assert str(raised.value) == (
        'field `error_code` is not a code ("register timeout"): use ASCII letters, digits, `_`, '
        "`.` and `-` only, e.g. `population_register_timeout`"
    )
    with pytest.raises(r.TooLong) as raised:
        r.check_error_code("x" * 65)
    assert str(raised.value) == "field `error_code` is 65 bytes long: the limit is 64"


def test_with_error_code_sets_a_good_code_and_leaves_a_bad_one_out_saying_why():
    failed = lambda: r.outcome_of(envelope(), "validation", r.OutcomeStatus.OUTCOME_STATUS_FAILED, "no answer")  # noqa: E731
    coded = r.with_error_code(failed(), "population_register_timeout")
    assert (coded.error_code, coded.error) == ("population_register_timeout", "no answer")
    r.validate_outcome(coded)
    refused = r.with_error_code(failed(), "register timeout")
    assert refused.error_code == ""
    assert refused.error.startswith("no answer [error_code left out: field `error_code` is not a code")
    r.validate_outcome(refused)
    invalid = failed()
    invalid.error_code = "register timeout"
    with pytest.raises(r.NotACode) as raised:
        r.validate_outcome(invalid)
    assert raised.value.field == "error_code"


def test_headers_name_theirs():
    headers = r.TraceHeaders(event_id="e-1")
    with pytest.raises(r.Missing) as raised:
        headers.validate()
    assert raised.value.field == "retrace-transaction-id"
    with pytest.raises(r.HeaderError) as bad:
        r.TraceHeaders.parse([("retrace-transaction-id", b"\xff\xfe")])
    assert bad.value.header == "retrace-transaction-id"
    assert r.TraceHeaders.parse([("content-type", b"json")]) is None


def test_enqueue_refuses_what_is_not_a_job():
    with pytest.raises(r.EnqueueError) as raised:
        r.lane_of("certificates", envelope())
    assert raised.value.field == "job"
    with pytest.raises(r.EnqueueError) as raised:
        r.lane_of("certificates", r.with_job(envelope(), ""))
    assert raised.value.field == "job.kind"
    with pytest.raises(r.EnqueueError, match="cannot name a topic"):
        r.lane_of("has space", r.with_job(envelope(), "x"))


def test_each_priority_has_its_lane():
    lane = lambda p: r.lane_of("certificates", r.with_job(envelope(), "certificate.render", priority=p))  # noqa: E731
    assert lane("normal") == "retrace.jobs.certificates"
    assert lane(r.JobPriority.JOB_PRIORITY_UNSPECIFIED) == "retrace.jobs.certificates"
    assert lane("urgent") == "retrace.jobs.certificates.urgent"
    assert lane("JOB_PRIORITY_BULK") == "retrace.jobs.certificates.bulk"
    assert r.QueueTopics.of("certificates").all()[3:] == ("retrace.jobs.certificates.retry", "retrace.jobs.certificates.dlq")
