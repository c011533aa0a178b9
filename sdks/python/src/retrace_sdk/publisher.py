"""`Publisher`: envelopes, jobs and outcomes onto Kafka, acknowledged by the broker.

The producer is configured as the Rust SDK's (services/sdk/src/publisher.rs): every in-sync
replica acknowledges (`acks=all`), retries never duplicate (`enable.idempotence`), and a key
goes where the Java client and the Rust SDK put it (`partitioner=murmur2_random`: murmur2 of
the key; librdkafka's own default, `consistent_random`, disagrees for most keys).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from confluent_kafka import KafkaError, Producer

from .envelope import validate, validate_outcome
from .errors import PublishError
from .headers import TraceHeaders
from .jobs import lane_of
from .messages import OUTCOMES_TOPIC, Envelope, Outcome

log = logging.getLogger("retrace_sdk")

PRODUCER_DEFAULTS: Dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "message.timeout.ms": 30000,
}


@dataclass(frozen=True)
class Delivery:
    """Where the broker put a published message."""

    topic: str
    partition: int
    offset: int


def _traceparent() -> str:
    """The W3C traceparent of the current OpenTelemetry span, if opentelemetry-api is
    installed and a valid span is current; else empty."""
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return ""
    if not trace.get_current_span().get_span_context().is_valid:
        return ""
    carrier: Dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


class Publisher:
    """Publishes Retrace messages. Thread-safe: threads share one producer; a producer that
    failed fatally (e.g. fenced after a broker outage) is replaced for the next publish.

    `config` passes any librdkafka property through (`security.protocol`, `sasl.*`, ...)."""

    def __init__(
        self,
        bootstrap_servers: Optional[str] = None,
        *,
        config: Optional[Mapping[str, Any]] = None,
        timeout: float = 60.0,
    ):
        self._config: Dict[str, Any] = dict(PRODUCER_DEFAULTS)
        self._config.update(config or {})
        if bootstrap_servers:
            self._config["bootstrap.servers"] = bootstrap_servers
        if "bootstrap.servers" not in self._config:
            raise ValueError("Publisher needs bootstrap_servers (or config['bootstrap.servers'])")
        self._config.setdefault("error_cb", self._on_error)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._generation = 0
        self._producer = Producer(self._config)

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        log.warning("librdkafka: %s", error)

    def publish(self, topic: str, envelope: Envelope) -> Delivery:
        """Publishes `envelope` on `topic`, keyed by its transaction id, with its ids in
        `retrace-*` headers (and `traceparent` when an OpenTelemetry span is current).
        Returns once the broker acknowledged it; raises `EnvelopeError` for an invalid
        envelope, `PublishError` when Kafka did not take it."""
        validate(envelope)
        headers = TraceHeaders.of(envelope)
        headers.traceparent = _traceparent()
        return self._send(
            topic,
            envelope.transaction_id,
            envelope.SerializeToString(deterministic=True),
            headers,
            envelope.event_id,
        )

    def enqueue(self, queue: str, job: Envelope) -> Delivery:
        """Publishes `job` (an envelope with `job` set, see `with_job`) on the lane of its
        priority: `retrace.jobs.<queue>`, `.urgent` or `.bulk`. The job id is its event id."""
        return self.publish(lane_of(queue, job), job)

    def publish_outcome(self, outcome: Outcome) -> Delivery:
        """Publishes what a consumer did with an event, on `retrace.outcomes`."""
        validate_outcome(outcome)
        return self._send(
            OUTCOMES_TOPIC,
            outcome.transaction_id,
            outcome.SerializeToString(deterministic=True),
            TraceHeaders.of_outcome(outcome),
            outcome.event_id,
        )

    def _send(
        self, topic: str, key: str, value: bytes, headers: TraceHeaders, event_id: str
    ) -> Delivery:
        with self._lock:
            generation, producer = self._generation, self._producer
        done = threading.Event()
        result: List[Tuple[Optional[KafkaError], Any]] = []

        def on_delivery(error, message):
            result.append((error, message))
            done.set()

        deadline = time.monotonic() + self._timeout
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key.encode("utf-8"),
                    headers=headers.kafka_headers(),
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: waiting for room is the backpressure a caller feels.
                if time.monotonic() > deadline:
                    raise PublishError(event_id, topic, "the producer queue stayed full") from None
                producer.poll(0.1)
            except Exception as error:  # KafkaException: fatal producer, unknown topic...
                self._replace_if_fatal(generation, producer)
                raise PublishError(event_id, topic, error) from error
        # message.timeout.ms bounds the wait: librdkafka reports every message, delivered or not.
        while not done.is_set():
            producer.poll(0.05)
        error, message = result[0]
        if error is not None:
            self._replace_if_fatal(generation, producer, error)
            raise PublishError(event_id, topic, error)
        return Delivery(message.topic(), message.partition(), message.offset())

    def _replace_if_fatal(
        self, generation: int, producer: Producer, error: Optional[KafkaError] = None
    ) -> None:
        fenced = error is not None and error.code() in (
            KafkaError._FENCED,
            getattr(KafkaError, "PRODUCER_FENCED", -1),
            KafkaError.INVALID_PRODUCER_EPOCH,
        )
        fatal = error is not None and error.fatal()
        if not (fatal or fenced):
            return
        with self._lock:
            if self._generation != generation:
                return
            try:
                self._producer = Producer(self._config)
                self._generation += 1
                log.warning("replaced a Kafka producer that failed fatally: %s", error)
            except Exception:  # the next failure tries again
                pass

    def flush(self, timeout: float = 30.0) -> int:
        """Waits for messages in flight; returns how many are still queued."""
        return self._producer.flush(timeout)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
