// startTracing's real OTLP/HTTP exporter against the in-process receiver, and
// the receiver's protobuf path against the OTel serializer, so both encodings a
// collector may see are known to decode to the same spans.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { Code, ConnectError, createContextValues, type Interceptor, type UnaryResponse } from "@connectrpc/connect";
import { SpanKind } from "@opentelemetry/api";
import { JsonTraceSerializer, ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { ParticipantService } from "@paygate/proto/bank";
import { createTraceServerInterceptor, otlpTracesUrl, setSpanAttributes, startTracing } from "@paygate/telemetry";
import { SPAN_KIND, startOtlpReceiver, type OtlpReceiver } from "./otlp-receiver.js";

type Req = Parameters<Parameters<Interceptor>[0]>[0];

function prepareReq(traceparent?: string): Req {
  return {
    stream: false,
    service: ParticipantService,
    method: ParticipantService.method.prepare,
    requestMethod: "POST",
    url: "http://bank-a/x",
    signal: new AbortController().signal,
    header: new Headers(traceparent ? { traceparent } : {}),
    contextValues: createContextValues(),
    message: {},
  } as unknown as Req;
}
const okRes = { stream: false, header: new Headers(), trailer: new Headers(), message: {} } as unknown as UnaryResponse;

let receiver: OtlpReceiver;
before(async () => {
  receiver = await startOtlpReceiver();
});
after(() => receiver.close());

test("startTracing exports OTLP/HTTP JSON to ${endpoint}/v1/traces with service.name and attributes", async () => {
  receiver.spans.length = 0;
  // Trailing slash: the endpoint is a base URL, the exporter must still hit /v1/traces.
  const tracing = startTracing({ service: "bank-a", endpoint: `${receiver.url}/` });
  assert.equal(tracing.enabled, true);
  const call = createTraceServerInterceptor(tracing.tracer);
  const parent = "0af7651916cd43dd8448eb211c80319c";
  await call(async () => {
    setSpanAttributes({ transactionId: "gw-0:1", amountMinor: 2500n, currency: "EUR", outcome: "committed" });
    return okRes;
  })(prepareReq(`00-${parent}-b7ad6b7169203331-01`));
  await assert.rejects(
    call(async () => {
      throw new ConnectError("boom", Code.Internal);
    })(prepareReq()),
  );
  await tracing.forceFlush();
  assert.equal(receiver.requests["application/json"], 1, "the default exporter posts JSON");
  assert.equal(receiver.spans.length, 2);
  const [ok, failed] = receiver.spans;
  assert.ok(ok && failed);
  assert.equal(ok.service, "bank-a");
  assert.equal(ok.name, "paygate.bank.v1.ParticipantService/Prepare");
  assert.equal(ok.kind, SPAN_KIND.server);
  assert.equal(ok.traceId, parent);
  assert.equal(ok.parentSpanId, "b7ad6b7169203331");
  assert.equal(ok.attributes["rpc.system"], "connect_rpc");
  assert.equal(ok.attributes["paygate.transaction_id"], "gw-0:1");
  assert.equal(ok.attributes["paygate.amount_minor"], "2500");
  assert.equal(ok.attributes["paygate.currency"], "EUR");
  assert.equal(failed.parentSpanId, "");
  assert.equal(failed.statusCode, 2);
  assert.equal(failed.attributes["rpc.connect_rpc.error_code"], "internal");
  await tracing.shutdown();
});

test("startTracing: empty endpoint is off; a malformed one is refused", () => {
  assert.equal(startTracing({ service: "gateway" }).enabled, false);
  assert.equal(startTracing({ service: "gateway", endpoint: "  " }).enabled, false);
  assert.throws(
    () => startTracing({ service: "gateway", endpoint: "otel-collector:4318" }),
    /must be http\(s\)|not a URL/,
  );
  assert.throws(() => otlpTracesUrl("not a url"), /not a URL/);
  assert.equal(otlpTracesUrl("http://c:4318"), "http://c:4318/v1/traces");
});

test("receiver: protobuf (gzip'd) and JSON encodings of the same spans decode alike", async () => {
  receiver.spans.length = 0;
  const memory = new InMemorySpanExporter();
  const tracing = startTracing({ service: "gateway", exporter: memory });
  const call = createTraceServerInterceptor(tracing.tracer);
  await call(async () => {
    setSpanAttributes({ transactionId: "gw-0:2", amountMinor: 1n });
    return okRes;
  })(prepareReq("00-11111111111111111111111111111111-2222222222222222-01"));
  await assert.rejects(
    call(async () => {
      throw new ConnectError("no", Code.NotFound);
    })(prepareReq()),
  );
  await tracing.forceFlush();
  const spans = memory.getFinishedSpans();
  assert.equal(spans.length, 2);
  assert.equal(spans[0]?.kind, SpanKind.SERVER);

  const post = async (body: Uint8Array, type: string, gzip: boolean) => {
    const res = await fetch(`${receiver.url}/v1/traces`, {
      method: "POST",
      headers: { "content-type": type, ...(gzip ? { "content-encoding": "gzip" } : {}) },
      body: gzip ? gzipSync(body) : body,
    });
    assert.equal(res.status, 200, await res.text());
  };
  await post(ProtobufTraceSerializer.serializeRequest(spans)!, "application/x-protobuf", true);
  const fromProto = receiver.spans.splice(0);
  await post(JsonTraceSerializer.serializeRequest(spans)!, "application/json", false);
  const fromJson = receiver.spans.splice(0);
  assert.equal(fromProto.length, 2);
  assert.deepEqual(fromProto, fromJson);
  assert.equal(fromProto[0]?.traceId, "11111111111111111111111111111111");
  assert.equal(fromProto[0]?.parentSpanId, "2222222222222222");
  assert.equal(fromProto[0]?.service, "gateway");
  assert.equal(fromProto[0]?.attributes["paygate.amount_minor"], "1");
  assert.equal(fromProto[1]?.attributes["rpc.connect_rpc.error_code"], "not_found");

  const bad = await fetch(`${receiver.url}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "x",
  });
  assert.equal(bad.status, 415);
  await tracing.shutdown();
});
