// The fuzzer's reading of raw answers must be right, or it could call a crash
// a clean error: each protocol's error form, including Internal, is decoded here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BROKEN_CODES, envelope, frame, outcomeOf } from "./protocols.js";
import type { RawResponse } from "./raw-http2.js";

const res = (
  status: number,
  headers: Record<string, string>,
  body: Uint8Array | string = "",
  trailers: Record<string, string> = {},
): RawResponse => ({
  status,
  headers,
  body: Buffer.from(typeof body === "string" ? new TextEncoder().encode(body) : body),
  trailers,
});
const enc = (s: string) => new TextEncoder().encode(s);

test("Connect unary: success, a typed error, and an internal error", () => {
  assert.equal(outcomeOf("connect-proto", res(200, { "content-type": "application/proto" })).code, "ok");
  assert.equal(
    outcomeOf(
      "connect-json",
      res(400, { "content-type": "application/json" }, '{"code":"invalid_argument","message":"bad"}'),
    ).code,
    "invalid_argument",
  );
  const internal = outcomeOf(
    "connect-proto",
    res(500, { "content-type": "application/json" }, '{"code":"internal","message":"boom"}'),
  );
  assert.ok(BROKEN_CODES.has(internal.code));
  assert.equal(outcomeOf("connect-proto", res(502, { "content-type": "text/html" }, "<html>")).code, "http-502");
});

test("Connect streaming: the end-stream message carries the error", () => {
  const body = Uint8Array.from([...envelope(enc('{"error":{"code":"internal","message":"x"}}'), 2)]);
  assert.equal(
    outcomeOf("connect-stream-proto", res(200, { "content-type": "application/connect+proto" }, body)).code,
    "internal",
  );
  const ok = Uint8Array.from([...envelope(enc("")), ...envelope(enc("{}"), 2)]);
  assert.equal(
    outcomeOf("connect-stream-json", res(200, { "content-type": "application/connect+json" }, ok)).code,
    "ok",
  );
  assert.match(outcomeOf("connect-stream-json", res(200, {}, Uint8Array.from([]))).code, /unparseable/);
});

test("gRPC and gRPC-web: status in trailers, trailers-only headers, or a trailer frame", () => {
  assert.equal(
    outcomeOf("grpc", res(200, { "content-type": "application/grpc" }, "", { "grpc-status": "13" })).code,
    "internal",
  );
  assert.equal(
    outcomeOf("grpc", res(200, { "content-type": "application/grpc", "grpc-status": "3" })).code,
    "invalid_argument",
  );
  assert.match(outcomeOf("grpc", res(200, {})).code, /unparseable/);
  const trailer = envelope(enc("grpc-status: 2\r\ngrpc-message: oops\r\n"), 0x80);
  assert.equal(
    outcomeOf("grpc-web", res(200, { "content-type": "application/grpc-web+proto" }, trailer)).code,
    "unknown",
  );
});

test("framing: enveloped protocols get a 5-byte prefix, unary Connect the bare message", () => {
  const m = Uint8Array.from([1, 2, 3]);
  assert.deepEqual([...frame("grpc", m).body], [0, 0, 0, 0, 3, 1, 2, 3]);
  assert.deepEqual([...frame("connect-proto", m).body], [1, 2, 3]);
  assert.equal(frame("grpc-web", m).headers["content-type"], "application/grpc-web+proto");
});
