package org.retrace.sdk;

import java.time.Duration;

/**
 * Thrown by a handler for a failure worth trying again: a {@code RETRYING} outcome is
 * published and the handler runs again after {@link #after()}, up to the consumer's
 * {@code maxAttempts} in all; the last failure is reported {@code FAILED}.
 */
public class RetryException extends Exception implements ErrorCoded {
    private static final long serialVersionUID = 1L;
    private final Duration after;
    private final String code;

    public RetryException(String reason) {
        this(reason, Duration.ofSeconds(1));
    }

    public RetryException(String reason, Duration after) {
        this(reason, after, null);
    }

    /** With a stable code for the cause, the outcomes' {@code error_code} (see {@link ErrorCoded}). */
    public RetryException(String reason, Duration after, String code) {
        super(reason);
        this.after = after;
        this.code = code;
    }

    public Duration after() {
        return after;
    }

    @Override
    public String code() {
        return code;
    }
}
