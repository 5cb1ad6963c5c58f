// Bad input against the real gateway: for every public RPC (read from the
// generated descriptors), FUZZ_RUNS (default 300) fast-check cases of random
// bytes, protobuf wire garbage, hostile typed messages and wrong-shaped JSON,
// in every protocol the port speaks (Connect unary proto/JSON, Connect
// streaming, gRPC, gRPC-web) with broken envelopes, as raw HTTP/2 POSTs with
// a client certificate and the session the method needs. Every answer must be
// a clear Connect error (never internal/unknown, never a dropped stream), the
// gateway must keep serving, and nothing may change: balances, holds, account
// counts and conservation are compared before and after.
//   FUZZ_SEED=123 FUZZ_RUNS=2000 node --import tsx --test test/fuzz/gateway.test.ts
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { fromBinary, fromJsonString, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { LedgerService } from "@paygate/proto/bank";
import { file_paygate_gateway_v1_gateway, PaymentService } from "@paygate/proto/gateway";
import { Stack, tlsFilesFor } from "@paygate/testkit";
import { caseArb, describeCase, type FuzzCase } from "./arbitraries.js";
import { BROKEN_CODES, isKnownLibraryInternal, outcomeOf } from "./protocols.js";
import { createRawClient, type RawClient } from "./raw-http2.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** packages/rpc's startRpcServer default. */
const READ_MAX_BYTES = 1024 * 1024;
/** Probe the gateway with a good request every this many cases. */
const PROBE_EVERY = 50;

/** Who calls each service: the identity whose requests get past access control to the handler. */
const CALLER: Readonly<Record<string, { cert: string; user?: string }>> = {
  "paygate.gateway.v1.AuthService": { cert: "paycli" }, // Login is public; Logout without a session (it would revoke ours)
  "paygate.gateway.v1.PaymentService": { cert: "paycli", user: "alice" },
  "paygate.gateway.v1.AdminService": { cert: "admin", user: "admin" },
  "paygate.gateway.v1.CardService": { cert: "checkout", user: "shop" },
  // No WEBHOOK_ALLOWED_HOSTS here: no URL is admitted, so no case can register an endpoint.
  "paygate.gateway.v1.WebhookService": { cert: "checkout", user: "shop" },
  "paygate.gateway.v1.CoordinatorService": { cert: "bank-a" },
};

/** A request that parses to follow=true legitimately keeps its stream open (ListTransactions). */
function asksToFollow(method: DescMethod, c: FuzzCase): boolean {
  if (!method.input.fields.some((f) => f.localName === "follow")) return false;
  const candidates = [c.body, c.body.subarray(5)];
  for (const bytes of candidates) {
    for (const parse of [
      () => fromBinary(method.input, bytes),
      () => fromJsonString(method.input, new TextDecoder().decode(bytes), { ignoreUnknownFields: true }),
    ]) {
      try {
        if ((parse() as unknown as { follow?: boolean }).follow === true) return true;
      } catch {
        // not this encoding
      }
    }
  }
  return false;
}

interface Snapshot {
  readonly banks: Record<string, { accountCount: string; prepared: number; currencies: string[] }>;
  readonly alice: string[];
}

describe("bad input to every public gateway RPC", () => {
  let stack: Stack;
  const clients = new Map<string, RawClient>();
  const tokens = new Map<string, string>();

  before(async () => {
    // Limits high enough that every case reaches the handler's validation (Register and LinkBankAccount count attempts).
    stack = await Stack.start({
      bureau: true,
      gatewayEnv: { LOGIN_FAILURES_MAX: "1000", REGISTER_RATE_MAX: "1000000", LINK_RATE_MAX: "1000000" },
    });
    for (const u of ["alice", "admin", "shop"]) tokens.set(u, await stack.login(u));
    // One decided transfer, so a ListTransactions follower gets its response started.
    await stack.client(PaymentService, tokens.get("alice")).transfer({
      idempotencyKey: "fuzz-setup",
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2002",
      amountMinor: 1n,
      currency: "USD",
    });
  });
  after(async () => {
    for (const c of clients.values()) c.close();
    await stack?.close();
  });

  function client(cert: string): RawClient {
    let c = clients.get(cert);
    if (!c) clients.set(cert, (c = createRawClient(stack.gatewayUrl, tlsFilesFor(stack.certs, cert))));
    return c;
  }

  async function snapshot(): Promise<Snapshot> {
    const banks: Snapshot["banks"] = {};
    for (const name of stack.banks.keys()) {
      const t = await stack.bankClient(LedgerService, name).totals({});
      banks[name] = {
        accountCount: String(t.accountCount),
        prepared: t.prepared.length,
        currencies: t.currencies.map(
          (c) => `${c.currency} balance=${c.balanceMinor} held=${c.heldMinor} deposited=${c.depositedMinor}`,
        ),
      };
      assert.ok(t.ledgerConsistent, `${name}: ${t.problems.join("; ")}`);
    }
    const alice = (await stack.client(PaymentService, tokens.get("alice")).getBalance({})).accounts.map(
      (a) => `${a.accountId} ${a.balanceMinor}/${a.heldMinor}`,
    );
    return { banks, alice };
  }

  let before_: Snapshot;
  const codes = new Map<string, number>();
  let requests = 0;

  test("state before", async () => {
    await stack.assertConserved();
    before_ = await snapshot();
  });

  const methods: { service: DescService; method: DescMethod }[] = file_paygate_gateway_v1_gateway.services.flatMap(
    (service) => service.methods.map((method) => ({ service, method })),
  );
  for (const { service, method } of methods) {
    test(`${service.name}/${method.name}: ${RUNS} bad requests, each a clean error`, async (t) => {
      const caller = CALLER[service.typeName];
      assert.ok(caller, `no fuzz identity for ${service.typeName}: add it to CALLER`);
      const path = `/${service.typeName}/${method.name}`;
      const seed = SEED + methods.findIndex((m) => m.method === method);
      t.diagnostic(`fast-check seed ${seed} (FUZZ_SEED=${SEED})`);
      let n = 0;
      const send = async (c: FuzzCase) => {
        const token = caller.user ? tokens.get(caller.user) : undefined;
        const headers = { ...c.headers, ...(token ? { authorization: `Bearer ${token}` } : {}) };
        // A follower (ListTransactions with follow set) stays open by design: wait less, accept it once started.
        const streaming = method.methodKind === "server_streaming";
        const r = await client(caller.cert).post(path, headers, c.body, streaming ? 5_000 : 20_000);
        requests++;
        if ((!r.ok || r.res.open) && streaming && asksToFollow(method, c)) {
          codes.set("stream-open (follower)", (codes.get("stream-open (follower)") ?? 0) + 1);
          return;
        }
        // Past readMaxBytes the server answers early and nghttp2 may refuse the rest of the upload (ENHANCE_YOUR_CALM).
        if (!r.ok && c.body.length > READ_MAX_BYTES && /rst code 11\)/.test(r.error)) {
          codes.set("refused upload (over readMaxBytes)", (codes.get("refused upload (over readMaxBytes)") ?? 0) + 1);
          return;
        }
        if (!r.ok) throw new Error(`${path}: no clean answer (${r.error}) to ${describeCase(c)}`);
        if (r.res.open) throw new Error(`${path}: still open after the deadline for ${describeCase(c)}`);
        const o = outcomeOf(c.protocol, r.res);
        const key = isKnownLibraryInternal(o) ? "internal(known connect-es parse defect)" : o.code;
        codes.set(key, (codes.get(key) ?? 0) + 1);
        if (
          (BROKEN_CODES.has(o.code) && !isKnownLibraryInternal(o)) ||
          o.code.startsWith("unparseable") ||
          o.code.startsWith("http-5")
        ) {
          throw new Error(`${path}: ${o.code} (${o.detail}) for bad input ${describeCase(c)}`);
        }
        if (++n % PROBE_EVERY === 0)
          await stack.client(PaymentService, tokens.get("alice")).getBalance({ accountId: "bank-a/1001" });
      };
      await fc.assert(fc.asyncProperty(caseArb(method), send), {
        numRuns: RUNS,
        seed,
        verbose: 1,
        includeErrorInReport: true,
        endOnFailure: true,
      });
    });
  }

  test("afterwards: every process still runs, money is conserved, nothing changed", async (t) => {
    const resets = [...clients.values()].reduce((n, c) => n + c.sessionResets, 0);
    t.diagnostic(
      `${requests} requests; HTTP/2 sessions refused by flood protection (and replaced): ${resets}; outcomes: ${JSON.stringify(Object.fromEntries([...codes].sort((a, b) => b[1] - a[1])))}`,
    );
    for (const p of [stack.gateway, ...stack.banks.values()])
      assert.ok(p.running, `${p.name} died (last exit ${JSON.stringify(p.lastExit)})`);
    await stack.assertConserved();
    assert.deepEqual(await snapshot(), before_);
    // The handlers were reached, not just the parser: validation errors dominate.
    assert.ok((codes.get("invalid_argument") ?? 0) > requests / 10, "too few requests reached validation");
  });
});
