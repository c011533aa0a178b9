package org.retrace.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.google.gson.JsonObject;
import com.google.protobuf.util.JsonFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.Outcome;

/** proto/testdata/vectors.json: bytes, JSON fields, key, headers and lanes, as the Rust SDK's. */
class VectorsTest {
    static Stream<JsonObject> vectors() {
        return Testdata.vectors().stream();
    }

    @Test
    void everyNamedVectorIsThere() {
        Set<String> names = vectors().map(v -> v.get("name").getAsString()).collect(Collectors.toSet());
        assertEquals(Set.of("root", "root_with_subjects_and_payload", "caused_by", "job_urgent", "job_bulk",
                "job_unspecified_priority", "replayed", "outcome_processed", "outcome_failed", "outcome_retrying",
                "outcome_failed_with_code"),
                names);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("vectors")
    void decodesAndReencodesToTheSameBytesKeyAndHeaders(JsonObject vector) throws Exception {
        String name = vector.get("name").getAsString();
        byte[] value = Testdata.value(vector);
        String fields = vector.get("fields").toString();
        List<Map.Entry<String, String>> headers;
        String key;
        switch (vector.get("message").getAsString()) {
            case "retrace.v1.Envelope" -> {
                Envelope envelope = Envelope.parseFrom(value);
                assertArrayEquals(value, envelope.toByteArray(), name + ": re-encoded");
                Envelope.Builder fromJson = Envelope.newBuilder();
                JsonFormat.parser().merge(fields, fromJson);
                assertArrayEquals(value, fromJson.build().toByteArray(), name + ": from its JSON fields");
                Envelopes.validate(envelope);
                headers = TraceHeaders.of(envelope).pairs();
                key = envelope.getTransactionId();
                if (vector.get("published_with").getAsString().equals("enqueue")) {
                    assertEquals(vector.get("topic").getAsString(),
                            QueueTopics.laneOf(vector.get("queue").getAsString(), envelope), name + ": lane");
                }
            }
            case "retrace.v1.Outcome" -> {
                Outcome outcome = Outcome.parseFrom(value);
                assertArrayEquals(value, outcome.toByteArray(), name + ": re-encoded");
                Outcome.Builder fromJson = Outcome.newBuilder();
                JsonFormat.parser().merge(fields, fromJson);
                assertArrayEquals(value, fromJson.build().toByteArray(), name + ": from its JSON fields");
                Envelopes.validate(outcome);
                assertEquals(Envelopes.OUTCOMES_TOPIC, vector.get("topic").getAsString());
                headers = TraceHeaders.ofOutcome(outcome).pairs();
                key = outcome.getTransactionId();
            }
            default -> throw new AssertionError(name + ": unknown message " + vector.get("message"));
        }
        assertEquals(vector.get("key").getAsString(), key, name + ": key");
        assertEquals(Testdata.headers(vector), headers, name + ": headers");
        assertFalse(headers.stream().anyMatch(h -> h.getKey().equals("content-type")));
    }
}
