// Building, validating and encoding envelopes and outcomes: the rules of
// proto/src/envelope.rs (retrace-proto), with the same error texts.

import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type Envelope,
  EnvelopeSchema,
  type Job,
  JobPriority,
  JobSchema,
  type Outcome,
  OutcomeSchema,
  OutcomeStatus,
} from "../gen/retrace/v1/envelope_pb.js";

/** Longest id (transaction, subject, source, type) accepted, in UTF-8 bytes. */
export const MAX_ID_LEN = 512;

/** Longest `Outcome.error_code` accepted, in characters (all ASCII). */
export const MAX_ERROR_CODE_LEN = 64;

/** The topic every consumer's outcomes are published on. */
export const OUTCOMES_TOPIC = "retrace.outcomes";
/** The `retrace-type` header of an outcome message. */
export const OUTCOME_TYPE = "retrace.outcome.v1";

export type EnvelopeErrorKind = "missing" | "not_uuid" | "control_character" | "too_long" | "not_a_code";

/** Why an envelope (or outcome, or header set) is not acceptable; names the offending field. */
export class EnvelopeError extends Error {
  override name = "EnvelopeError";
  constructor(
    readonly kind: EnvelopeErrorKind,
    /** The field at fault, e.g. `transaction_id`, or a header name. */
    readonly field: string,
    message: string,
  ) {
    super(message);
  }

  static missing(field: string): EnvelopeError {
    return new EnvelopeError(
      "missing",
      field,
      `field \`${field}\` is missing: every Retrace event must carry it`,
    );
  }
}

/** A new UUIDv7 event id: unique, and sortable by creation time. */
export function newEventId(): string {
  const bytes = randomBytes(16);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) {
    bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Optional parts of a new envelope. */
export interface EnvelopeParts {
  /** Subject ids, e.g. `beneficiary:42`; added after a parent's. */
  subjects?: string[];
  /** The payload: bytes, or a string (UTF-8), or anything else (JSON, `application/json`). */
  payload?: Uint8Array | string | unknown;
  /** Media type of the payload; defaults by payload kind. */
  contentType?: string;
  attributes?: Record<string, string>;
  /** When it happened; defaults to now. */
  occurredAt?: Date;
}

/** The first event of a new transaction. */
export function root(source: string, type: string, parts: EnvelopeParts = {}): Envelope {
  return build(newEventId(), "", [], source, type, parts);
}

/** An event caused by `parent`: same transaction and subjects, `causation_id` = parent's id. */
export function causedBy(
  parent: Envelope,
  source: string,
  type: string,
  parts: EnvelopeParts = {},
): Envelope {
  const envelope = build(parent.transactionId, parent.eventId, parent.subjectIds, source, type, parts);
  return envelope;
}

function build(
  transactionId: string,
  causationId: string,
  parentSubjects: string[],
  source: string,
  type: string,
  parts: EnvelopeParts,
): Envelope {
  const eventId = newEventId();
  const [contentType, payload] = payloadOf(parts);
  return create(EnvelopeSchema, {
    eventId,
    transactionId: transactionId || newEventId(),
    causationId,
    subjectIds: [...parentSubjects, ...(parts.subjects ?? [])],
    source,
    type,
    occurredAt: timestampFromMs((parts.occurredAt ?? new Date()).getTime()),
    contentType,
    payload,
    attributes: { ...(parts.attributes ?? {}) },
  });
}

function payloadOf(parts: EnvelopeParts): [string, Uint8Array] {
  const { payload, contentType } = parts;
  if (payload === undefined) return [contentType ?? "", new Uint8Array()];
  if (payload instanceof Uint8Array) return [contentType ?? "application/octet-stream", payload];
  if (typeof payload === "string") {
    return [contentType ?? "text/plain; charset=utf-8", new TextEncoder().encode(payload)];
  }
  return [contentType ?? "application/json", new TextEncoder().encode(JSON.stringify(payload))];
}

/** Options of a job: see `Job` in proto/retrace/v1/envelope.proto. */
export interface JobParts extends EnvelopeParts {
  priority?: JobPriority | "urgent" | "normal" | "bulk";
  /** Not to be run before this time. */
  notBefore?: Date;
  /** Must be done by this time. */
  deadline?: Date;
  /** Attempts before the job is dead-lettered; 0 (default) means the queue's default. */
  maxAttempts?: number;
}

/** A job for the off-peak worker: an envelope with its `job` field; the job id is the event id.
 * `parent` (optional) makes it part of the parent's transaction, caused by it. */
export function job(
  source: string,
  kind: string,
  parts: JobParts = {},
  parent?: Envelope,
): Envelope {
  const envelope = parent ? causedBy(parent, source, kind, parts) : root(source, kind, parts);
  envelope.job = create(JobSchema, {
    kind,
    priority: priorityOf(parts.priority),
    notBefore: parts.notBefore ? timestampFromMs(parts.notBefore.getTime()) : undefined,
    deadline: parts.deadline ? timestampFromMs(parts.deadline.getTime()) : undefined,
    maxAttempts: parts.maxAttempts ?? 0,
  }) as Job;
  return envelope;
}

function priorityOf(priority: JobParts["priority"]): JobPriority {
  switch (priority) {
    case undefined:
      return JobPriority.NORMAL;
    case "urgent":
      return JobPriority.URGENT;
    case "normal":
      return JobPriority.NORMAL;
    case "bulk":
      return JobPriority.BULK;
    default:
      return priority;
  }
}

/** Checks the ids every Retrace event must carry (as `Envelope::validate`). */
export function validateEnvelope(envelope: Envelope): void {
  checkUuid("event_id", envelope.eventId);
  checkId("transaction_id", envelope.transactionId);
  if (envelope.causationId !== "") checkUuid("causation_id", envelope.causationId);
  checkId("source", envelope.source);
  checkId("type", envelope.type);
  for (const subject of envelope.subjectIds) checkId("subject_ids", subject);
}

/** What `consumer` did with an event, on attempt `attempt` (1 for the first). */
export function outcomeOf(
  event: { eventId: string; transactionId: string },
  consumer: string,
  status: OutcomeStatus,
  error: string | undefined,
  attempt: number,
): Outcome {
  return create(OutcomeSchema, {
    eventId: event.eventId,
    transactionId: event.transactionId,
    consumer,
    status,
    error: error ?? "",
    attempt,
    at: timestampFromMs(Date.now()),
  });
}

/** `outcome` with `code` as its `errorCode`, the stable reason that groups it with failures
 * of the same cause (docs/incidents.md). A code `checkErrorCode` refuses is left out and the
 * error text says why, as the Rust `Outcome::with_error_code`: the outcome of a handler that
 * gave a bad code must still be published. */
export function withErrorCode(outcome: Outcome, code: string): Outcome {
  try {
    checkErrorCode(code);
    outcome.errorCode = code;
  } catch (error) {
    if (!(error instanceof EnvelopeError)) throw error;
    const note = `[error_code left out: ${error.message}]`;
    outcome.error = outcome.error === "" ? note : `${outcome.error} ${note}`;
  }
  return outcome;
}

/** Checks the ids an outcome must carry to be attached to its event, and its error code. */
export function validateOutcome(outcome: Outcome): void {
  checkUuid("event_id", outcome.eventId);
  checkId("transaction_id", outcome.transactionId);
  checkId("consumer", outcome.consumer);
  checkErrorCode(outcome.errorCode);
}

/** Checks an `Outcome.error_code`: empty (none given), or 1 to 64 ASCII letters, digits, `_`,
 * `.` and `-` (as `retrace_proto::check_error_code`). */
export function checkErrorCode(code: string): void {
  const field = "error_code";
  const len = Buffer.byteLength(code, "utf8");
  if (len > MAX_ERROR_CODE_LEN) {
    throw new EnvelopeError(
      "too_long",
      field,
      `field \`${field}\` is ${len} bytes long: the limit is ${MAX_ERROR_CODE_LEN}`,
    );
  }
  if (!/^[A-Za-z0-9_.-]*$/.test(code)) {
    throw new EnvelopeError(
      "not_a_code",
      field,
      `field \`${field}\` is not a code (${JSON.stringify(code)}): use ASCII letters, digits, ` +
        "`_`, `.` and `-` only, e.g. `population_register_timeout`",
    );
  }
}

// Rust's `char::is_control`: the Unicode category Cc.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function checkId(field: string, value: string): void {
  if (value === "") throw EnvelopeError.missing(field);
  const len = Buffer.byteLength(value, "utf8");
  if (len > MAX_ID_LEN) {
    throw new EnvelopeError(
      "too_long",
      field,
      `field \`${field}\` is ${len} bytes long: the limit is ${MAX_ID_LEN}`,
    );
  }
  if (CONTROL.test(value)) {
    throw new EnvelopeError(
      "control_character",
      field,
      `field \`${field}\` contains a control character: ids must be printable text`,
    );
  }
}

// The forms Rust's `Uuid::parse_str` accepts: hyphenated, simple, braced, URN.
const HEX = "[0-9a-fA-F]";
const HYPHENATED = `${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}`;
const UUID = new RegExp(`^(?:${HYPHENATED}|${HEX}{32}|\\{${HYPHENATED}\\}|urn:uuid:${HYPHENATED})$`);

function checkUuid(field: string, value: string): void {
  checkId(field, value);
  if (!UUID.test(value)) {
    throw new EnvelopeError(
      "not_uuid",
      field,
      `field \`${field}\` is not a UUID (${JSON.stringify(value)}): event ids are UUIDv7 strings`,
    );
  }
}

export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return toBinary(EnvelopeSchema, envelope);
}

export function decodeEnvelope(bytes: Uint8Array): Envelope {
  return fromBinary(EnvelopeSchema, bytes);
}

export function encodeOutcome(outcome: Outcome): Uint8Array {
  return toBinary(OutcomeSchema, outcome);
}

export function decodeOutcome(bytes: Uint8Array): Outcome {
  return fromBinary(OutcomeSchema, bytes);
}

export { OutcomeStatus, JobPriority };
