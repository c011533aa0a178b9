"""Jobs for the off-peak worker: a queue's topics, as services/sdk/src/jobs.rs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Tuple

from .errors import EnqueueError
from .messages import Envelope, JobPriority

MAX_TOPIC_LEN = 249
_TOPIC_CHAR = re.compile(r"[a-zA-Z0-9._-]")


def check_topic_name(topic: str) -> None:
    """Kafka's topic-name rule (services/sdk/src/topic.rs); raises ValueError."""
    if topic in ("", ".", ".."):
        raise ValueError("is not a valid Kafka topic name")
    if len(topic) > MAX_TOPIC_LEN:
        raise ValueError(f"is {len(topic)} characters long: Kafka allows {MAX_TOPIC_LEN}")
    for c in topic:
        if not _TOPIC_CHAR.fullmatch(c):
            raise ValueError(
                f"contains {c!r}: Kafka topic names use only a-z, A-Z, 0-9, '.', '_' and '-'"
            )


@dataclass(frozen=True)
class QueueTopics:
    """A queue's topics: one lane per priority, its retry and dead-letter topics."""

    normal: str
    urgent: str
    bulk: str
    retry: str
    dead_letter: str

    @classmethod
    def of(cls, queue: str) -> "QueueTopics":
        base = f"retrace.jobs.{queue}"
        return cls(
            normal=base,
            urgent=f"{base}.urgent",
            bulk=f"{base}.bulk",
            retry=f"{base}.retry",
            dead_letter=f"{base}.dlq",
        )

    def lane(self, priority: int) -> str:
        """The lane a job of `priority` is enqueued on (unspecified = normal)."""
        if priority == JobPriority.JOB_PRIORITY_URGENT:
            return self.urgent
        if priority == JobPriority.JOB_PRIORITY_BULK:
            return self.bulk
        return self.normal

    def all(self) -> Tuple[str, str, str, str, str]:
        return (self.normal, self.urgent, self.bulk, self.retry, self.dead_letter)


def lane_of(queue: str, job: Envelope) -> str:
    """The lane `job` goes on in `queue`, once it is checked to be a job."""
    topics = QueueTopics.of(queue)
    try:
        check_topic_name(topics.dead_letter)
    except ValueError as reason:
        raise EnqueueError(
            f"job not enqueued: queue name {queue!r} cannot name a topic ({reason})"
        ) from None
    if not job.HasField("job"):
        raise EnqueueError(
            "job not enqueued: field `job` is missing (a job's envelope carries its kind and "
            "priority)",
            field="job",
        )
    if not job.job.kind:
        raise EnqueueError(
            'job not enqueued: field `job.kind` is missing (it selects the handler, e.g. '
            '"certificate.render")',
            field="job.kind",
        )
    return topics.lane(job.job.priority)
