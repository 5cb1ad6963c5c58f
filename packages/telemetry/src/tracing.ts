// OpenTelemetry tracing, off unless an OTLP endpoint is configured. Spans are
// made by the Connect interceptors (interceptors.ts): auto-instrumentation
// sees nothing of connect-node's HTTP/2 traffic.
import { context, isSpanContextValid, ProxyTracerProvider, trace, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { AsyncLocalStorageContextManager } from "./context-manager.js";

export interface TracingOptions {
  /** service.name on every span: `gateway`, `bank-a`, `paycli`, ... */
  readonly service: string;
  /**
   * OTEL_EXPORTER_OTLP_ENDPOINT, the collector's base URL (e.g.
   * http://otel-collector:4318); spans go to `${endpoint}/v1/traces` as OTLP/HTTP
   * JSON. Empty or absent: tracing is off.
   */
  readonly endpoint?: string;
  /** Bound on spans buffered while the collector is slow or down; the rest are dropped. Default 2048. */
  readonly queueSpansMax?: number;
  /** Tests: export here (e.g. an InMemorySpanExporter) instead of OTLP; turns tracing on without an endpoint. */
  readonly exporter?: SpanExporter;
}

export interface Tracing {
  readonly enabled: boolean;
  /** Give this to createTraceServerInterceptor / createTraceClientInterceptor. */
  readonly tracer: Tracer;
  /** Exports buffered spans now (tests; before a CLI exits). */
  forceFlush(): Promise<void>;
  /** Flushes and stops exporting. Call on SIGTERM after the RPC server has closed. */
  shutdown(): Promise<void>;
}

/**
 * The tracer of tracing-off mode. It belongs to a provider that is never
 * registered, so it can never start recording; the interceptors recognise it and
 * install nothing at all, which is what makes "off" cost nothing.
 */
export const noopTracer: Tracer = new ProxyTracerProvider().getTracer("paygate-noop");

let contextManager: AsyncLocalStorageContextManager | undefined;

/** Async context propagation, registered once per process (several services may share one in tests). */
function ensureContextManager(): void {
  if (contextManager) return;
  const manager = new AsyncLocalStorageContextManager();
  // false: someone (an OTel auto-instrumentation loader) registered one first;
  // theirs is AsyncLocalStorage-based too, so context.with still works.
  context.setGlobalContextManager(manager);
  contextManager = manager;
}

export function startTracing(options: TracingOptions): Tracing {
  const endpoint = (options.endpoint ?? "").trim();
  if (endpoint === "" && !options.exporter) {
    return { enabled: false, tracer: noopTracer, forceFlush: async () => {}, shutdown: async () => {} };
  }
  ensureContextManager();
  const exporter = options.exporter ?? new OTLPTraceExporter({ url: otlpTracesUrl(endpoint) });
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ "service.name": options.service })),
    spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: options.queueSpansMax ?? 2048 })],
  });
  return {
    enabled: true,
    tracer: provider.getTracer("@paygate/telemetry"),
    forceFlush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

/** `${endpoint}/v1/traces`, after checking the endpoint is an http(s) URL (config.ts can call this to fail early). */
export function otlpTracesUrl(endpoint: string): string {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT is not a URL: ${JSON.stringify(endpoint)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new Error(`OTEL_EXPORTER_OTLP_ENDPOINT must be http(s), got ${url.protocol}`);
  return `${endpoint.replace(/\/+$/, "")}/v1/traces`;
}

/** The trace id of the active span, for log lines; undefined outside a traced call or with tracing off. */
export function currentTraceId(): string | undefined {
  const sc = trace.getSpanContext(context.active());
  return sc && isSpanContextValid(sc) ? sc.traceId : undefined;
}

/** For pino's `mixin` option: adds traceId/spanId to every line logged inside a traced call. */
export function traceLogFields(): { traceId?: string; spanId?: string } {
  const sc = trace.getSpanContext(context.active());
  return sc && isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
}

/**
 * Business facts on the current span. The parameter type is the whitelist:
 * there is deliberately no way to attach card numbers, CVCs or free text.
 */
export interface SpanFacts {
  readonly transactionId?: string;
  readonly amountMinor?: bigint;
  readonly currency?: string;
  /** committed, aborted, approved, declined, ... */
  readonly outcome?: string;
  /** A reason from the error table, or a decline code. */
  readonly reason?: string;
}

const SPAN_FACT_ATTRIBUTES: Readonly<Record<keyof SpanFacts, string>> = {
  transactionId: "paygate.transaction_id",
  amountMinor: "paygate.amount_minor",
  currency: "paygate.currency",
  outcome: "paygate.outcome",
  reason: "paygate.reason",
};

export function setSpanAttributes(facts: SpanFacts): void {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return;
  // Walk the whitelist, not the argument: an object smuggled past the type checker adds nothing.
  for (const key of Object.keys(SPAN_FACT_ATTRIBUTES) as (keyof SpanFacts)[]) {
    const value = facts[key];
    // Strings, not numbers: amounts are bigint and a float would round them.
    if (value !== undefined) span.setAttribute(SPAN_FACT_ATTRIBUTES[key], String(value));
  }
}
