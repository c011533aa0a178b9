"""The broker the Kafka tests use: `RETRACE_TEST_KAFKA_BOOTSTRAP` when set (the Rust test
`tests/scenarios/sdk_python.rs` passes its shared Apache Kafka node), else one Apache Kafka
node started here with `tests/kafka/kafka-local` and stopped at the end of the session."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = pathlib.Path(__file__).resolve().parents[3]
TESTDATA = REPO / "proto" / "testdata"
KAFKA_LOCAL = REPO / "tests" / "kafka" / "kafka-local"


@pytest.fixture(scope="session")
def vectors():
    return json.loads((TESTDATA / "vectors.json").read_text(encoding="utf-8"))["vectors"]


@pytest.fixture(scope="session")
def partitions():
    return json.loads((TESTDATA / "partitions.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def bootstrap():
    given = os.environ.get("RETRACE_TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="retrace-pytest-kafka-") as parent:
        launcher = subprocess.Popen(
            [str(KAFKA_LOCAL), "start", "--dir", f"{parent}/kafka", "--until-stdin-closes", "--clean"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        found = None
        for line in launcher.stdout:
            if line.startswith("bootstrap="):
                found = line.strip().split("=", 1)[1]
                break
        if found is None:
            launcher.wait()
            pytest.fail(f"kafka-local did not start (exit {launcher.returncode}); its message is above")
        try:
            yield found
        finally:
            launcher.stdin.close()  # the launcher stops its node when its stdin closes
            launcher.terminate()
            launcher.wait(timeout=60)


class Kafka:
    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(self, topic: str, partitions: int) -> str:
        futures = self.admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1)])
        for future in futures.values():
            try:
                future.result(timeout=30)
            except Exception as error:  # already there: fine
                if "TOPIC_ALREADY_EXISTS" not in str(error):
                    raise
        return topic

    def unique_topic(self, prefix: str, partitions: int = 1) -> str:
        return self.create_topic(f"{prefix}-{uuid.uuid4().hex[:10]}", partitions)

    def read_at(self, topic: str, partition: int, offset: int):
        """The record at `topic`/`partition`@`offset`."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused", "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, partition, offset)])
            for _ in range(150):
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    return message
            raise AssertionError(f"no record at {topic}[{partition}]@{offset}")
        finally:
            consumer.close()

    def committed(self, group: str, topic: str, partitions: int):
        """The group's committed offsets by partition (negative: none)."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            answer = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
            return {tp.partition: tp.offset for tp in answer}
        finally:
            consumer.close()


@pytest.fixture(scope="session")
def kafka(bootstrap):
    kafka = Kafka(bootstrap)
    kafka.create_topic("retrace.outcomes", 3)
    return kafka
