package org.retrace.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.protobuf.ByteString;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.TraceFlags;
import io.opentelemetry.api.trace.TraceState;
import io.opentelemetry.context.Scope;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.JobPriority;
import retrace.v1.EnvelopeOuterClass.Outcome;

/**
 * Against Apache Kafka: the vectors as published records; publish → consume with an outcome per
 * event on retrace.outcomes and the commit after it; enqueue onto the lanes; header-only
 * messages; traceparent; every id of partitions.json produced to real topics.
 */
class KafkaTest {
    private static final long PATIENCE_S = Kafka.PATIENCE.toSeconds();
    private static Kafka kafka;

    @BeforeAll
    static void broker() {
        kafka = Kafka.shared();
    }

    /** What happened, in order: ("outcome", event id, status) and ("commit", topic, partition, next). */
    private static final class Log {
        final List<List<String>> entries = Collections.synchronizedList(new ArrayList<>());

        void add(String... entry) {
            entries.add(List.of(entry));
        }

        List<List<String>> all() {
            return Kafka.copy(entries);
        }

        long count(String kind) {
            return all().stream().filter(e -> e.get(0).equals(kind)).count();
        }
    }

    /**
     * A Publisher that logs each outcome once Kafka acknowledged it; with {@code failing}, every
     * outcome is refused (as by a broker that does not take it).
     */
    private static final class Recording extends Publisher {
        final Log log;
        final boolean failing;
        final Semaphore refused = new Semaphore(0);
        final List<Map.Entry<Outcome, Delivery>> outcomes = Collections.synchronizedList(new ArrayList<>());

        Recording(Log log, boolean failing) {
            super(kafka.bootstrap);
            this.log = log;
            this.failing = failing;
        }

        @Override
        public Delivery publishOutcome(Outcome outcome) {
            if (failing) {
                refused.release();
                throw new PublishException(outcome.getEventId(), Envelopes.OUTCOMES_TOPIC,
                        new IllegalStateException("refused by the test"));
            }
            Delivery delivery = super.publishOutcome(outcome);
            outcomes.add(Map.entry(outcome, delivery));
            log.add("outcome", outcome.getEventId(), outcome.getStatus().name());
            return delivery;
        }
    }

    /** A consumer started on its thread, stopped once {@code until} holds after a commit. */
    private static EventConsumer consumer(String topic, String group, EventHandler handler, Publisher publisher,
            Log log, BooleanSupplier until, CountDownLatch done) {
        EventConsumer consumer = EventConsumer.builder(kafka.bootstrap, List.of(topic), group, handler)
                .consumerName("java-test")
                .publisher(publisher)
                .onCommit((t, partition, next) -> {
                    log.add("commit", t, Integer.toString(partition), Long.toString(next));
                    if (until.getAsBoolean()) {
                        done.countDown();
                    }
                })
                .build();
        consumer.start();
        return consumer;
    }

    private static KafkaProducer<byte[], byte[]> rawProducer() {
        return new KafkaProducer<>(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrap,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName(),
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName()));
    }

    private static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void everyVectorIsPublishedWithItsExactKeyValueAndHeaders() throws Exception {
        String topic = kafka.uniqueTopic("java-vectors", 3);
        String queue = Kafka.unique("java-vq");
        for (String lane : QueueTopics.of(queue).all()) {
            kafka.createTopic(lane, 1);
        }
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            for (JsonObject vector : Testdata.vectors()) {
                String name = vector.get("name").getAsString();
                byte[] value = Testdata.value(vector);
                Delivery delivery = switch (vector.get("published_with").getAsString()) {
                    case "publish" -> publisher.publish(topic, Envelope.parseFrom(value));
                    case "enqueue" -> publisher.enqueue(queue, Envelope.parseFrom(value));
                    case "publish_outcome" -> publisher.publishOutcome(Outcome.parseFrom(value));
                    default -> throw new AssertionError(name);
                };
                if (vector.get("published_with").getAsString().equals("enqueue")) {
                    String lane = vector.get("topic").getAsString().replace(vector.get("queue").getAsString(), queue);
                    assertEquals(lane, delivery.topic(), name + ": lane");
                }
                ConsumerRecord<byte[], byte[]> record = kafka.readAt(delivery);
                assertArrayEquals(utf8(vector.get("key").getAsString()), record.key(), name + ": key");
                assertArrayEquals(value, record.value(), name + ": value");
                assertEquals(Testdata.headers(vector), Kafka.headers(record), name + ": headers");
            }
        }
    }

    @Test
    void publishConsumeOutcomesAndCommits() throws Exception {
        String topic = kafka.uniqueTopic("java-roundtrip", 3);
        String group = Kafka.unique("java-group");
        Envelope ok = Envelopes.root("registration", "registration.submitted.v1").addSubjectIds("beneficiary:1")
                .setContentType("application/json").setPayload(ByteString.copyFromUtf8("{\"n\":1}")).build();
        Envelope failing = Envelopes.root("registration", "registration.submitted.v1")
                .addSubjectIds("beneficiary:3").build();
        Envelope flaky = Envelopes.causedBy(ok, "validation", "registration.validated.v1").build();
        List<Delivery> deliveries = new ArrayList<>();
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            for (Envelope envelope : List.of(ok, failing, flaky, ok)) { // ok twice: a retried publish
                deliveries.add(publisher.publish(topic, envelope));
            }
        }
        assertEquals(deliveries.get(0).partition(), deliveries.get(2).partition(), "one transaction, one partition");
        // Another language's message: a JSON value and retrace-* headers only; and one that
        // nothing can trace: skipped, committed.
        String plainId = Envelopes.newEventId();
        String plainTx = Kafka.unique("tx");
        try (KafkaProducer<byte[], byte[]> raw = rawProducer()) {
            RecordHeaders headers = new RecordHeaders();
            headers.add("retrace-event-id", utf8(plainId)).add("retrace-transaction-id", utf8(plainTx))
                    .add("retrace-source", utf8("kcat")).add("retrace-type", utf8("note.v1"))
                    .add("content-type", utf8("application/json"));
            raw.send(new ProducerRecord<>(topic, null, utf8(plainTx), utf8("{\"from\":\"kcat\"}"), headers)).get();
            raw.send(new ProducerRecord<>(topic, utf8("x"), new byte[] {0, (byte) 0xff, 'n', 'o'})).get();
        }

        Log log = new Log();
        List<String> seen = Collections.synchronizedList(new ArrayList<>());
        Map<String, Integer> attempts = Collections.synchronizedMap(new HashMap<>());
        EventHandler handler = event -> {
            String id = event.envelope().getEventId();
            seen.add(id + (event.headersOnly() ? " headers-only" : ""));
            int attempt = attempts.merge(id, 1, Integer::sum);
            assertEquals(attempt, event.attempt());
            if (event.envelope().getSubjectIdsList().contains("beneficiary:3")) {
                throw new RetraceException("registry timeout", "registry_timeout");
            }
            if (id.equals(flaky.getEventId()) && attempt == 1) {
                throw new RetryException("renderer busy", Duration.ZERO);
            }
            if (event.headersOnly()) {
                assertEquals("{\"from\":\"kcat\"}", event.envelope().getPayload().toStringUtf8());
                assertEquals("application/json", event.envelope().getContentType());
            }
        };
        Recording recording = new Recording(log, false);
        CountDownLatch done = new CountDownLatch(1);
        try (EventConsumer consumer = consumer(topic, group, handler, recording, log,
                () -> log.count("commit") == 6, done)) {
            assertTrue(done.await(PATIENCE_S, TimeUnit.SECONDS), "not every message was committed: " + log.all());
        }
        List<String> outcomes = log.all().stream().filter(e -> e.get(0).equals("outcome"))
                .map(e -> e.get(1) + " " + e.get(2)).sorted().toList();
        List<String> expected = new ArrayList<>(List.of(ok.getEventId() + " OUTCOME_STATUS_PROCESSED",
                failing.getEventId() + " OUTCOME_STATUS_FAILED", flaky.getEventId() + " OUTCOME_STATUS_RETRYING",
                flaky.getEventId() + " OUTCOME_STATUS_PROCESSED", plainId + " OUTCOME_STATUS_PROCESSED"));
        Collections.sort(expected);
        assertEquals(expected, outcomes);
        assertEquals(1, attempts.get(ok.getEventId()), "the second record of a processed event is skipped");
        assertTrue(seen.contains(plainId + " headers-only"), seen.toString());
        // Each event's commit comes after its outcome was acknowledged.
        List<List<String>> entries = log.all();
        for (int i = 0; i < entries.size(); i++) {
            if (entries.get(i).get(0).equals("outcome")) {
                int at = i;
                assertTrue(entries.subList(at, entries.size()).stream().anyMatch(e -> e.get(0).equals("commit")),
                        "no commit after the outcome of " + entries.get(at));
            }
        }
        // The outcomes are on retrace.outcomes as the Rust SDK writes them.
        for (Map.Entry<Outcome, Delivery> entry : Kafka.copy(recording.outcomes)) {
            Outcome outcome = entry.getKey();
            ConsumerRecord<byte[], byte[]> record = kafka.readAt(entry.getValue());
            assertEquals(Envelopes.OUTCOMES_TOPIC, record.topic());
            assertEquals(outcome, Outcome.parseFrom(record.value()));
            assertArrayEquals(utf8(outcome.getTransactionId()), record.key());
            assertEquals(TraceHeaders.ofOutcome(outcome).pairs(), Kafka.headers(record));
            assertEquals("java-test", outcome.getConsumer());
        }
        Outcome failed = Kafka.copy(recording.outcomes).stream().map(Map.Entry::getKey)
                .filter(o -> o.getEventId().equals(failing.getEventId())).findFirst().orElseThrow();
        assertEquals("registry timeout", failed.getError());
        assertEquals("registry_timeout", failed.getErrorCode());
        assertEquals(1, failed.getAttempt());
        List<Integer> retried = Kafka.copy(recording.outcomes).stream().map(Map.Entry::getKey)
                .filter(o -> o.getEventId().equals(flaky.getEventId())).map(Outcome::getAttempt).toList();
        assertEquals(List.of(1, 2), retried);
        // What the group committed: every partition at its end.
        Map<Integer, Long> committed = kafka.committed(group, topic);
        for (Delivery delivery : deliveries) {
            assertTrue(committed.getOrDefault(delivery.partition(), -1L) > delivery.offset(), committed.toString());
        }
        recording.close();
    }

    @Test
    void nothingIsCommittedBeforeTheOutcomeIsAcknowledged() throws Exception {
        String topic = kafka.uniqueTopic("java-no-commit", 1);
        String group = Kafka.unique("java-group");
        Envelope event = Envelopes.root("registration", "registration.submitted.v1").build();
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            publisher.publish(topic, event);
        }
        List<String> handled = Collections.synchronizedList(new ArrayList<>());
        Log log = new Log();
        try (Recording refusing = new Recording(log, true);
                EventConsumer consumer = consumer(topic, group, e -> handled.add(e.envelope().getEventId()),
                        refusing, log, () -> false, new CountDownLatch(1))) {
            // Refused twice: the consumer is retrying the outcome, and must not have committed.
            assertTrue(refusing.refused.tryAcquire(2, PATIENCE_S, TimeUnit.SECONDS));
            consumer.stop();
            consumer.finished().get(PATIENCE_S, TimeUnit.SECONDS);
        }
        assertEquals(List.of(event.getEventId()), Kafka.copy(handled));
        assertEquals(0, log.count("commit"));
        assertTrue(kafka.committed(group, topic).isEmpty(), "nothing committed");
        // The next run, with outcomes getting through, handles the event again and commits.
        Log again = new Log();
        CountDownLatch done = new CountDownLatch(1);
        try (Recording accepting = new Recording(again, false);
                EventConsumer consumer = consumer(topic, group, e -> handled.add(e.envelope().getEventId()),
                        accepting, again, () -> again.count("commit") > 0, done)) {
            assertTrue(done.await(PATIENCE_S, TimeUnit.SECONDS), again.all().toString());
        }
        assertEquals(List.of(event.getEventId(), event.getEventId()), Kafka.copy(handled));
        assertEquals(List.of("outcome", "commit"), again.all().stream().map(e -> e.get(0)).toList());
        assertEquals(Map.of(0, 1L), kafka.committed(group, topic));
    }

    @Test
    void enqueueGoesOntoTheLaneOfItsPriority() throws Exception {
        String queue = Kafka.unique("java-queue");
        QueueTopics topics = QueueTopics.of(queue);
        for (String lane : List.of(topics.normal(), topics.urgent(), topics.bulk())) {
            kafka.createTopic(lane, 1);
        }
        Map<JobPriority, String> lanes = Map.of(JobPriority.JOB_PRIORITY_URGENT, topics.urgent(),
                JobPriority.JOB_PRIORITY_BULK, topics.bulk(), JobPriority.JOB_PRIORITY_NORMAL, topics.normal(),
                JobPriority.JOB_PRIORITY_UNSPECIFIED, topics.normal());
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            for (Map.Entry<JobPriority, String> lane : lanes.entrySet()) {
                Envelope job = Envelopes.root("registration", "certificate.requested.v1")
                        .setJob(Envelopes.job("certificate.render", lane.getKey(),
                                Instant.parse("2026-03-01T22:00:00Z"), Instant.parse("2026-03-02T06:00:00Z"), 4))
                        .build();
                Delivery delivery = lane.getKey() == JobPriority.JOB_PRIORITY_BULK
                        ? publisher.enqueueAsync(queue, job).get(PATIENCE_S, TimeUnit.SECONDS)
                        : publisher.enqueue(queue, job);
                assertEquals(lane.getValue(), delivery.topic(), lane.getKey().name());
                ConsumerRecord<byte[], byte[]> record = kafka.readAt(delivery);
                assertEquals(job, Envelope.parseFrom(record.value()));
                assertEquals(TraceHeaders.of(job).pairs(), Kafka.headers(record));
            }
        }
    }

    @Test
    void traceparentIsSentWhenASpanIsCurrent() {
        String topic = kafka.uniqueTopic("java-traceparent", 1);
        SpanContext context = SpanContext.create("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331",
                TraceFlags.getSampled(), TraceState.getDefault());
        Envelope event = Envelopes.root("registration", "registration.submitted.v1")
                .addSubjectIds("beneficiary:9").build();
        Delivery traced;
        Delivery plain;
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            try (Scope scope = Span.wrap(context).makeCurrent()) {
                traced = publisher.publish(topic, event);
            }
            plain = publisher.publish(topic, event);
        }
        TraceHeaders expected = TraceHeaders.of(event);
        expected.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        List<Map.Entry<String, String>> headers = Kafka.headers(kafka.readAt(traced));
        assertEquals(expected.pairs(), headers);
        assertEquals("retrace-type", headers.get(headers.size() - 2).getKey());
        assertEquals("traceparent", headers.get(headers.size() - 1).getKey());
        assertFalse(Kafka.headers(kafka.readAt(plain)).stream().anyMatch(h -> h.getKey().equals("traceparent")));
    }

    @Test
    void anInvalidEnvelopeIsNotPublished() {
        Envelope event = Envelopes.root("registration", "registration.submitted.v1").setEventId("42").build();
        try (Publisher publisher = new Publisher(kafka.bootstrap)) {
            EnvelopeException error = assertThrows(EnvelopeException.class, () -> publisher.publish("never-created", event));
            assertEquals("event_id", error.field());
            assertThrows(EnqueueException.class, () -> publisher.enqueue("q", Envelopes.root("a", "b").build()));
        }
    }

    /** Every id of partitions.json, produced with the Publisher's settings to real topics. */
    @Test
    void theProducerPutsEveryIdWherePartitionsJsonSays() throws Exception {
        JsonObject file = Testdata.read("partitions.json");
        JsonArray counts = file.getAsJsonArray("partition_counts");
        JsonArray rows = file.getAsJsonArray("transactions");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(Publisher.producerConfig(
                Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrap, ProducerConfig.LINGER_MS_CONFIG, 20)))) {
            for (int column = 0; column < counts.size(); column++) {
                int count = counts.get(column).getAsInt();
                if (count == 1) {
                    continue;
                }
                String topic = kafka.uniqueTopic("java-partitions-" + count, count);
                // One record to each partition first, acknowledged: on a topic this new, the
                // broker may still answer NOT_LEADER_OR_FOLLOWER, and kafka-clients 4.4 was seen
                // to hold a retried batch of the 10,000 until the delivery timeout (report).
                for (int partition = 0; partition < count; partition++) {
                    producer.send(new ProducerRecord<>(topic, partition, null, new byte[0])).get(PATIENCE_S, TimeUnit.SECONDS);
                }
                List<CompletableFuture<RecordMetadata>> sent = new ArrayList<>();
                for (JsonElement row : rows) {
                    CompletableFuture<RecordMetadata> placed = new CompletableFuture<>();
                    producer.send(new ProducerRecord<>(topic, utf8(row.getAsJsonArray().get(0).getAsString()), new byte[0]),
                            (metadata, error) -> {
                                if (error != null) {
                                    placed.completeExceptionally(error);
                                } else {
                                    placed.complete(metadata);
                                }
                            });
                    sent.add(placed);
                }
                List<String> wrong = new ArrayList<>();
                for (int i = 0; i < rows.size(); i++) {
                    JsonArray row = rows.get(i).getAsJsonArray();
                    int partition = sent.get(i).get(PATIENCE_S, TimeUnit.SECONDS).partition();
                    if (partition != row.get(column + 1).getAsInt()) {
                        wrong.add(row.get(0).getAsString() + ": " + partition);
                    }
                }
                assertTrue(wrong.isEmpty(), wrong.size() + " of 10,000 ids misplaced on " + count + " partitions, e.g. "
                        + wrong.subList(0, Math.min(5, wrong.size())));
            }
        }
    }
}
