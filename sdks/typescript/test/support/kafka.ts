// What the Kafka tests share: the broker (test/run.ts sees that one is set), unique names,
// topics, and reading a topic back until a condition holds.

import { randomBytes } from "node:crypto";
import { type Admin, Kafka, type KafkaMessage, logLevel } from "kafkajs";

export function bootstrap(): string {
  const value = process.env.RETRACE_TEST_KAFKA_BOOTSTRAP;
  if (!value) {
    throw new Error(
      "RETRACE_TEST_KAFKA_BOOTSTRAP is not set: run the tests with `npm test`, which starts " +
        "Apache Kafka through tests/kafka/kafka-local when no broker is given",
    );
  }
  return value;
}

/** Quiet clients: kafkajs logs retriable conditions (a coordinator loading) as errors. */
export const QUIET = { logLevel: logLevel.NOTHING };

export function kafka(): Kafka {
  return new Kafka({ brokers: bootstrap().split(","), clientId: "retrace-sdk-tests", ...QUIET });
}

export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

/** Creates `topics` (missing ones) with `partitions` each, and waits for their leaders. */
export async function createTopics(admin: Admin, topics: string[], partitions: number): Promise<void> {
  await admin.createTopics({
    waitForLeaders: true,
    topics: topics.map((topic) => ({ topic, numPartitions: partitions })),
  });
}

export interface Read {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

/** Reads `topics` from the beginning (a group of its own) until `done(everything read so
 * far)` holds; fails after `timeoutMs`. */
export async function readUntil(
  topics: string[],
  done: (read: Read[]) => boolean,
  timeoutMs = 30_000,
): Promise<Read[]> {
  const consumer = kafka().consumer({ groupId: unique("reader"), maxWaitTimeInMs: 100 });
  const read: Read[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`read ${read.length} messages of ${topics.join(", ")} in ${timeoutMs} ms without the condition holding`)),
        timeoutMs,
      );
      consumer
        .run({
          eachMessage: async ({ topic, partition, message }) => {
            read.push({ topic, partition, message });
            if (done(read)) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return read;
}

/** Polls `check` until it returns a value other than undefined; fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The message's headers as [name, value] pairs, in order, values as text. */
export function headerPairs(message: KafkaMessage): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    for (const one of Array.isArray(value) ? value : [value]) out.push([name, String(one ?? "")]);
  }
  return out;
}
