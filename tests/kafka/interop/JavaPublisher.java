// What a Java (DIGIT) service does to publish a traceable event for Retrace, with nothing but
// the official Apache Kafka client: KafkaProducer with its default partitioner (murmur2 of the
// key), acks=all, idempotence on, the transaction id as key, the ids in `retrace-*` headers
// (proto/README.md) and a JSON value. tests/scenarios/interop.rs compiles it with plain javac
// against the jars of tests/kafka/kafka-local and checks that Retrace places and traces what
// it publishes as its own SDK and gateway do.
//
//   java -cp CLASSES:LIB/* JavaPublisher place BOOTSTRAP TOPIC FILE_OF_KEYS
//       one record per transaction id in FILE_OF_KEYS (one a line), sent asynchronously,
//       then flushed; prints `key partition` per acknowledged record, in the file's order
//   java -cp CLASSES:LIB/* JavaPublisher event BOOTSTRAP TOPIC EVENT_ID TRANSACTION_ID \
//       CAUSATION_ID SOURCE TYPE [SUBJECT...]
//       one event (CAUSATION_ID empty or `-` for a root event); waits for the acknowledgement
//       and prints `partition offset`
//
// Exits 1 when a record is not acknowledged, 2 on bad arguments; the reason goes to stderr.

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public final class JavaPublisher {
    private static final String USAGE =
            "usage: JavaPublisher place BOOTSTRAP TOPIC FILE_OF_KEYS\n"
                    + "       JavaPublisher event BOOTSTRAP TOPIC EVENT_ID TRANSACTION_ID"
                    + " CAUSATION_ID SOURCE TYPE [SUBJECT...]";

    /** The kafka-clients version on the classpath, named in each value. */
    private static final String CLIENT_VERSION = clientVersion();

    private JavaPublisher() {}

    private static String clientVersion() {
        Properties version = new Properties();
        try (InputStream in =
                KafkaProducer.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            if (in != null) {
                version.load(in);
            }
        } catch (IOException e) {
            // Only a label: fall through to "unknown".
        }
        return version.getProperty("version", "unknown");
    }

    public static void main(String[] args) {
        int code;
        try {
            if (args.length == 4 && args[0].equals("place")) {
                code = place(args[1], args[2], Path.of(args[3]));
            } else if (args.length >= 8 && args[0].equals("event")) {
                code = event(args[1], args[2], args[3], args[4], args[5], args[6], args[7],
                        Arrays.copyOfRange(args, 8, args.length));
            } else {
                System.err.println(USAGE);
                code = 2;
            }
        } catch (Exception e) {
            System.err.println("JavaPublisher: " + e);
            code = 1;
        }
        System.exit(code);
    }

    /** The producer a service would configure: durable, idempotent, default partitioner. */
    private static KafkaProducer<String, String> producer(String bootstrap) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        config.put(ProducerConfig.CLIENT_ID_CONFIG, "retrace-interop-java");
        // No partitioner.class: a keyed record goes to toPositive(murmur2(key)) % partitions.
        return new KafkaProducer<>(config, new StringSerializer(), new StringSerializer());
    }

    /** A record keyed by its transaction id, with Retrace's headers and a JSON value. */
    private static ProducerRecord<String, String> record(String topic, String eventId,
            String transactionId, String causationId, String source, String type,
            List<String> subjects) {
        StringBuilder value = new StringBuilder("{")
                .append("\"event_id\":").append(quote(eventId))
                .append(",\"transaction_id\":").append(quote(transactionId))
                .append(",\"type\":").append(quote(type))
                .append(",\"source\":").append(quote(source))
                .append(",\"subject_ids\":[");
        for (int i = 0; i < subjects.size(); i++) {
            value.append(i == 0 ? "" : ",").append(quote(subjects.get(i)));
        }
        value.append("],\"published_with\":")
                .append(quote("kafka-clients " + CLIENT_VERSION))
                .append('}');
        ProducerRecord<String, String> record =
                new ProducerRecord<>(topic, transactionId, value.toString());
        header(record, "retrace-event-id", eventId);
        header(record, "retrace-transaction-id", transactionId);
        if (!causationId.isEmpty() && !causationId.equals("-")) {
            header(record, "retrace-causation-id", causationId);
        }
        for (String subject : subjects) {
            header(record, "retrace-subject", subject);
        }
        header(record, "retrace-source", source);
        header(record, "retrace-type", type);
        return record;
    }

    private static void header(ProducerRecord<String, String> record, String name, String value) {
        record.headers().add(name, value.getBytes(StandardCharsets.UTF_8));
    }

    private static int place(String bootstrap, String topic, Path keysFile) throws Exception {
        List<String> keys = new ArrayList<>();
        for (String line : Files.readAllLines(keysFile, StandardCharsets.UTF_8)) {
            if (!line.isBlank()) {
                keys.add(line.strip());
            }
        }
        int[] partitions = new int[keys.size()];
        AtomicInteger failed = new AtomicInteger();
        AtomicReference<Exception> firstFailure = new AtomicReference<>();
        try (KafkaProducer<String, String> producer = producer(bootstrap)) {
            for (int i = 0; i < keys.size(); i++) {
                int index = i;
                ProducerRecord<String, String> record = record(topic,
                        UUID.randomUUID().toString(), keys.get(i), "", "digit-interop",
                        "interop.placed.v1", List.of());
                producer.send(record, (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                        firstFailure.compareAndSet(null, error);
                    } else {
                        partitions[index] = metadata.partition();
                    }
                });
            }
            producer.flush();
        }
        if (failed.get() > 0) {
            System.err.println("JavaPublisher: " + failed.get() + " of " + keys.size()
                    + " records were not acknowledged; the first: " + firstFailure.get());
            return 1;
        }
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < keys.size(); i++) {
            out.append(keys.get(i)).append(' ').append(partitions[i]).append('\n');
        }
        System.out.print(out);
        System.out.flush();
        return 0;
    }

    private static int event(String bootstrap, String topic, String eventId,
            String transactionId, String causationId, String source, String type,
            String[] subjects) throws InterruptedException {
        try (KafkaProducer<String, String> producer = producer(bootstrap)) {
            RecordMetadata metadata = producer.send(record(topic, eventId, transactionId,
                    causationId, source, type, List.of(subjects))).get();
            System.out.println(metadata.partition() + " " + metadata.offset());
            return 0;
        } catch (ExecutionException e) {
            System.err.println("JavaPublisher: event " + eventId + " was not acknowledged: "
                    + e.getCause());
            return 1;
        }
    }

    /** A JSON string literal. */
    private static String quote(String text) {
        StringBuilder quoted = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> quoted.append("\\\"");
                case '\\' -> quoted.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        quoted.append(String.format("\\u%04x", (int) c));
                    } else {
                        quoted.append(c);
                    }
                }
            }
        }
        return quoted.append('"').toString();
    }
}
