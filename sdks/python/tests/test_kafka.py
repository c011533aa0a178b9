"""Against Apache Kafka: publish → consume with an outcome per event on retrace.outcomes and the
commit after it; enqueue onto the lanes; header-only messages; traceparent."""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Producer

import retrace_sdk as r
from retrace_sdk.headers import TraceHeaders

pytestmark = pytest.mark.kafka
PATIENCE = 60  # seconds: a bound on waits for conditions, never a sleep


class Recording(r.Publisher):
    """A Publisher that records, in `log`, each outcome once Kafka acknowledged it; with
    `failing`, every outcome is refused (as by a broker that does not take it)."""

    def __init__(self, bootstrap, log, *, failing=False):
        super().__init__(bootstrap)
        self.log = log
        self.failing = failing
        self.refused = threading.Semaphore(0)
        self.outcomes = []

    def publish_outcome(self, outcome):
        if self.failing:
            self.refused.release()
            raise r.PublishError(outcome.event_id, "retrace.outcomes", "refused by the test")
        delivery = super().publish_outcome(outcome)
        self.outcomes.append((outcome, delivery))
        self.log.append(("outcome", outcome.event_id, r.OutcomeStatus.Name(outcome.status)))
        return delivery


def run_consumer(kafka, topics, group, handler, publisher, log, until):
    """consume() in a thread until `until()` holds (checked after each commit and outcome)."""
    stop = threading.Event()
    offsets = {}

    def on_commit(topic, partition, next_offset):
        log.append(("commit", topic, partition, next_offset))
        offsets[(topic, partition)] = next_offset
        if until():
            stop.set()

    thread = threading.Thread(
        target=r.consume,
        args=(topics, group, handler),
        kwargs=dict(bootstrap_servers=kafka.bootstrap, consumer_name="py-test", publisher=publisher,
                    stop=stop, on_commit=on_commit),
        daemon=True,
    )
    thread.start()
    return stop, thread, offsets


def test_publish_consume_outcomes_and_commits(kafka):
    topic = kafka.unique_topic("py-roundtrip", 3)
    group = f"py-group-{uuid.uuid4().hex[:8]}"
    publisher = r.Publisher(kafka.bootstrap)
    ok = r.root("registration", "registration.submitted.v1", subjects=["beneficiary:1"], payload={"n": 1})
    failing = r.root("registration", "registration.submitted.v1", subjects=["beneficiary:3"])
    flaky = r.caused_by(ok, "validation", "registration.validated.v1")
    deliveries = [publisher.publish(topic, e) for e in (ok, failing, flaky, ok)]  # ok twice: a retried publish
    assert all(d.topic == topic for d in deliveries)
    assert deliveries[0].partition == r.partition_for(ok.transaction_id, 3)
    assert deliveries[2].partition == deliveries[0].partition  # one transaction, one partition
    # Another language's message: a JSON value and retrace-* headers only.
    plain_id = r.new_event_id()
    plain_tx = f"tx-{uuid.uuid4().hex}"
    raw = Producer({"bootstrap.servers": kafka.bootstrap})
    raw.produce(topic, key=plain_tx.encode(), value=b'{"from":"kcat"}', headers=[
        ("retrace-event-id", plain_id.encode()), ("retrace-transaction-id", plain_tx.encode()),
        ("retrace-source", b"kcat"), ("retrace-type", b"note.v1"), ("content-type", b"application/json")])
    # And one that is nothing Retrace can trace: skipped, committed.
    raw.produce(topic, key=b"x", value=b"\x00\xffnot an envelope")
    assert raw.flush(30) == 0

    log, seen, attempts = [], [], {}

    def handler(event):
        seen.append((event.envelope.event_id, event.headers_only))
        attempts[event.envelope.event_id] = attempts.get(event.envelope.event_id, 0) + 1
        if "beneficiary:3" in event.envelope.subject_ids:
            raise r.RetraceError("registry timeout", code="registry_timeout")
        if event.envelope.event_id == flaky.event_id and attempts[flaky.event_id] == 1:
            raise r.Retry("renderer busy", after=0)
        if event.headers_only:
            assert event.envelope.payload == b'{"from":"kcat"}'
            assert event.envelope.content_type == "application/json"

    publisher_log = Recording(kafka.bootstrap, log)
    done = lambda: sum(1 for entry in log if entry[0] == "commit") == 6  # noqa: E731
    stop, thread, offsets = run_consumer(kafka, [topic], group, handler, publisher_log, log, done)
    assert stop.wait(PATIENCE), f"not every message was committed: {log}"
    thread.join(PATIENCE)
    assert not thread.is_alive()

    outcomes = {(e, s) for kind, e, s, *_ in [x + ("",) for x in log] if kind == "outcome"}
    assert outcomes == {
        (ok.event_id, "OUTCOME_STATUS_PROCESSED"),
        (failing.event_id, "OUTCOME_STATUS_FAILED"),
        (flaky.event_id, "OUTCOME_STATUS_RETRYING"),
        (flaky.event_id, "OUTCOME_STATUS_PROCESSED"),
        (plain_id, "OUTCOME_STATUS_PROCESSED"),
    }
    assert attempts[ok.event_id] == 1, "the second record of a processed event is skipped"
    assert (plain_id, True) in seen
    # Each event's commit comes after its outcome was acknowledged.
    for outcome, delivery in publisher_log.outcomes:
        outcome_at = next(i for i, x in enumerate(log) if x[0] == "outcome" and x[1] == outcome.event_id)
        assert any(x[0] == "commit" for x in log[outcome_at:]), outcome.event_id
    # The outcomes are on retrace.outcomes as the Rust SDK writes them.
    for outcome, delivery in publisher_log.outcomes:
        record = kafka.read_at(delivery.topic, delivery.partition, delivery.offset)
        decoded = r.Outcome.FromString(record.value())
        assert decoded == outcome
        assert record.key() == outcome.transaction_id.encode()
        assert list(record.headers()) == TraceHeaders.of_outcome(outcome).kafka_headers()
    failed = next(o for o, _ in publisher_log.outcomes if o.event_id == failing.event_id)
    assert failed.error == "registry timeout" and failed.attempt == 1 and failed.consumer == "py-test"
    assert failed.error_code == "registry_timeout"
    assert all(o.error_code == "" for o, _ in publisher_log.outcomes if o.event_id != failing.event_id)
    retried = [o.attempt for o, _ in publisher_log.outcomes if o.event_id == flaky.event_id]
    assert retried == [1, 2]
    # What the group committed: every partition at its end.
    ends = {}
    for d in deliveries:
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)
    committed = kafka.committed(group, topic, 3)
    for partition, end in ends.items():
        assert committed[partition] >= end, (partition, committed)
    publisher.close()


def test_nothing_is_committed_before_the_outcome_is_acknowledged(kafka):
    topic = kafka.unique_topic("py-no-commit", 1)
    group = f"py-group-{uuid.uuid4().hex[:8]}"
    event = r.root("registration", "registration.submitted.v1")
    with r.Publisher(kafka.bootstrap) as publisher:
        publisher.publish(topic, event)
    log, handled = [], []
    refusing = Recording(kafka.bootstrap, log, failing=True)
    stop, thread, _ = run_consumer(kafka, [topic], group, lambda e: handled.append(e), refusing, log, lambda: False)
    # Refused twice: the consumer is retrying the outcome, and must not have committed.
    assert refusing.refused.acquire(timeout=PATIENCE) and refusing.refused.acquire(timeout=PATIENCE)
    stop.set()
    thread.join(PATIENCE)
    assert len(handled) == 1
    assert [x for x in log if x[0] == "commit"] == []
    assert kafka.committed(group, topic, 1)[0] < 0, "nothing committed"
    # The next run, with outcomes getting through, handles the event again and commits.
    log2 = []
    accepting = Recording(kafka.bootstrap, log2)
    stop, thread, offsets = run_consumer(kafka, [topic], group, lambda e: handled.append(e), accepting, log2,
                                         lambda: any(x[0] == "commit" for x in log2))
    assert stop.wait(PATIENCE)
    thread.join(PATIENCE)
    assert [e.envelope.event_id for e in handled] == [event.event_id, event.event_id]
    assert [x[0] for x in log2] == ["outcome", "commit"]
    assert kafka.committed(group, topic, 1)[0] == 1


def test_enqueue_goes_onto_the_lane_of_its_priority(kafka):
    queue = f"py-queue-{uuid.uuid4().hex[:8]}"
    topics = r.QueueTopics.of(queue)
    for lane in (topics.normal, topics.urgent, topics.bulk):
        kafka.create_topic(lane, 1)
    with r.Publisher(kafka.bootstrap) as publisher:
        for priority, lane in [("urgent", topics.urgent), ("bulk", topics.bulk), ("normal", topics.normal),
                               (r.JobPriority.JOB_PRIORITY_UNSPECIFIED, topics.normal)]:
            job = r.with_job(r.root("registration", "certificate.requested.v1"), "certificate.render",
                             priority=priority, not_before=1_772_402_400, deadline=1_772_431_200, max_attempts=4)
            delivery = publisher.enqueue(queue, job)
            assert delivery.topic == lane, priority
            record = kafka.read_at(delivery.topic, delivery.partition, delivery.offset)
            assert r.Envelope.FromString(record.value()) == job
            assert list(record.headers()) == TraceHeaders.of(job).kafka_headers()


def test_traceparent_is_sent_when_a_span_is_current(kafka):
    trace = pytest.importorskip("opentelemetry.trace")
    topic = kafka.unique_topic("py-traceparent", 1)
    context = trace.SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331,
                                is_remote=False, trace_flags=trace.TraceFlags(1))
    event = r.root("registration", "registration.submitted.v1", subjects=["beneficiary:9"])
    with r.Publisher(kafka.bootstrap) as publisher:
        with trace.use_span(trace.NonRecordingSpan(context)):
            delivery = publisher.publish(topic, event)
        plain = publisher.publish(topic, event)
    headers = list(kafka.read_at(topic, delivery.partition, delivery.offset).headers())
    expected = TraceHeaders.of(event)
    expected.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert headers == expected.kafka_headers()
    assert [n for n, _ in headers][-2:] == ["retrace-type", "traceparent"]
    assert "traceparent" not in dict(kafka.read_at(topic, plain.partition, plain.offset).headers())


def test_an_invalid_envelope_is_not_published(kafka):
    event = r.root("registration", "registration.submitted.v1")
    event.event_id = "42"
    with r.Publisher(kafka.bootstrap) as publisher:
        with pytest.raises(r.NotUuid) as raised:
            publisher.publish("never-created", event)
    assert raised.value.field == "event_id"
