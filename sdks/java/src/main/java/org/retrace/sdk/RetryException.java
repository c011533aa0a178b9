package org.retrace.sdk;

import java.time.Duration;

/**
 * Thrown by a handler for a failure worth trying again: a {@code RETRYING} outcome is
 * published and the handler runs again after {@link #after()}, up to the consumer's
 * {@code maxAttempts} in all; the last failure is reported {@code FAILED}.
 */
public class RetryException extends Exception {
    private static final long serialVersionUID = 1L;
    private final Duration after;

    public RetryException(String reason) {
        this(reason, Duration.ofSeconds(1));
    }

    public RetryException(String reason, Duration after) {
        super(reason);
        this.after = after;
    }

    public Duration after() {
        return after;
    }
}
