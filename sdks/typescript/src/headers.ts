// The Kafka headers that carry an event's ids beside (or instead of) the envelope: the
// names and order of proto/src/headers.rs, part of the contract (proto/README.md).

import type { Envelope, Outcome } from "../gen/retrace/v1/envelope_pb.js";
import { OUTCOME_TYPE, checkId } from "./envelope.js";

export const EVENT_ID = "retrace-event-id";
export const TRANSACTION_ID = "retrace-transaction-id";
export const CAUSATION_ID = "retrace-causation-id";
/** Repeated: one header per subject id. */
export const SUBJECT = "retrace-subject";
export const SOURCE = "retrace-source";
export const TYPE = "retrace-type";
/** W3C trace context. */
export const TRACEPARENT = "traceparent";
export const REPLAY_ID = "retrace-replay-id";
export const REPLAY_OF = "retrace-replay-of";

/** An event's ids as carried in Kafka headers. Empty strings stand for absent headers. */
export interface TraceHeaders {
  eventId: string;
  transactionId: string;
  causationId: string;
  subjectIds: string[];
  source: string;
  eventType: string;
  traceparent: string;
  replayId: string;
  replayOf: string;
}

export function emptyHeaders(): TraceHeaders {
  return {
    eventId: "",
    transactionId: "",
    causationId: "",
    subjectIds: [],
    source: "",
    eventType: "",
    traceparent: "",
    replayId: "",
    replayOf: "",
  };
}

/** The headers that go with `envelope` (`TraceHeaders::of`). */
export function headersOf(envelope: Envelope, traceparent = ""): TraceHeaders {
  return {
    eventId: envelope.eventId,
    transactionId: envelope.transactionId,
    causationId: envelope.causationId,
    subjectIds: [...envelope.subjectIds],
    source: envelope.source,
    eventType: envelope.type,
    traceparent,
    replayId: envelope.replay?.replayId ?? "",
    replayOf: envelope.replay?.originalEventId ?? "",
  };
}

/** The headers of an outcome message (as the Rust `Publisher::publish_outcome`). */
export function outcomeHeaders(outcome: Outcome): TraceHeaders {
  return {
    ...emptyHeaders(),
    transactionId: outcome.transactionId,
    causationId: outcome.eventId,
    source: outcome.consumer,
    eventType: OUTCOME_TYPE,
  };
}

/** (name, value) pairs in the Rust SDK's order, absent ones left out. */
export function pairs(headers: TraceHeaders): [string, string][] {
  const all: [string, string][] = [
    [EVENT_ID, headers.eventId],
    [TRANSACTION_ID, headers.transactionId],
    [CAUSATION_ID, headers.causationId],
    ...headers.subjectIds.map((s): [string, string] => [SUBJECT, s]),
    [SOURCE, headers.source],
    [TYPE, headers.eventType],
    [TRACEPARENT, headers.traceparent],
    [REPLAY_ID, headers.replayId],
    [REPLAY_OF, headers.replayOf],
  ];
  return all.filter(([, value]) => value !== "");
}

/** The pairs as a kafkajs header object; a repeated name becomes an array, in order. */
export function toKafkaHeaders(list: [string, string][]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of list) {
    const seen = out[name];
    if (seen === undefined) out[name] = value;
    else if (Array.isArray(seen)) seen.push(value);
    else out[name] = [seen, value];
  }
  return out;
}

/** A header value as kafkajs hands it over. */
export type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;

/** A Retrace header whose value is not UTF-8 text. */
export class HeaderError extends Error {
  override name = "HeaderError";
  constructor(readonly header: string) {
    super(`header \`${header}\` is not valid UTF-8: Retrace header values must be text`);
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function text(name: string, value: Buffer | string): string {
  if (typeof value === "string") return value;
  try {
    return decoder.decode(value);
  } catch {
    throw new HeaderError(name);
  }
}

/** Reads the Retrace headers out of a message's headers (pairs, or a kafkajs header object);
 * other headers are ignored. `undefined` when the message carries no Retrace header. */
export function parseHeaders(
  headers: Iterable<[string, Buffer | string | undefined]> | Record<string, HeaderValue> | undefined,
): TraceHeaders | undefined {
  if (headers === undefined) return undefined;
  const list: [string, Buffer | string | undefined][] = [];
  if (Symbol.iterator in headers) {
    list.push(...(headers as Iterable<[string, Buffer | string | undefined]>));
  } else {
    for (const [name, value] of Object.entries(headers)) {
      for (const one of Array.isArray(value) ? value : [value]) list.push([name, one]);
    }
  }
  const parsed = emptyHeaders();
  let found = false;
  for (const [name, raw] of list) {
    const value = text(name, raw ?? "");
    switch (name) {
      case EVENT_ID: parsed.eventId = value; break;
      case TRANSACTION_ID: parsed.transactionId = value; break;
      case CAUSATION_ID: parsed.causationId = value; break;
      case SUBJECT: parsed.subjectIds.push(value); break;
      case SOURCE: parsed.source = value; break;
      case TYPE: parsed.eventType = value; break;
      case TRACEPARENT: parsed.traceparent = value; break;
      case REPLAY_ID: parsed.replayId = value; break;
      case REPLAY_OF: parsed.replayOf = value; break;
      default: continue;
    }
    found = true;
  }
  return found ? parsed : undefined;
}

/** Checks the ids a message needs to be traced: its event and transaction ids. */
export function validateHeaders(headers: TraceHeaders): void {
  checkId(EVENT_ID, headers.eventId);
  checkId(TRANSACTION_ID, headers.transactionId);
  for (const subject of headers.subjectIds) checkId(SUBJECT, subject);
}
