"""The Kafka headers that carry an event's ids, as proto/src/headers.rs (names, order, rules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from .envelope import check_id
from .messages import OUTCOME_TYPE, Envelope, Outcome

EVENT_ID = "retrace-event-id"
TRANSACTION_ID = "retrace-transaction-id"
CAUSATION_ID = "retrace-causation-id"
#: Repeated: one header per subject id.
SUBJECT = "retrace-subject"
SOURCE = "retrace-source"
TYPE = "retrace-type"
#: W3C trace context.
TRACEPARENT = "traceparent"
REPLAY_ID = "retrace-replay-id"
REPLAY_OF = "retrace-replay-of"

_SINGLE = {
    EVENT_ID: "event_id",
    TRANSACTION_ID: "transaction_id",
    CAUSATION_ID: "causation_id",
    SOURCE: "source",
    TYPE: "event_type",
    TRACEPARENT: "traceparent",
    REPLAY_ID: "replay_id",
    REPLAY_OF: "replay_of",
}

HeaderList = List[Tuple[str, bytes]]


class HeaderError(ValueError):
    def __init__(self, header: str):
        super().__init__(
            f"header `{header}` is not valid UTF-8: Retrace header values must be text"
        )
        self.header = header


@dataclass
class TraceHeaders:
    """An event's ids as carried in Kafka headers. Empty strings stand for absent headers."""

    event_id: str = ""
    transaction_id: str = ""
    causation_id: str = ""
    subject_ids: List[str] = field(default_factory=list)
    source: str = ""
    event_type: str = ""
    traceparent: str = ""
    replay_id: str = ""
    replay_of: str = ""

    @classmethod
    def of(cls, envelope: Envelope) -> "TraceHeaders":
        """The headers that go with `envelope` (what `Publisher.publish` sends)."""
        replay = envelope.replay if envelope.HasField("replay") else None
        return cls(
            event_id=envelope.event_id,
            transaction_id=envelope.transaction_id,
            causation_id=envelope.causation_id,
            subject_ids=list(envelope.subject_ids),
            source=envelope.source,
            event_type=envelope.type,
            replay_id=replay.replay_id if replay else "",
            replay_of=replay.original_event_id if replay else "",
        )

    @classmethod
    def of_outcome(cls, outcome: Outcome) -> "TraceHeaders":
        """The headers of an outcome message: the consumer as source, the event as cause."""
        return cls(
            transaction_id=outcome.transaction_id,
            causation_id=outcome.event_id,
            source=outcome.consumer,
            event_type=OUTCOME_TYPE,
        )

    def pairs(self) -> List[Tuple[str, str]]:
        """(name, value) pairs in the Rust SDK's order, absent ones left out."""
        ordered = [
            (EVENT_ID, self.event_id),
            (TRANSACTION_ID, self.transaction_id),
            (CAUSATION_ID, self.causation_id),
            *((SUBJECT, s) for s in self.subject_ids),
            (SOURCE, self.source),
            (TYPE, self.event_type),
            (TRACEPARENT, self.traceparent),
            (REPLAY_ID, self.replay_id),
            (REPLAY_OF, self.replay_of),
        ]
        return [(name, value) for name, value in ordered if value]

    def kafka_headers(self) -> HeaderList:
        """The pairs as Kafka headers: UTF-8 values."""
        return [(name, value.encode("utf-8")) for name, value in self.pairs()]

    @classmethod
    def parse(
        cls, headers: Optional[Iterable[Tuple[str, Union[bytes, str, None]]]]
    ) -> Optional["TraceHeaders"]:
        """Reads the Retrace headers of a message; others are ignored. None when it carries
        no Retrace header at all. Raises `HeaderError` for a value that is not UTF-8."""
        parsed = cls()
        found = False
        for name, value in headers or ():
            if name != SUBJECT and name not in _SINGLE:
                continue
            found = True
            if value is None:
                text = ""
            elif isinstance(value, str):
                text = value
            else:
                try:
                    text = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise HeaderError(name) from None
            if name == SUBJECT:
                parsed.subject_ids.append(text)
            else:
                setattr(parsed, _SINGLE[name], text)
        return parsed if found else None

    def validate(self) -> None:
        """Checks the ids a message needs to be traced: its event and transaction ids."""
        check_id(EVENT_ID, self.event_id)
        check_id(TRANSACTION_ID, self.transaction_id)
        for subject in self.subject_ids:
            check_id(SUBJECT, subject)


def header_value(headers: Optional[Sequence[Tuple[str, Optional[bytes]]]], name: str) -> Optional[bytes]:
    """The first header named `name` (case-insensitive), if any."""
    for key, value in headers or ():
        if key.lower() == name.lower():
            return value if value is not None else b""
    return None
