package org.retrace.sdk;

/**
 * Kafka did not acknowledge a message. It may or may not be stored; publishing it again with
 * the same event id is safe.
 */
public class PublishException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String eventId;
    private final String topic;

    public PublishException(String eventId, String topic, Throwable cause) {
        super("Kafka did not acknowledge event " + eventId + " on topic " + topic + ": " + describe(cause)
                + ". It may or may not be stored; publishing it again with the same event id is safe", cause);
        this.eventId = eventId;
        this.topic = topic;
    }

    private static String describe(Throwable cause) {
        return cause.getMessage() == null ? cause.getClass().getSimpleName() : cause.getMessage();
    }

    public String eventId() {
        return eventId;
    }

    public String topic() {
        return topic;
    }
}
