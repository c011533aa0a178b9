// One step of a transaction that crosses languages, as a Node.js service runs it: it consumes
// the previous step's topic with the SDK's `consume`, publishes the next step `causedBy` the
// event it got with the SDK's `publish`, and `consume` reports its outcome (processed). It
// exits 0 once that event's offset is committed, after the outcome; 1 if no event came within
// the deadline.
//
// Run by replay-cli/tests/cross_language.rs after `npm run build` (it is not a test file:
// test/run.ts runs only test/*.test.js), with the variables of the Python SDK's step
// (sdks/python/tests/cross_language/step.py):
//
//   RETRACE_STEP_BOOTSTRAP=localhost:9092 RETRACE_STEP_FROM=registrations \
//   RETRACE_STEP_GROUP=workflow RETRACE_STEP_SOURCE=workflow-typescript \
//   RETRACE_STEP_TYPE=registration.declared.v1 RETRACE_STEP_TO=declarations \
//   node dist/test/cross-language/step.js

import { logLevel } from "kafkajs";
import { Retrace, causedBy } from "../../src/index.js";

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`step.ts: ${name} is not set`);
  return value;
}

async function main(): Promise<number> {
  const bootstrap = setting("RETRACE_STEP_BOOTSTRAP");
  const source = setting("RETRACE_STEP_SOURCE");
  const type = setting("RETRACE_STEP_TYPE");
  const from = setting("RETRACE_STEP_FROM");
  const to = setting("RETRACE_STEP_TO");
  const deadlineMs = 1000 * Number(process.env.RETRACE_STEP_DEADLINE_S ?? "120");

  // kafkajs logs retriable conditions (a group coordinator loading) as errors: warnings only.
  const retrace = new Retrace({ brokers: bootstrap, clientId: source, kafka: { logLevel: logLevel.NOTHING } });
  let handled: { topic: string; partition: number; next: string } | undefined;
  let committed!: () => void;
  const isCommitted = new Promise<void>((resolve) => {
    committed = resolve;
  });
  const consumption = await retrace.consume(
    [from],
    setting("RETRACE_STEP_GROUP"),
    async (event) => {
      const parent = event.envelope;
      const step = causedBy(parent, source, type, { payload: { step: source, after: parent.source } });
      const delivery = await retrace.publish(to, step);
      console.log(JSON.stringify({ consumed: parent.eventId, published: step.eventId, ...delivery }));
      handled ??= { topic: event.topic, partition: event.partition, next: (BigInt(event.offset) + 1n).toString() };
    },
    { consumer: source },
  );
  // Registered once `consume` resolved: its first fetch is answered on a later turn of the
  // event loop, so no commit is emitted before this listener is there. (kafkajs emits the
  // offsets as it sent them: the typings say string, the value is a `Long`.)
  const { consumer } = consumption;
  consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
    const done = payload.topics.some(
      (t) =>
        t.topic === handled?.topic &&
        t.partitions.some((p) => Number(p.partition) === handled?.partition && String(p.offset) === handled?.next),
    );
    if (done) committed();
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), deadlineMs);
  });
  const ok = await Promise.race([isCommitted.then(() => true), deadline]);
  clearTimeout(timer);
  await consumption.stop();
  await retrace.disconnect();
  if (!ok) console.error(`step.ts: no event of ${from} handled and committed within ${deadlineMs / 1000} s`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
