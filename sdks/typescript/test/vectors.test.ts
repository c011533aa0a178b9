// The shared test vectors of proto/testdata (written by proto/tests/vectors.rs from the Rust
// SDK): every message decodes and re-encodes to the same bytes, its canonical JSON encodes to
// them too, and the key, headers and lane this SDK publishes it with are the Rust SDK's. And
// kafkajs's partitioner, the one `publish` uses, puts every transaction id of partitions.json
// on the partition Java and librdkafka's murmur2_random put it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { type DescMessage, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { Partitioners } from "kafkajs";
import { EnvelopeSchema, OutcomeSchema } from "../gen/retrace/v1/envelope_pb.js";
import { envelopeMessage, outcomeMessage } from "../src/client.js";
import { validateEnvelope, validateOutcome } from "../src/envelope.js";
import { laneOf } from "../src/jobs.js";

const testdata = resolve(__dirname, "../../../../proto/testdata");

interface Vector {
  name: string;
  message: string;
  published_with: "publish" | "enqueue" | "publish_outcome";
  topic: string;
  queue?: string;
  key: string;
  value_hex: string;
  headers: [string, string][];
  fields: Record<string, unknown>;
}

function load<T>(file: string): T {
  return JSON.parse(readFileSync(join(testdata, file), "utf8")) as T;
}

/** A kafkajs header object as kafkajs writes it: in key order, an array as repeated headers. */
function flatten(headers: Record<string, string | string[]>): [string, string][] {
  return Object.entries(headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((one): [string, string] => [name, one]),
  );
}

const SCHEMAS: Record<string, DescMessage> = {
  "retrace.v1.Envelope": EnvelopeSchema,
  "retrace.v1.Outcome": OutcomeSchema,
};

describe("proto/testdata/vectors.json", () => {
  const file = load<{ format: string; vectors: Vector[] }>("vectors.json");

  test("is a format this test reads", () => {
    assert.equal(file.format, "retrace-test-vectors/1");
    assert.ok(file.vectors.length > 0);
  });

  for (const vector of file.vectors) {
    test(vector.name, () => {
      const schema = SCHEMAS[vector.message];
      assert.ok(schema, `unknown message type ${vector.message}`);
      const bytes = Buffer.from(vector.value_hex, "hex");

      const decoded = fromBinary(schema, bytes);
      assert.equal(Buffer.from(toBinary(schema, decoded)).toString("hex"), vector.value_hex, "re-encoded");
      const built = fromJson(schema, vector.fields as never);
      assert.equal(Buffer.from(toBinary(schema, built)).toString("hex"), vector.value_hex, "from fields");

      if (vector.published_with === "publish_outcome") {
        const outcome = fromBinary(OutcomeSchema, bytes);
        validateOutcome(outcome);
        const message = outcomeMessage(outcome);
        assert.equal(vector.topic, "retrace.outcomes");
        assert.equal(message.key, vector.key);
        assert.equal(message.value.toString("hex"), vector.value_hex);
        assert.deepEqual(flatten(message.headers), vector.headers);
        return;
      }
      const envelope = fromBinary(EnvelopeSchema, bytes);
      validateEnvelope(envelope);
      const message = envelopeMessage(envelope);
      assert.equal(message.key, vector.key);
      assert.equal(message.value.toString("hex"), vector.value_hex);
      assert.deepEqual(flatten(message.headers), vector.headers);
      if (vector.published_with === "enqueue") {
        assert.ok(vector.queue, "an enqueued vector names its queue");
        assert.equal(laneOf(vector.queue, envelope), vector.topic);
      }
      // With a trace context, `traceparent` follows `retrace-type`.
      const traced = flatten(envelopeMessage(envelope, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").headers);
      const at = traced.findIndex(([name]) => name === "traceparent");
      assert.equal(traced[at - 1][0], "retrace-type");
    });
  }
});

describe("proto/testdata/partitions.json", () => {
  test("kafkajs's DefaultPartitioner puts every transaction id where the Rust SDK does", () => {
    const file = load<{ format: string; partition_counts: number[]; transactions: [string, ...number[]][] }>(
      "partitions.json",
    );
    assert.equal(file.format, "retrace-partitions/1");
    assert.ok(file.transactions.length >= 10_000);
    const partitioner = Partitioners.DefaultPartitioner();
    const metadata = (count: number) =>
      Array.from({ length: count }, (_, partitionId) => ({
        partitionId,
        leader: 1,
        partitionErrorCode: 0,
        replicas: [1],
        isr: [1],
      }));
    const layouts = file.partition_counts.map(metadata);
    let checked = 0;
    for (const [id, ...expected] of file.transactions) {
      layouts.forEach((partitionMetadata, i) => {
        const partition = partitioner({ topic: "t", partitionMetadata, message: { key: id, value: null } });
        assert.equal(partition, expected[i], `${JSON.stringify(id)} with ${file.partition_counts[i]} partitions`);
        checked++;
      });
    }
    assert.equal(checked, file.transactions.length * file.partition_counts.length);
  });
});
