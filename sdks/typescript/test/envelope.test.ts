// Building and validating envelopes, headers, lanes and received messages, without Kafka: the
// rules and error texts of proto/src/envelope.rs, proto/src/headers.rs and the SDK's jobs.rs.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { EnvelopeSchema, JobPriority } from "../gen/retrace/v1/envelope_pb.js";
import { PublishError, Retrace, envelopeMessage, receive } from "../src/client.js";
import {
  EnvelopeError,
  MAX_ERROR_CODE_LEN,
  OutcomeStatus,
  causedBy,
  checkErrorCode,
  decodeEnvelope,
  encodeEnvelope,
  job,
  newEventId,
  outcomeOf,
  root,
  validateEnvelope,
  validateOutcome,
  withErrorCode,
} from "../src/envelope.js";
import { HeaderError, parseHeaders, validateHeaders } from "../src/headers.js";
import { EnqueueError, laneOf } from "../src/jobs.js";

function fieldOf(fn: () => unknown): EnvelopeError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof EnvelopeError, `an EnvelopeError, not ${String(error)}`);
    return error;
  }
  assert.fail("no error");
}

describe("envelopes", () => {
  test("a new event id is a UUIDv7", () => {
    const id = newEventId();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(newEventId(), id);
  });

  test("causedBy links the parent and keeps its transaction and subjects", () => {
    const parent = root("registration", "registration.submitted.v1", { subjects: ["beneficiary:42"] });
    const child = causedBy(parent, "validation", "registration.validated.v1", { subjects: ["village:7"] });
    assert.equal(child.transactionId, parent.transactionId);
    assert.equal(child.causationId, parent.eventId);
    assert.deepEqual(child.subjectIds, ["beneficiary:42", "village:7"]);
    assert.notEqual(child.eventId, parent.eventId);
    assert.equal(parent.causationId, "");
    validateEnvelope(parent);
    validateEnvelope(child);
  });

  test("a payload survives encoding", () => {
    const envelope = root("registration", "registration.submitted.v1", { payload: { name: "Ada" } });
    assert.equal(envelope.contentType, "application/json");
    const decoded = decodeEnvelope(encodeEnvelope(envelope));
    assert.deepEqual(JSON.parse(Buffer.from(decoded.payload).toString()), { name: "Ada" });
    assert.equal(decoded.eventId, envelope.eventId);
  });

  test("validation names the missing field, with the Rust SDK's text", () => {
    const envelope = root("registration", "registration.submitted.v1");
    envelope.transactionId = "";
    const error = fieldOf(() => validateEnvelope(envelope));
    assert.equal(error.field, "transaction_id");
    assert.equal(error.kind, "missing");
    assert.equal(error.message, "field `transaction_id` is missing: every Retrace event must carry it");
  });

  test("validation names each field at fault", () => {
    const cases: [string, (e: ReturnType<typeof root>) => void, string, string][] = [
      ["event_id", (e) => (e.eventId = "42"), "not_uuid", 'field `event_id` is not a UUID ("42"): event ids are UUIDv7 strings'],
      ["causation_id", (e) => (e.causationId = "nope"), "not_uuid", 'field `causation_id` is not a UUID ("nope"): event ids are UUIDv7 strings'],
      ["source", (e) => (e.source = ""), "missing", "field `source` is missing: every Retrace event must carry it"],
      ["type", (e) => (e.type = "a\u0007b"), "control_character", "field `type` contains a control character: ids must be printable text"],
      ["subject_ids", (e) => e.subjectIds.push("ɛ".repeat(257)), "too_long", "field `subject_ids` is 514 bytes long: the limit is 512"],
    ];
    for (const [field, damage, kind, message] of cases) {
      const envelope = root("registration", "registration.submitted.v1");
      damage(envelope);
      const error = fieldOf(() => validateEnvelope(envelope));
      assert.deepEqual([error.field, error.kind, error.message], [field, kind, message]);
    }
  });

  test("the UUID forms Rust's parser accepts are accepted", () => {
    for (const id of [
      "0195F3A0-7C00-7000-8000-000000000001",
      "0195f3a07c0070008000000000000001",
      "{0195f3a0-7c00-7000-8000-000000000001}",
      "urn:uuid:0195f3a0-7c00-7000-8000-000000000001",
    ]) {
      const envelope = root("registration", "registration.submitted.v1");
      envelope.eventId = id;
      validateEnvelope(envelope);
    }
  });

  test("publish refuses an invalid envelope before reaching Kafka, naming the field", async () => {
    // Nothing listens there: the refusal must come from validation.
    const client = new Retrace({ brokers: "127.0.0.1:1" });
    const envelope = root("registration", "");
    await assert.rejects(client.publish("registrations", envelope), (error: unknown) => {
      assert.ok(error instanceof PublishError);
      assert.equal(error.field, "type");
      assert.equal(error.message, "event not published: field `type` is missing: every Retrace event must carry it");
      return true;
    });
    await client.disconnect();
  });
});

describe("outcomes", () => {
  test("an error code is ASCII letters, digits and three marks, with the Rust SDK's texts", () => {
    for (const good of ["", "population_register_timeout", "http_503", "ECONNREFUSED", "40001", "a.b-c", "x".repeat(MAX_ERROR_CODE_LEN)]) {
      checkErrorCode(good);
    }
    for (const bad of ["two words", "a/b", "café"]) {
      const error = fieldOf(() => checkErrorCode(bad));
      assert.equal(error.field, "error_code");
      assert.equal(error.kind, "not_a_code");
    }
    assert.equal(
      fieldOf(() => checkErrorCode("register timeout")).message,
      'field `error_code` is not a code ("register timeout"): use ASCII letters, digits, `_`, `.` and `-` only, e.g. `population_register_timeout`',
    );
    assert.equal(
      fieldOf(() => checkErrorCode("x".repeat(65))).message,
      "field `error_code` is 65 bytes long: the limit is 64",
    );
  });

  test("withErrorCode sets a good code, and leaves a bad one out saying why", () => {
    const event = root("registration", "registration.submitted.v1");
    const failed = () => outcomeOf(event, "validation", OutcomeStatus.FAILED, "no answer within 2 s", 1);
    const coded = withErrorCode(failed(), "population_register_timeout");
    assert.equal(coded.errorCode, "population_register_timeout");
    assert.equal(coded.error, "no answer within 2 s");
    validateOutcome(coded);
    const refused = withErrorCode(failed(), "register timeout");
    assert.equal(refused.errorCode, "");
    assert.match(refused.error, /^no answer within 2 s \[error_code left out: field `error_code` is not a code/);
    validateOutcome(refused);
    const invalid = failed();
    invalid.errorCode = "register timeout";
    assert.equal(fieldOf(() => validateOutcome(invalid)).field, "error_code");
  });
});

describe("headers", () => {
  test("an envelope's ids go into headers in the Rust SDK's order and come back", () => {
    const parent = root("registration", "registration.submitted.v1", { subjects: ["beneficiary:42", "village:Kɔfi"] });
    const child = causedBy(parent, "validation", "registration.validated.v1");
    const message = envelopeMessage(child);
    assert.equal(message.key, child.transactionId);
    assert.deepEqual(Object.keys(message.headers), [
      "retrace-event-id",
      "retrace-transaction-id",
      "retrace-causation-id",
      "retrace-subject",
      "retrace-source",
      "retrace-type",
    ]);
    const parsed = parseHeaders(message.headers);
    assert.ok(parsed);
    assert.deepEqual(parsed.subjectIds, ["beneficiary:42", "village:Kɔfi"]);
    assert.equal(parsed.causationId, parent.eventId);
    validateHeaders(parsed);
  });

  test("a header that is not UTF-8 is named", () => {
    assert.throws(
      () => parseHeaders([["retrace-transaction-id", Buffer.from([0xff, 0xfe])]]),
      (error: unknown) => error instanceof HeaderError && error.header === "retrace-transaction-id",
    );
  });

  test("foreign headers are ignored; a message without a transaction id is not traceable", () => {
    assert.equal(parseHeaders({ "content-type": Buffer.from("json") }), undefined);
    const parsed = parseHeaders([["retrace-event-id", "e-1"]]);
    assert.ok(parsed);
    const error = fieldOf(() => validateHeaders(parsed));
    assert.equal(error.field, "retrace-transaction-id");
  });
});

describe("jobs", () => {
  test("each priority has its lane", () => {
    const lane = (priority: JobPriority) => laneOf("certificates", job("registration", "certificate.render", { priority }));
    assert.equal(lane(JobPriority.NORMAL), "retrace.jobs.certificates");
    assert.equal(lane(JobPriority.UNSPECIFIED), "retrace.jobs.certificates");
    assert.equal(lane(JobPriority.URGENT), "retrace.jobs.certificates.urgent");
    assert.equal(lane(JobPriority.BULK), "retrace.jobs.certificates.bulk");
  });

  test("a job carries its schedule", () => {
    const notBefore = new Date("2026-03-01T22:00:00Z");
    const deadline = new Date("2026-03-02T06:00:00Z");
    const parent = root("registration", "registration.submitted.v1");
    const envelope = job("registration", "certificate.render", { priority: "bulk", notBefore, deadline, maxAttempts: 5 }, parent);
    assert.equal(envelope.transactionId, parent.transactionId);
    assert.equal(envelope.type, "certificate.render");
    assert.equal(envelope.job?.priority, JobPriority.BULK);
    assert.equal(Number(envelope.job?.notBefore?.seconds) * 1000, notBefore.getTime());
    assert.equal(Number(envelope.job?.deadline?.seconds) * 1000, deadline.getTime());
    assert.equal(envelope.job?.maxAttempts, 5);
  });

  test("what is not a job, or a queue that cannot name a topic, is refused by field", () => {
    assert.throws(() => laneOf("certificates", root("registration", "x")), (e: unknown) => e instanceof EnqueueError && e.field === "job" && e.message === "job not enqueued: field `job` is missing (a job's envelope carries its kind and priority)");
    const kindless = job("registration", "certificate.render");
    kindless.job!.kind = "";
    assert.throws(() => laneOf("certificates", kindless), (e: unknown) => e instanceof EnqueueError && e.field === "job.kind");
    assert.throws(() => laneOf("has space", job("registration", "certificate.render")), (e: unknown) => e instanceof EnqueueError && e.message.includes("cannot name a topic"));
  });
});

describe("received messages", () => {
  const headers = (eventId: string, transactionId: string) => ({
    "retrace-event-id": Buffer.from(eventId),
    "retrace-transaction-id": Buffer.from(transactionId),
    "retrace-type": Buffer.from("registration.submitted.v1"),
  });

  test("an envelope is read from the value", () => {
    const envelope = root("registration", "registration.submitted.v1");
    const message = envelopeMessage(envelope);
    const received = receive({ value: message.value, headers: message.headers, offset: "7" }, "t", 0);
    assert.ok(typeof received !== "string");
    assert.equal(received.headersOnly, false);
    assert.equal(received.envelope.eventId, envelope.eventId);
  });

  test("a JSON value with retrace-* headers is a header-only event", () => {
    const eventId = newEventId();
    const received = receive(
      { value: Buffer.from('{"name":"Ada"}'), headers: { ...headers(eventId, "tx-1"), "content-type": Buffer.from("application/json") }, offset: "0" },
      "t",
      0,
    );
    assert.ok(typeof received !== "string");
    assert.equal(received.headersOnly, true);
    assert.equal(received.envelope.eventId, eventId);
    assert.equal(received.envelope.transactionId, "tx-1");
    assert.equal(received.envelope.contentType, "application/json");
    assert.equal(Buffer.from(received.envelope.payload).toString(), '{"name":"Ada"}');
  });

  test("a message neither an envelope nor traceable says why", () => {
    const none = receive({ value: Buffer.from("hello"), headers: {}, offset: "0" }, "t", 0);
    assert.equal(typeof none, "string");
    const damaged = receive({ value: Buffer.from([0xff, 0x01]), headers: {}, offset: "0" }, "t", 0);
    assert.match(String(damaged), /not a protobuf envelope/);
    const untraceable = receive({ value: Buffer.from("x"), headers: headers(newEventId(), ""), offset: "0" }, "t", 0);
    assert.match(String(untraceable), /retrace-transaction-id/);
  });

  test("an empty envelope object is not an event", () => {
    const value = Buffer.from(encodeEnvelope(create(EnvelopeSchema, {})));
    assert.equal(typeof receive({ value, headers: {}, offset: "0" }, "t", 0), "string");
  });
});
