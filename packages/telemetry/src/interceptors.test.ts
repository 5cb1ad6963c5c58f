// Interceptors called directly with a fake `next`: what they count, what spans
// they make, what they put in headers. The cross-process trace over real HTTP/2
// is test/observability/trace-propagation.test.ts.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Code,
  ConnectError,
  createContextValues,
  type Interceptor,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { LedgerService, ParticipantService } from "@paygate/proto/bank";
import type { Registry } from "prom-client";
import {
  createClientMetricsInterceptor,
  createMetricsInterceptor,
  createTraceClientInterceptor,
  createTraceServerInterceptor,
} from "./interceptors.js";
import { createMetrics } from "./metrics.js";
import { currentTraceId, noopTracer, setSpanAttributes, startTracing } from "./tracing.js";

type Next = Parameters<Interceptor>[0];
type Req = Parameters<Next>[0];

const prepare = ParticipantService.method.prepare;
const listEntries = LedgerService.method.listEntries;

function unaryReq(header: Record<string, string> = {}): Req {
  return {
    stream: false,
    service: ParticipantService,
    method: prepare,
    requestMethod: "POST",
    url: "http://bank-a/paygate.bank.v1.ParticipantService/Prepare",
    signal: new AbortController().signal,
    header: new Headers(header),
    contextValues: createContextValues(),
    message: {},
  } as unknown as Req;
}

function streamReq(): Req {
  return {
    ...unaryReq(),
    stream: true,
    service: LedgerService,
    method: listEntries,
    message: (async function* () {})(),
  } as unknown as Req;
}

function unaryRes(): UnaryResponse {
  return {
    stream: false,
    service: ParticipantService,
    method: prepare,
    header: new Headers(),
    trailer: new Headers(),
    message: {},
  } as unknown as UnaryResponse;
}

function streamRes(items: unknown[], failAt?: number): StreamResponse {
  return {
    stream: true,
    service: LedgerService,
    method: listEntries,
    header: new Headers(),
    trailer: new Headers(),
    message: (async function* () {
      for (const [i, item] of items.entries()) {
        if (i === failAt) throw new ConnectError("ledger gone", Code.Unavailable);
        yield item;
      }
    })(),
  } as unknown as StreamResponse;
}

async function count(registry: Registry, line: RegExp): Promise<number> {
  const hits = (await registry.metrics()).split("\n").filter((l) => line.test(l));
  assert.ok(hits.length <= 1, `one series matches ${line}: ${hits.join(" | ")}`);
  return hits[0] === undefined ? 0 : Number(hits[0].split(" ").at(-1));
}

const PREPARE = 'method="paygate.bank.v1.ParticipantService/Prepare"';

test("server metrics: ok, a rejection by its Connect code, a plain error as internal", async () => {
  const m = createMetrics("bank-a", { defaultMetrics: false });
  const call = createMetricsInterceptor(m);
  await call(async () => unaryRes())(unaryReq());
  await call(async () => unaryRes())(unaryReq());
  const rejection = new ConnectError("no", Code.FailedPrecondition);
  await assert.rejects(
    call(async () => {
      throw rejection;
    })(unaryReq()),
    (e) => e === rejection,
  );
  await assert.rejects(
    call(async () => {
      throw new Error("bug");
    })(unaryReq()),
    /bug/,
  );
  const series = (code: string) =>
    new RegExp(`^paygate_rpc_server_requests_total\\{(?=.*${PREPARE})(?=.*code="${code}")`);
  assert.equal(await count(m.registry, series("ok")), 2);
  assert.equal(await count(m.registry, series("failed_precondition")), 1);
  assert.equal(await count(m.registry, series("internal")), 1);
  assert.equal(
    await count(m.registry, new RegExp(`^paygate_rpc_server_duration_seconds_count\\{(?=.*${PREPARE})(?=.*code="ok")`)),
    2,
  );
});

test("server metrics: a stream is counted when it completes, with the code it ended with", async () => {
  const m = createMetrics("bank-a", { defaultMetrics: false });
  const call = createMetricsInterceptor(m);
  const series = (code: string) =>
    new RegExp(`^paygate_rpc_server_requests_total\\{(?=.*ListEntries)(?=.*code="${code}")`);
  const res = (await call(async () => streamRes([1, 2, 3]))(streamReq())) as StreamResponse;
  assert.equal(await count(m.registry, series("ok")), 0, "not counted before the stream is consumed");
  const seen: unknown[] = [];
  for await (const x of res.message) seen.push(x);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(await count(m.registry, series("ok")), 1);

  const failing = (await call(async () => streamRes([1, 2, 3], 1))(streamReq())) as StreamResponse;
  await assert.rejects(async () => {
    for await (const _ of failing.message) {
      // drain
    }
  }, /ledger gone/);
  assert.equal(await count(m.registry, series("unavailable")), 1);

  const abandoned = (await call(async () => streamRes([1, 2, 3]))(streamReq())) as StreamResponse;
  for await (const _ of abandoned.message) break;
  assert.equal(await count(m.registry, series("canceled")), 1);
  assert.equal(await count(m.registry, series("ok")), 1);
});

test("client metrics: target label, and a transport failure as its Connect code", async () => {
  const m = createMetrics("gateway", { defaultMetrics: false });
  const call = createClientMetricsInterceptor(m, "bank-b");
  await call(async () => unaryRes())(unaryReq());
  await assert.rejects(
    call(async () => {
      throw new ConnectError("refused", Code.Unavailable);
    })(unaryReq()),
  );
  await assert.rejects(
    call(async () => {
      throw new Error("socket hang up");
    })(unaryReq()),
  );
  const series = (code: string) =>
    new RegExp(`^paygate_rpc_client_requests_total\\{(?=.*target="bank-b")(?=.*${PREPARE})(?=.*code="${code}")`);
  assert.equal(await count(m.registry, series("ok")), 1);
  assert.equal(await count(m.registry, series("unavailable")), 1);
  assert.equal(await count(m.registry, series("unknown")), 1);
  assert.equal(
    await count(
      m.registry,
      new RegExp(`^paygate_rpc_client_duration_seconds_count\\{(?=.*target="bank-b")(?=.*code="ok")`),
    ),
    1,
  );
});

test("tracing off: the trace interceptors are the identity, no span, no header", async () => {
  const t = startTracing({ service: "gateway", endpoint: "" });
  assert.equal(t.enabled, false);
  assert.equal(t.tracer, noopTracer);
  const next: Next = async () => unaryRes();
  assert.equal(createTraceServerInterceptor(t.tracer)(next), next);
  assert.equal(createTraceClientInterceptor(t.tracer)(next), next);
});

// One in-memory tracing setup for the rest of the file (the context manager is per process).
const spans = new InMemorySpanExporter();
const tracing = startTracing({ service: "bank-a", exporter: spans });
async function finished() {
  await tracing.forceFlush();
  const out = spans.getFinishedSpans();
  spans.reset();
  return out;
}

const PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN = "00f067aa0ba902b7";

test("trace server: continues the caller's trace, runs the handler inside the SERVER span", async () => {
  assert.equal(tracing.enabled, true);
  const call = createTraceServerInterceptor(tracing.tracer);
  let inside: { traceId?: string; spanId?: string } = {};
  await call(async () => {
    inside = { traceId: currentTraceId(), spanId: trace.getActiveSpan()?.spanContext().spanId };
    setSpanAttributes({ transactionId: "gw-0:abc", amountMinor: 123456789012345678n, outcome: "committed" });
    return unaryRes();
  })(unaryReq({ traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` }));
  const [span, ...rest] = await finished();
  assert.ok(span);
  assert.equal(rest.length, 0);
  assert.equal(span.name, "paygate.bank.v1.ParticipantService/Prepare");
  assert.equal(span.kind, SpanKind.SERVER);
  assert.equal(span.spanContext().traceId, PARENT_TRACE);
  assert.equal(span.parentSpanContext?.spanId, PARENT_SPAN);
  assert.deepEqual(inside, { traceId: PARENT_TRACE, spanId: span.spanContext().spanId });
  assert.equal(span.attributes["rpc.system"], "connect_rpc");
  assert.equal(span.attributes["rpc.service"], "paygate.bank.v1.ParticipantService");
  assert.equal(span.attributes["rpc.method"], "Prepare");
  assert.equal(span.attributes["paygate.transaction_id"], "gw-0:abc");
  assert.equal(span.attributes["paygate.amount_minor"], "123456789012345678", "bigint kept exact as a string");
  assert.equal(span.attributes["paygate.outcome"], "committed");
  assert.equal(span.status.code, SpanStatusCode.UNSET);
  assert.equal(currentTraceId(), undefined, "the span context does not leak out of the call");
});

test("trace server: no traceparent starts a new trace; a business rejection is not a span error, internal is", async () => {
  const call = createTraceServerInterceptor(tracing.tracer);
  await assert.rejects(
    call(async () => {
      throw new ConnectError("no funds", Code.FailedPrecondition);
    })(unaryReq()),
  );
  await assert.rejects(
    call(async () => {
      throw new Error("bug");
    })(unaryReq()),
  );
  const [declined, broken] = await finished();
  assert.ok(declined && broken);
  assert.equal(declined.parentSpanContext, undefined);
  assert.notEqual(declined.spanContext().traceId, broken.spanContext().traceId);
  assert.equal(declined.attributes["rpc.connect_rpc.error_code"], "failed_precondition");
  assert.equal(declined.status.code, SpanStatusCode.UNSET);
  assert.equal(broken.attributes["rpc.connect_rpc.error_code"], "internal");
  assert.equal(broken.status.code, SpanStatusCode.ERROR);
});

test("trace client: CLIENT span under the active span, traceparent sent in the request headers", async () => {
  const server = createTraceServerInterceptor(tracing.tracer);
  const client = createTraceClientInterceptor(tracing.tracer);
  let sent: string | null = null;
  await server(async () => {
    const req = unaryReq();
    await client(async (r) => {
      sent = r.header.get("traceparent");
      return unaryRes();
    })(req);
    return unaryRes();
  })(unaryReq({ traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` }));
  const all = await finished();
  const clientSpan = all.find((s) => s.kind === SpanKind.CLIENT);
  const serverSpan = all.find((s) => s.kind === SpanKind.SERVER);
  assert.ok(clientSpan && serverSpan);
  assert.equal(clientSpan.spanContext().traceId, PARENT_TRACE);
  assert.equal(clientSpan.parentSpanContext?.spanId, serverSpan.spanContext().spanId);
  assert.equal(sent, `00-${PARENT_TRACE}-${clientSpan.spanContext().spanId}-01`);
});

test("trace client: any error marks the CLIENT span failed", async () => {
  const client = createTraceClientInterceptor(tracing.tracer);
  await assert.rejects(
    client(async () => {
      throw new ConnectError("no", Code.NotFound);
    })(unaryReq()),
  );
  const [span] = await finished();
  assert.equal(span?.status.code, SpanStatusCode.ERROR);
  assert.equal(span?.attributes["rpc.connect_rpc.error_code"], "not_found");
});

test("trace server, streaming: the span ends with the stream and the handler's pulls run inside it", async () => {
  const call = createTraceServerInterceptor(tracing.tracer);
  const seenInside: (string | undefined)[] = [];
  const handler = async (): Promise<StreamResponse> =>
    ({
      ...streamRes([]),
      message: (async function* () {
        for (let i = 0; i < 2; i += 1) {
          await new Promise((r) => setImmediate(r));
          seenInside.push(currentTraceId());
          yield i;
        }
      })(),
    }) as unknown as StreamResponse;
  const res = (await call(handler)(streamReq())) as StreamResponse;
  assert.equal((await finished()).length, 0, "span still open while the stream is unread");
  // Pulled from outside any context, as the HTTP adapter does.
  await context.with(context.active(), async () => {
    for await (const _ of res.message) {
      // drain
    }
  });
  const [span] = await finished();
  assert.ok(span);
  assert.deepEqual(seenInside, [span.spanContext().traceId, span.spanContext().traceId]);
});

test("setSpanAttributes: only whitelisted facts, nothing outside a span", async () => {
  setSpanAttributes({ transactionId: "outside" }); // no active span: a no-op, not a throw
  const call = createTraceServerInterceptor(tracing.tracer);
  await call(async () => {
    setSpanAttributes({ outcome: "declined", reason: "risk_declined", pan: "4242424242424242", cvc: "123" } as never);
    return unaryRes();
  })(unaryReq());
  const [span] = await finished();
  assert.ok(span);
  assert.equal(span.attributes["paygate.outcome"], "declined");
  assert.equal(span.attributes["paygate.reason"], "risk_declined");
  assert.ok(!JSON.stringify(span.attributes).includes("4242"), "card data never reaches a span");
  assert.ok(!Object.keys(span.attributes).some((k) => /pan|cvc/.test(k)));
});
