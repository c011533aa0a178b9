"""Retrace's Python SDK: publish and consume Retrace events on Kafka, byte-compatible with the
Rust SDK (services/sdk). See sdks/python/README.md."""

from .consumer import ReceivedEvent, Retry, consume, decode
from .envelope import (
    MAX_ERROR_CODE_LEN,
    MAX_ID_LEN,
    caused_by,
    check_error_code,
    new_event_id,
    outcome_of,
    root,
    validate,
    validate_outcome,
    with_error_code,
    with_job,
)
from .errors import (
    ControlCharacter,
    EnqueueError,
    EnvelopeError,
    Missing,
    NotACode,
    NotUuid,
    PublishError,
    RetraceError,
    TooLong,
)
from .headers import HeaderError, TraceHeaders
from .jobs import QueueTopics, lane_of
from .messages import (
    OUTCOME_TYPE,
    OUTCOMES_TOPIC,
    AuditEvent,
    Envelope,
    Job,
    JobPriority,
    Outcome,
    OutcomeStatus,
    Replay,
)
from .partitioner import murmur2, partition_for
from .publisher import Delivery, Publisher

__version__ = "1.0.0"

__all__ = [
    "AuditEvent",
    "ControlCharacter",
    "Delivery",
    "EnqueueError",
    "Envelope",
    "EnvelopeError",
    "HeaderError",
    "Job",
    "JobPriority",
    "MAX_ERROR_CODE_LEN",
    "MAX_ID_LEN",
    "Missing",
    "NotACode",
    "NotUuid",
    "OUTCOMES_TOPIC",
    "OUTCOME_TYPE",
    "Outcome",
    "OutcomeStatus",
    "PublishError",
    "Publisher",
    "QueueTopics",
    "ReceivedEvent",
    "Replay",
    "RetraceError",
    "Retry",
    "TooLong",
    "TraceHeaders",
    "caused_by",
    "check_error_code",
    "consume",
    "decode",
    "lane_of",
    "murmur2",
    "new_event_id",
    "outcome_of",
    "partition_for",
    "root",
    "validate",
    "validate_outcome",
    "with_error_code",
    "with_job",
]
