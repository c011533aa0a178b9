package org.retrace.sdk;

/**
 * An exception that names its cause with a stable code, e.g. {@code population_register_timeout}.
 * When a handler throws one, its outcome carries the code as {@code error_code}, and failures
 * of one step with the same code are one incident whatever their message
 * ({@code docs/incidents.md}). {@link RetraceException} and {@link RetryException} implement
 * it; an exception type of yours may too.
 */
public interface ErrorCoded {
    /**
     * ASCII letters, digits, {@code _}, {@code .} and {@code -}, at most 64; {@code null} for
     * none. A code that breaks the rule is left out of the outcome, and its error says why.
     */
    String code();
}
