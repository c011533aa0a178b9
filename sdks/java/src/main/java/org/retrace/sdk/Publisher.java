package org.retrace.sdk;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.Outcome;

/**
 * Publishes Retrace messages: envelopes, jobs and outcomes, each keyed by its transaction id
 * with its ids in {@code retrace-*} headers, completed once the broker acknowledged it.
 *
 * <p>Thread-safe: share one per service. The producer is configured as the Rust SDK's
 * ({@code services/sdk/src/publisher.rs}): every in-sync replica acknowledges ({@code
 * acks=all}), retries never duplicate ({@code enable.idempotence=true}), {@code linger.ms=5},
 * a delivery timeout of 30 s, and the client's default partitioner, which puts a keyed message
 * on {@code toPositive(murmur2(key)) % partitions}: where the Rust SDK's {@code murmur2_random}
 * puts it. A producer that failed fatally (fenced after a broker outage) is replaced for the
 * next publish.
 */
public class Publisher implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Publisher.class);

    /** The Rust SDK's producer settings, in kafka-clients' names. */
    public static final Map<String, Object> PRODUCER_DEFAULTS = Map.of(
            ProducerConfig.ACKS_CONFIG, "all",
            ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true,
            ProducerConfig.LINGER_MS_CONFIG, 5,
            // librdkafka's message.timeout.ms; kafka-clients wants it ≥ linger + request timeout.
            ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000,
            ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 20_000,
            // How long send() may wait for metadata or room in the buffer: the backpressure.
            ProducerConfig.MAX_BLOCK_MS_CONFIG, 30_000);

    private final Map<String, Object> config;
    private final Object lock = new Object();
    private long generation;
    private KafkaProducer<byte[], byte[]> producer;

    /** A publisher for the cluster at {@code bootstrapServers} (host:port, comma-separated). */
    public Publisher(String bootstrapServers) {
        this(Map.of(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers));
    }

    /**
     * A publisher with any kafka-clients producer property ({@code bootstrap.servers},
     * {@code security.protocol}, {@code sasl.*}, ...) over {@link #PRODUCER_DEFAULTS}.
     */
    public Publisher(Map<String, ?> config) {
        this.config = producerConfig(config);
        if (!this.config.containsKey(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG)) {
            throw new IllegalArgumentException("Publisher needs bootstrap.servers");
        }
        this.producer = new KafkaProducer<>(this.config);
    }

    /** {@link #PRODUCER_DEFAULTS}, then {@code overrides}, with byte-array serializers. */
    public static Map<String, Object> producerConfig(Map<String, ?> overrides) {
        // A transaction's events must land where every other SDK puts them: murmur2 of the key.
        if (overrides.containsKey(ProducerConfig.PARTITIONER_CLASS_CONFIG)
                || "true".equals(String.valueOf(overrides.get(ProducerConfig.PARTITIONER_IGNORE_KEYS_CONFIG)))) {
            throw new IllegalArgumentException("Publisher keeps kafka-clients' default partitioner (murmur2 of the"
                    + " transaction id, as every Retrace SDK): partitioner.class and partitioner.ignore.keys=true"
                    + " are refused");
        }
        Map<String, Object> config = new HashMap<>(PRODUCER_DEFAULTS);
        config.putAll(overrides);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return config;
    }

    /**
     * Publishes {@code envelope} on {@code topic}, keyed by its transaction id, with its ids in
     * {@code retrace-*} headers (and {@code traceparent} when an OpenTelemetry span is current).
     * Returns once the broker acknowledged it.
     *
     * @throws EnvelopeException for an invalid envelope, naming the field
     * @throws PublishException when Kafka did not take it
     */
    public Delivery publish(String topic, Envelope envelope) {
        return await(publishAsync(topic, envelope));
    }

    /** {@link #publish}, completed when the broker acknowledged (or refused) the message. */
    public CompletableFuture<Delivery> publishAsync(String topic, Envelope envelope) {
        Envelopes.validate(envelope);
        TraceHeaders headers = TraceHeaders.of(envelope);
        headers.traceparent = Traceparent.current();
        return send(topic, envelope.getTransactionId(), envelope.toByteArray(), headers.toKafka(),
                envelope.getEventId());
    }

    /**
     * Publishes {@code job} (an envelope with {@code job} set) on the lane of its priority:
     * {@code retrace.jobs.<queue>}, {@code .urgent} or {@code .bulk}. The job id is its event id.
     *
     * @throws EnqueueException when it is not a job or the queue names no topic
     */
    public Delivery enqueue(String queue, Envelope job) {
        return publish(QueueTopics.laneOf(queue, job), job);
    }

    /** {@link #enqueue}, completed when the broker acknowledged it. */
    public CompletableFuture<Delivery> enqueueAsync(String queue, Envelope job) {
        return publishAsync(QueueTopics.laneOf(queue, job), job);
    }

    /** Publishes what a consumer did with an event, on {@code retrace.outcomes}. */
    public Delivery publishOutcome(Outcome outcome) {
        Envelopes.validate(outcome);
        return await(send(Envelopes.OUTCOMES_TOPIC, outcome.getTransactionId(), outcome.toByteArray(),
                TraceHeaders.ofOutcome(outcome).toKafka(), outcome.getEventId()));
    }

    private CompletableFuture<Delivery> send(String topic, String key, byte[] value, Headers headers, String eventId) {
        long sentBy;
        KafkaProducer<byte[], byte[]> current;
        synchronized (lock) {
            sentBy = generation;
            current = producer;
        }
        CompletableFuture<Delivery> delivered = new CompletableFuture<>();
        ProducerRecord<byte[], byte[]> record =
                new ProducerRecord<>(topic, null, key.getBytes(StandardCharsets.UTF_8), value, headers);
        try {
            current.send(record, (metadata, error) -> {
                if (error == null) {
                    delivered.complete(new Delivery(metadata.topic(), metadata.partition(), metadata.offset()));
                } else {
                    replaceIfFatal(sentBy, error);
                    delivered.completeExceptionally(new PublishException(eventId, topic, error));
                }
            });
        } catch (RuntimeException error) {
            // Metadata not found within max.block.ms, a closed or failed producer, ...
            replaceIfFatal(sentBy, error);
            delivered.completeExceptionally(new PublishException(eventId, topic, error));
        }
        return delivered;
    }

    /**
     * Replaces the producer of {@code sentBy} if it failed fatally: fenced, or its sequence
     * broken. Its messages in flight have failed (their callers were told).
     */
    private void replaceIfFatal(long sentBy, Throwable error) {
        if (!isFatal(error)) {
            return;
        }
        KafkaProducer<byte[], byte[]> old;
        synchronized (lock) {
            if (generation != sentBy) {
                return;
            }
            try {
                old = producer;
                producer = new KafkaProducer<>(config);
                generation++;
            } catch (RuntimeException e) {
                return; // the next failure tries again
            }
        }
        LOG.warn("replaced a Kafka producer that failed fatally: {}", error.toString());
        old.close(Duration.ZERO);
    }

    private static boolean isFatal(Throwable error) {
        for (Throwable e = error; e != null; e = e.getCause()) {
            if (e instanceof ProducerFencedException || e instanceof InvalidProducerEpochException
                    || e instanceof OutOfOrderSequenceException) {
                return true;
            }
        }
        return false;
    }

    private static Delivery await(CompletableFuture<Delivery> delivery) {
        try {
            return delivery.get();
        } catch (ExecutionException | CompletionException e) {
            if (e.getCause() instanceof RuntimeException cause) {
                throw cause;
            }
            throw new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for Kafka's acknowledgement", e);
        }
    }

    /** Waits for the messages in flight. */
    public void flush() {
        current().flush();
    }

    private KafkaProducer<byte[], byte[]> current() {
        synchronized (lock) {
            return producer;
        }
    }

    /** Sends what is in flight, then closes the producer. */
    @Override
    public void close() {
        current().close(Duration.ofSeconds(30));
    }
}
