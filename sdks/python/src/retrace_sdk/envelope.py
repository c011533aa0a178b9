"""Building and validating envelopes and outcomes, as proto/src/envelope.rs does."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from typing import Optional, Union

from .errors import ControlCharacter, EnvelopeError, Missing, NotACode, NotUuid, TooLong
from .messages import Envelope, Job, JobPriority, Outcome, OutcomeStatus

#: Longest id (transaction, subject, source, type) accepted, in UTF-8 bytes.
MAX_ID_LEN = 512

#: Longest `Outcome.error_code` accepted, in characters (all ASCII).
MAX_ERROR_CODE_LEN = 64

Time = Union[_dt.datetime, float, int, None]
Payload = Union[bytes, bytearray, str, Mapping, list, None]


def new_event_id() -> str:
    """A new UUIDv7 (RFC 9562): unique, and sortable by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def _timestamp(message_field, value: Time) -> None:
    """Sets a google.protobuf.Timestamp field from a datetime (naive = UTC) or epoch seconds."""
    if value is None:
        return
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        message_field.FromDatetime(value)
    else:
        nanos = int(round(float(value) * 1e9)) if isinstance(value, float) else int(value) * 10**9
        message_field.FromNanoseconds(nanos)


def _now(message_field) -> None:
    message_field.FromNanoseconds(time.time_ns())


def _set_payload(envelope: Envelope, payload: Payload, content_type: Optional[str]) -> None:
    if payload is None:
        if content_type:
            envelope.content_type = content_type
        return
    if isinstance(payload, (bytes, bytearray)):
        envelope.payload = bytes(payload)
        envelope.content_type = content_type or "application/octet-stream"
    elif isinstance(payload, str):
        envelope.payload = payload.encode("utf-8")
        envelope.content_type = content_type or "text/plain; charset=utf-8"
    else:
        envelope.payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        envelope.content_type = content_type or "application/json"


def root(
    source: str,
    type: str,
    *,
    subjects: Iterable[str] = (),
    payload: Payload = None,
    content_type: Optional[str] = None,
    attributes: Optional[Mapping[str, str]] = None,
    occurred_at: Time = None,
    event_id: Optional[str] = None,
    transaction_id: Optional[str] = None,
) -> Envelope:
    """The first event of a new transaction: new event and transaction ids (UUIDv7), now.

    A dict or list payload is sent as JSON (`application/json`), a str as UTF-8 text, bytes as
    they are (name their `content_type`)."""
    envelope = Envelope(
        event_id=event_id or new_event_id(),
        transaction_id=transaction_id or new_event_id(),
        source=source,
        type=type,
        subject_ids=list(subjects),
    )
    if occurred_at is None:
        _now(envelope.occurred_at)
    else:
        _timestamp(envelope.occurred_at, occurred_at)
    _set_payload(envelope, payload, content_type)
    if attributes:
        envelope.attributes.update(attributes)
    return envelope


def caused_by(
    parent: Envelope,
    source: str,
    type: str,
    *,
    subjects: Iterable[str] = (),
    payload: Payload = None,
    content_type: Optional[str] = None,
    attributes: Optional[Mapping[str, str]] = None,
    occurred_at: Time = None,
    event_id: Optional[str] = None,
) -> Envelope:
    """An event caused by `parent`: same transaction and subjects (plus `subjects`),
    `causation_id` = the parent's event id."""
    envelope = root(
        source,
        type,
        subjects=[*parent.subject_ids, *subjects],
        payload=payload,
        content_type=content_type,
        attributes=attributes,
        occurred_at=occurred_at,
        event_id=event_id,
        transaction_id=parent.transaction_id,
    )
    envelope.causation_id = parent.event_id
    return envelope


_PRIORITIES = {
    "urgent": JobPriority.JOB_PRIORITY_URGENT,
    "normal": JobPriority.JOB_PRIORITY_NORMAL,
    "bulk": JobPriority.JOB_PRIORITY_BULK,
    "unspecified": JobPriority.JOB_PRIORITY_UNSPECIFIED,
}


def priority_of(priority: Union[str, int]) -> int:
    """`"urgent"`, `"normal"`, `"bulk"`, a `JOB_PRIORITY_*` name or the enum's number."""
    if isinstance(priority, str):
        name = priority.lower().removeprefix("job_priority_")
        if name not in _PRIORITIES:
            raise ValueError(f"unknown job priority {priority!r}: urgent, normal or bulk")
        return _PRIORITIES[name]
    return int(priority)


def with_job(
    envelope: Envelope,
    kind: str,
    *,
    priority: Union[str, int] = "normal",
    not_before: Time = None,
    deadline: Time = None,
    max_attempts: int = 0,
) -> Envelope:
    """Makes `envelope` a job for the off-peak worker (its event id is the job id); returns it."""
    job = Job(kind=kind, priority=priority_of(priority), max_attempts=max_attempts)
    _timestamp(job.not_before, not_before)
    _timestamp(job.deadline, deadline)
    if not_before is None:
        job.ClearField("not_before")
    if deadline is None:
        job.ClearField("deadline")
    envelope.job.CopyFrom(job)
    return envelope


def outcome_of(
    event: Envelope,
    consumer: str,
    status: int,
    error: Optional[str] = None,
    attempt: int = 1,
) -> Outcome:
    """What `consumer` did with `event` on attempt `attempt` (1 for the first)."""
    outcome = Outcome(
        event_id=event.event_id,
        transaction_id=event.transaction_id,
        consumer=consumer,
        status=status,
        error=error or "",
        attempt=attempt,
    )
    _now(outcome.at)
    return outcome


# ---------------------------------------------------------------------------------------
# Validation, as proto/src/envelope.rs.

# The forms Rust's `uuid::Uuid::parse_str` accepts: simple, hyphenated, braced, URN.
_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_UUID = re.compile(
    rf"(?:{_HEX}{{32}}|{_HYPHENATED}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED})\Z"
)


def _is_control(c: str) -> bool:
    # Rust's char::is_control: the Unicode general category Cc.
    return unicodedata.category(c) == "Cc"


def check_id(field: str, value: str) -> None:
    if not value:
        raise Missing(field)
    length = len(value.encode("utf-8"))
    if length > MAX_ID_LEN:
        raise TooLong(field, length, MAX_ID_LEN)
    if any(_is_control(c) for c in value):
        raise ControlCharacter(field)


def check_uuid(field: str, value: str) -> None:
    check_id(field, value)
    if not _UUID.match(value):
        raise NotUuid(field, value)


def validate(envelope: Envelope) -> None:
    """Checks the ids every Retrace event must carry; raises an `EnvelopeError` naming the field."""
    check_uuid("event_id", envelope.event_id)
    check_id("transaction_id", envelope.transaction_id)
    if envelope.causation_id:
        check_uuid("causation_id", envelope.causation_id)
    check_id("source", envelope.source)
    check_id("type", envelope.type)
    for subject in envelope.subject_ids:
        check_id("subject_ids", subject)


def validate_outcome(outcome: Outcome) -> None:
    """Checks the ids an outcome must carry to be attached to its event, and its error code."""
    check_uuid("event_id", outcome.event_id)
    check_id("transaction_id", outcome.transaction_id)
    check_id("consumer", outcome.consumer)
    check_error_code(outcome.error_code)


_CODE = re.compile(r"[A-Za-z0-9_.-]*\Z")


def check_error_code(code: str) -> None:
    """Checks an `Outcome.error_code`: empty (none given), or 1 to 64 ASCII letters, digits,
    `_`, `.` and `-` (as `retrace_proto::check_error_code`)."""
    length = len(code.encode("utf-8"))
    if length > MAX_ERROR_CODE_LEN:
        raise TooLong("error_code", length, MAX_ERROR_CODE_LEN)
    if not _CODE.match(code):
        raise NotACode("error_code", code)


def with_error_code(outcome: Outcome, code: str) -> Outcome:
    """`outcome` with `code` as its `error_code`, the stable reason that groups it with
    failures of the same cause (docs/incidents.md). A code `check_error_code` refuses is left
    out and the error text says why, as the Rust `Outcome::with_error_code`: the outcome of a
    handler that gave a bad code must still be published."""
    try:
        check_error_code(code)
        outcome.error_code = code
    except EnvelopeError as refused:
        note = f"[error_code left out: {refused}]"
        outcome.error = f"{outcome.error} {note}" if outcome.error else note
    return outcome


def status_name(status: int) -> str:
    return OutcomeStatus.Name(status)
