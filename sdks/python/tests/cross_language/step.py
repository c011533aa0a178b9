"""One step of a transaction that crosses languages, as a Python service runs it: it consumes
the previous step's topic with the SDK's `consume`, publishes the next step `caused_by` the
event it got with the SDK's `Publisher`, and `consume` reports its outcome (processed). It
exits 0 once that event's offset is committed, after the outcome; 1 if no event came within
the deadline.

Run by replay-cli/tests/cross_language.rs (not a pytest file), with the virtualenv that
tests/setup makes:

    RETRACE_STEP_BOOTSTRAP=localhost:9092 RETRACE_STEP_FROM=declarations \\
    RETRACE_STEP_GROUP=validation RETRACE_STEP_SOURCE=validation-python \\
    RETRACE_STEP_TYPE=registration.validated.v1 RETRACE_STEP_TO=validations \\
    .venv/bin/python tests/cross_language/step.py

`RETRACE_STEP_DEADLINE_S` bounds the wait (default 120). The TypeScript and Java SDKs' steps
(sdks/typescript/test/cross-language/step.ts, sdks/java/.../CrossLanguageStep.java) take the
same variables.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Optional

import retrace_sdk as retrace


def setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"step.py: {name} is not set")
    return value


def consume_until_committed(
    handle, watched: list, source: str, publisher: Optional[retrace.Publisher] = None
) -> bool:
    """Consumes RETRACE_STEP_FROM in RETRACE_STEP_GROUP with `handle`, outcomes reported as
    `source`, until the offset of the first record `handle` put in `watched` (as topic,
    partition, offset) is committed, after its outcome: True; or the deadline
    (RETRACE_STEP_DEADLINE_S, default 120) passes: False."""
    deadline_s = float(os.environ.get("RETRACE_STEP_DEADLINE_S", "120"))
    stop = threading.Event()
    committed = threading.Event()

    def on_commit(topic: str, partition: int, next_offset: int) -> None:
        if watched and watched[0] == (topic, partition, next_offset - 1):
            committed.set()
            stop.set()

    timer = threading.Timer(deadline_s, stop.set)
    timer.daemon = True
    timer.start()
    try:
        retrace.consume(
            [setting("RETRACE_STEP_FROM")],
            setting("RETRACE_STEP_GROUP"),
            handle,
            bootstrap_servers=setting("RETRACE_STEP_BOOTSTRAP"),
            consumer_name=source,
            publisher=publisher,
            stop=stop,
            on_commit=on_commit,
        )
    finally:
        timer.cancel()
    return committed.is_set()


def main() -> int:
    source = setting("RETRACE_STEP_SOURCE")
    event_type = setting("RETRACE_STEP_TYPE")
    to_topic = setting("RETRACE_STEP_TO")
    publisher = retrace.Publisher(setting("RETRACE_STEP_BOOTSTRAP"))
    handled = []  # (topic, partition, offset) of the event this step went on from

    def handle(event: retrace.ReceivedEvent) -> None:
        parent = event.envelope
        step = retrace.caused_by(
            parent, source, event_type, payload={"step": source, "after": parent.source}
        )
        delivery = publisher.publish(to_topic, step)
        print(
            json.dumps(
                {
                    "consumed": parent.event_id,
                    "published": step.event_id,
                    "topic": delivery.topic,
                    "partition": delivery.partition,
                    "offset": delivery.offset,
                }
            ),
            flush=True,
        )
        handled.append((event.topic, event.partition, event.offset))

    try:
        committed = consume_until_committed(handle, handled, source, publisher)
    finally:
        publisher.close()
    if not committed:
        print("step.py: no event handled and committed within the deadline", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
