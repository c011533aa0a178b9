package org.retrace.sdk;

import java.util.List;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.JobPriority;

/**
 * A queue's topics, as {@code services/sdk/src/jobs.rs}: one lane per priority (so the
 * worker's gate can pause the normal and bulk lanes without holding back urgent jobs), its
 * retry and dead-letter topics.
 */
public record QueueTopics(String normal, String urgent, String bulk, String retry, String deadLetter) {
    private static final int MAX_TOPIC_LEN = 249;

    public static QueueTopics of(String queue) {
        String base = "retrace.jobs." + queue;
        return new QueueTopics(base, base + ".urgent", base + ".bulk", base + ".retry", base + ".dlq");
    }

    /** The lane a job of {@code priority} is enqueued on (unspecified and unknown = normal). */
    public String lane(JobPriority priority) {
        return switch (priority) {
            case JOB_PRIORITY_URGENT -> urgent;
            case JOB_PRIORITY_BULK -> bulk;
            default -> normal;
        };
    }

    /** Every topic of the queue, to create them. */
    public List<String> all() {
        return List.of(normal, urgent, bulk, retry, deadLetter);
    }

    /**
     * The lane {@code job} goes on in {@code queue}, once it is checked to be a job.
     *
     * @throws EnqueueException when it is not a job, has no kind, or the queue names no topic
     */
    public static String laneOf(String queue, Envelope job) {
        QueueTopics topics = of(queue);
        String problem = topicNameProblem(topics.deadLetter);
        if (problem != null) {
            throw new EnqueueException(
                    "job not enqueued: queue name " + EnvelopeException.debugQuoted(queue)
                            + " cannot name a topic (" + problem + ")",
                    null);
        }
        if (!job.hasJob()) {
            throw new EnqueueException(
                    "job not enqueued: field `job` is missing (a job's envelope carries its kind and priority)",
                    "job");
        }
        if (job.getJob().getKind().isEmpty()) {
            throw new EnqueueException(
                    "job not enqueued: field `job.kind` is missing (it selects the handler, e.g. \"certificate.render\")",
                    "job.kind");
        }
        return topics.lane(job.getJob().getPriority());
    }

    /** Kafka's topic-name rule ({@code services/sdk/src/topic.rs}); null when the name is fine. */
    static String topicNameProblem(String topic) {
        if (topic.isEmpty() || topic.equals(".") || topic.equals("..")) {
            return "is not a valid Kafka topic name";
        }
        if (topic.length() > MAX_TOPIC_LEN) {
            return "is " + topic.length() + " characters long: Kafka allows " + MAX_TOPIC_LEN;
        }
        for (int i = 0; i < topic.length(); i++) {
            char c = topic.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '.' || c == '_' || c == '-';
            if (!ok) {
                return "contains '" + c + "': Kafka topic names use only a-z, A-Z, 0-9, '.', '_' and '-'";
            }
        }
        return null;
    }
}
