// Jobs for the off-peak worker: a queue's topics and the lane of a job's priority, as
// services/sdk/src/jobs.rs.

import type { Envelope } from "../gen/retrace/v1/envelope_pb.js";
import { JobPriority } from "../gen/retrace/v1/envelope_pb.js";

/** A queue's topics: one lane per priority, the retry and the dead-letter topic. */
export interface QueueTopics {
  normal: string;
  urgent: string;
  bulk: string;
  retry: string;
  deadLetter: string;
}

export function queueTopics(queue: string): QueueTopics {
  const base = `retrace.jobs.${queue}`;
  return {
    normal: base,
    urgent: `${base}.urgent`,
    bulk: `${base}.bulk`,
    retry: `${base}.retry`,
    deadLetter: `${base}.dlq`,
  };
}

/** The lane a job of `priority` is enqueued on; an unspecified priority is normal. */
export function lane(topics: QueueTopics, priority: JobPriority): string {
  switch (priority) {
    case JobPriority.URGENT:
      return topics.urgent;
    case JobPriority.BULK:
      return topics.bulk;
    default:
      return topics.normal;
  }
}

/** Why a job cannot be enqueued. */
export class EnqueueError extends Error {
  override name = "EnqueueError";
  constructor(
    message: string,
    /** The field at fault (`job`, `job.kind`), or `queue`. */
    readonly field: string,
  ) {
    super(message);
  }
}

export const MAX_TOPIC_LEN = 249;

/** Kafka's rule for topic names (services/sdk/src/topic.rs); undefined when `topic` is fine,
 * else what is wrong, completing "topic ...". */
export function topicNameProblem(topic: string): string | undefined {
  if (topic === "" || topic === "." || topic === "..") return "is not a valid Kafka topic name";
  if (topic.length > MAX_TOPIC_LEN) {
    return `is ${topic.length} characters long: Kafka allows ${MAX_TOPIC_LEN}`;
  }
  const bad = [...topic].find((c) => !/^[A-Za-z0-9._-]$/.test(c));
  if (bad !== undefined) {
    return `contains ${JSON.stringify(bad)}: Kafka topic names use only a-z, A-Z, 0-9, '.', '_' and '-'`;
  }
  return undefined;
}

/** The lane `job` goes on in `queue`, once it is checked to be a job (`lane_of`). */
export function laneOf(queue: string, job: Envelope): string {
  const topics = queueTopics(queue);
  const problem = topicNameProblem(topics.deadLetter);
  if (problem !== undefined) {
    throw new EnqueueError(
      `job not enqueued: queue name ${JSON.stringify(queue)} cannot name a topic (${problem})`,
      "queue",
    );
  }
  if (job.job === undefined) {
    throw new EnqueueError(
      "job not enqueued: field `job` is missing (a job's envelope carries its kind and priority)",
      "job",
    );
  }
  if (job.job.kind === "") {
    throw new EnqueueError(
      'job not enqueued: field `job.kind` is missing (it selects the handler, e.g. "certificate.render")',
      "job.kind",
    );
  }
  return lane(topics, job.job.priority);
}
