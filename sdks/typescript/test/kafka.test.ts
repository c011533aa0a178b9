// Against Apache Kafka (test/run.ts): publish → consume with an outcome on retrace.outcomes
// for each event and the offset committed after it; header-only messages; a retry; the
// commit held while the outcome is not acknowledged; jobs on the lane of their priority;
// `traceparent` from an active OpenTelemetry span, to the handler's context.

import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { after, before, describe, test } from "node:test";
import { type Context, type ContextManager, ROOT_CONTEXT, context, trace } from "@opentelemetry/api";
import { type Admin, Partitioners } from "kafkajs";
import { type Outcome, OutcomeStatus } from "../gen/retrace/v1/envelope_pb.js";
import { type ReceivedEvent, Retrace, RetryLater } from "../src/client.js";
import { OUTCOMES_TOPIC, causedBy, decodeEnvelope, decodeOutcome, job, newEventId, root } from "../src/envelope.js";
import { queueTopics } from "../src/jobs.js";
import { QUIET, bootstrap, createTopics, eventually, headerPairs, kafka, readUntil, unique } from "./support/kafka.js";

let admin: Admin;
let client: Retrace;

before(async () => {
  admin = kafka().admin();
  await admin.connect();
  await createTopics(admin, [OUTCOMES_TOPIC], 3);
  client = new Retrace({ brokers: bootstrap(), kafka: QUIET });
});

after(async () => {
  await client.disconnect();
  await admin.disconnect();
});

/** The outcomes on retrace.outcomes about `eventIds`, once `expected` of them are there. */
async function outcomesAbout(eventIds: string[], expected: number): Promise<Outcome[]> {
  const wanted = new Set(eventIds);
  const about = (reads: Awaited<ReturnType<typeof readUntil>>) =>
    reads.map((r) => decodeOutcome(r.message.value!)).filter((o) => wanted.has(o.eventId));
  return about(await readUntil([OUTCOMES_TOPIC], (reads) => about(reads).length >= expected));
}

/** The group's committed offset of each partition of `topic` (-1: none). */
async function committed(group: string, topic: string): Promise<number[]> {
  const [offsets] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return offsets.partitions.sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
}

async function highWatermarks(topic: string): Promise<number[]> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.sort((a, b) => a.partition - b.partition).map((p) => Number(p.high));
}

describe("publish and consume on Apache Kafka", () => {
  test("each event gets its outcome, and the offsets are committed", async () => {
    const topic = unique("ts-registrations");
    const group = unique("ts-consumer");
    await createTopics(admin, [topic], 3);

    const ok = root("registration", "registration.submitted.v1", { subjects: ["beneficiary:42"], payload: { name: "Ada" } });
    const failing = causedBy(ok, "registration", "registration.failing.v1");
    const flaky = root("registration", "registration.flaky.v1");
    const okAt = await client.publish(topic, ok);
    await client.publish(topic, failing);
    await client.publish(topic, flaky);
    // A service publishing its own JSON value with the headers only.
    const headerOnlyId = newEventId();
    const raw = kafka().producer();
    await raw.connect();
    await raw.send({
      topic,
      messages: [
        {
          key: "tx-header-only",
          value: JSON.stringify({ birth: "BR-1" }),
          headers: {
            "retrace-event-id": headerOnlyId,
            "retrace-transaction-id": "tx-header-only",
            "retrace-source": "legacy",
            "retrace-type": "legacy.event.v1",
            "content-type": "application/json",
          },
        },
        // Neither an envelope nor traceable: skipped, its offset committed all the same.
        { key: "noise", value: "not an event" },
      ],
    });
    await raw.disconnect();

    // What is on the topic: the transaction id as key, the ids as headers.
    const onTopic = await readUntil([topic], (reads) => reads.length >= 5);
    const okRead = onTopic.find((r) => r.message.key?.toString() === ok.transactionId && decodeEnvelope(r.message.value!).eventId === ok.eventId);
    assert.ok(okRead);
    assert.equal(okRead.partition, okAt.partition);
    assert.deepEqual(headerPairs(okRead.message), [
      ["retrace-event-id", ok.eventId],
      ["retrace-transaction-id", ok.transactionId],
      ["retrace-subject", "beneficiary:42"],
      ["retrace-source", "registration"],
      ["retrace-type", "registration.submitted.v1"],
    ]);

    const handled: ReceivedEvent[] = [];
    const problems: string[] = [];
    const consumption = await client.consume(
      [topic],
      group,
      (event) => {
        handled.push({ ...event });
        if (event.envelope.type === "registration.failing.v1") {
          throw Object.assign(new Error("registry unavailable"), { code: "registry_unavailable" });
        }
        if (event.envelope.type === "registration.flaky.v1" && event.attempt === 1) throw new RetryLater("try again");
      },
      { consumer: "ts-validation", retryBackoffMs: 10, onProblem: (problem) => problems.push(problem) },
    );
    try {
      const outcomes = await outcomesAbout([ok.eventId, failing.eventId, flaky.eventId, headerOnlyId], 5);
      const summary = outcomes
        .map((o) => `${o.eventId === ok.eventId ? "ok" : o.eventId === failing.eventId ? "failing" : o.eventId === flaky.eventId ? "flaky" : "header-only"} ${OutcomeStatus[o.status]} ${o.attempt} ${o.error}`)
        .sort();
      assert.deepEqual(summary, [
        "failing FAILED 1 registry unavailable",
        "flaky PROCESSED 2 ",
        "flaky RETRYING 1 try again",
        "header-only PROCESSED 1 ",
        "ok PROCESSED 1 ",
      ]);
      for (const outcome of outcomes) assert.equal(outcome.consumer, "ts-validation");
      // The thrown error's `code` is the outcome's error code.
      const codes = outcomes.map((o) => [o.eventId === failing.eventId, o.errorCode]);
      for (const [isFailing, code] of codes) assert.equal(code, isFailing ? "registry_unavailable" : "");
      const headerOnly = handled.find((e) => e.headersOnly);
      assert.equal(headerOnly?.envelope.eventId, headerOnlyId);
      assert.equal(Buffer.from(headerOnly!.envelope.payload).toString(), '{"birth":"BR-1"}');
      // The outcome goes where its transaction's events go, under the Rust SDK's headers.
      const outcomeReads = await readUntil([OUTCOMES_TOPIC], (reads) => reads.some((r) => decodeOutcome(r.message.value!).eventId === ok.eventId));
      const okOutcome = outcomeReads.find((r) => decodeOutcome(r.message.value!).eventId === ok.eventId)!;
      assert.deepEqual(headerPairs(okOutcome.message), [
        ["retrace-transaction-id", ok.transactionId],
        ["retrace-causation-id", ok.eventId],
        ["retrace-source", "ts-validation"],
        ["retrace-type", "retrace.outcome.v1"],
      ]);
      // Every message of the topic settled: the committed offsets reach the end.
      const ends = await highWatermarks(topic);
      await eventually("the consumer's offsets committed to the end of every partition", async () => {
        const at = await committed(group, topic);
        return at.every((offset, i) => offset === ends[i] || (ends[i] === 0 && offset === -1)) ? at : undefined;
      });
      assert.equal(problems.length, 1, `one message skipped: ${problems.join("; ")}`);
    } finally {
      await consumption.stop();
    }
  });

  test("concurrent publishes are all acknowledged, each transaction on its murmur2 partition", async () => {
    const topic = unique("ts-concurrent");
    await createTopics(admin, [topic], 3);
    const events = Array.from({ length: 300 }, (_, i) => root("registration", "registration.submitted.v1", { payload: { i } }));
    const deliveries = await Promise.all(events.map((event) => client.publish(topic, event)));
    const partitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionId, leader: 1, partitionErrorCode: 0, replicas: [1], isr: [1] }));
    events.forEach((event, i) => {
      assert.equal(deliveries[i].partition, partitioner({ topic, partitionMetadata, message: { key: event.transactionId, value: null } }));
    });
    const ends = await highWatermarks(topic);
    assert.equal(ends.reduce((a, b) => a + b, 0), events.length, "each event stored once");
  });

  test("the offset is committed only after the outcome is acknowledged", async () => {
    const topic = unique("ts-commit");
    const group = unique("ts-commit-consumer");
    await createTopics(admin, [topic], 1);
    const event = root("registration", "registration.submitted.v1");
    await client.publish(topic, event);

    // A client whose outcomes wait for the test's word before going to Kafka.
    let outcomeAsked!: () => void;
    const asked = new Promise<void>((resolve) => (outcomeAsked = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const held = new Retrace({ brokers: bootstrap(), kafka: QUIET });
    const publishOutcome = held.publishOutcome.bind(held);
    held.publishOutcome = async (outcome) => {
      outcomeAsked();
      await released;
      return publishOutcome(outcome);
    };
    const consumption = await held.consume([topic], group, () => {});
    try {
      await asked;
      assert.deepEqual(await committed(group, topic), [-1], "nothing committed before the outcome");
      release();
      await eventually("the offset committed once the outcome was acknowledged", async () =>
        (await committed(group, topic))[0] === 1 ? true : undefined,
      );
      const [outcome] = await outcomesAbout([event.eventId], 1);
      assert.equal(outcome.status, OutcomeStatus.PROCESSED);
    } finally {
      await consumption.stop();
      await held.disconnect();
    }
  });

  test("enqueue puts each job on the lane of its priority", async () => {
    const queue = unique("ts-certificates");
    const lanes = queueTopics(queue);
    await createTopics(admin, [lanes.normal, lanes.urgent, lanes.bulk], 1);
    const parent = root("registration", "registration.approved.v1");
    const jobs = {
      [lanes.urgent]: job("registration", "certificate.render", { priority: "urgent" }, parent),
      [lanes.bulk]: job("registration", "certificate.render", { priority: "bulk", notBefore: new Date(Date.now() + 3_600_000) }, parent),
      [lanes.normal]: job("registration", "certificate.render", {}, parent),
    };
    for (const [lane, envelope] of Object.entries(jobs)) {
      const delivery = await client.enqueue(queue, envelope);
      assert.equal(delivery.topic, lane);
    }
    const reads = await readUntil([lanes.normal, lanes.urgent, lanes.bulk], (r) => r.length >= 3);
    for (const read of reads) {
      const envelope = decodeEnvelope(read.message.value!);
      assert.equal(envelope.eventId, jobs[read.topic].eventId, `the job on ${read.topic}`);
      assert.equal(read.message.key?.toString(), parent.transactionId);
      assert.equal(read.message.headers?.["retrace-causation-id"]?.toString(), parent.eventId);
    }
  });

  test("traceparent goes from the active span to the handler's context", async () => {
    // OpenTelemetry's API needs a context manager to carry the active span; an application's
    // OpenTelemetry SDK registers one.
    const storage = new AsyncLocalStorage<Context>();
    const manager: ContextManager = {
      active: () => storage.getStore() ?? ROOT_CONTEXT,
      with: (ctx, fn, thisArg, ...args) => storage.run(ctx, () => fn.call(thisArg, ...args)),
      bind: (_ctx, target) => target,
      enable() {
        return this;
      },
      disable() {
        return this;
      },
    };
    assert.ok(context.setGlobalContextManager(manager));
    try {
      const topic = unique("ts-traced");
      await createTopics(admin, [topic], 1);
      const traceId = "0af7651916cd43dd8448eb211c80319c";
      const span = trace.wrapSpanContext({ traceId, spanId: "b7ad6b7169203331", traceFlags: 1 });
      const event = root("registration", "registration.submitted.v1");
      await context.with(trace.setSpan(context.active(), span), () => client.publish(topic, event));
      const [read] = await readUntil([topic], (r) => r.length >= 1);
      assert.deepEqual(headerPairs(read.message).slice(-2), [
        ["retrace-type", "registration.submitted.v1"],
        ["traceparent", `00-${traceId}-b7ad6b7169203331-01`],
      ]);
      let handled!: (traceId: string | undefined) => void;
      const seen = new Promise<string | undefined>((resolve) => (handled = resolve));
      const consumption = await client.consume([topic], unique("ts-traced-consumer"), () =>
        handled(trace.getSpanContext(context.active())?.traceId),
      );
      try {
        assert.equal(await seen, traceId);
      } finally {
        await consumption.stop();
      }
    } finally {
      context.disable();
    }
  });
});
