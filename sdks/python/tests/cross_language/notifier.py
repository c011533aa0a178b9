"""The consumer at the end of a transaction that crosses languages: a Python notification
service reading the topic the Java SDK's step publishes to, through the SDK's `consume`. Its
SMS gateway is down the first time it meets an event: the handler raises, and `consume` reports
the event FAILED with the error and its code. A copy replayed from the archive (`retrace replay
... --only-failed`) comes back with its `replay` field set; by then the gateway answers, the
copy is processed, and the notifier exits 0 once that copy's offset is committed, after its
outcome. It exits 1 if no replayed copy came within the deadline.

Run by replay-cli/tests/cross_language.rs (not a pytest file), with the variables of
`step.py` that it needs (RETRACE_STEP_BOOTSTRAP, _FROM, _GROUP, _SOURCE: the outcomes'
consumer, _DEADLINE_S).
"""

from __future__ import annotations

import os
import sys
import threading

import retrace_sdk as retrace
from step import setting

#: What the handler raises while the gateway is down: the outcome's error and error code.
GATEWAY_DOWN = "SMS gateway unavailable: HTTP 503 from sms-gateway"
GATEWAY_DOWN_CODE = "sms_gateway_unavailable"


def main() -> int:
    bootstrap = setting("RETRACE_STEP_BOOTSTRAP")
    from_topic = setting("RETRACE_STEP_FROM")
    deadline_s = float(os.environ.get("RETRACE_STEP_DEADLINE_S", "120"))
    stop = threading.Event()
    tried = set()  # event ids the gateway was down for
    replayed = []  # (topic, partition, offset) of the replayed copy processed
    done = threading.Event()

    def handle(event: retrace.ReceivedEvent) -> None:
        envelope = event.envelope
        if envelope.event_id not in tried:
            tried.add(envelope.event_id)
            print(f"notifier: {envelope.event_id} ({envelope.type} from {envelope.source}): gateway down", flush=True)
            raise retrace.RetraceError(GATEWAY_DOWN, code=GATEWAY_DOWN_CODE)
        print(f"notifier: {envelope.event_id} sent (replay {envelope.replay.replay_id or 'none'})", flush=True)
        if envelope.HasField("replay"):
            replayed.append((event.topic, event.partition, event.offset))

    def on_commit(topic: str, partition: int, next_offset: int) -> None:
        if replayed and replayed[0] == (topic, partition, next_offset - 1):
            done.set()
            stop.set()

    timer = threading.Timer(deadline_s, stop.set)
    timer.daemon = True
    timer.start()
    try:
        retrace.consume(
            [from_topic],
            setting("RETRACE_STEP_GROUP"),
            handle,
            bootstrap_servers=bootstrap,
            consumer_name=setting("RETRACE_STEP_SOURCE"),
            stop=stop,
            on_commit=on_commit,
        )
    finally:
        timer.cancel()
    if not done.is_set():
        print(f"notifier.py: no replayed copy processed within {deadline_s:.0f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
