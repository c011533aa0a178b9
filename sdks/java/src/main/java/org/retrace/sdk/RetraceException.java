package org.retrace.sdk;

/**
 * Thrown by a handler for a failure with a stable code for its cause: {@code FAILED}, with the
 * message as the outcome's error and the code as its {@code error_code}.
 *
 * <pre>{@code
 * throw new RetraceException("population register did not answer within 2 s",
 *         "population_register_timeout");
 * }</pre>
 */
public class RetraceException extends Exception implements ErrorCoded {
    private static final long serialVersionUID = 1L;
    private final String code;

    public RetraceException(String message, String code) {
        super(message);
        this.code = code;
    }

    public RetraceException(String message, String code, Throwable cause) {
        super(message, cause);
        this.code = code;
    }

    @Override
    public String code() {
        return code;
    }
}
