package org.retrace.sdk;

import org.apache.kafka.common.header.Headers;
import retrace.v1.EnvelopeOuterClass.Envelope;

/**
 * An event handed to an {@link EventHandler}.
 *
 * @param headersOnly true when the message was not an envelope: {@code envelope} was built
 *     from its {@code retrace-*} headers, its value is {@code envelope.getPayload()} and its
 *     {@code content-type} header, if any, {@code envelope.getContentType()}
 * @param attempt 1 for the first run of the handler on this event, 2 after one retry, ...
 */
public record ReceivedEvent(
        Envelope envelope,
        String topic,
        int partition,
        long offset,
        byte[] key,
        Headers headers,
        boolean headersOnly,
        int attempt) {

    ReceivedEvent withAttempt(int attempt) {
        return new ReceivedEvent(envelope, topic, partition, offset, key, headers, headersOnly, attempt);
    }
}
