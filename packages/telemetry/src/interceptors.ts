// Connect interceptors for metrics and traces, server and client side.
// Streaming calls are counted, timed and their spans ended when the stream
// completes, not when the handler returns the iterable.
import {
  Code,
  ConnectError,
  createContextKey,
  type Interceptor,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Link,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { Metrics } from "./metrics.js";
import { noopTracer } from "./tracing.js";

type AnyRequest = Parameters<Parameters<Interceptor>[0]>[0];

/** `paygate.bank.v1.ParticipantService/Prepare`: the metric label and the span name. */
export function rpcMethodName(req: Pick<AnyRequest, "service" | "method">): string {
  return `${req.service.typeName}/${req.method.name}`;
}

/** Connect's wire names ("ok", "invalid_argument", ...), the `code` label everywhere. */
export function codeLabel(code: Code | undefined): string {
  return code === undefined ? "ok" : codeToString(code);
}

// A handler's non-Connect error reaches the client as Internal; count what the client sees.
function serverCode(err: unknown): Code {
  return err instanceof ConnectError ? err.code : Code.Internal;
}

function clientCode(err: unknown): Code {
  return ConnectError.from(err).code;
}

/**
 * Wraps a response stream so `done` runs once when it ends: undefined on
 * success, the error otherwise (a consumer that stops early counts as canceled).
 * With ctx, every pull runs inside that OTel context, so a server-streaming
 * handler's own client calls still become children of the server span.
 */
function observeStream<T>(
  inner: AsyncIterable<T>,
  ctx: Context | undefined,
  done: (err: unknown) => void,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const it = inner[Symbol.asyncIterator]();
      let finished = false;
      const finish = (err: unknown) => {
        if (finished) return;
        finished = true;
        done(err);
      };
      const inCtx = <R>(f: () => Promise<R>): Promise<R> => (ctx ? context.with(ctx, f) : f());
      return {
        async next() {
          try {
            const r = await inCtx(() => it.next());
            if (r.done) finish(undefined);
            return r;
          } catch (e) {
            finish(e);
            throw e;
          }
        },
        async return(value?: unknown) {
          finish(new ConnectError("stream closed before its end", Code.Canceled));
          return it.return ? inCtx(() => it.return!(value)) : { done: true, value: value as T };
        },
        async throw(e?: unknown) {
          finish(e);
          if (it.throw) return inCtx(() => it.throw!(e));
          throw e;
        },
      };
    },
  };
}

/** Calls next, then settles `done` when the unary response or the whole stream is over. */
async function around(
  next: (req: AnyRequest) => Promise<UnaryResponse | StreamResponse>,
  req: AnyRequest,
  done: (err: unknown) => void,
  ctx?: Context,
): Promise<UnaryResponse | StreamResponse> {
  let res: UnaryResponse | StreamResponse;
  try {
    res = ctx ? await context.with(ctx, () => next(req)) : await next(req);
  } catch (e) {
    done(e);
    throw e;
  }
  if (!res.stream) {
    done(undefined);
    return res;
  }
  return { ...res, message: observeStream(res.message, ctx, done) } as StreamResponse;
}

// ------------------------------------------------------------------ metrics

/** Server side: paygate_rpc_server_requests_total and _duration_seconds by method and code. */
export function createMetricsInterceptor(metrics: Metrics): Interceptor {
  return (next) => (req) => {
    const started = performance.now();
    const method = rpcMethodName(req);
    return around(next, req, (err) => {
      const labels = { method, code: codeLabel(err === undefined ? undefined : serverCode(err)) };
      metrics.rpcServerRequests.inc(labels);
      metrics.rpcServerDuration.observe(labels, (performance.now() - started) / 1000);
    });
  };
}

/** Client side, one per transport: `target` names the peer (`bank-a`, `gateway`, `credit-bureau`). */
export function createClientMetricsInterceptor(metrics: Metrics, target: string): Interceptor {
  return (next) => (req) => {
    const started = performance.now();
    const method = rpcMethodName(req);
    return around(next, req, (err) => {
      const labels = { target, method, code: codeLabel(err === undefined ? undefined : clientCode(err)) };
      metrics.rpcClientRequests.inc(labels);
      metrics.rpcClientDuration.observe(labels, (performance.now() - started) / 1000);
    });
  };
}

// ------------------------------------------------------------------- traces

const propagator = new W3CTraceContextPropagator();

const headerGetter: TextMapGetter<Headers> = {
  get: (h, key) => h.get(key) ?? undefined,
  keys: (h) => [...h.keys()],
};
const headerSetter: TextMapSetter<Headers> = {
  set: (h, key, value) => h.set(key, value),
};

// Codes that mean "the server failed", per the OTel RPC conventions; a
// business rejection (failed_precondition, not_found, ...) is a correct answer.
const SERVER_FAULT_CODES: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

function endSpan(span: Span, code: Code | undefined, isError: boolean): void {
  if (code !== undefined) span.setAttribute("rpc.connect_rpc.error_code", codeLabel(code));
  if (isError) span.setStatus({ code: SpanStatusCode.ERROR, message: codeLabel(code) });
  span.end();
}

function rpcAttributes(req: AnyRequest) {
  return { "rpc.system": "connect_rpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name };
}

/**
 * Server side: continues the caller's trace from `traceparent`/`tracestate`
 * (or starts one), and runs the handler inside the SERVER span so client calls
 * it makes are its children. Put it first (outermost) in the interceptor list so
 * the logging interceptor sees the trace id.
 */
export function createTraceServerInterceptor(tracer: Tracer): Interceptor {
  if (tracer === noopTracer) return (next) => next;
  return (next) => (req) => {
    // ROOT, not active(): a server call's only parent is what the headers say.
    const parent = propagator.extract(ROOT_CONTEXT, req.header, headerGetter);
    const span = tracer.startSpan(
      rpcMethodName(req),
      { kind: SpanKind.SERVER, attributes: rpcAttributes(req) },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    return around(
      next,
      req,
      (err) => {
        const code = err === undefined ? undefined : serverCode(err);
        endSpan(span, code, code !== undefined && SERVER_FAULT_CODES.has(code));
      },
      ctx,
    );
  };
}

/** Client side: a CLIENT span, child of the active span, with its `traceparent` sent in the request headers. */
/**
 * A call that carries many callers' items (PrepareBatch, CommitBatch): the
 * span of each item, in its own caller's trace. The call's own span is then a
 * root with a link to every item span, so the one payment an on-call engineer
 * follows shows its participant call under load too, and the batch shows whom
 * it served.
 */
export const batchItemSpansKey = createContextKey<readonly Span[]>([], {
  description: "spans of a batched call's items",
});

/**
 * For a batched call: one CLIENT span per item, each a child of the context it
 * was submitted in (its transfer's). End them with the returned function once
 * the batch answered. Nothing when tracing is off.
 */
export function startBatchItemSpans(
  tracer: Tracer,
  name: string,
  itemContexts: readonly Context[],
): { readonly spans: readonly Span[]; end(err?: unknown): void } {
  if (tracer === noopTracer || itemContexts.length === 0) return { spans: [], end: () => {} };
  const spans = itemContexts.map((ctx) =>
    tracer.startSpan(
      `${name} item`,
      { kind: SpanKind.CLIENT, attributes: { "paygate.batch.size": itemContexts.length } },
      ctx,
    ),
  );
  return {
    spans,
    end(err?: unknown) {
      for (const span of spans) endSpan(span, err === undefined ? undefined : clientCode(err), err !== undefined);
    },
  };
}

export function createTraceClientInterceptor(tracer: Tracer): Interceptor {
  if (tracer === noopTracer) return (next) => next;
  return (next) => (req) => {
    const items = req.contextValues.get(batchItemSpansKey);
    // A batch belongs to no single trace: a root span linked to each item's span.
    const parent = items.length > 0 ? ROOT_CONTEXT : context.active();
    const links: Link[] = items.map((s) => ({ context: s.spanContext() }));
    const span = tracer.startSpan(
      rpcMethodName(req),
      { kind: SpanKind.CLIENT, attributes: rpcAttributes(req), links },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    propagator.inject(ctx, req.header, headerSetter);
    return around(
      next,
      req,
      (err) => {
        const code = err === undefined ? undefined : clientCode(err);
        endSpan(span, code, code !== undefined);
      },
      ctx,
    );
  };
}
