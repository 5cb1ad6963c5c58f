// What a real server (startRpcServer over mTLS) puts on the wire for a
// request it cannot take and for a handler that fails unexpectedly. The wire
// is read raw (HTTP/2, Connect JSON and binary) so nothing in a client library
// can hide what a caller would see.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { errorFromJson } from "@connectrpc/connect/protocol-connect";
import { pino } from "pino";
import { AuthService, PaymentService, TransferRequestSchema, TransferResponseSchema } from "@paygate/proto/gateway";
import { testCerts, tlsFilesFor } from "@paygate/testkit";
import { errorInfo, rejection } from "./errors.js";
import { createLoggingInterceptor } from "./interceptors.js";
import { startRpcServer, type RpcServer } from "./server.js";

const SECRET = "SQLITE_CORRUPT: database disk image is malformed (/var/lib/paygate/bank-a.db, table secret_ledger)";

interface Wire {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

describe("rpc server on the wire", () => {
  const certs = testCerts();
  const client = tlsFilesFor(certs, "paycli");
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: "info" },
    { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  );
  const transfers: unknown[] = [];
  let server: RpcServer;
  let session: http2.ClientHttp2Session;

  before(async () => {
    server = await startRpcServer({
      host: "127.0.0.1",
      port: 0,
      tls: tlsFilesFor(certs, "gateway"),
      routes: (router) => {
        router.service(AuthService, {
          login: (req) => {
            if (req.username === "typeerror") {
              const row = undefined as unknown as { sessionToken: string }; // a store that returned nothing
              return { sessionToken: row.sessionToken };
            }
            if (req.username === "sqlite")
              throw Object.assign(new Error(SECRET), { name: "SqliteError", code: "SQLITE_CORRUPT" });
            // What an unhandled failure of a call to another service looks like: a ConnectError, but not one of ours.
            if (req.username === "downstream")
              throw new ConnectError(`connect ECONNREFUSED 10.0.3.7:7001 (${SECRET})`, Code.Unavailable);
            if (req.username === "aborted") throw new DOMException("This operation was aborted", "AbortError");
            if (req.username === "declined")
              throw rejection("invalid_credentials", "wrong username or password", { username: req.username });
            return { sessionToken: `token-${req.username}` };
          },
        });
        router.service(PaymentService, {
          transfer: (req) => {
            transfers.push(req);
            return {
              transaction: {
                transactionId: "gateway-0:00000000-0000-4000-8000-000000000001",
                amountMinor: req.amountMinor,
              },
            };
          },
          async *listTransactions() {
            yield { transaction: { sequence: 1n } };
            throw new TypeError(`Cannot read properties of undefined (reading '${SECRET}')`);
          },
        });
      },
      interceptors: [createLoggingInterceptor(logger)],
      logger,
    });
    session = http2.connect(`https://127.0.0.1:${server.port}`, {
      ca: readFileSync(client.caFile),
      cert: readFileSync(client.certFile),
      key: readFileSync(client.keyFile),
    });
  });

  after(async () => {
    session.close();
    await server.close(100);
  });

  function post(path: string, body: string | Uint8Array, contentType = "application/json"): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": contentType,
        "connect-protocol-version": "1",
      });
      const chunks: Buffer[] = [];
      let status = 0;
      let type = "";
      req.on("response", (h) => {
        status = Number(h[":status"]);
        type = String(h["content-type"] ?? "");
      });
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status, contentType: type, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(typeof body === "string" ? body : Buffer.from(body));
    });
  }

  /** The Connect error a unary JSON answer carries, read with connect-es's own decoder and our detail reader. */
  function unaryError(w: Wire) {
    assert.match(w.contentType, /^application\/json/);
    return errorInfo(
      errorFromJson(JSON.parse(w.body.toString("utf8")), undefined, new ConnectError("not a Connect error")),
    );
  }

  describe("unknown JSON fields", () => {
    test("a misspelled field is invalid_argument naming the field (message and metadata), and the handler never runs", async () => {
      const before = transfers.length;
      const w = await post(
        "/paygate.gateway.v1.PaymentService/Transfer",
        JSON.stringify({
          idempotencyKey: "k-1",
          fromAccountId: "bank-a/1001",
          toAccountId: "bank-b/2001",
          amountMinr: "5",
          currency: "USD",
        }),
      );
      assert.equal(w.status, 400);
      const e = unaryError(w);
      assert.deepEqual(
        [e.code, e.reason, e.metadata["field"]],
        [Code.InvalidArgument, "invalid_argument", "amountMinr"],
      );
      assert.match(e.message, /amountMinr/);
      assert.equal(transfers.length, before, "nothing reached the handler");
    });

    test("any extra key counts, on every service", async () => {
      const w = await post(
        "/paygate.gateway.v1.AuthService/Login",
        JSON.stringify({ username: "alice", password: "pw", bogus: 1 }),
      );
      const e = unaryError(w);
      assert.deepEqual([e.code, e.reason, e.metadata["field"]], [Code.InvalidArgument, "invalid_argument", "bogus"]);
    });

    test("known fields under their JSON or proto names still work", async () => {
      const camel = await post(
        "/paygate.gateway.v1.PaymentService/Transfer",
        JSON.stringify({ idempotencyKey: "k-2", amountMinor: "5" }),
      );
      assert.equal(camel.status, 200, camel.body.toString());
      const snake = await post(
        "/paygate.gateway.v1.PaymentService/Transfer",
        JSON.stringify({ idempotency_key: "k-3", amount_minor: "7" }),
      );
      assert.equal(snake.status, 200, snake.body.toString());
      assert.equal(JSON.parse(snake.body.toString()).transaction.amountMinor, "7");
    });

    test("a streaming request with an unknown field ends the stream with the same typed error", async () => {
      const w = await post(
        "/paygate.gateway.v1.PaymentService/ListTransactions",
        envelope(Buffer.from('{"follow":true,"folow":true}')),
        "application/connect+json",
      );
      const e = errorInfo(
        errorFromJson(
          (JSON.parse(lastEnvelope(w.body)) as { error: unknown }).error as never,
          undefined,
          new ConnectError("no error"),
        ),
      );
      assert.deepEqual([e.code, e.reason, e.metadata["field"]], [Code.InvalidArgument, "invalid_argument", "folow"]);
    });

    test("a method the service leaves out still answers unimplemented", async () => {
      const w = await post("/paygate.gateway.v1.AuthService/Logout", "{}");
      assert.equal(JSON.parse(w.body.toString()).code, "unimplemented");
    });

    test("binary requests keep protobuf's rule: unknown fields are skipped (that is how schemas evolve)", async () => {
      const known = toBinary(
        TransferRequestSchema,
        create(TransferRequestSchema, { idempotencyKey: "k-4", amountMinor: 9n }),
      );
      // Field 99, varint 1: a field a newer client might send.
      const w = await post(
        "/paygate.gateway.v1.PaymentService/Transfer",
        Uint8Array.from([...known, 0x98, 0x06, 0x01]),
        "application/proto",
      );
      assert.equal(w.status, 200);
      assert.equal(fromBinary(TransferResponseSchema, w.body).transaction?.amountMinor, 9n);
    });
  });

  describe("unexpected errors", () => {
    for (const [name, username] of [
      ["a TypeError", "typeerror"],
      ["a SQLite error", "sqlite"],
      ["another service's error", "downstream"],
    ] as const) {
      test(`${name} in a handler: internal, a generic message and a correlation id on the wire; the cause only in the log line with that id`, async () => {
        lines.length = 0;
        const w = await post("/paygate.gateway.v1.AuthService/Login", JSON.stringify({ username }));
        const raw = w.body.toString("utf8");
        assert.equal(w.status, 500);
        assert.doesNotMatch(
          raw,
          /SQLITE|secret|undefined|reading|ECONNREFUSED|10\.0\.3\.7/i,
          "nothing of the cause is sent",
        );
        const e = unaryError(w);
        assert.deepEqual([e.code, e.reason], [Code.Internal, "internal"]);
        const id = e.metadata["correlation_id"] ?? "";
        assert.match(id, /^[0-9a-f-]{36}$/);
        assert.match(e.message, new RegExp(id), "the message tells the caller which id to quote");
        const line = lines.find((l) => l["msg"] === "rpc" && l["correlationId"] === id);
        assert.ok(line, `an rpc log line with correlationId ${id}: ${JSON.stringify(lines)}`);
        assert.equal(line["reason"], "internal");
        const cause = JSON.stringify(line["err"]);
        assert.match(
          cause,
          { sqlite: /SQLITE_CORRUPT/, typeerror: /Cannot read properties of undefined/, downstream: /ECONNREFUSED/ }[
            username
          ],
        );
      });
    }

    test("a failure we raise ourselves (rejection) passes through unchanged", async () => {
      const e = unaryError(
        await post("/paygate.gateway.v1.AuthService/Login", JSON.stringify({ username: "declined" })),
      );
      assert.deepEqual(
        [e.code, e.reason, e.message, e.metadata["username"], e.metadata["correlation_id"]],
        [Code.Unauthenticated, "invalid_credentials", "wrong username or password", "declined", undefined],
      );
    });

    test("the call's own abort is a cancellation, not an internal error", async () => {
      lines.length = 0;
      const e = unaryError(
        await post("/paygate.gateway.v1.AuthService/Login", JSON.stringify({ username: "aborted" })),
      );
      assert.deepEqual([e.code, e.metadata["correlation_id"]], [Code.Canceled, undefined]);
      assert.equal(lines.find((l) => l["msg"] === "rpc")?.["code"], "canceled");
    });

    test("a stream that fails midway ends with internal and a correlation id, not the cause", async () => {
      lines.length = 0;
      const w = await post(
        "/paygate.gateway.v1.PaymentService/ListTransactions",
        envelope(Buffer.from("{}")),
        "application/connect+json",
      );
      assert.equal(w.status, 200);
      const raw = w.body.toString("utf8");
      assert.doesNotMatch(raw, /SQLITE|secret|reading/i);
      const end = lastEnvelope(w.body);
      const e = errorInfo(
        errorFromJson((JSON.parse(end) as { error: unknown }).error as never, undefined, new ConnectError("no error")),
      );
      assert.deepEqual([e.code, e.reason], [Code.Internal, "internal"]);
      const id = e.metadata["correlation_id"] ?? "";
      assert.match(id, /^[0-9a-f-]{36}$/);
      const line = lines.find((l) => l["msg"] === "rpc" && l["correlationId"] === id);
      assert.ok(line, JSON.stringify(lines));
      assert.match(JSON.stringify(line["err"]), /Cannot read properties/);
    });
  });
});

function envelope(data: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

function lastEnvelope(body: Buffer): string {
  let at = 0;
  let last = "";
  while (at + 5 <= body.length) {
    const n = body.readUInt32BE(at + 1);
    last = body.subarray(at + 5, at + 5 + n).toString("utf8");
    at += 5 + n;
  }
  return last;
}
