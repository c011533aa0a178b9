"""`consume`: run a handler over topics' events and report an outcome for each.

What the Rust SDK's `consume` (services/sdk/src/consumer.rs) keeps, kept here: an event's
offset is committed only after its outcome is acknowledged by Kafka (at-least-once delivery to
the handler); a second record of an event id processed lately is skipped (a publish retried
after its answer was lost), unless it is a replay. Unlike the Rust SDK, events are handled one
at a time, in partition order, and messages that are not envelopes but carry `retrace-*`
headers (another language's JSON, `kcat -H`) are handed over too, built from their headers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from google.protobuf.message import DecodeError

from .envelope import outcome_of, validate, with_error_code
from .errors import EnvelopeError
from .headers import HeaderError, TraceHeaders, header_value
from .messages import Envelope, OutcomeStatus, Replay
from .publisher import Publisher

log = logging.getLogger("retrace_sdk")

CONSUMER_DEFAULTS: Dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
}

#: Event ids remembered per consumer: the window a second record of an event is skipped in.
RECENT_EVENTS = 10_000


@dataclass
class ReceivedEvent:
    """An event handed to a handler."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int
    key: Optional[bytes] = None
    headers: List[Tuple[str, Optional[bytes]]] = field(default_factory=list)
    #: True when the message was not an envelope: `envelope` was built from its `retrace-*`
    #: headers, its value is `envelope.payload` and its `content-type` header, if any,
    #: `envelope.content_type`.
    headers_only: bool = False


class Retry(Exception):
    """Raised by a handler for a failure worth trying again: a `RETRYING` outcome is
    published, and the handler runs again after `after` seconds, up to `max_attempts` in all
    (consume's argument); the last failure is reported `FAILED`. `code`, as `RetraceError`'s,
    is the outcome's `error_code`."""

    def __init__(self, reason: str, after: float = 1.0, code: Optional[str] = None):
        super().__init__(reason)
        self.after = after
        self.code = code


Handler = Callable[[ReceivedEvent], Any]


def decode(message: Any) -> Tuple[Optional[ReceivedEvent], str]:
    """The event a Kafka message carries, or (None, why not). An envelope first; else, a
    message whose `retrace-*` headers name its event and transaction."""
    headers = list(message.headers() or [])
    value = message.value() or b""
    base = dict(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        headers=headers,
    )
    try:
        envelope = Envelope.FromString(value)
        validate(envelope)
        return ReceivedEvent(envelope=envelope, **base), ""
    except (DecodeError, EnvelopeError) as error:
        not_envelope = f"not an envelope ({error})"
    try:
        trace = TraceHeaders.parse(headers)
    except HeaderError as error:
        return None, f"{not_envelope}, and {error}"
    if trace is None:
        return None, f"{not_envelope}, and no retrace-* header"
    try:
        trace.validate()
    except EnvelopeError as error:
        return None, f"{not_envelope}, and {error}"
    envelope = Envelope(
        event_id=trace.event_id,
        transaction_id=trace.transaction_id,
        causation_id=trace.causation_id,
        subject_ids=trace.subject_ids,
        source=trace.source,
        type=trace.event_type,
        payload=value,
    )
    content_type = header_value(headers, "content-type")
    if content_type:
        envelope.content_type = content_type.decode("utf-8", "replace")
    if trace.replay_id:
        envelope.replay.CopyFrom(Replay(replay_id=trace.replay_id, original_event_id=trace.replay_of))
    return ReceivedEvent(envelope=envelope, headers_only=True, **base), ""


class _Recent:
    """The last `capacity` event ids processed, the oldest forgotten first."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.ids: "OrderedDict[str, None]" = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids

    def remember(self, event_id: str) -> None:
        if event_id in self.ids:
            return
        self.ids[event_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)


def consume(
    topics: Sequence[str],
    group: str,
    handler: Handler,
    *,
    bootstrap_servers: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    consumer_name: Optional[str] = None,
    publisher: Optional[Publisher] = None,
    stop: Optional[threading.Event] = None,
    max_attempts: int = 3,
    poll_timeout: float = 0.2,
    on_commit: Optional[Callable[[str, int, int], None]] = None,
) -> None:
    """Consumes `topics` in consumer group `group` until `stop` is set, hands every event to
    `handler`, and publishes an outcome for each on `retrace.outcomes`, from `consumer_name`
    (default: the group):

    - the handler returns: `PROCESSED`;
    - it raises `Retry`: `RETRYING` with the error, and it runs again (attempt 2, ...), up to
      `max_attempts`, the last failure being `FAILED`;
    - it raises anything else: `FAILED` with the error text.

    An exception with a string `code` attribute (`RetraceError(text, code=...)`,
    `Retry(text, code=...)`) gives the outcome that `error_code`, which groups its failures
    into one incident (docs/incidents.md); a code that is not one (ASCII letters, digits, `_`,
    `.`, `-`, at most 64) is left out, and the error text says why.

    The event's offset is committed (synchronously) only once its outcome is acknowledged; an
    outcome that cannot be published is retried until it is, or until `stop`. A message that
    is neither an envelope nor traceable by its headers is logged and skipped.

    `config` passes librdkafka properties to the consumer and, when `publisher` is not given,
    to the outcomes' publisher. `on_commit(topic, partition, next_offset)` is called after
    each commit (for tests and metrics)."""
    name = consumer_name or group
    settings: Dict[str, Any] = dict(config or {})
    if bootstrap_servers:
        settings["bootstrap.servers"] = bootstrap_servers
    own_publisher = publisher is None
    if publisher is None:
        publisher = Publisher(config=settings)
    consumer_config = dict(CONSUMER_DEFAULTS)
    consumer_config.update(settings)
    consumer_config["group.id"] = group
    consumer_config.setdefault("error_cb", lambda error: log.warning("librdkafka: %s", error))
    stop = stop or threading.Event()
    consumer = Consumer(consumer_config)
    recent = _Recent(RECENT_EVENTS)
    try:
        consumer.subscribe(list(topics))
        while not stop.is_set():
            message = consumer.poll(poll_timeout)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer %s: %s", name, error)
                continue
            event, problem = decode(message)
            if event is None:
                log.warning(
                    "consumer %s: skipped %s[%d]@%d: %s",
                    name, message.topic(), message.partition(), message.offset(), problem,
                )
            elif event.envelope.HasField("replay") or event.envelope.event_id not in recent:
                if not _handle(event, name, handler, publisher, recent, stop, max_attempts):
                    break  # stopped before the outcome was published: not committed
            else:
                log.info(
                    "consumer %s: skipped a second record of event %s (%s[%d]@%d)",
                    name, event.envelope.event_id, event.topic, event.partition, event.offset,
                )
            next_offset = message.offset() + 1
            consumer.commit(
                offsets=[TopicPartition(message.topic(), message.partition(), next_offset)],
                asynchronous=False,
            )
            if on_commit is not None:
                on_commit(message.topic(), message.partition(), next_offset)
    finally:
        consumer.close()
        if own_publisher:
            publisher.close()


def _handle(
    event: ReceivedEvent,
    name: str,
    handler: Handler,
    publisher: Publisher,
    recent: _Recent,
    stop: threading.Event,
    max_attempts: int,
) -> bool:
    """Runs the handler (again while it asks to retry) and reports each attempt's outcome.
    False when stopped before the last outcome was published."""
    attempt = 1
    while True:
        retry_after = None
        code = None
        try:
            handler(event)
            status, error = OutcomeStatus.OUTCOME_STATUS_PROCESSED, None
        except Retry as retry:
            status, error = OutcomeStatus.OUTCOME_STATUS_RETRYING, str(retry) or "retry"
            retry_after = retry.after
            code = _code_of(retry)
            if attempt >= max_attempts:
                status = OutcomeStatus.OUTCOME_STATUS_FAILED
        except Exception as failure:  # the handler's error becomes the outcome's
            status, error = OutcomeStatus.OUTCOME_STATUS_FAILED, str(failure) or type(failure).__name__
            code = _code_of(failure)
        if status == OutcomeStatus.OUTCOME_STATUS_PROCESSED:
            # Only a success is remembered: a failed event's second record is a retry.
            recent.remember(event.envelope.event_id)
        outcome = outcome_of(event.envelope, name, status, error, attempt)
        if code:
            with_error_code(outcome, code)
        if not _report(publisher, outcome, stop):
            return False
        if status != OutcomeStatus.OUTCOME_STATUS_RETRYING:
            return True
        if stop.wait(retry_after or 0):
            return False
        attempt += 1


def _code_of(failure: BaseException) -> Optional[str]:
    """The exception's `code` attribute when it is a string: `urllib`'s `HTTPError.code` is
    a number, gRPC's `code` a method, neither a code of the handler's."""
    code = getattr(failure, "code", None)
    return code if isinstance(code, str) else None


def _report(publisher: Publisher, outcome: Any, stop: threading.Event) -> bool:
    """Publishes `outcome`, retrying until Kafka takes it. False if stopped first."""
    backoff = 0.1
    while True:
        try:
            publisher.publish_outcome(outcome)
            return True
        except EnvelopeError as error:
            # Never publishable (e.g. a header-only event whose id is not a UUID): said, and
            # the event is settled without an outcome.
            log.warning("consumer %s: no outcome for event %r: %s", outcome.consumer, outcome.event_id, error)
            return True
        except Exception as error:
            log.warning("consumer %s: outcome not published, retrying: %s", outcome.consumer, error)
            if stop.wait(backoff):
                return False
            backoff = min(backoff * 2, 10.0)


__all__: Iterable[str] = ["consume", "decode", "ReceivedEvent", "Retry", "Handler"]
