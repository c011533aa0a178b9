"""proto/testdata/vectors.json: every vector decodes and re-encodes to its bytes, its fields
build the same bytes, and the SDK's key, headers and lane are the Rust SDK's."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

import retrace_sdk as r

MESSAGES = {"retrace.v1.Envelope": r.Envelope, "retrace.v1.Outcome": r.Outcome}


def expected_headers(vector):
    return [(name, value.encode("utf-8")) for name, value in vector["headers"]]


def sdk_headers(vector, message):
    if vector["published_with"] == "publish_outcome":
        return r.TraceHeaders.of_outcome(message).kafka_headers()
    return r.TraceHeaders.of(message).kafka_headers()


def test_there_are_vectors_of_every_kind(vectors):
    kinds = {v["published_with"] for v in vectors}
    assert kinds == {"publish", "enqueue", "publish_outcome"}
    assert len(vectors) >= 10


def test_each_vector_decodes_and_reencodes_to_its_bytes(vectors):
    for vector in vectors:
        value = bytes.fromhex(vector["value_hex"])
        message = MESSAGES[vector["message"]].FromString(value)
        assert message.SerializeToString(deterministic=True) == value, vector["name"]
        assert message.SerializeToString() == value, vector["name"]


def test_each_vectors_fields_build_its_bytes(vectors):
    for vector in vectors:
        built = json_format.ParseDict(vector["fields"], MESSAGES[vector["message"]]())
        assert built.SerializeToString(deterministic=True).hex() == vector["value_hex"], vector["name"]
        decoded = MESSAGES[vector["message"]].FromString(bytes.fromhex(vector["value_hex"]))
        assert json_format.MessageToDict(decoded) == vector["fields"], vector["name"]


def test_each_vector_has_the_rust_sdks_key_headers_and_lane(vectors):
    for vector in vectors:
        message = MESSAGES[vector["message"]].FromString(bytes.fromhex(vector["value_hex"]))
        assert message.transaction_id == vector["key"], vector["name"]
        assert sdk_headers(vector, message) == expected_headers(vector), vector["name"]
        if vector["published_with"] == "publish_outcome":
            r.validate_outcome(message)
            assert vector["topic"] == r.OUTCOMES_TOPIC
        else:
            r.validate(message)
        if vector["published_with"] == "enqueue":
            assert r.lane_of(vector["queue"], message) == vector["topic"], vector["name"]


def test_each_vectors_headers_parse_back(vectors):
    for vector in vectors:
        parsed = r.TraceHeaders.parse(expected_headers(vector))
        message = MESSAGES[vector["message"]].FromString(bytes.fromhex(vector["value_hex"]))
        if vector["message"] == "retrace.v1.Envelope":
            assert parsed == r.TraceHeaders.of(message), vector["name"]
            parsed.validate()


@pytest.mark.kafka
def test_each_vector_published_by_the_sdk_is_on_kafka_byte_for_byte(vectors, kafka):
    """Published for real (confluent-kafka), read back: key, value and headers as the Rust SDK's
    (tests/scenarios/sdk_python.rs checks the Rust SDK's records against the same file)."""
    topic = kafka.unique_topic("py-vectors", 3)
    queue = topic.replace("py-vectors", "py-vector-queue")
    with r.Publisher(kafka.bootstrap) as publisher:
        for vector in vectors:
            message = MESSAGES[vector["message"]].FromString(bytes.fromhex(vector["value_hex"]))
            if vector["published_with"] == "publish":
                delivery = publisher.publish(topic, message)
            elif vector["published_with"] == "enqueue":
                lane = r.lane_of(queue, message)
                kafka.create_topic(lane, 1)
                delivery = publisher.enqueue(queue, message)
                assert delivery.topic == lane
                assert lane == vector["topic"].replace("certificates", queue)
            else:
                delivery = publisher.publish_outcome(message)
                assert delivery.topic == "retrace.outcomes"
            record = kafka.read_at(delivery.topic, delivery.partition, delivery.offset)
            assert record.key() == vector["key"].encode(), vector["name"]
            assert record.value().hex() == vector["value_hex"], vector["name"]
            assert list(record.headers() or []) == expected_headers(vector), vector["name"]
