"""proto/testdata/partitions.json: the SDK places every transaction id where the Rust SDK
(librdkafka murmur2_random) and the Java client do."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

import retrace_sdk as r
from retrace_sdk.publisher import PRODUCER_DEFAULTS


def test_murmur2_matches_the_java_clients_test_cases():
    # Apache Kafka's UtilsTest.testMurmur2.
    assert r.murmur2(b"21") == -973932308
    assert r.murmur2(b"foobar") == -790332482
    assert r.murmur2(b"a-little-bit-long-string") == -985981536
    assert r.murmur2(b"a-little-bit-longer-string") == -1486304829
    assert r.murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert r.murmur2(b"abc") == 479470107


def test_every_id_has_the_rust_sdks_partition(partitions):
    counts = partitions["partition_counts"]
    rows = partitions["transactions"]
    assert len(rows) == 10_000
    for row in rows:
        tx, expected = row[0], row[1:]
        assert [r.partition_for(tx, n) for n in counts] == expected, tx


@pytest.mark.kafka
@pytest.mark.parametrize("count", [3, 12])
def test_the_publishers_producer_puts_every_id_on_that_partition(partitions, kafka, count):
    """The Publisher's own producer settings, producing every id to a real topic: librdkafka
    must pick the partition in the file (it would not without partitioner=murmur2_random)."""
    column = 1 + partitions["partition_counts"].index(count)
    topic = kafka.unique_topic(f"py-partitions-{count}", count)
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": kafka.bootstrap, "linger.ms": 20})
    placed = {}
    lock = threading.Lock()

    def on_delivery(error, message):
        assert error is None, error
        with lock:
            placed[message.key().decode("utf-8")] = message.partition()

    for row in partitions["transactions"]:
        while True:
            try:
                producer.produce(topic, key=row[0].encode("utf-8"), value=b"", on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    wrong = [(row[0], placed.get(row[0]), row[column]) for row in partitions["transactions"] if placed.get(row[0]) != row[column]]
    assert wrong == [], f"{len(wrong)} ids on another partition, e.g. {wrong[:5]}"
