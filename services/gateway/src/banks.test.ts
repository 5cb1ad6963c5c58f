// Commits that ride along with the next PrepareBatch (DESIGN.md §3.3), from
// the gateway's bank client against a real mTLS Connect server that plays one
// bank and records every call it gets: what rides, what leaves alone, what a
// read of the bank flushes first, and a bank too old to answer commit_results.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { LedgerService, ParticipantService, Vote } from "@paygate/proto/bank";
import { createLogger, rejection, startRpcServer, type RpcServer } from "@paygate/rpc";
import { testCerts, tlsFilesFor } from "@paygate/testkit";
import { createBankClients } from "./banks.js";
import type { Leg } from "./domain/ports.js";

/** One line per call the bank got: "Prepare t2", "PrepareBatch t2 +commits t1", "Commit t1", ... */
let calls: string[] = [];
/** false: the bank predates commit_txn_ids (ignores them, answers no commit_results). */
let answersCommits = true;
/** Txn ids the bank says it never prepared. */
const unknown = new Set<string>();
/** A PrepareBatch fails on the wire. */
let failBatches = false;
/** While set, a Commit's answer waits for it. */
let commitGate: Promise<void> | undefined;

const commitError = (txnId: string) =>
  unknown.has(txnId) ? { error: { reason: "unknown_txn", message: `no txn ${txnId}` } } : {};

function routes(router: ConnectRouter): void {
  router.service(ParticipantService, {
    prepare(req) {
      calls.push(`Prepare ${req.txnId}`);
      return { vote: Vote.YES };
    },
    prepareBatch(req) {
      if (failBatches) throw new ConnectError("the bank fell over", 14);
      const riders = answersCommits ? req.commitTxnIds : [];
      calls.push(
        `PrepareBatch ${req.items.map((i) => i.txnId).join(",")}${riders.length ? ` +commits ${riders.join(",")}` : ""}`,
      );
      return {
        results: req.items.map(() => ({ outcome: { case: "response" as const, value: { vote: Vote.YES } } })),
        commitResults: riders.map(commitError),
      };
    },
    async commit(req) {
      calls.push(`Commit ${req.txnId}`);
      await commitGate;
      if (unknown.has(req.txnId)) throw rejection("unknown_txn", `no txn ${req.txnId}`);
      return {};
    },
    commitBatch(req) {
      calls.push(`CommitBatch ${req.txnIds.join(",")}`);
      return { results: req.txnIds.map(commitError) };
    },
    abort: () => ({}),
    abortBatch: (req) => ({ results: req.txnIds.map(() => ({})) }),
  });
  router.service(LedgerService, {
    getAccount(req) {
      calls.push(`GetAccount ${req.accountId}`);
      return {
        account: { accountId: req.accountId, ownerUserId: "u", currency: "USD", balanceMinor: 0n, heldMinor: 0n },
      };
    },
  });
}

const LEG: Leg = {
  accountId: "bank-a/1001",
  direction: "DEBIT",
  amountMinor: 1n,
  currency: "USD",
  ownerUserId: "u",
};

let server: RpcServer;
const certs = testCerts();

before(async () => {
  server = await startRpcServer({
    host: "127.0.0.1",
    port: 0,
    tls: tlsFilesFor(certs, "bank-a"),
    routes,
    interceptors: [],
    logger: createLogger("bank-a", "silent"),
  });
});

after(() => server.close(100));

function clients(rideMs: number) {
  const logger = createLogger("gateway", "silent");
  const warnings: string[] = [];
  logger.warn = ((_obj: object, msg: string) => void warnings.push(msg)) as typeof logger.warn;
  const c = createBankClients({
    banks: new Map([["bank-a", `https://127.0.0.1:${server.port}`]]),
    tls: tlsFilesFor(certs, "gateway"),
    logger,
    ledgerTimeoutMs: 5_000,
    batching: { itemsMax: 64, inflightMax: 2, prepareTimeoutMs: 5_000, decisionTimeoutMs: 5_000, commitRideMs: rideMs },
  });
  return { ...c, warnings };
}

const prepare = (c: ReturnType<typeof clients>, txnId: string) =>
  c.participants.prepare("bank-a", txnId, [LEG], new AbortController().signal);

describe("a Commit rides along with the next PrepareBatch to its bank", () => {
  test("a Commit waiting when a Prepare leaves is carried by it: one RPC, answered per commit", async () => {
    calls = [];
    answersCommits = true;
    const c = clients(60_000); // longer than the test: only the Prepare can take it
    const committed = c.participants.commit("bank-a", "t1", 5_000);
    assert.deepEqual(await prepare(c, "t2"), { vote: "YES" });
    assert.deepEqual(await committed, { ok: true });
    assert.deepEqual(calls, ["PrepareBatch t2 +commits t1"]);
  });

  test("with no Prepare coming, Commits leave on their own after the ride window, together", async () => {
    calls = [];
    const c = clients(30);
    const done = await Promise.all(["t3", "t4"].map((t) => c.participants.commit("bank-a", t, 5_000)));
    assert.deepEqual(done, [{ ok: true }, { ok: true }]);
    assert.deepEqual(calls, ["CommitBatch t3,t4"]);
  });

  test("a read of the bank sends the waiting Commits first", async () => {
    calls = [];
    const c = clients(60_000);
    const committed = c.participants.commit("bank-a", "t5", 5_000);
    const read = await c.ledgers.getAccount("bank-a", "bank-a/1001");
    assert.equal(read.ok, true);
    assert.deepEqual(await committed, { ok: true });
    assert.deepEqual(calls, ["Commit t5", "GetAccount bank-a/1001"]);
  });

  test("a read of the bank waits for a Commit already on the wire to be answered", async () => {
    calls = [];
    let open = () => {};
    commitGate = new Promise<void>((r) => (open = r));
    try {
      const c = clients(0);
      const committed = c.participants.commit("bank-a", "t16", 5_000);
      while (!calls.includes("Commit t16")) await new Promise((r) => setTimeout(r, 5));
      const read = c.ledgers.getAccount("bank-a", "bank-a/1001");
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(calls, ["Commit t16"], "the read is not sent while the Commit is unanswered");
      open();
      assert.equal((await read).ok, true);
      assert.deepEqual(await committed, { ok: true });
      assert.deepEqual(calls, ["Commit t16", "GetAccount bank-a/1001"]);
    } finally {
      commitGate = undefined;
      open();
    }
  });

  test("a riding Commit the bank refuses gets its own reason; the Prepare it rode on is unaffected", async () => {
    calls = [];
    unknown.add("t6");
    const c = clients(60_000);
    const committed = c.participants.commit("bank-a", "t6", 5_000);
    assert.deepEqual(await prepare(c, "t7"), { vote: "YES" });
    const d = await committed;
    assert.equal(d.ok === false && d.transient, false, "the bank answered: a contradiction to alarm on, not a retry");
    assert.match(d.ok === false ? d.reason : "", /unknown_txn|no txn t6/);
    assert.deepEqual(calls, ["PrepareBatch t7 +commits t6"]);
  });

  test("a PrepareBatch lost on the wire fails its riders as undelivered (the redrive loop resends them)", async () => {
    calls = [];
    failBatches = true;
    try {
      const c = clients(60_000);
      const committed = c.participants.commit("bank-a", "t8", 5_000);
      assert.equal((await prepare(c, "t9")).vote, "NO");
      const d = await committed;
      assert.equal(d.ok, false);
      assert.equal(d.ok === false && d.transient, true, "a delivery failure to retry, not a verdict");
    } finally {
      failBatches = false;
    }
  });

  test("a bank that predates commit_results: the carried Commits are sent again alone, and later ones never wait", async () => {
    calls = [];
    answersCommits = false;
    try {
      const c = clients(60_000);
      const committed = c.participants.commit("bank-a", "t10", 5_000);
      assert.deepEqual(await prepare(c, "t11"), { vote: "YES" });
      assert.deepEqual(await committed, { ok: true });
      // Would hang for the 60 s window if it still waited for a ride.
      assert.deepEqual(await c.participants.commit("bank-a", "t12", 5_000), { ok: true });
      assert.deepEqual(await prepare(c, "t13"), { vote: "YES" });
      assert.deepEqual(calls, ["PrepareBatch t11", "Commit t10", "Commit t12", "Prepare t13"]);
      assert.ok(
        c.warnings.filter((m) => /commit_results/.test(m)).length === 1,
        "the operator is told once why Commits stopped riding",
      );
    } finally {
      answersCommits = true;
    }
  });

  test("COMMIT_RIDE_MS=0: a Commit leaves at once, a lone Prepare is the single RPC", async () => {
    calls = [];
    const c = clients(0);
    assert.deepEqual(await c.participants.commit("bank-a", "t14", 5_000), { ok: true });
    assert.deepEqual(await prepare(c, "t15"), { vote: "YES" });
    assert.deepEqual(calls, ["Commit t14", "Prepare t15"]);
  });
});
