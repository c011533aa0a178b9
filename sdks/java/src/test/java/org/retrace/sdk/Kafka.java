package org.retrace.sdk;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The broker the Kafka tests use: RETRACE_TEST_KAFKA_BOOTSTRAP when set (the Rust test
 * tests/scenarios/sdk_java.rs passes its shared Apache Kafka node), else one Apache Kafka node
 * started with tests/kafka/kafka-local for this JVM and stopped when it exits.
 */
final class Kafka {
    /** A bound on waits for a condition, never a sleep. */
    static final Duration PATIENCE = Duration.ofSeconds(60);

    private static Kafka shared;

    final String bootstrap;
    final Admin admin;

    private Kafka(String bootstrap) {
        this.bootstrap = bootstrap;
        this.admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap));
    }

    static synchronized Kafka shared() {
        if (shared == null) {
            String given = System.getenv("RETRACE_TEST_KAFKA_BOOTSTRAP");
            shared = new Kafka(given != null && !given.isBlank() ? given : startLocal());
            shared.createTopic(Envelopes.OUTCOMES_TOPIC, 3);
        }
        return shared;
    }

    /** kafka-local start --until-stdin-closes --clean: the node stops when this JVM exits. */
    private static String startLocal() {
        try {
            Path parent = Files.createTempDirectory("retrace-java-kafka-");
            Path launcher = Testdata.repo().resolve("tests/kafka/kafka-local");
            Process process = new ProcessBuilder(launcher.toString(), "start", "--dir",
                    parent.resolve("kafka").toString(), "--until-stdin-closes", "--clean")
                    .redirectError(ProcessBuilder.Redirect.INHERIT)
                    .start();
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    process.getOutputStream().close(); // the launcher stops its node
                    process.waitFor(60, TimeUnit.SECONDS);
                    Files.deleteIfExists(parent); // --clean removed the cluster's folder inside
                } catch (IOException | InterruptedException e) {
                    process.destroy();
                }
            }));
            BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            for (String line; (line = out.readLine()) != null; ) {
                if (line.startsWith("bootstrap=")) {
                    return line.substring("bootstrap=".length()).trim();
                }
            }
            throw new IllegalStateException("kafka-local did not start (exit " + process.waitFor() + "); its message is above");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            throw new IllegalStateException(e);
        }
    }

    String createTopic(String topic, int partitions) {
        try {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) -1))).all().get(60, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw new IllegalStateException("cannot create topic " + topic, e.getCause());
            }
        } catch (Exception e) {
            throw new IllegalStateException("cannot create topic " + topic, e);
        }
        awaitLeaders(topic, partitions);
        return topic;
    }

    /**
     * Waits until every partition of a new topic has a leader: a producer that fetched the
     * topic's metadata before that holds the leaderless partitions' batches until it refreshes.
     */
    private void awaitLeaders(String topic, int partitions) {
        Instant deadline = Instant.now().plus(PATIENCE);
        while (true) {
            try {
                TopicDescription description =
                        admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS).get(topic);
                if (description.partitions().size() >= partitions
                        && description.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())) {
                    return;
                }
            } catch (ExecutionException e) {
                // Not known yet to the broker answering: ask again.
            } catch (Exception e) {
                throw new IllegalStateException("cannot describe topic " + topic, e);
            }
            if (Instant.now().isAfter(deadline)) {
                throw new IllegalStateException("topic " + topic + " has partitions without a leader after " + PATIENCE);
            }
            Thread.onSpinWait();
        }
    }

    String uniqueTopic(String prefix, int partitions) {
        return createTopic(unique(prefix), partitions);
    }

    static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 10);
    }

    KafkaConsumer<byte[], byte[]> reader() {
        Map<String, Object> config = new HashMap<>();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(config);
    }

    /** The record at topic/partition@offset. */
    ConsumerRecord<byte[], byte[]> readAt(Delivery delivery) {
        try (KafkaConsumer<byte[], byte[]> consumer = reader()) {
            TopicPartition partition = new TopicPartition(delivery.topic(), delivery.partition());
            consumer.assign(List.of(partition));
            consumer.seek(partition, delivery.offset());
            Instant deadline = Instant.now().plus(PATIENCE);
            while (Instant.now().isBefore(deadline)) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    if (record.offset() == delivery.offset()) {
                        return record;
                    }
                }
            }
            throw new AssertionError("no record at " + delivery);
        }
    }

    /** The group's committed offsets by partition (absent: none). */
    Map<Integer, Long> committed(String group, String topic) {
        try {
            Map<TopicPartition, OffsetAndMetadata> offsets =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
            Map<Integer, Long> byPartition = new HashMap<>();
            offsets.forEach((partition, offset) -> {
                if (partition.topic().equals(topic) && offset != null) {
                    byPartition.put(partition.partition(), offset.offset());
                }
            });
            return byPartition;
        } catch (Exception e) {
            throw new IllegalStateException("cannot read the offsets of group " + group, e);
        }
    }

    static List<Map.Entry<String, String>> headers(ConsumerRecord<byte[], byte[]> record) {
        List<Map.Entry<String, String>> headers = new ArrayList<>();
        record.headers().forEach(h -> headers.add(Map.entry(h.key(), new String(h.value(), StandardCharsets.UTF_8))));
        return headers;
    }

    static <T> List<T> copy(Collection<T> items) {
        synchronized (items) {
            return new ArrayList<>(items);
        }
    }
}
