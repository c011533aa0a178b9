"""Validation errors, worded as the Rust SDK's (proto/src/envelope.rs) and naming the field."""

from __future__ import annotations

import json
from typing import Optional


class EnvelopeError(ValueError):
    """Why an envelope (or outcome, or header set) is not acceptable; `field` names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Missing(EnvelopeError):
    def __init__(self, field: str):
        super().__init__(field, f"field `{field}` is missing: every Retrace event must carry it")


class NotUuid(EnvelopeError):
    def __init__(self, field: str, value: str):
        self.value = value
        super().__init__(
            field,
            f"field `{field}` is not a UUID ({json.dumps(value, ensure_ascii=False)}): "
            "event ids are UUIDv7 strings",
        )


class ControlCharacter(EnvelopeError):
    def __init__(self, field: str):
        super().__init__(
            field, f"field `{field}` contains a control character: ids must be printable text"
        )


class TooLong(EnvelopeError):
    def __init__(self, field: str, length: int, limit: int):
        self.length = length
        self.limit = limit
        super().__init__(field, f"field `{field}` is {length} bytes long: the limit is {limit}")


class NotACode(EnvelopeError):
    def __init__(self, field: str, value: str):
        self.value = value
        super().__init__(
            field,
            f"field `{field}` is not a code ({json.dumps(value, ensure_ascii=False)}): use ASCII "
            "letters, digits, `_`, `.` and `-` only, e.g. `population_register_timeout`",
        )


class RetraceError(Exception):
    """Raised by a handler for a failure with a stable `code` for its cause, e.g.
    `RetraceError("no answer within 2 s", code="population_register_timeout")`: the outcome
    carries it as its `error_code`, and failures with one code are one incident whatever their
    text (docs/incidents.md). Any exception with a string `code` attribute does the same."""

    def __init__(self, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.code = code


class EnqueueError(ValueError):
    """A job that cannot be enqueued: not a job, no kind, or a queue name that is no topic."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class PublishError(Exception):
    """Kafka did not acknowledge a message. It may or may not be stored; publishing it again
    with the same event id is safe."""

    def __init__(self, event_id: str, topic: str, error: object):
        super().__init__(
            f"Kafka did not acknowledge event {event_id} on topic {topic}: {error}. It may or "
            "may not be stored; publishing it again with the same event id is safe"
        )
        self.event_id = event_id
        self.topic = topic
        self.error = error
