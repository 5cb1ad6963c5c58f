// A tiny in-process OTLP/HTTP trace receiver for tests: POST /v1/traces with
// OTLP JSON (what @opentelemetry/exporter-trace-otlp-http sends) or OTLP
// protobuf (exporter-trace-otlp-proto, collectors), optionally gzip'd. It keeps
// the spans it received, flattened, in arrival order.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";

export type AttributeValue = string | number | boolean | bigint | null;

export interface ReceivedSpan {
  /** service.name of the resource that sent it. */
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  /** "" for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
  /** Spans this one links to (a batched call links its items' spans). */
  readonly links: readonly { readonly traceId: string; readonly spanId: string }[];
}

export const SPAN_KIND = { internal: 1, server: 2, client: 3 } as const;

/** "gateway SERVER Transfer": the span's service, kind and method. */
export const describeSpan = (s: ReceivedSpan): string =>
  `${s.service} ${s.kind === SPAN_KIND.server ? "SERVER" : s.kind === SPAN_KIND.client ? "CLIENT" : `kind${s.kind}`} ${s.name.split("/")[1]}`;

/** Each span of `trace` as "<span> <- <its parent>" (or "<- root"), sorted: the whole tree, to check at once. */
export function spanTree(trace: readonly ReceivedSpan[]): string[] {
  const byId = new Map(trace.map((s) => [s.spanId, s]));
  return trace
    .map(
      (s) =>
        `${describeSpan(s)} <- ${s.parentSpanId === "" ? "root" : byId.has(s.parentSpanId) ? describeSpan(byId.get(s.parentSpanId)!) : "MISSING PARENT"}`,
    )
    .sort();
}

/** The spanTree of one paycli transfer across two banks, committed. */
export const PAYCLI_TRANSFER_TREE: readonly string[] = [
  "bank-a SERVER Commit <- gateway CLIENT Commit",
  "bank-a SERVER Prepare <- gateway CLIENT Prepare",
  "bank-b SERVER Commit <- gateway CLIENT Commit",
  "bank-b SERVER Prepare <- gateway CLIENT Prepare",
  "gateway CLIENT Commit <- gateway SERVER Transfer",
  "gateway CLIENT Commit <- gateway SERVER Transfer",
  "gateway CLIENT Prepare <- gateway SERVER Transfer",
  "gateway CLIENT Prepare <- gateway SERVER Transfer",
  "gateway SERVER Transfer <- paycli CLIENT Transfer",
  "paycli CLIENT Transfer <- root",
];

export interface OtlpReceiver {
  /** Base URL to use as OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** How many POSTs arrived, by content type (so a test can tell which encoding it exercised). */
  readonly requests: Record<string, number>;
  close(): Promise<void>;
}

const BODY_BYTES_MAX = 16 * 1024 * 1024;

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: Record<string, number> = {};
  const server = http.createServer((req, res) => {
    const reply = (status: number, body: string) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(body);
    };
    if (req.method !== "POST" || req.url !== "/v1/traces") return reply(404, "{}");
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > BODY_BYTES_MAX) req.destroy(new Error("body too large"));
      else chunks.push(c);
    });
    req.on("end", () => {
      try {
        let body = Buffer.concat(chunks);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        const type = (req.headers["content-type"] ?? "").split(";", 1)[0]!.trim();
        requests[type] = (requests[type] ?? 0) + 1;
        if (type === "application/json") {
          spans.push(...fromJson(JSON.parse(body.toString("utf8")) as JsonRequest));
          return reply(200, "{}");
        }
        if (type === "application/x-protobuf") {
          spans.push(...fromProtobuf(body));
          res.writeHead(200, { "content-type": "application/x-protobuf" });
          return res.end(); // an empty ExportTraceServiceResponse
        }
        return reply(415, JSON.stringify({ error: `unsupported content-type ${type}` }));
      } catch (e) {
        return reply(400, JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---------------------------------------------------------------- JSON

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonRequest {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind?: number;
        attributes?: JsonKeyValue[];
        status?: { code?: number };
        links?: { traceId: string; spanId: string }[];
      }[];
    }[];
  }[];
}

function jsonValue(v: JsonAnyValue | undefined): AttributeValue {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return BigInt(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return null;
}

function jsonAttributes(kvs: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, jsonValue(kv.value)]));
}

// OTLP/JSON ids are hex; older exporters sent base64. Accept both.
function jsonId(id: string | undefined, bytes: number): string {
  if (!id) return "";
  if (new RegExp(`^[0-9a-f]{${bytes * 2}}$`, "i").test(id)) return id.toLowerCase();
  return Buffer.from(id, "base64").toString("hex");
}

function fromJson(request: JsonRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const service = String(jsonAttributes(rs.resource?.attributes)["service.name"] ?? "");
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          traceId: jsonId(s.traceId, 16),
          spanId: jsonId(s.spanId, 8),
          parentSpanId: jsonId(s.parentSpanId, 8),
          name: s.name,
          kind: s.kind ?? 0,
          attributes: jsonAttributes(s.attributes),
          statusCode: s.status?.code ?? 0,
          links: (s.links ?? []).map((l) => ({ traceId: jsonId(l.traceId, 16), spanId: jsonId(l.spanId, 8) })),
        });
      }
    }
  }
  return out;
}

// ------------------------------------------------------------ protobuf
// Just enough of the wire format for the fields above
// (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto).

type Field =
  | { no: number; wire: 0; value: bigint }
  | { no: number; wire: 1 | 5; value: Buffer }
  | { no: number; wire: 2; value: Buffer };

const FIELDS_PER_MESSAGE_MAX = 1_000_000;

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= buf.length) throw new Error("truncated varint");
      const b = buf[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new Error("varint too long");
  };
  const take = (n: number): Buffer => {
    if (pos + n > buf.length) throw new Error("truncated field");
    const slice = buf.subarray(pos, pos + n);
    pos += n;
    return slice;
  };
  while (pos < buf.length) {
    if (out.length >= FIELDS_PER_MESSAGE_MAX) throw new Error("too many fields");
    const tag = Number(varint());
    const no = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 1) out.push({ no, wire, value: take(8) });
    else if (wire === 5) out.push({ no, wire, value: take(4) });
    else if (wire === 2) out.push({ no, wire, value: take(Number(varint())) });
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

const bytesOf = (fs: Field[], no: number): Buffer[] =>
  fs.filter((f): f is Extract<Field, { wire: 2 }> => f.no === no && f.wire === 2).map((f) => f.value);
const varintOf = (fs: Field[], no: number): bigint | undefined =>
  fs.find((f): f is Extract<Field, { wire: 0 }> => f.no === no && f.wire === 0)?.value;

function pbValue(buf: Buffer | undefined): AttributeValue {
  if (!buf) return null;
  const f = fields(buf)[0];
  if (!f) return null;
  switch (f.no) {
    case 1:
      return (f.value as Buffer).toString("utf8");
    case 2:
      return (f.value as bigint) !== 0n;
    case 3:
      return BigInt.asIntN(64, f.value as bigint);
    case 4:
      return (f.value as Buffer).readDoubleLE(0);
    default:
      return null;
  }
}

function pbAttributes(kvs: Buffer[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of kvs) {
    const fs = fields(kv);
    out[bytesOf(fs, 1)[0]?.toString("utf8") ?? ""] = pbValue(bytesOf(fs, 2)[0]);
  }
  return out;
}

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of bytesOf(fields(body), 1)) {
    const rsf = fields(rs);
    const resource = bytesOf(rsf, 1)[0];
    const service = String(pbAttributes(resource ? bytesOf(fields(resource), 1) : [])["service.name"] ?? "");
    for (const ss of bytesOf(rsf, 2)) {
      for (const s of bytesOf(fields(ss), 2)) {
        const sf = fields(s);
        const status = bytesOf(sf, 15)[0];
        out.push({
          service,
          traceId: bytesOf(sf, 1)[0]?.toString("hex") ?? "",
          spanId: bytesOf(sf, 2)[0]?.toString("hex") ?? "",
          parentSpanId: bytesOf(sf, 4)[0]?.toString("hex") ?? "",
          name: bytesOf(sf, 5)[0]?.toString("utf8") ?? "",
          kind: Number(varintOf(sf, 6) ?? 0n),
          attributes: pbAttributes(bytesOf(sf, 9)),
          statusCode: status ? Number(varintOf(fields(status), 3) ?? 0n) : 0,
          // Span.links = 13; Link.trace_id = 1, Link.span_id = 2.
          links: bytesOf(sf, 13).map((l) => {
            const lf = fields(l);
            return {
              traceId: bytesOf(lf, 1)[0]?.toString("hex") ?? "",
              spanId: bytesOf(lf, 2)[0]?.toString("hex") ?? "",
            };
          }),
        });
      }
    }
  }
  return out;
}
