package org.retrace.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.junit.jupiter.api.Test;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.JobPriority;
import retrace.v1.EnvelopeOuterClass.OutcomeStatus;

/** Envelope building and validation, worded as proto/src/envelope.rs; headers; lanes. */
class ValidationTest {
    private static Envelope.Builder root() {
        return Envelopes.root("registration", "registration.submitted.v1");
    }

    private static EnvelopeException invalid(Envelope.Builder envelope) {
        return assertThrows(EnvelopeException.class, () -> Envelopes.validate(envelope.build()));
    }

    @Test
    void causedByLinksTheParentAndKeepsItsTransaction() {
        Envelope parent = root().addSubjectIds("beneficiary:42").build();
        Envelope child = Envelopes.causedBy(parent, "validation", "registration.validated.v1").build();
        assertEquals(parent.getTransactionId(), child.getTransactionId());
        assertEquals(parent.getEventId(), child.getCausationId());
        assertEquals(List.of("beneficiary:42"), child.getSubjectIdsList());
        assertNotEquals(parent.getEventId(), child.getEventId());
        assertTrue(child.hasOccurredAt());
        Envelopes.validate(child);
    }

    @Test
    void newEventIdsAreUuidV7SortedByTime() {
        String first = Envelopes.newEventId();
        String second = Envelopes.newEventId();
        for (String id : List.of(first, second)) {
            assertTrue(id.matches("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"), id);
            assertEquals(7, java.util.UUID.fromString(id).version());
        }
        assertTrue(first.substring(0, 13).compareTo(second.substring(0, 13)) <= 0);
    }

    @Test
    void validationNamesTheMissingField() {
        EnvelopeException error = invalid(root().setTransactionId(""));
        assertEquals("transaction_id", error.field());
        assertEquals(EnvelopeException.Kind.MISSING, error.kind());
        assertEquals("field `transaction_id` is missing: every Retrace event must carry it", error.getMessage());
        assertEquals("source", invalid(root().setSource("")).field());
        assertEquals("type", invalid(root().setType("")).field());
    }

    @Test
    void anEventIdMustBeAUuid() {
        EnvelopeException error = invalid(root().setEventId("42"));
        assertEquals("event_id", error.field());
        assertEquals(EnvelopeException.Kind.NOT_UUID, error.kind());
        assertEquals("field `event_id` is not a UUID (\"42\"): event ids are UUIDv7 strings", error.getMessage());
        assertEquals("causation_id", invalid(root().setCausationId("parent")).field());
        // The forms Rust's uuid crate accepts are accepted.
        for (String form : List.of("0195f3a07c0070008000000000000001", "{0195f3a0-7c00-7000-8000-000000000001}",
                "urn:uuid:0195f3a0-7c00-7000-8000-000000000001", "0195F3A0-7C00-7000-8000-000000000001")) {
            Envelopes.validate(root().setEventId(form).build());
        }
    }

    @Test
    void idsAreBoundedAndPrintable() {
        EnvelopeException tooLong = invalid(root().setTransactionId("é".repeat(257)));
        assertEquals("field `transaction_id` is 514 bytes long: the limit is 512", tooLong.getMessage());
        Envelopes.validate(root().setTransactionId("x".repeat(512)).build());
        EnvelopeException control = invalid(root().addSubjectIds("beneficiary:\u0007"));
        assertEquals("subject_ids", control.field());
        assertEquals("field `subject_ids` contains a control character: ids must be printable text",
                control.getMessage());
        assertEquals("subject_ids", invalid(root().addSubjectIds("\u0085")).field());
        Envelopes.validate(root().addSubjectIds("village:Kɔfi-Abɛna").build());
    }

    @Test
    void anOutcomeNamesItsFields() {
        Envelope event = root().build();
        var outcome = Envelopes.outcomeOf(event, "", OutcomeStatus.OUTCOME_STATUS_FAILED, "boom", 1);
        assertEquals("consumer", assertThrows(EnvelopeException.class, () -> Envelopes.validate(outcome)).field());
        var good = Envelopes.outcomeOf(event, "certificates", OutcomeStatus.OUTCOME_STATUS_FAILED, "boom", 2);
        Envelopes.validate(good);
        assertEquals(event.getEventId(), good.getEventId());
        assertEquals(2, good.getAttempt());
        assertEquals("boom", good.getError());
    }

    @Test
    void anErrorCodeIsAsciiLettersDigitsAndThreeMarks() {
        for (String good : List.of("", "population_register_timeout", "http_503", "ECONNREFUSED", "40001", "a.b-c",
                "x".repeat(Envelopes.MAX_ERROR_CODE_LEN))) {
            Envelopes.checkErrorCode(good);
        }
        for (String bad : List.of("two words", "a/b", "café")) {
            EnvelopeException refused = assertThrows(EnvelopeException.class, () -> Envelopes.checkErrorCode(bad));
            assertEquals("error_code", refused.field());
            assertEquals(EnvelopeException.Kind.NOT_A_CODE, refused.kind());
        }
        assertEquals("field `error_code` is not a code (\"register timeout\"): use ASCII letters, digits, `_`, `.` and "
                + "`-` only, e.g. `population_register_timeout`",
                assertThrows(EnvelopeException.class, () -> Envelopes.checkErrorCode("register timeout")).getMessage());
        assertEquals("field `error_code` is 65 bytes long: the limit is 64",
                assertThrows(EnvelopeException.class, () -> Envelopes.checkErrorCode("x".repeat(65))).getMessage());
    }

    @Test
    void withErrorCodeSetsAGoodCodeAndLeavesABadOneOutSayingWhy() {
        var failed = Envelopes.outcomeOf(root().build(), "validation", OutcomeStatus.OUTCOME_STATUS_FAILED, "no answer", 1);
        var coded = Envelopes.withErrorCode(failed, "population_register_timeout");
        assertEquals("population_register_timeout", coded.getErrorCode());
        assertEquals("no answer", coded.getError());
        Envelopes.validate(coded);
        var refused = Envelopes.withErrorCode(failed, "register timeout");
        assertEquals("", refused.getErrorCode());
        assertTrue(refused.getError().startsWith("no answer [error_code left out: field `error_code` is not a code"),
                refused.getError());
        Envelopes.validate(refused);
        var invalid = failed.toBuilder().setErrorCode("register timeout").build();
        assertEquals("error_code", assertThrows(EnvelopeException.class, () -> Envelopes.validate(invalid)).field());
    }

    @Test
    void eachPriorityHasItsLane() {
        Envelope.Builder job = root();
        for (var lane : Map.of(JobPriority.JOB_PRIORITY_NORMAL, "retrace.jobs.certificates",
                JobPriority.JOB_PRIORITY_UNSPECIFIED, "retrace.jobs.certificates",
                JobPriority.JOB_PRIORITY_URGENT, "retrace.jobs.certificates.urgent",
                JobPriority.JOB_PRIORITY_BULK, "retrace.jobs.certificates.bulk").entrySet()) {
            Envelope envelope = job.setJob(Envelopes.job("certificate.render", lane.getKey(),
                    Instant.parse("2026-03-01T22:00:00Z"), null, 4)).build();
            assertEquals(lane.getValue(), QueueTopics.laneOf("certificates", envelope));
        }
        assertEquals("job", assertThrows(EnqueueException.class,
                () -> QueueTopics.laneOf("certificates", root().build())).field());
        assertEquals("job.kind", assertThrows(EnqueueException.class, () -> QueueTopics.laneOf("certificates",
                root().setJob(Envelopes.job("", JobPriority.JOB_PRIORITY_BULK, null, null, 0)).build())).field());
        EnqueueException badQueue = assertThrows(EnqueueException.class, () -> QueueTopics.laneOf("has space",
                job.build()));
        assertTrue(badQueue.getMessage().startsWith("job not enqueued: queue name \"has space\" cannot name a topic"),
                badQueue.getMessage());
        assertEquals(List.of("retrace.jobs.q", "retrace.jobs.q.urgent", "retrace.jobs.q.bulk", "retrace.jobs.q.retry",
                "retrace.jobs.q.dlq"), QueueTopics.of("q").all());
    }

    @Test
    void headersSurviveARoundTripAndForeignOnesAreIgnored() {
        Envelope envelope = Envelopes.causedBy(root().addSubjectIds("a:1").addSubjectIds("b:2").build(), "v",
                "registration.validated.v1").build();
        var headers = TraceHeaders.of(envelope).toKafka();
        headers.add("content-type", "application/json".getBytes(StandardCharsets.UTF_8));
        TraceHeaders parsed = TraceHeaders.parse(headers).orElseThrow();
        assertEquals(TraceHeaders.of(envelope).pairs(), parsed.pairs());
        parsed.validate();
        assertEquals(Optional.empty(), TraceHeaders.parse(new RecordHeaders().add("content-type", new byte[] {1})));
        var bad = new RecordHeaders().add(TraceHeaders.TRANSACTION_ID, new byte[] {(byte) 0xff, (byte) 0xfe});
        var error = assertThrows(TraceHeaders.HeaderException.class, () -> TraceHeaders.parse(bad));
        assertEquals("header `retrace-transaction-id` is not valid UTF-8: Retrace header values must be text",
                error.getMessage());
        TraceHeaders onlyEvent = new TraceHeaders();
        onlyEvent.eventId = "e-1";
        assertEquals(TraceHeaders.TRANSACTION_ID,
                assertThrows(EnvelopeException.class, onlyEvent::validate).field());
    }
}
