package org.retrace.sdk;

/** Where the broker put a published message. */
public record Delivery(String topic, int partition, long offset) {}
