package org.retrace.sdk;

import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;

/**
 * The W3C {@code traceparent} of the current OpenTelemetry span. opentelemetry-api is an
 * optional dependency: this class is only loaded once it is known to be on the classpath.
 */
final class Traceparent {
    private static final boolean AVAILABLE = available();

    private Traceparent() {}

    private static boolean available() {
        try {
            Class.forName("io.opentelemetry.api.trace.Span", false, Traceparent.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException | LinkageError e) {
            return false;
        }
    }

    /** The current span's traceparent, or "" without opentelemetry-api or a valid span. */
    static String current() {
        return AVAILABLE ? Current.traceparent() : "";
    }

    /** Touches OpenTelemetry's classes: loaded only when they are there. */
    private static final class Current {
        static String traceparent() {
            SpanContext context = Span.current().getSpanContext();
            if (!context.isValid()) {
                return "";
            }
            return "00-" + context.getTraceId() + "-" + context.getSpanId() + "-"
                    + context.getTraceFlags().asHex();
        }
    }
}
