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

import sys

import retrace_sdk as retrace
from step import consume_until_committed, setting

#: What the handler raises while the gateway is down: the outcome's error and error code.
GATEWAY_DOWN = "SMS gateway unavailable: HTTP 503 from sms-gateway"
GATEWAY_DOWN_CODE = "sms_gateway_unavailable"


def main() -> int:
    tried = set()  # event ids the gateway was down for
    replayed = []  # (topic, partition, offset) of the replayed copy processed

    def handle(event: retrace.ReceivedEvent) -> None:
        envelope = event.envelope
        if envelope.event_id not in tried:
            tried.add(envelope.event_id)
            print(f"notifier: {envelope.event_id} ({envelope.type} from {envelope.source}): gateway down", flush=True)
            raise retrace.RetraceError(GATEWAY_DOWN, code=GATEWAY_DOWN_CODE)
        print(f"notifier: {envelope.event_id} sent (replay {envelope.replay.replay_id or 'none'})", flush=True)
        if envelope.HasField("replay"):
            replayed.append((event.topic, event.partition, event.offset))

    if not consume_until_committed(handle, replayed, setting("RETRACE_STEP_SOURCE")):
        print("notifier.py: no replayed copy processed within the deadline", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
