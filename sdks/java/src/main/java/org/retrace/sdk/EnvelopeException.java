package org.retrace.sdk;

/**
 * Why an envelope, outcome or header set is not acceptable. {@link #field()} names the field
 * at fault; the message is worded as the Rust SDK's ({@code proto/src/envelope.rs}), e.g.
 * {@code field `transaction_id` is missing: every Retrace event must carry it}.
 */
public class EnvelopeException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    /** What is wrong with the field. */
    public enum Kind {
        MISSING,
        NOT_UUID,
        CONTROL_CHARACTER,
        TOO_LONG,
        NOT_A_CODE
    }

    private final Kind kind;
    private final String field;

    EnvelopeException(Kind kind, String field, String message) {
        super(message);
        this.kind = kind;
        this.field = field;
    }

    static EnvelopeException missing(String field) {
        return new EnvelopeException(
                Kind.MISSING, field, "field `" + field + "` is missing: every Retrace event must carry it");
    }

    static EnvelopeException notUuid(String field, String value) {
        return new EnvelopeException(
                Kind.NOT_UUID,
                field,
                "field `" + field + "` is not a UUID (" + debugQuoted(value) + "): event ids are UUIDv7 strings");
    }

    static EnvelopeException controlCharacter(String field) {
        return new EnvelopeException(
                Kind.CONTROL_CHARACTER,
                field,
                "field `" + field + "` contains a control character: ids must be printable text");
    }

    static EnvelopeException tooLong(String field, int length, int limit) {
        return new EnvelopeException(
                Kind.TOO_LONG, field, "field `" + field + "` is " + length + " bytes long: the limit is " + limit);
    }

    static EnvelopeException notACode(String field, String value) {
        return new EnvelopeException(
                Kind.NOT_A_CODE,
                field,
                "field `" + field + "` is not a code (" + debugQuoted(value)
                        + "): use ASCII letters, digits, `_`, `.` and `-` only, e.g. `population_register_timeout`");
    }

    /** The field at fault, e.g. {@code transaction_id}, or a header name for header checks. */
    public String field() {
        return field;
    }

    public Kind kind() {
        return kind;
    }

    /** A string quoted as Rust's {@code {:?}} does for the common cases. */
    static String debugQuoted(String value) {
        StringBuilder out = new StringBuilder(value.length() + 2).append('"');
        value.codePoints().forEach(c -> {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (Character.getType(c) == Character.CONTROL) {
                        out.append(String.format("\\u{%x}", c));
                    } else {
                        out.appendCodePoint(c);
                    }
                }
            }
        });
        return out.append('"').toString();
    }
}
