package org.retrace.sdk;

/**
 * What a service does with each event it consumes. Returning is {@code PROCESSED}; throwing
 * {@link RetryException} is {@code RETRYING} (and the handler runs again); throwing anything
 * else is {@code FAILED} with the exception's message as the outcome's error.
 */
@FunctionalInterface
public interface EventHandler {
    void handle(ReceivedEvent event) throws Exception;
}
