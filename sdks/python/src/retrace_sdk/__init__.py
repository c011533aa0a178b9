"""Retrace's Python SDK: publish and consume Retrace events on Kafka, byte-compatible with the
Rust SDK (services/sdk). See sdks/python/README.md."""

from .consumer import ReceivedEvent, Retry, consume, decode
from .envelope import (
    MAX_ID_LEN,
    caused_by,
    new_event_id,
    outcome_of,
    root,
    validate,
    validate_outcome,
    with_job,
)
from .errors import (
    ControlCharacter,
    EnqueueError,
    EnvelopeError,
    Missing,
    NotUuid,
    PublishError,
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
    "MAX_ID_LEN",
    "Missing",
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
    "Retry",
    "TooLong",
    "TraceHeaders",
    "caused_by",
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
    "with_job",
]
