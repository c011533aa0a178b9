package org.retrace.sdk;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/** The shared test vectors of proto/testdata (see its README). */
final class Testdata {
    private Testdata() {}

    /** The repository's root: RETRACE_REPO (set by the pom), else two folders up. */
    static Path repo() {
        String given = System.getenv("RETRACE_REPO");
        Path root = given != null ? Path.of(given) : Path.of("../..");
        return root.toAbsolutePath().normalize();
    }

    static JsonObject read(String name) {
        Path path = repo().resolve("proto/testdata").resolve(name);
        try {
            return JsonParser.parseString(Files.readString(path, StandardCharsets.UTF_8)).getAsJsonObject();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + path, e);
        }
    }

    static List<JsonObject> vectors() {
        List<JsonObject> vectors = new ArrayList<>();
        for (JsonElement vector : read("vectors.json").getAsJsonArray("vectors")) {
            vectors.add(vector.getAsJsonObject());
        }
        return vectors;
    }

    static byte[] value(JsonObject vector) {
        return HexFormat.of().parseHex(vector.get("value_hex").getAsString());
    }

    static List<Map.Entry<String, String>> headers(JsonObject vector) {
        List<Map.Entry<String, String>> headers = new ArrayList<>();
        for (JsonElement pair : vector.getAsJsonArray("headers")) {
            JsonArray both = pair.getAsJsonArray();
            headers.add(Map.entry(both.get(0).getAsString(), both.get(1).getAsString()));
        }
        return headers;
    }
}
