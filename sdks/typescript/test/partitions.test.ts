// proto/testdata/partitions.json on Apache Kafka: its 10,000 transaction ids produced with the
// settings `Retrace` publishes with (PRODUCER_DEFAULTS, whose partitioner is kafkajs's
// DefaultPartitioner) to real 3- and 12-partition topics and read back: each is on the
// partition the file says, where the Rust, Python and Java SDKs put it. vectors.test.ts checks
// the partitioner function itself, without a broker.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Admin } from "kafkajs";
import { PRODUCER_DEFAULTS } from "../src/client.js";
import { createTopics, kafka, readUntil, unique } from "./support/kafka.js";

const file = JSON.parse(readFileSync(resolve(__dirname, "../../../../proto/testdata/partitions.json"), "utf8")) as {
  partition_counts: number[];
  transactions: [string, ...number[]][];
};

let admin: Admin;

before(async () => {
  admin = kafka().admin();
  await admin.connect();
});

after(async () => {
  await admin.disconnect();
});

describe("proto/testdata/partitions.json on Apache Kafka", () => {
  for (const count of [3, 12]) {
    test(`the publisher's producer puts every id on its partition of ${count}`, async () => {
      const column = file.partition_counts.indexOf(count);
      assert.ok(column >= 0, `partitions.json has a column for ${count} partitions`);
      const ids = file.transactions.map(([id]) => id);
      assert.equal(ids.length, 10_000);
      const topic = unique(`ts-partitions-${count}`);
      await createTopics(admin, [topic], count);
      const producer = kafka().producer(PRODUCER_DEFAULTS);
      await producer.connect();
      try {
        for (let start = 0; start < ids.length; start += 1_000) {
          const messages = ids.slice(start, start + 1_000).map((key) => ({ key, value: "" }));
          await producer.send({ topic, messages });
        }
      } finally {
        await producer.disconnect();
      }
      const reads = await readUntil([topic], (read) => read.length >= ids.length, 60_000);
      // Some short ids repeat in the file (with the same partitions): compared as multisets.
      const tally = (keys: string[]) => keys.reduce((n, k) => n.set(k, (n.get(k) ?? 0) + 1), new Map<string, number>());
      assert.deepEqual(tally(reads.map((r) => r.message.key!.toString("utf8"))), tally(ids), "every id read back once");
      const expected = new Map(file.transactions.map(([id, ...partitions]) => [id, partitions[column]]));
      const wrong = reads
        .map((r) => ({ id: r.message.key!.toString("utf8"), partition: r.partition }))
        .filter(({ id, partition }) => partition !== expected.get(id))
        .map(({ id, partition }) => `${JSON.stringify(id)}: ${partition}, not ${expected.get(id)}`);
      assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of ${ids.length} ids on another partition`);
    });
  }
});
