package org.retrace.sdk;

import com.google.protobuf.Timestamp;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.regex.Pattern;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.Job;
import retrace.v1.EnvelopeOuterClass.JobPriority;
import retrace.v1.EnvelopeOuterClass.Outcome;
import retrace.v1.EnvelopeOuterClass.OutcomeStatus;

/**
 * Building and validating envelopes and outcomes, as {@code proto/src/envelope.rs} does.
 *
 * <pre>{@code
 * Envelope submitted = Envelopes.root("registration", "registration.submitted.v1")
 *         .addSubjectIds("beneficiary:42")
 *         .setContentType("application/json")
 *         .setPayload(ByteString.copyFromUtf8("{\"child\":{\"name\":\"Ada\"}}"))
 *         .build();
 * Envelope validated = Envelopes.causedBy(submitted, "validation", "registration.validated.v1").build();
 * }</pre>
 */
public final class Envelopes {
    /** Longest id (transaction, subject, source, type) accepted, in UTF-8 bytes. */
    public static final int MAX_ID_LEN = 512;

    /** Longest {@code Outcome.error_code} accepted, in characters (all ASCII). */
    public static final int MAX_ERROR_CODE_LEN = 64;

    private static final Pattern ERROR_CODE = Pattern.compile("[A-Za-z0-9_.-]*");

    /** The topic outcomes are published on. */
    public static final String OUTCOMES_TOPIC = "retrace.outcomes";

    /** {@code retrace-type} of an outcome message. */
    public static final String OUTCOME_TYPE = "retrace.outcome.v1";

    private static final SecureRandom RANDOM = new SecureRandom();

    // The forms Rust's `uuid::Uuid::parse_str` accepts: simple, hyphenated, braced, URN.
    private static final String HYPHENATED =
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    private static final Pattern UUID = Pattern.compile(
            "[0-9a-fA-F]{32}|" + HYPHENATED + "|\\{" + HYPHENATED + "\\}|urn:uuid:" + HYPHENATED);

    private Envelopes() {}

    /** A new UUIDv7 (RFC 9562) event id: unique, and sortable by creation time. */
    public static String newEventId() {
        long millis = System.currentTimeMillis();
        byte[] random = new byte[10];
        RANDOM.nextBytes(random);
        long high = (millis & 0xFFFF_FFFF_FFFFL) << 16 | 0x7000L | ((random[0] & 0x0FL) << 8) | (random[1] & 0xFFL);
        long low = 0;
        for (int i = 2; i < 10; i++) {
            low = low << 8 | (random[i] & 0xFFL);
        }
        low = low & 0x3FFF_FFFF_FFFF_FFFFL | 0x8000_0000_0000_0000L;
        return new java.util.UUID(high, low).toString();
    }

    /** The first event of a new transaction: new event and transaction ids (UUIDv7), now. */
    public static Envelope.Builder root(String source, String type) {
        return Envelope.newBuilder()
                .setEventId(newEventId())
                .setTransactionId(newEventId())
                .setSource(source)
                .setType(type)
                .setOccurredAt(timestamp(Instant.now()));
    }

    /**
     * An event caused by {@code parent}: same transaction and subjects, {@code causation_id} =
     * the parent's event id, a new event id, now.
     */
    public static Envelope.Builder causedBy(Envelope parent, String source, String type) {
        return root(source, type)
                .setTransactionId(parent.getTransactionId())
                .setCausationId(parent.getEventId())
                .addAllSubjectIds(parent.getSubjectIdsList());
    }

    /**
     * A job for the off-peak worker, to set on an envelope ({@code .setJob(...)}): the job id
     * is the envelope's event id. {@code notBefore} and {@code deadline} may be null;
     * {@code maxAttempts} 0 means the queue's default.
     */
    public static Job job(String kind, JobPriority priority, Instant notBefore, Instant deadline, int maxAttempts) {
        Job.Builder job = Job.newBuilder().setKind(kind).setPriority(priority).setMaxAttempts(maxAttempts);
        if (notBefore != null) {
            job.setNotBefore(timestamp(notBefore));
        }
        if (deadline != null) {
            job.setDeadline(timestamp(deadline));
        }
        return job.build();
    }

    /** What {@code consumer} did with {@code event} on attempt {@code attempt} (1 for the first). */
    public static Outcome outcomeOf(
            Envelope event, String consumer, OutcomeStatus status, String error, int attempt) {
        return Outcome.newBuilder()
                .setEventId(event.getEventId())
                .setTransactionId(event.getTransactionId())
                .setConsumer(consumer)
                .setStatus(status)
                .setError(error == null ? "" : error)
                .setAttempt(attempt)
                .setAt(timestamp(Instant.now()))
                .build();
    }

    public static Timestamp timestamp(Instant instant) {
        return Timestamp.newBuilder()
                .setSeconds(instant.getEpochSecond())
                .setNanos(instant.getNano())
                .build();
    }

    /** Checks the ids every Retrace event must carry; throws an exception naming the field. */
    public static void validate(Envelope envelope) {
        checkUuid("event_id", envelope.getEventId());
        checkId("transaction_id", envelope.getTransactionId());
        if (!envelope.getCausationId().isEmpty()) {
            checkUuid("causation_id", envelope.getCausationId());
        }
        checkId("source", envelope.getSource());
        checkId("type", envelope.getType());
        for (String subject : envelope.getSubjectIdsList()) {
            checkId("subject_ids", subject);
        }
    }

    /** Checks the ids an outcome must carry to be attached to its event, and its error code. */
    public static void validate(Outcome outcome) {
        checkUuid("event_id", outcome.getEventId());
        checkId("transaction_id", outcome.getTransactionId());
        checkId("consumer", outcome.getConsumer());
        checkErrorCode(outcome.getErrorCode());
    }

    /**
     * Checks an {@code Outcome.error_code}: empty (none given), or 1 to 64 ASCII letters,
     * digits, {@code _}, {@code .} and {@code -} (as {@code retrace_proto::check_error_code}).
     */
    public static void checkErrorCode(String code) {
        int length = code.getBytes(StandardCharsets.UTF_8).length;
        if (length > MAX_ERROR_CODE_LEN) {
            throw EnvelopeException.tooLong("error_code", length, MAX_ERROR_CODE_LEN);
        }
        if (!ERROR_CODE.matcher(code).matches()) {
            throw EnvelopeException.notACode("error_code", code);
        }
    }

    /**
     * {@code outcome} with {@code code} as its {@code error_code}, the stable reason that
     * groups it with failures of the same cause ({@code docs/incidents.md}). A code
     * {@link #checkErrorCode} refuses is left out and the error says why, as the Rust
     * {@code Outcome::with_error_code}: the outcome of a handler that gave a bad code must still
     * be published.
     */
    public static Outcome withErrorCode(Outcome outcome, String code) {
        try {
            checkErrorCode(code);
            return outcome.toBuilder().setErrorCode(code).build();
        } catch (EnvelopeException refused) {
            String note = "[error_code left out: " + refused.getMessage() + "]";
            String error = outcome.getError().isEmpty() ? note : outcome.getError() + " " + note;
            return outcome.toBuilder().setError(error).build();
        }
    }

    static void checkId(String field, String value) {
        if (value.isEmpty()) {
            throw EnvelopeException.missing(field);
        }
        int length = value.getBytes(StandardCharsets.UTF_8).length;
        if (length > MAX_ID_LEN) {
            throw EnvelopeException.tooLong(field, length, MAX_ID_LEN);
        }
        // Rust's char::is_control: the Unicode general category Cc.
        if (value.codePoints().anyMatch(c -> Character.getType(c) == Character.CONTROL)) {
            throw EnvelopeException.controlCharacter(field);
        }
    }

    static void checkUuid(String field, String value) {
        checkId(field, value);
        if (!UUID.matcher(value).matches()) {
            throw EnvelopeException.notUuid(field, value);
        }
    }
}
