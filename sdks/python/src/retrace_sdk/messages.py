"""The protobuf types of proto/retrace/v1/envelope.proto, generated at build time (setup.py)."""

try:
    from ._pb.retrace.v1 import envelope_pb2 as _pb
except ImportError as error:  # pragma: no cover - a source tree never built
    raise ImportError(
        "retrace_sdk's protobuf types are not generated: install the package "
        "(pip install -e sdks/python) or run `python sdks/python/generate_proto.py`"
    ) from error

Envelope = _pb.Envelope
Job = _pb.Job
Replay = _pb.Replay
Outcome = _pb.Outcome
AuditEvent = _pb.AuditEvent
JobPriority = _pb.JobPriority
OutcomeStatus = _pb.OutcomeStatus

#: The topic every consumer's outcomes are published on.
OUTCOMES_TOPIC = "retrace.outcomes"
#: The `retrace-type` header of an outcome message.
OUTCOME_TYPE = "retrace.outcome.v1"

__all__ = [
    "Envelope",
    "Job",
    "Replay",
    "Outcome",
    "AuditEvent",
    "JobPriority",
    "OutcomeStatus",
    "OUTCOMES_TOPIC",
    "OUTCOME_TYPE",
]
