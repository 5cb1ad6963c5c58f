// One payment, one trace: paycli -> gateway -> bank-a and bank-b, over real
// HTTP/2 Connect calls, each "service" with its own tracer provider exporting
// OTLP/HTTP to the in-process receiver. The only link between the services is
// the traceparent header the interceptors carry, as between processes.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createClient, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { ParticipantService, Vote } from "@paygate/proto/bank";
import { PaymentService } from "@paygate/proto/gateway";
import {
  createTraceClientInterceptor,
  createTraceServerInterceptor,
  currentTraceId,
  setSpanAttributes,
  startTracing,
  type Tracing,
} from "@paygate/telemetry";
import {
  PAYCLI_TRANSFER_TREE,
  SPAN_KIND,
  spanTree,
  startOtlpReceiver,
  type OtlpReceiver,
  type ReceivedSpan,
} from "./otlp-receiver.js";

interface Server {
  readonly url: string;
  close(): Promise<void>;
}

async function serve(routes: (r: ConnectRouter) => void, interceptors: Interceptor[]): Promise<Server> {
  const server = http2.createServer(connectNodeAdapter({ routes, interceptors }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.destroy();
      }),
  };
}

function transport(url: string, interceptors: Interceptor[]) {
  return createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors });
}

let receiver: OtlpReceiver;
let tracing: Record<"paycli" | "gateway" | "bank-a" | "bank-b", Tracing>;
const servers: Server[] = [];

function bankRoutes(r: ConnectRouter) {
  r.service(ParticipantService, {
    prepare: () => ({ vote: Vote.YES }),
    commit: () => ({}),
    abort: () => ({}),
  });
}

/** A gateway whose Transfer runs 2PC against both banks; `propagate: false` drops its client trace interceptor. */
async function startStack(propagate: boolean) {
  const bankA = await serve(bankRoutes, [createTraceServerInterceptor(tracing["bank-a"].tracer)]);
  const bankB = await serve(bankRoutes, [createTraceServerInterceptor(tracing["bank-b"].tracer)]);
  servers.push(bankA, bankB);
  const gwClient = propagate ? [createTraceClientInterceptor(tracing.gateway.tracer)] : [];
  const banks = [bankA, bankB].map((b) => createClient(ParticipantService, transport(b.url, gwClient)));
  const seenTraceIds: (string | undefined)[] = [];
  const gateway = await serve(
    (r) =>
      r.service(PaymentService, {
        async transfer(req) {
          const txnId = `gw-0:${req.idempotencyKey}`;
          seenTraceIds.push(currentTraceId());
          // Parallel prepares, then commits: the same shape as the real coordinator.
          await Promise.all(banks.map((b) => b.prepare({ txnId })));
          await Promise.all(banks.map((b) => b.commit({ txnId })));
          setSpanAttributes({
            transactionId: txnId,
            amountMinor: req.amountMinor,
            currency: req.currency,
            outcome: "committed",
          });
          return {};
        },
      }),
    [createTraceServerInterceptor(tracing.gateway.tracer)],
  );
  servers.push(gateway);
  const paycli = createClient(
    PaymentService,
    transport(gateway.url, [createTraceClientInterceptor(tracing.paycli.tracer)]),
  );
  return { paycli, seenTraceIds };
}

async function flushAll(): Promise<ReceivedSpan[]> {
  for (const t of Object.values(tracing)) await t.forceFlush();
  return receiver.spans.splice(0);
}

before(async () => {
  receiver = await startOtlpReceiver();
  tracing = {
    paycli: startTracing({ service: "paycli", endpoint: receiver.url }),
    gateway: startTracing({ service: "gateway", endpoint: receiver.url }),
    "bank-a": startTracing({ service: "bank-a", endpoint: receiver.url }),
    "bank-b": startTracing({ service: "bank-b", endpoint: receiver.url }),
  };
});

after(async () => {
  for (const s of servers) await s.close();
  for (const t of Object.values(tracing)) await t.shutdown();
  await receiver.close();
});

test("a transfer is one trace: paycli -> gateway -> both banks, every parent link right", async () => {
  const { paycli, seenTraceIds } = await startStack(true);
  await paycli.transfer({
    idempotencyKey: "k1",
    fromAccountId: "a",
    toAccountId: "b",
    amountMinor: 1234n,
    currency: "EUR",
  });
  await paycli.transfer({
    idempotencyKey: "k2",
    fromAccountId: "a",
    toAccountId: "b",
    amountMinor: 5n,
    currency: "EUR",
  });
  const spans = await flushAll();
  const traceIds = [...new Set(spans.map((s) => s.traceId))];
  assert.equal(traceIds.length, 2, "two transfers, two traces, nothing leaks between them");
  assert.deepEqual(seenTraceIds.sort(), [...traceIds].sort(), "the handler's log lines would carry the trace id");

  const first = spans.filter(
    (s) => s.traceId === spans.find((x) => x.service === "paycli" && x.name.endsWith("/Transfer"))!.traceId,
  );
  // Each span with its parent's description: the whole tree, checked at once.
  assert.deepEqual(spanTree(first), PAYCLI_TRANSFER_TREE);
  // Each gateway client span has exactly one child, so the two banks' spans hang off different calls.
  const gwClients = first.filter((s) => s.service === "gateway" && s.kind === SPAN_KIND.client);
  for (const c of gwClients)
    assert.equal(first.filter((s) => s.parentSpanId === c.spanId).length, 1, `one child of ${c.name}`);
  const transfer = first.find((s) => s.service === "gateway" && s.kind === SPAN_KIND.server)!;
  assert.equal(transfer.attributes["paygate.transaction_id"], "gw-0:k1");
  assert.equal(transfer.attributes["paygate.amount_minor"], "1234");
  assert.equal(transfer.attributes["paygate.outcome"], "committed");
  assert.equal(transfer.attributes["rpc.service"], "paygate.gateway.v1.PaymentService");
});

test("control: without the gateway's client interceptor the banks start their own traces", async () => {
  const { paycli } = await startStack(false);
  await paycli.transfer({
    idempotencyKey: "k3",
    fromAccountId: "a",
    toAccountId: "b",
    amountMinor: 1n,
    currency: "EUR",
  });
  const spans = await flushAll();
  const gatewayTrace = spans.find((s) => s.service === "gateway")!.traceId;
  const bankSpans = spans.filter((s) => s.service.startsWith("bank-"));
  assert.equal(bankSpans.length, 4);
  for (const s of bankSpans) {
    assert.notEqual(s.traceId, gatewayTrace);
    assert.equal(s.parentSpanId, "");
  }
});
