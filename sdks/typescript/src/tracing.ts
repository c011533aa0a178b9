// W3C trace context through OpenTelemetry's API, when the application has it installed
// (an optional peer dependency): the active span's context becomes the `traceparent` header
// of a publish, and a consumed message's `traceparent` the parent of the handler's context.

import type * as OtelApi from "@opentelemetry/api";

let api: typeof OtelApi | null | undefined;

function otel(): typeof OtelApi | null {
  if (api === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      api = require("@opentelemetry/api") as typeof OtelApi;
    } catch {
      api = null;
    }
  }
  return api;
}

/** `traceparent` of the active span, or "" when there is none (or no OpenTelemetry). */
export function currentTraceparent(): string {
  const otelApi = otel();
  const span = otelApi?.trace.getActiveSpan();
  if (!otelApi || !span) return "";
  const context = span.spanContext();
  if (!otelApi.isSpanContextValid(context)) return "";
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, "0");
  return `00-${context.traceId}-${context.spanId}-${flags}`;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Runs `fn` in a context whose remote parent is `traceparent` (when valid and OpenTelemetry
 * is installed), so spans the handler starts join the publisher's trace. */
export function withRemoteParent<T>(traceparent: string, fn: () => T): T {
  const otelApi = otel();
  const parsed = TRACEPARENT.exec(traceparent);
  if (!otelApi || !parsed) return fn();
  const spanContext = {
    traceId: parsed[1],
    spanId: parsed[2],
    traceFlags: parseInt(parsed[3], 16),
    isRemote: true,
  };
  if (!otelApi.isSpanContextValid(spanContext)) return fn();
  const parent = otelApi.trace.setSpanContext(otelApi.context.active(), spanContext);
  return otelApi.context.with(parent, fn);
}
