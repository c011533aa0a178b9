package org.retrace.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;

/**
 * proto/testdata/partitions.json: where kafka-clients' default partitioner puts each of 10,000
 * transaction ids, by its own code (the path KafkaProducer takes for a keyed record with no
 * partitioner.class). KafkaTest produces them to real topics too.
 */
class PartitionsTest {
    @Test
    void theDefaultPartitionerPutsEveryIdWherePartitionsJsonSays() {
        JsonObject file = Testdata.read("partitions.json");
        JsonArray counts = file.getAsJsonArray("partition_counts");
        JsonArray rows = file.getAsJsonArray("transactions");
        assertEquals(10_000, rows.size());
        List<String> wrong = new ArrayList<>();
        for (JsonElement element : rows) {
            JsonArray row = element.getAsJsonArray();
            byte[] key = row.get(0).getAsString().getBytes(StandardCharsets.UTF_8);
            for (int i = 0; i < counts.size(); i++) {
                int count = counts.get(i).getAsInt();
                int expected = row.get(i + 1).getAsInt();
                int chosen = BuiltInPartitioner.partitionForKey(key, count);
                assertEquals(Utils.toPositive(Utils.murmur2(key)) % count, chosen);
                if (chosen != expected) {
                    wrong.add(row.get(0).getAsString() + " (" + count + " partitions): " + chosen + " not " + expected);
                }
            }
        }
        assertTrue(wrong.isEmpty(), wrong.size() + " placements differ, e.g. " + wrong.subList(0, Math.min(5, wrong.size())));
    }

    @Test
    void thePublisherLeavesTheDefaultPartitionerInPlace() {
        assertTrue(Publisher.producerConfig(java.util.Map.of()).keySet().stream()
                .noneMatch(k -> k.startsWith("partitioner.")));
        assertThrows(IllegalArgumentException.class, () -> Publisher.producerConfig(
                java.util.Map.of("partitioner.class", "org.apache.kafka.clients.producer.RoundRobinPartitioner")));
        assertThrows(IllegalArgumentException.class,
                () -> Publisher.producerConfig(java.util.Map.of("partitioner.ignore.keys", true)));
    }
}
