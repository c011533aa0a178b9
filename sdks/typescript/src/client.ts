// The Kafka side: publish, enqueue and consume with outcomes, on kafkajs. What the Rust SDK
// does in services/sdk/src/{publisher.rs,consumer.rs,jobs.rs}; README.md says why kafkajs.

import { create } from "@bufbuild/protobuf";
import {
  type Consumer,
  type IHeaders,
  Kafka,
  type KafkaConfig,
  type KafkaMessage,
  Partitioners,
  type Producer,
  type ProducerConfig,
} from "kafkajs";
import {
  type Envelope,
  EnvelopeSchema,
  type Outcome,
  OutcomeStatus,
  ReplaySchema,
} from "../gen/retrace/v1/envelope_pb.js";
import {
  EnvelopeError,
  OUTCOMES_TOPIC,
  decodeEnvelope,
  encodeEnvelope,
  encodeOutcome,
  outcomeOf,
  validateEnvelope,
  validateOutcome,
  withErrorCode,
} from "./envelope.js";
import {
  HeaderError,
  type TraceHeaders,
  headersOf,
  outcomeHeaders,
  pairs,
  parseHeaders,
  toKafkaHeaders,
  validateHeaders,
} from "./headers.js";
import { laneOf } from "./jobs.js";
import { RecentEvents } from "./recent.js";
import { currentTraceparent, withRemoteParent } from "./tracing.js";

/** Where the broker put a published message. */
export interface Delivery {
  topic: string;
  partition: number;
  /** The message's offset, as kafkajs reports it (a decimal string). */
  offset: string;
}

/** A Kafka message as the SDK sends it. */
export interface OutgoingMessage {
  key: string;
  value: Buffer;
  headers: Record<string, string | string[]>;
}

/** Key, value and headers of `envelope`: the transaction id as key, every `retrace-*` header,
 * and `traceparent` when given. */
export function envelopeMessage(envelope: Envelope, traceparent = ""): OutgoingMessage {
  return {
    key: envelope.transactionId,
    value: Buffer.from(encodeEnvelope(envelope)),
    headers: toKafkaHeaders(pairs(headersOf(envelope, traceparent))),
  };
}

/** Key, value and headers of an outcome, as the Rust `Publisher::publish_outcome`. */
export function outcomeMessage(outcome: Outcome): OutgoingMessage {
  return {
    key: outcome.transactionId,
    value: Buffer.from(encodeOutcome(outcome)),
    headers: toKafkaHeaders(pairs(outcomeHeaders(outcome))),
  };
}

/** An event was not published: invalid, or not acknowledged by Kafka. */
export class PublishError extends Error {
  override name = "PublishError";
  constructor(
    message: string,
    readonly eventId: string,
    readonly topic: string,
    /** The field at fault when the event was invalid. */
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Durability first, as the Rust SDK's producer: idempotent (which makes kafkajs use
 * acks=all), one request in flight (what kafkajs's idempotence supports), and the Java
 * client's partitioner (murmur2 of the key), which is librdkafka's `murmur2_random` too. */
export const PRODUCER_DEFAULTS: ProducerConfig = {
  idempotent: true,
  maxInFlightRequests: 1,
  createPartitioner: Partitioners.DefaultPartitioner,
};

/** Errors after which kafkajs's idempotent producer cannot go on: a new one is made. */
const FATAL_PRODUCER_ERRORS = new Set([
  "OUT_OF_ORDER_SEQUENCE_NUMBER",
  "INVALID_PRODUCER_EPOCH",
  "PRODUCER_FENCED",
  "UNKNOWN_PRODUCER_ID",
  "INVALID_PRODUCER_ID_MAPPING",
]);

export interface RetraceOptions {
  /** Bootstrap brokers: a list, or a comma-separated string. */
  brokers: string[] | string;
  clientId?: string;
  /** Anything else for kafkajs's `Kafka` (ssl, sasl, logLevel, logCreator, retry, ...). */
  kafka?: Omit<KafkaConfig, "brokers">;
}

/** An event handed to a consume handler. */
export interface ReceivedEvent {
  /** The envelope; for a header-only message, one built from its `retrace-*` headers, with
   * the message's value as payload and its `content-type` header as content type. */
  envelope: Envelope;
  /** True when the value was not an envelope and the event was read from its headers. */
  headersOnly: boolean;
  topic: string;
  partition: number;
  offset: string;
  /** The message's `traceparent` header, "" if none. */
  traceparent: string;
  /** The attempt this is, from 1 (see `RetryLater`). */
  attempt: number;
}

/** Thrown by a handler: the event is tried again (after an outcome `RETRYING`), up to
 * `maxAttempts`; then its outcome is `FAILED`. Any other error fails it at once. Like any
 * error a handler throws, it may carry a `code` (see `consume`). */
export class RetryLater extends Error {
  override name = "RetryLater";
}

export type Handler = (event: ReceivedEvent) => unknown | Promise<unknown>;

export interface ConsumeOptions {
  /** The consuming service's name in its outcomes; defaults to the group id. */
  consumer?: string;
  /** Attempts of an event whose handler throws `RetryLater`; default 3. */
  maxAttempts?: number;
  /** Wait before the second attempt, doubled for each next; default 1000 ms. */
  retryBackoffMs?: number;
  /** Partitions handled at once; a partition's events are handled one after another, so a
   * transaction's events (one key, one partition) keep their order. Default 8. */
  partitionsConsumedConcurrently?: number;
  /** Told of each message that is neither an envelope nor traceable from its headers
   * (skipped, its offset committed), and of each failed outcome publish (retried). */
  onProblem?: (problem: string, where: { topic: string; partition: number; offset: string }) => void;
  /** Options for kafkajs's consumer (session timeout, ...); `groupId` is the group given. */
  consumerConfig?: Record<string, unknown>;
}

/** A running consumer. */
export interface Consumption {
  /** The kafkajs consumer, for its events (`consumer.events.GROUP_JOIN`, ...). */
  consumer: Consumer;
  /** Stops consuming: handlers running finish, nothing unsettled is committed. */
  stop(): Promise<void>;
}

/** Publishes and consumes Retrace messages over one Kafka connection setup. */
export class Retrace {
  readonly kafka: Kafka;
  private producer: Promise<Producer> | undefined;
  private readonly producerConfig: ProducerConfig;

  constructor(options: RetraceOptions, producerConfig: ProducerConfig = {}) {
    const brokers =
      typeof options.brokers === "string"
        ? options.brokers.split(",").map((b) => b.trim()).filter((b) => b !== "")
        : options.brokers;
    this.kafka = new Kafka({ clientId: options.clientId ?? "retrace-sdk", ...options.kafka, brokers });
    this.producerConfig = { ...producerConfig, ...PRODUCER_DEFAULTS };
  }

  private async connectedProducer(): Promise<Producer> {
    if (this.producer === undefined) {
      const producer = this.kafka.producer(this.producerConfig);
      this.producer = producer.connect().then(
        () => producer,
        (error: unknown) => {
          this.producer = undefined;
          throw error;
        },
      );
    }
    return this.producer;
  }

  /** Publishes `envelope` on `topic`, keyed by its transaction id, with its ids in headers
   * (and `traceparent` when an OpenTelemetry span is active). Resolves once every in-sync
   * replica acknowledged it. */
  async publish(topic: string, envelope: Envelope): Promise<Delivery> {
    try {
      validateEnvelope(envelope);
    } catch (error) {
      throw invalid(error, envelope.eventId, topic);
    }
    return this.send(topic, envelopeMessage(envelope, currentTraceparent()), envelope.eventId);
  }

  /** Publishes what a consumer did with an event on `retrace.outcomes`. */
  async publishOutcome(outcome: Outcome): Promise<Delivery> {
    try {
      validateOutcome(outcome);
    } catch (error) {
      throw invalid(error, outcome.eventId, OUTCOMES_TOPIC);
    }
    return this.send(OUTCOMES_TOPIC, outcomeMessage(outcome), outcome.eventId);
  }

  /** Publishes `job` (see `job(...)`) on queue `queue`, on the lane of its priority:
   * `retrace.jobs.<queue>`, `.urgent`, `.bulk`. Resolves once Kafka acknowledged it. */
  async enqueue(queue: string, job: Envelope): Promise<Delivery> {
    return this.publish(laneOf(queue, job), job);
  }

  private async send(topic: string, message: OutgoingMessage, eventId: string): Promise<Delivery> {
    const producer = await this.connectedProducer();
    try {
      // acks: -1 is kafkajs's default and required for an idempotent producer; said anyway.
      const [metadata] = await producer.send({ topic, acks: -1, messages: [message] });
      return { topic, partition: metadata.partition, offset: metadata.baseOffset ?? "-1" };
    } catch (error) {
      await this.replaceIfFatal(producer, error);
      throw new PublishError(
        `Kafka did not acknowledge event ${eventId} on topic ${topic}: ${String(error)}. It may ` +
          "or may not be stored; publishing it again with the same event id is safe",
        eventId,
        topic,
        undefined,
        { cause: error },
      );
    }
  }

  private async replaceIfFatal(producer: Producer, error: unknown): Promise<void> {
    const type = (error as { type?: string; cause?: { type?: string } }).type;
    const causeType = (error as { cause?: { type?: string } }).cause?.type;
    if (!FATAL_PRODUCER_ERRORS.has(type ?? "") && !FATAL_PRODUCER_ERRORS.has(causeType ?? "")) {
      return;
    }
    const current = this.producer;
    if (current !== undefined && (await current.catch(() => undefined)) === producer) {
      this.producer = undefined;
      await producer.disconnect().catch(() => undefined);
    }
  }

  /** Consumes `topics` in consumer group `group`, hands every event (an envelope, or a
   * message traceable from its `retrace-*` headers) to `handler`, publishes an outcome for
   * it on `retrace.outcomes` (processed; failed with the error; retrying, for `RetryLater`),
   * and commits its offset only once that outcome is acknowledged. A thrown `Error` with a
   * string `code` property (`Object.assign(new Error("…"), { code: "register_timeout" })`,
   * or Node's own, e.g. `ECONNREFUSED`) gives the outcome its `errorCode`, which groups its
   * failures into one incident (docs/incidents.md). Resolves once subscribed
   * and running; `stop()` ends it. A second record of an event processed lately is skipped
   * (no outcome), unless it is a replay. Reads from the earliest offset when the group has
   * none, as the Rust SDK. */
  async consume(
    topics: string[],
    group: string,
    handler: Handler,
    options: ConsumeOptions = {},
  ): Promise<Consumption> {
    const name = options.consumer ?? group;
    const maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    const backoff = options.retryBackoffMs ?? 1000;
    const recent = new RecentEvents();
    // A fetch waits up to 500 ms for data, librdkafka's `fetch.wait.max.ms` (kafkajs: 5 s,
    // which a stop waits out too).
    const consumer = this.kafka.consumer({ maxWaitTimeInMs: 500, ...options.consumerConfig, groupId: group });
    let stopping = false;
    let wake: (() => void) | undefined;
    const stopped = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const pause = (ms: number) =>
      Promise.race([new Promise<void>((resolve) => setTimeout(resolve, ms).unref()), stopped]);

    /** Publishes `outcome` until Kafka takes it; false if stopped first. */
    const report = async (outcome: Outcome, where: Where): Promise<boolean> => {
      let wait = 100;
      while (!stopping) {
        try {
          await this.publishOutcome(outcome);
          return true;
        } catch (error) {
          options.onProblem?.(`outcome not published, trying again: ${String(error)}`, where);
          await pause(wait);
          wait = Math.min(wait * 2, 10_000);
        }
      }
      return false;
    };

    const settle = async (event: ReceivedEvent, where: Where): Promise<boolean> => {
      const envelope = event.envelope;
      for (let attempt = 1; ; attempt++) {
        event.attempt = attempt;
        let status = OutcomeStatus.PROCESSED;
        let error: string | undefined;
        let code: string | undefined;
        try {
          await withRemoteParent(event.traceparent, () => handler(event));
        } catch (thrown) {
          error = thrown instanceof Error ? thrown.message || thrown.name : String(thrown);
          code = codeOf(thrown);
          const retry = thrown instanceof RetryLater && attempt < maxAttempts && !stopping;
          status = retry ? OutcomeStatus.RETRYING : OutcomeStatus.FAILED;
        }
        if (status === OutcomeStatus.PROCESSED) recent.remember(envelope.eventId);
        const outcome = outcomeOf(envelope, name, status, error, attempt);
        if (code !== undefined) withErrorCode(outcome, code);
        if (!(await report(outcome, where))) return false;
        if (status !== OutcomeStatus.RETRYING) return true;
        await pause(backoff * 2 ** (attempt - 1));
        if (stopping) return false;
      }
    };

    await consumer.connect();
    try {
      await consumer.subscribe({ topics, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 8,
        eachMessage: async ({ topic, partition, message }) => {
          const where = { topic, partition, offset: message.offset };
          const received = receive(message, topic, partition);
          let settled = true;
          if (typeof received === "string") {
            options.onProblem?.(received, where);
          } else {
            const { envelope } = received;
            // A replayed copy was asked for: it runs again whatever this consumer remembers.
            const duplicate = envelope.replay === undefined && recent.has(envelope.eventId);
            if (!duplicate) settled = await settle(received, where);
          }
          // Stopped before the outcome was published: not committed, so read again next time.
          if (!settled) return;
          await consumer.commitOffsets([
            { topic, partition, offset: (BigInt(message.offset) + 1n).toString() },
          ]);
        },
      });
    } catch (error) {
      await consumer.disconnect().catch(() => undefined);
      throw error;
    }
    return {
      consumer,
      stop: async () => {
        stopping = true;
        wake?.();
        await consumer.disconnect();
      },
    };
  }

  /** Closes the producer. Consumers are stopped through their own `stop()`. */
  async disconnect(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    if (producer !== undefined) await (await producer.catch(() => undefined))?.disconnect();
  }
}

type Where = { topic: string; partition: number; offset: string };

/** The `code` of an error a handler threw, when it is a string. */
function codeOf(thrown: unknown): string | undefined {
  if (!(thrown instanceof Error)) return undefined;
  const code = (thrown as { code?: unknown }).code;
  return typeof code === "string" && code !== "" ? code : undefined;
}

function invalid(error: unknown, eventId: string, topic: string): unknown {
  if (!(error instanceof EnvelopeError)) return error;
  return new PublishError(`event not published: ${error.message}`, eventId, topic, error.field, {
    cause: error,
  });
}

/** Does the message claim to be an envelope (proto/README.md, "Publishing without an
 * envelope")? A `content-type` naming protobuf does; another content type does not; without
 * one, a binary value does. */
function claimsEnvelope(value: Buffer, contentType: string | undefined): boolean {
  if (contentType !== undefined) return contentType.toLowerCase().includes("protobuf");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch {
    return true;
  }
  return /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text);
}

function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    const one = Array.isArray(value) ? value[0] : value;
    return one === undefined ? "" : one.toString();
  }
  return undefined;
}

/** The event a message carries, or why it carries none. */
export function receive(
  message: Pick<KafkaMessage, "value" | "headers" | "offset">,
  topic: string,
  partition: number,
): ReceivedEvent | string {
  const value = message.value ?? Buffer.alloc(0);
  const contentType = headerText(message.headers, "content-type");
  let headers: TraceHeaders | undefined;
  let headerProblem: string | undefined;
  try {
    headers = parseHeaders(message.headers as Record<string, Buffer | string | undefined>);
  } catch (error) {
    if (!(error instanceof HeaderError)) throw error;
    headerProblem = error.message;
  }
  const base = { topic, partition, offset: message.offset, attempt: 1 };
  const traceparent = headers?.traceparent ?? "";
  let envelopeProblem = "the value is not an envelope and the message has no retrace-* header";
  if (claimsEnvelope(value, contentType)) {
    try {
      const envelope = decodeEnvelope(value);
      validateEnvelope(envelope);
      return { ...base, envelope, headersOnly: false, traceparent };
    } catch (error) {
      envelopeProblem = `not a protobuf envelope: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (headerProblem !== undefined) return headerProblem;
  if (headers === undefined) return envelopeProblem;
  try {
    validateHeaders(headers);
    validateOutcome(outcomeOf(headers, "consumer", OutcomeStatus.PROCESSED, undefined, 1));
  } catch (error) {
    return `not traceable from its headers: ${error instanceof Error ? error.message : String(error)}`;
  }
  const envelope = create(EnvelopeSchema, {
    eventId: headers.eventId,
    transactionId: headers.transactionId,
    causationId: headers.causationId,
    subjectIds: headers.subjectIds,
    source: headers.source,
    type: headers.eventType,
    contentType: contentType ?? "",
    payload: value,
    replay:
      headers.replayId !== ""
        ? create(ReplaySchema, { replayId: headers.replayId, originalEventId: headers.replayOf })
        : undefined,
  });
  return { ...base, envelope, headersOnly: true, traceparent };
}
