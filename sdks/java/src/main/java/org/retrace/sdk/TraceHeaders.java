package org.retrace.sdk;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.Outcome;

/**
 * An event's ids as carried in Kafka headers ({@code proto/src/headers.rs}: names, order,
 * rules). Empty strings stand for absent headers.
 */
public final class TraceHeaders {
    public static final String EVENT_ID = "retrace-event-id";
    public static final String TRANSACTION_ID = "retrace-transaction-id";
    public static final String CAUSATION_ID = "retrace-causation-id";
    /** Repeated: one header per subject id. */
    public static final String SUBJECT = "retrace-subject";
    public static final String SOURCE = "retrace-source";
    public static final String TYPE = "retrace-type";
    /** W3C trace context. */
    public static final String TRACEPARENT = "traceparent";
    public static final String REPLAY_ID = "retrace-replay-id";
    public static final String REPLAY_OF = "retrace-replay-of";

    public String eventId = "";
    public String transactionId = "";
    public String causationId = "";
    public List<String> subjectIds = new ArrayList<>();
    public String source = "";
    public String eventType = "";
    public String traceparent = "";
    public String replayId = "";
    public String replayOf = "";

    /** The headers that go with {@code envelope} (what {@link Publisher#publish} sends). */
    public static TraceHeaders of(Envelope envelope) {
        TraceHeaders headers = new TraceHeaders();
        headers.eventId = envelope.getEventId();
        headers.transactionId = envelope.getTransactionId();
        headers.causationId = envelope.getCausationId();
        headers.subjectIds = new ArrayList<>(envelope.getSubjectIdsList());
        headers.source = envelope.getSource();
        headers.eventType = envelope.getType();
        if (envelope.hasReplay()) {
            headers.replayId = envelope.getReplay().getReplayId();
            headers.replayOf = envelope.getReplay().getOriginalEventId();
        }
        return headers;
    }

    /** The headers of an outcome message: the consumer as source, the event as cause. */
    public static TraceHeaders ofOutcome(Outcome outcome) {
        TraceHeaders headers = new TraceHeaders();
        headers.transactionId = outcome.getTransactionId();
        headers.causationId = outcome.getEventId();
        headers.source = outcome.getConsumer();
        headers.eventType = Envelopes.OUTCOME_TYPE;
        return headers;
    }

    /** (name, value) pairs in the Rust SDK's order, absent ones left out. */
    public List<Map.Entry<String, String>> pairs() {
        List<Map.Entry<String, String>> ordered = new ArrayList<>();
        ordered.add(Map.entry(EVENT_ID, eventId));
        ordered.add(Map.entry(TRANSACTION_ID, transactionId));
        ordered.add(Map.entry(CAUSATION_ID, causationId));
        for (String subject : subjectIds) {
            ordered.add(Map.entry(SUBJECT, subject));
        }
        ordered.add(Map.entry(SOURCE, source));
        ordered.add(Map.entry(TYPE, eventType));
        ordered.add(Map.entry(TRACEPARENT, traceparent));
        ordered.add(Map.entry(REPLAY_ID, replayId));
        ordered.add(Map.entry(REPLAY_OF, replayOf));
        ordered.removeIf(pair -> pair.getValue().isEmpty());
        return ordered;
    }

    /** The pairs as Kafka headers: UTF-8 values. */
    public Headers toKafka() {
        RecordHeaders headers = new RecordHeaders();
        for (Map.Entry<String, String> pair : pairs()) {
            headers.add(pair.getKey(), pair.getValue().getBytes(StandardCharsets.UTF_8));
        }
        return headers;
    }

    /**
     * Reads the Retrace headers of a message; others are ignored. Empty when it carries no
     * Retrace header at all.
     *
     * @throws HeaderException for a Retrace header whose value is not UTF-8
     */
    public static Optional<TraceHeaders> parse(Headers headers) {
        TraceHeaders parsed = new TraceHeaders();
        boolean found = false;
        for (Header header : headers) {
            String name = header.key();
            if (!isRetraceHeader(name)) {
                continue;
            }
            found = true;
            String text = utf8(name, header.value());
            switch (name) {
                case EVENT_ID -> parsed.eventId = text;
                case TRANSACTION_ID -> parsed.transactionId = text;
                case CAUSATION_ID -> parsed.causationId = text;
                case SUBJECT -> parsed.subjectIds.add(text);
                case SOURCE -> parsed.source = text;
                case TYPE -> parsed.eventType = text;
                case TRACEPARENT -> parsed.traceparent = text;
                case REPLAY_ID -> parsed.replayId = text;
                default -> parsed.replayOf = text;
            }
        }
        return found ? Optional.of(parsed) : Optional.empty();
    }

    /** Checks the ids a message needs to be traced: its event and transaction ids. */
    public void validate() {
        Envelopes.checkId(EVENT_ID, eventId);
        Envelopes.checkId(TRANSACTION_ID, transactionId);
        for (String subject : subjectIds) {
            Envelopes.checkId(SUBJECT, subject);
        }
    }

    private static boolean isRetraceHeader(String name) {
        return switch (name) {
            case EVENT_ID, TRANSACTION_ID, CAUSATION_ID, SUBJECT, SOURCE, TYPE, TRACEPARENT, REPLAY_ID, REPLAY_OF ->
                true;
            default -> false;
        };
    }

    private static String utf8(String name, byte[] value) {
        if (value == null) {
            return "";
        }
        try {
            return StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(value))
                    .toString();
        } catch (CharacterCodingException e) {
            throw new HeaderException(name);
        }
    }

    /** A Retrace header that cannot be read. */
    public static final class HeaderException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;
        private final String header;

        HeaderException(String header) {
            super("header `" + header + "` is not valid UTF-8: Retrace header values must be text");
            this.header = header;
        }

        public String header() {
            return header;
        }
    }
}
