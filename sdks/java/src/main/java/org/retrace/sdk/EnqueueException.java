package org.retrace.sdk;

/** A job that cannot be enqueued: not a job, no kind, or a queue name that is no topic. */
public class EnqueueException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;
    private final String field;

    EnqueueException(String message, String field) {
        super(message);
        this.field = field;
    }

    /** The missing field ({@code job}, {@code job.kind}), or null for a bad queue name. */
    public String field() {
        return field;
    }
}
