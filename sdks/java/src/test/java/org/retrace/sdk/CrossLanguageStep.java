package org.retrace.sdk;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import retrace.v1.EnvelopeOuterClass.Envelope;

/**
 * One step of a transaction that crosses languages, as a JVM service runs it: it consumes the
 * previous step's topic with the SDK's {@link EventConsumer}, publishes the next step
 * {@link Envelopes#causedBy caused by} the event it got with the SDK's {@link Publisher}, and
 * the consumer reports its outcome (processed). It ends once that event's offset is committed,
 * after the outcome; it fails if no event came within the deadline.
 *
 * <p>Not a test of its own: surefire's default includes ({@code *Test}) leave it out, and it is
 * skipped without its variables. {@code replay-cli/tests/cross_language.rs} runs it, with the
 * variables of the Python SDK's step ({@code sdks/python/tests/cross_language/step.py}):
 *
 * <pre>{@code
 * RETRACE_STEP_BOOTSTRAP=localhost:9092 RETRACE_STEP_FROM=validations RETRACE_STEP_GROUP=certificates \
 * RETRACE_STEP_SOURCE=certificates-java RETRACE_STEP_TYPE=certificate.issued.v1 RETRACE_STEP_TO=certificates \
 * mvn -q -o test -Dtest=CrossLanguageStep
 * }</pre>
 *
 * Maven runs it because that builds the SDK and its test classpath as {@code mvn test} does,
 * offline, with nothing more to fetch.
 */
class CrossLanguageStep {
    private static String setting(String name) {
        String value = System.getenv(name);
        assertTrue(value != null && !value.isEmpty(), name + " is not set");
        return value;
    }

    @Test
    void consumesThePreviousStepAndPublishesTheNext() throws InterruptedException {
        Assumptions.assumeTrue(System.getenv("RETRACE_STEP_FROM") != null,
                "a step of replay-cli/tests/cross_language.rs, run by it");
        String bootstrap = setting("RETRACE_STEP_BOOTSTRAP");
        String source = setting("RETRACE_STEP_SOURCE");
        String type = setting("RETRACE_STEP_TYPE");
        String from = setting("RETRACE_STEP_FROM");
        String to = setting("RETRACE_STEP_TO");
        String deadline = System.getenv("RETRACE_STEP_DEADLINE_S");
        long deadlineS = deadline == null || deadline.isEmpty() ? 120 : Long.parseLong(deadline);

        AtomicReference<ReceivedEvent> handled = new AtomicReference<>();
        CountDownLatch committed = new CountDownLatch(1);
        try (Publisher publisher = new Publisher(bootstrap)) {
            EventConsumer consumer = EventConsumer.builder(bootstrap, List.of(from), setting("RETRACE_STEP_GROUP"),
                            event -> {
                                Envelope parent = event.envelope();
                                Envelope step = Envelopes.causedBy(parent, source, type)
                                        .setContentType("application/json")
                                        .setPayload(ByteString.copyFromUtf8("{\"step\":\"" + source
                                                + "\",\"after\":\"" + parent.getSource() + "\"}"))
                                        .build();
                                Delivery delivery = publisher.publish(to, step);
                                System.out.println("{\"consumed\":\"" + parent.getEventId() + "\",\"published\":\""
                                        + step.getEventId() + "\",\"topic\":\"" + delivery.topic() + "\",\"partition\":"
                                        + delivery.partition() + ",\"offset\":" + delivery.offset() + "}");
                                handled.compareAndSet(null, event);
                            })
                    .consumerName(source)
                    .publisher(publisher)
                    .onCommit((topic, partition, next) -> {
                        ReceivedEvent event = handled.get();
                        if (event != null && event.topic().equals(topic) && event.partition() == partition
                                && event.offset() + 1 == next) {
                            committed.countDown();
                        }
                    })
                    .build();
            consumer.start();
            boolean done = committed.await(deadlineS, TimeUnit.SECONDS);
            consumer.close();
            assertTrue(done, "no event of " + from + " handled and committed within " + deadlineS + " s");
        }
    }
}
