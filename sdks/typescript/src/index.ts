// @retrace/sdk: publish and consume Retrace events from Node.js, byte-compatible with the
// Rust SDK (services/sdk). See README.md.

export * from "../gen/retrace/v1/envelope_pb.js";
export {
  EnvelopeError,
  type EnvelopeErrorKind,
  type EnvelopeParts,
  type JobParts,
  MAX_ERROR_CODE_LEN,
  MAX_ID_LEN,
  OUTCOMES_TOPIC,
  OUTCOME_TYPE,
  causedBy,
  checkErrorCode,
  decodeEnvelope,
  decodeOutcome,
  encodeEnvelope,
  encodeOutcome,
  job,
  newEventId,
  outcomeOf,
  root,
  validateEnvelope,
  validateOutcome,
  withErrorCode,
} from "./envelope.js";
export * as headers from "./headers.js";
export { EnqueueError, type QueueTopics, lane, laneOf, queueTopics } from "./jobs.js";
export {
  type ConsumeOptions,
  type Consumption,
  type Delivery,
  type Handler,
  type OutgoingMessage,
  PRODUCER_DEFAULTS,
  PublishError,
  type ReceivedEvent,
  Retrace,
  type RetraceOptions,
  RetryLater,
  envelopeMessage,
  outcomeMessage,
  receive,
} from "./client.js";
export { currentTraceparent } from "./tracing.js";
