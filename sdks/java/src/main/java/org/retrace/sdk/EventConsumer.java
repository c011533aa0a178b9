package org.retrace.sdk;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import retrace.v1.EnvelopeOuterClass.Envelope;
import retrace.v1.EnvelopeOuterClass.OutcomeStatus;
import retrace.v1.EnvelopeOuterClass.Replay;

/**
 * Consumes topics in a consumer group, hands every event to an {@link EventHandler}, and
 * publishes an {@code Outcome} for each on {@code retrace.outcomes}:
 *
 * <ul>
 *   <li>the handler returns: {@code PROCESSED};
 *   <li>it throws {@link RetryException}: {@code RETRYING} with the error, and it runs again
 *       (attempt 2, ...) up to {@code maxAttempts} (3 by default), the last failure {@code FAILED};
 *   <li>it throws anything else: {@code FAILED} with the exception's message.
 * </ul>
 *
 * <p>An exception that implements {@link ErrorCoded} ({@link RetraceException},
 * {@link RetryException} with a code) gives the outcome its {@code error_code}, which groups
 * its failures into one incident ({@code docs/incidents.md}).
 *
 * <p>An event's offset is committed (synchronously) only once its last outcome is acknowledged
 * by Kafka; an outcome Kafka refuses is retried until it is taken or the consumer is stopped,
 * so a crash means the event is handled again (at least once). Messages that are not envelopes
 * but carry {@code retrace-*} headers (another service's JSON) are handed over too, with
 * {@link ReceivedEvent#headersOnly()}; anything else is logged and skipped. A second record of
 * an event processed lately (a publish retried after its answer was lost) is skipped with no
 * outcome, unless it is a replay. Events are handled one at a time, in partition order, on the
 * thread that calls {@link #run()} ({@link #start()} makes one).
 *
 * <pre>{@code
 * EventConsumer consumer = EventConsumer.builder("localhost:9092", List.of("registrations"),
 *         "certificates", event -> render(event.envelope())).build();
 * consumer.start();   // or run() on a thread of yours
 * ...
 * consumer.close();   // stops, waits for the loop to end
 * }</pre>
 */
public final class EventConsumer implements Runnable, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(EventConsumer.class);

    /** Event ids remembered: the window a second record of an event is skipped in. */
    public static final int RECENT_EVENTS = 10_000;

    /** Told each offset committed: the next offset to read of {@code topic}/{@code partition}. */
    @FunctionalInterface
    public interface CommitListener {
        void committed(String topic, int partition, long nextOffset);
    }

    private final Map<String, Object> config;
    private final List<String> topics;
    private final String group;
    private final String consumerName;
    private final EventHandler handler;
    private final Publisher publisher;
    private final boolean ownPublisher;
    private final int maxAttempts;
    private final Duration pollTimeout;
    private final CommitListener onCommit;
    private final CountDownLatch stopped = new CountDownLatch(1);
    private final CompletableFuture<Void> finished = new CompletableFuture<>();
    private volatile KafkaConsumer<byte[], byte[]> consumer;
    private final Map<String, Boolean> recent = new LinkedHashMap<>(16, 0.75f, false) {
        private static final long serialVersionUID = 1L;

        @Override
        protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
            return size() > RECENT_EVENTS;
        }
    };

    private EventConsumer(Builder builder) {
        this.config = builder.config;
        this.topics = List.copyOf(builder.topics);
        this.group = builder.group;
        this.consumerName = builder.consumerName != null ? builder.consumerName : builder.group;
        this.handler = builder.handler;
        this.ownPublisher = builder.publisher == null;
        this.publisher = builder.publisher != null ? builder.publisher : new Publisher(builder.config);
        this.maxAttempts = builder.maxAttempts;
        this.pollTimeout = builder.pollTimeout;
        this.onCommit = builder.onCommit;
    }

    /** A consumer of {@code topics} in group {@code group} on the cluster at {@code bootstrapServers}. */
    public static Builder builder(String bootstrapServers, Collection<String> topics, String group, EventHandler handler) {
        return builder(Map.of(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers), topics, group, handler);
    }

    /**
     * As {@link #builder(String, Collection, String, EventHandler)}, with kafka-clients
     * properties ({@code bootstrap.servers}, {@code security.protocol}, ...) given to the
     * consumer and, unless {@link Builder#publisher} is set, to the outcomes' publisher.
     */
    public static Builder builder(Map<String, ?> config, Collection<String> topics, String group, EventHandler handler) {
        return new Builder(config, topics, group, handler);
    }

    /** Settings of an {@link EventConsumer}. */
    public static final class Builder {
        private final Map<String, Object> config;
        private final Collection<String> topics;
        private final String group;
        private final EventHandler handler;
        private String consumerName;
        private Publisher publisher;
        private int maxAttempts = 3;
        private Duration pollTimeout = Duration.ofMillis(200);
        private CommitListener onCommit = (topic, partition, next) -> {};

        private Builder(Map<String, ?> config, Collection<String> topics, String group, EventHandler handler) {
            this.config = new HashMap<>(config);
            this.topics = topics;
            this.group = group;
            this.handler = handler;
        }

        /** The name outcomes are reported under (default: the group). */
        public Builder consumerName(String name) {
            this.consumerName = name;
            return this;
        }

        /** The publisher of the outcomes (default: one made from the config, closed with this). */
        public Builder publisher(Publisher publisher) {
            this.publisher = publisher;
            return this;
        }

        /** Runs of the handler per event, retries included (default 3). */
        public Builder maxAttempts(int maxAttempts) {
            this.maxAttempts = Math.max(1, maxAttempts);
            return this;
        }

        public Builder pollTimeout(Duration pollTimeout) {
            this.pollTimeout = pollTimeout;
            return this;
        }

        /** Told after each commit (for tests and metrics). */
        public Builder onCommit(CommitListener listener) {
            this.onCommit = listener;
            return this;
        }

        public EventConsumer build() {
            return new EventConsumer(this);
        }
    }

    /** Runs {@link #run()} on a new daemon thread; the future completes when it ends. */
    public CompletableFuture<Void> start() {
        Thread thread = new Thread(this, "retrace-consumer-" + group);
        thread.setDaemon(true);
        thread.start();
        return finished;
    }

    /** Completes when {@link #run()} has ended (exceptionally if it failed). */
    public CompletableFuture<Void> finished() {
        return finished;
    }

    /** Asks the loop to stop: it ends after the event in hand, with no commit for it if unsettled. */
    public void stop() {
        stopped.countDown();
        KafkaConsumer<byte[], byte[]> current = consumer;
        if (current != null) {
            current.wakeup();
        }
    }

    /** Stops, and waits (up to a minute) for the loop to end. */
    @Override
    public void close() {
        stop();
        try {
            finished.get(60, TimeUnit.SECONDS);
        } catch (Exception e) {
            // It failed or is stuck in a handler: it was told to stop, nothing more to do.
        }
    }

    private boolean isStopped() {
        return stopped.getCount() == 0;
    }

    /** Consumes until {@link #stop()}. */
    @Override
    public void run() {
        try {
            loop();
            finished.complete(null);
        } catch (RuntimeException | Error e) {
            finished.completeExceptionally(e);
            throw e;
        } finally {
            if (ownPublisher) {
                publisher.close();
            }
        }
    }

    private void loop() {
        Map<String, Object> consumerConfig = new HashMap<>(config);
        consumerConfig.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        consumerConfig.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        consumerConfig.putIfAbsent(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumerConfig.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        consumerConfig.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        Set<TopicPartition> owned = new HashSet<>();
        try (KafkaConsumer<byte[], byte[]> kafka = new KafkaConsumer<>(consumerConfig)) {
            consumer = kafka;
            if (isStopped()) {
                return;
            }
            kafka.subscribe(topics, new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    owned.removeAll(partitions);
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    owned.addAll(partitions);
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> partitions) {
                    owned.removeAll(partitions);
                }
            });
            while (!isStopped()) {
                ConsumerRecords<byte[], byte[]> records = kafka.poll(pollTimeout);
                if (!settle(kafka, records, owned)) {
                    return;
                }
            }
        } catch (WakeupException e) {
            // stop() woke a blocking call up: done.
        } finally {
            consumer = null;
        }
    }

    /** Handles a batch, committing after each record; false when stopped before its end. */
    private boolean settle(KafkaConsumer<byte[], byte[]> kafka, ConsumerRecords<byte[], byte[]> records,
            Set<TopicPartition> owned) {
        Set<TopicPartition> abandoned = new HashSet<>();
        for (ConsumerRecord<byte[], byte[]> record : records) {
            TopicPartition partition = new TopicPartition(record.topic(), record.partition());
            if (!owned.contains(partition) || abandoned.contains(partition)) {
                continue;
            }
            if (isStopped()) {
                return false;
            }
            Decoded decoded = decode(record);
            if (decoded.event() == null) {
                LOG.warn("consumer {}: skipped {}[{}]@{}: {}", consumerName, record.topic(), record.partition(),
                        record.offset(), decoded.problem());
            } else {
                Envelope envelope = decoded.event().envelope();
                boolean seen;
                synchronized (recent) {
                    seen = recent.containsKey(envelope.getEventId());
                }
                if (envelope.hasReplay() || !seen) {
                    if (!handle(decoded.event())) {
                        return false; // stopped before the outcome was published: not committed
                    }
                } else {
                    LOG.info("consumer {}: skipped a second record of event {} ({}[{}]@{})", consumerName,
                            envelope.getEventId(), record.topic(), record.partition(), record.offset());
                }
            }
            long next = record.offset() + 1;
            try {
                kafka.commitSync(Map.of(partition, new OffsetAndMetadata(next)));
            } catch (WakeupException e) {
                throw e;
            } catch (KafkaException e) {
                // The group rebalanced under us: the partition's new owner reads from the last
                // commit, at worst handling this event again. Read the rest of the partition
                // again from here, if it is still ours after the next poll.
                LOG.warn("consumer {}: commit of {}@{} failed: {}", consumerName, partition, next, e.toString());
                abandoned.add(partition);
                try {
                    kafka.seek(partition, next);
                } catch (IllegalStateException notOurs) {
                    // Revoked: nothing to read again here.
                }
                continue;
            }
            onCommit.committed(record.topic(), record.partition(), next);
        }
        return true;
    }

    record Decoded(ReceivedEvent event, String problem) {}

    /**
     * The event a Kafka message carries, or why none: an envelope first; else, a message whose
     * {@code retrace-*} headers name its event and transaction.
     */
    static Decoded decode(ConsumerRecord<byte[], byte[]> record) {
        byte[] value = record.value() == null ? new byte[0] : record.value();
        String notEnvelope;
        try {
            Envelope envelope = Envelope.parseFrom(value);
            Envelopes.validate(envelope);
            return new Decoded(received(record, envelope, false), null);
        } catch (InvalidProtocolBufferException | EnvelopeException e) {
            notEnvelope = "not an envelope (" + e.getMessage() + ")";
        }
        Optional<TraceHeaders> parsed;
        try {
            parsed = TraceHeaders.parse(record.headers());
        } catch (TraceHeaders.HeaderException e) {
            return new Decoded(null, notEnvelope + ", and " + e.getMessage());
        }
        if (parsed.isEmpty()) {
            return new Decoded(null, notEnvelope + ", and no retrace-* header");
        }
        TraceHeaders trace = parsed.get();
        try {
            trace.validate();
        } catch (EnvelopeException e) {
            return new Decoded(null, notEnvelope + ", and " + e.getMessage());
        }
        Envelope.Builder envelope = Envelope.newBuilder()
                .setEventId(trace.eventId)
                .setTransactionId(trace.transactionId)
                .setCausationId(trace.causationId)
                .addAllSubjectIds(trace.subjectIds)
                .setSource(trace.source)
                .setType(trace.eventType)
                .setPayload(ByteString.copyFrom(value));
        for (Header header : record.headers()) {
            if (header.key().equalsIgnoreCase("content-type") && header.value() != null) {
                envelope.setContentType(new String(header.value(), StandardCharsets.UTF_8));
                break;
            }
        }
        if (!trace.replayId.isEmpty()) {
            envelope.setReplay(Replay.newBuilder().setReplayId(trace.replayId).setOriginalEventId(trace.replayOf));
        }
        return new Decoded(received(record, envelope.build(), true), null);
    }

    private static ReceivedEvent received(ConsumerRecord<byte[], byte[]> record, Envelope envelope, boolean headersOnly) {
        return new ReceivedEvent(envelope, record.topic(), record.partition(), record.offset(), record.key(),
                record.headers(), headersOnly, 1);
    }

    /**
     * Runs the handler (again while it asks to retry) and reports each attempt's outcome.
     * False when stopped before the last outcome was published.
     */
    private boolean handle(ReceivedEvent event) {
        for (int attempt = 1; ; attempt++) {
            OutcomeStatus status;
            String error = null;
            String code = null;
            Duration retryAfter = Duration.ZERO;
            try {
                handler.handle(event.withAttempt(attempt));
                status = OutcomeStatus.OUTCOME_STATUS_PROCESSED;
            } catch (RetryException retry) {
                status = attempt >= maxAttempts
                        ? OutcomeStatus.OUTCOME_STATUS_FAILED
                        : OutcomeStatus.OUTCOME_STATUS_RETRYING;
                error = retry.getMessage() != null ? retry.getMessage() : "retry";
                retryAfter = retry.after();
                code = retry.code();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            } catch (Exception failure) {
                // The handler's error becomes the outcome's.
                status = OutcomeStatus.OUTCOME_STATUS_FAILED;
                error = failure.getMessage() != null ? failure.getMessage() : failure.getClass().getName();
                code = failure instanceof ErrorCoded coded ? coded.code() : null;
            }
            if (status == OutcomeStatus.OUTCOME_STATUS_PROCESSED) {
                // Only a success is remembered: a failed event's second record is a retry.
                synchronized (recent) {
                    recent.put(event.envelope().getEventId(), Boolean.TRUE);
                }
            }
            var outcome = Envelopes.outcomeOf(event.envelope(), consumerName, status, error, attempt);
            if (code != null && !code.isEmpty()) {
                outcome = Envelopes.withErrorCode(outcome, code);
            }
            if (!report(outcome)) {
                return false;
            }
            if (status != OutcomeStatus.OUTCOME_STATUS_RETRYING) {
                return true;
            }
            if (waitOrStop(retryAfter)) {
                return false;
            }
        }
    }

    /** Publishes {@code outcome}, retrying until Kafka takes it. False if stopped first. */
    private boolean report(retrace.v1.EnvelopeOuterClass.Outcome outcome) {
        Duration backoff = Duration.ofMillis(100);
        while (true) {
            try {
                publisher.publishOutcome(outcome);
                return true;
            } catch (EnvelopeException e) {
                // Never publishable (a header-only event whose id is not a UUID): said, and
                // the event is settled without an outcome.
                LOG.warn("consumer {}: no outcome for event {}: {}", consumerName, outcome.getEventId(), e.getMessage());
                return true;
            } catch (RuntimeException e) {
                LOG.warn("consumer {}: outcome not published, retrying: {}", consumerName, e.getMessage());
                if (waitOrStop(backoff)) {
                    return false;
                }
                backoff = backoff.multipliedBy(2).compareTo(Duration.ofSeconds(10)) > 0
                        ? Duration.ofSeconds(10)
                        : backoff.multipliedBy(2);
            }
        }
    }

    /** Waits {@code delay} unless stopped first; true when stopped. */
    private boolean waitOrStop(Duration delay) {
        try {
            return stopped.await(delay.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return true;
        }
    }
}
