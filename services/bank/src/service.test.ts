// The real routes, interceptors and store behind startRpcServer on port 0,
// called over mTLS exactly as the gateway calls them.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Code, createClient, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { readFileSync } from "node:fs";
import { LegDirection, LinkService, Vote } from "@paygate/proto/bank";
import { CoordinatorService, Decision } from "@paygate/proto/gateway";
import {
  bankIdentity,
  createAccessInterceptor,
  createLogger,
  createLoggingInterceptor,
  createMtlsTransport,
  errorInfo,
  peerKey,
  rejection,
  startRpcServer,
  type RpcServer,
} from "@paygate/rpc";
import { noFaults } from "@paygate/faults";
import { loadSeedFile } from "@paygate/seed";
import { createBank } from "./bank.js";
import { createDecisionAsker } from "./coordinator-client.js";
import { createResolver } from "./resolver.js";
import { bankAccessTable } from "./access.js";
import { bankRoutes } from "./routes.js";
import { openLedgerStore, type LedgerStore } from "./store/ledger-store.js";
import { freePort } from "@paygate/testkit";
import {
  assertLedgerConsistent,
  bankClients,
  makeTestDir,
  newTxnId,
  tlsFiles,
  type BankClients,
  type TestDir,
} from "./test-support.js";

const log = createLogger("bank-test", "silent");

async function rejected(p: Promise<unknown>): Promise<{ code: Code; reason: string }> {
  try {
    await p;
  } catch (e) {
    const info = errorInfo(e);
    return { code: info.code, reason: info.reason };
  }
  assert.fail("expected the call to fail");
}

/** A stand-in gateway (gateway certificate) answering GetDecision with `decide`. */
async function startCoordinatorStub(
  certs: string,
  decide: (txnId: string) => Decision,
): Promise<{ server: RpcServer; url: string; askedBy: Array<string | undefined> }> {
  const askedBy: Array<string | undefined> = [];
  const server = await startRpcServer({
    host: "127.0.0.1",
    port: 0,
    tls: tlsFiles(certs, "gateway"),
    routes: (router: ConnectRouter) =>
      router.service(CoordinatorService, {
        getDecision(req, ctx) {
          askedBy.push(ctx.values.get(peerKey).identity);
          return { decision: decide(req.txnId) };
        },
      }),
    interceptors: [],
    logger: log,
  });
  return { server, url: `https://127.0.0.1:${server.port}`, askedBy };
}

const debit = (accountId: string, amountMinor: bigint, ownerUserId = "") => ({
  accountId,
  direction: LegDirection.DEBIT,
  amountMinor,
  currency: "USD",
  ownerUserId,
});
const credit = (accountId: string, amountMinor: bigint) => ({
  accountId,
  direction: LegDirection.CREDIT,
  amountMinor,
  currency: "USD",
});

describe("bank over mTLS", () => {
  let t: TestDir;
  let store: LedgerStore;
  let server: RpcServer;
  let gw: BankClients;
  let nowMs = Date.now();
  const broken: Error[] = [];
  /** bank-a on this suite's store and clock, reporting broken invariants to `broken`. */
  const openBank = () =>
    createBank({
      name: "bank-a",
      store,
      faults: noFaults,
      clock: () => nowMs,
      onInvariantBroken: (e) => broken.push(e),
    });

  before(async () => {
    t = makeTestDir("bank-svc");
    store = openLedgerStore({ dataDir: join(t.dir, "bank-a"), bank: "bank-a" });
    const bank = openBank();
    bank.loadSeedOnce(() => loadSeedFile(t.seedFile).accounts);
    server = await startRpcServer({
      host: "127.0.0.1",
      port: 0,
      tls: tlsFiles(t.certs, "bank-a"),
      routes: bankRoutes(bank),
      interceptors: [createLoggingInterceptor(log), createAccessInterceptor(bankAccessTable)],
      logger: log,
    });
    gw = bankClients(server.port, t.certs, "gateway");
  });

  after(async () => {
    await server.close(100);
    store.close();
    t.cleanup();
    assert.deepEqual(broken, []);
  });

  test("prepare, commit, read back: holds, journal and totals", async () => {
    const txnId = newTxnId();
    const vote = await gw.participant.prepare({
      txnId,
      legs: [debit("bank-a/1001", 2_500n, "alice"), credit("bank-a/1002", 2_500n)],
    });
    assert.equal(vote.vote, Vote.YES);
    const held = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual([held.balanceMinor, held.heldMinor, held.availableMinor], [100_000n, 2_500n, 97_500n]);
    const totals = await gw.ledger.totals({});
    assert.deepEqual(
      totals.prepared.map((p) => p.txnId),
      [txnId],
    );
    await assertLedgerConsistent(gw.ledger);

    await gw.participant.commit({ txnId });
    await gw.participant.commit({ txnId }); // idempotent
    const a = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual([a.balanceMinor, a.heldMinor, a.availableMinor], [97_500n, 0n, 97_500n]);
    const entries = [];
    for await (const r of gw.ledger.listEntries({ accountId: "bank-a/1002" })) entries.push(r.entry!);
    assert.deepEqual(
      entries.map((e) => [e.kind, e.txnId, e.amountMinor, e.balanceAfterMinor]),
      [
        ["opening", "opening", 5_000n, 5_000n],
        ["transfer_credit", txnId, 2_500n, 7_500n],
      ],
    );
    const paged = [];
    for await (const r of gw.ledger.listEntries({
      accountId: "bank-a/1002",
      afterSequence: entries[0]!.sequence,
      limit: 1,
    }))
      paged.push(r.entry!.sequence);
    assert.deepEqual(paged, [entries[1]!.sequence]);
    assert.deepEqual((await gw.ledger.totals({})).prepared, []);
    await assertLedgerConsistent(gw.ledger);
  });

  test("NO votes carry the reason; errors carry the error table's reason and code", async () => {
    const poor = await gw.participant.prepare({ txnId: newTxnId(), legs: [debit("bank-a/1002", 1_000_000n)] });
    assert.deepEqual([poor.vote, poor.reason], [Vote.NO, "insufficient_funds"]);
    const owner = await gw.participant.prepare({ txnId: newTxnId(), legs: [debit("bank-a/1001", 1n, "bob")] });
    assert.deepEqual([owner.vote, owner.reason], [Vote.NO, "not_account_owner"]);
    const eur = await gw.participant.prepare({ txnId: newTxnId(), legs: [debit("bank-a/1003", 1n)] });
    assert.deepEqual([eur.vote, eur.reason], [Vote.NO, "currency_mismatch"]);

    assert.deepEqual(await rejected(gw.participant.prepare({ txnId: "nope", legs: [debit("bank-a/1001", 1n)] })), {
      code: Code.InvalidArgument,
      reason: "invalid_txn_id",
    });
    assert.deepEqual(await rejected(gw.participant.prepare({ txnId: newTxnId(), legs: [] })), {
      code: Code.InvalidArgument,
      reason: "invalid_argument",
    });
    assert.deepEqual(
      await rejected(
        gw.participant.prepare({
          txnId: newTxnId(),
          legs: [{ ...debit("bank-a/1001", 1n), direction: LegDirection.UNSPECIFIED }],
        }),
      ),
      {
        code: Code.InvalidArgument,
        reason: "invalid_argument",
      },
    );
    assert.deepEqual(await rejected(gw.participant.commit({ txnId: newTxnId() })), {
      code: Code.FailedPrecondition,
      reason: "unknown_txn",
    });
    assert.deepEqual(await rejected(gw.ledger.getAccount({ accountId: "bank-a/4040" })), {
      code: Code.NotFound,
      reason: "account_not_found",
    });
    assert.deepEqual(await rejected(gw.ledger.getAccount({ accountId: "bank-b/2001" })), {
      code: Code.InvalidArgument,
      reason: "invalid_account_id",
    });
    await assertLedgerConsistent(gw.ledger);
  });

  test("an abort before the prepare leaves a tombstone; the late prepare votes NO", async () => {
    const txnId = newTxnId();
    await gw.participant.abort({ txnId });
    await gw.participant.abort({ txnId });
    const late = await gw.participant.prepare({ txnId, legs: [debit("bank-a/1001", 100n)] });
    assert.deepEqual([late.vote, late.reason], [Vote.NO, "txn_aborted"]);
    assert.deepEqual(await rejected(gw.participant.commit({ txnId })), {
      code: Code.FailedPrecondition,
      reason: "txn_aborted",
    });
    assert.equal((await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!.heldMinor, 0n);

    const committed = newTxnId();
    assert.equal(
      (await gw.participant.prepare({ txnId: committed, legs: [credit("bank-a/1001", 1n)] })).vote,
      Vote.YES,
    );
    await gw.participant.commit({ txnId: committed });
    assert.deepEqual(await rejected(gw.participant.abort({ txnId: committed })), {
      code: Code.FailedPrecondition,
      reason: "txn_committed",
    });
    await assertLedgerConsistent(gw.ledger);
  });

  test("open account and idempotent deposits", async () => {
    const opened = (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD" })).account!;
    assert.equal(opened.accountId, "bank-a/1004");
    assert.equal(opened.balanceMinor, 0n);
    const chosen = (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD", accountId: "bank-a/5000" }))
      .account!;
    assert.equal(chosen.accountId, "bank-a/5000");
    assert.deepEqual(
      await rejected(gw.ledger.openAccount({ ownerUserId: "bob", currency: "USD", accountId: "bank-a/5000" })),
      { code: Code.AlreadyExists, reason: "already_exists" },
    );
    assert.deepEqual(
      await rejected(gw.ledger.openAccount({ ownerUserId: "bob", currency: "USD", accountId: "bank-b/5000" })),
      { code: Code.InvalidArgument, reason: "invalid_account_id" },
    );
    assert.equal(
      (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD" })).account!.accountId,
      "bank-a/5001",
    );

    const req = { depositId: "dep-svc-1", accountId: opened.accountId, amountMinor: 4_200n, currency: "USD" };
    const first = (await gw.ledger.deposit(req)).account!;
    const second = (await gw.ledger.deposit(req)).account!;
    assert.equal(first.balanceMinor, 4_200n);
    assert.equal(second.balanceMinor, 4_200n);
    assert.deepEqual(await rejected(gw.ledger.deposit({ ...req, amountMinor: 1n })), {
      code: Code.InvalidArgument,
      reason: "idempotency_key_reused",
    });
    const usd = (await gw.ledger.totals({})).currencies.find((c) => c.currency === "USD")!;
    assert.equal(usd.depositedMinor, 100_000n + 5_000n + 4_200n);
    await assertLedgerConsistent(gw.ledger);
  });

  test("a CA-signed certificate with another identity is refused with peer_not_allowed; nothing changes", async () => {
    const before = await gw.ledger.totals({});
    const cli = bankClients(server.port, t.certs, "paycli");
    const txnId = newTxnId();
    const calls: Array<() => Promise<unknown>> = [
      () => cli.participant.prepare({ txnId, legs: [debit("bank-a/1001", 1n)] }),
      () => cli.participant.commit({ txnId }),
      () => cli.participant.abort({ txnId }),
      () => cli.ledger.getAccount({ accountId: "bank-a/1001" }),
      () => cli.ledger.openAccount({ ownerUserId: "mallory", currency: "USD" }),
      () => cli.ledger.deposit({ depositId: "steal", accountId: "bank-a/1001", amountMinor: 1n, currency: "USD" }),
      () => cli.ledger.totals({}),
      async () => {
        for await (const _ of cli.ledger.listEntries({ accountId: "bank-a/1001" })) void _;
      },
    ];
    for (const call of calls)
      assert.deepEqual(await rejected(call()), { code: Code.PermissionDenied, reason: "peer_not_allowed" });
    // Bank certificates are not the gateway either.
    const peerBank = bankClients(server.port, t.certs, "bank-b");
    assert.deepEqual(await rejected(peerBank.ledger.totals({})), {
      code: Code.PermissionDenied,
      reason: "peer_not_allowed",
    });
    const afterTotals = await gw.ledger.totals({});
    assert.deepEqual(afterTotals.currencies, before.currencies);
    assert.equal(afterTotals.accountCount, before.accountCount);
    assert.equal(store.txn(txnId), undefined);
  });

  test("a client without a certificate is refused in the handshake", async () => {
    const transport = createConnectTransport({
      baseUrl: `https://127.0.0.1:${server.port}`,
      httpVersion: "2",
      nodeOptions: { ca: readFileSync(join(t.certs, "ca.crt")) },
    });
    const { LedgerService } = await import("@paygate/proto/bank");
    await assert.rejects(createClient(LedgerService, transport).totals({}, { timeoutMs: 5_000 }));
  });

  test("an in-doubt txn is resolved by asking the coordinator over mTLS with the bank's certificate, whatever replica its id names", async () => {
    // A stand-in gateway: gateway certificate, answers for any txn (decisions are shared across replicas).
    const toCommit = newTxnId();
    const toAbort = newTxnId("gateway-7"); // a replica this bank was never told about
    const refused = newTxnId();
    const coordinator = await startCoordinatorStub(t.certs, (txnId) => {
      if (txnId === refused) throw rejection("transaction_not_found", "unknown");
      return txnId === toCommit ? Decision.COMMIT : Decision.ABORT;
    });
    try {
      const bank = openBank();
      const resolver = createResolver({
        preparedBefore: (cutoff, limit) => store.preparedBefore(cutoff, limit),
        ask: createDecisionAsker({ urls: [coordinator.url], tls: tlsFiles(t.certs, "bank-a") }),
        apply: (txnId, d) => {
          const r = d === "commit" ? bank.commit(txnId) : bank.abort(txnId);
          return r.ok ? undefined : r.reason;
        },
        logger: log,
        prepareTimeoutMs: 10_000,
        intervalMs: 1_000,
        backoffMaxMs: 30_000,
        clock: () => nowMs,
      });
      for (const txnId of [toCommit, toAbort, refused]) {
        assert.equal(
          (await gw.participant.prepare({ txnId, legs: [debit("bank-a/1001", 1_000n), credit("bank-a/1002", 1_000n)] }))
            .vote,
          Vote.YES,
        );
      }
      assert.deepEqual(await resolver.tick(), { committed: 0, aborted: 0, failed: 0, waiting: 0 }, "not overdue yet");
      nowMs += 10_001;
      assert.deepEqual(await resolver.tick(), { committed: 1, aborted: 1, failed: 1, waiting: 0 });
      assert.deepEqual(coordinator.askedBy, [bankIdentity("bank-a"), bankIdentity("bank-a"), bankIdentity("bank-a")]);
      assert.equal(store.txn(toCommit)!.state, "COMMITTED");
      assert.equal(store.txn(toAbort)!.state, "ABORTED");
      assert.equal(store.txn(refused)!.state, "PREPARED");
      assert.deepEqual(
        await resolver.tick(),
        { committed: 0, aborted: 0, failed: 0, waiting: 1 },
        "the failed ask backs off",
      );
      assert.equal((await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!.heldMinor, 1_000n);
      await gw.participant.abort({ txnId: refused });
      await assertLedgerConsistent(gw.ledger);
    } finally {
      await coordinator.server.close(100);
    }
  });

  test("GetDecision moves on past a dead coordinator URL, stays with the one that answers, and gives up after one round", async () => {
    const dead = `https://127.0.0.1:${await freePort()}`; // nothing listens there
    const live = await startCoordinatorStub(t.certs, () => Decision.COMMIT);
    const refusing = await startCoordinatorStub(t.certs, () => {
      throw rejection("peer_not_allowed", "every replica would say the same");
    });
    const failovers: string[] = [];
    const tls = tlsFiles(t.certs, "bank-a");
    const onFailover = (e: { url: string; nextUrl: string }) => void failovers.push(`${e.url} -> ${e.nextUrl}`);
    try {
      const ask = createDecisionAsker({ urls: [dead, live.url], tls, onFailover });
      assert.equal(await ask(newTxnId(), "gateway-0"), "commit");
      assert.deepEqual(failovers, [`${dead} -> ${live.url}`]);
      assert.equal(await ask(newTxnId("gateway-2"), "gateway-2"), "commit");
      assert.equal(failovers.length, 1, "the next call starts at the URL that answered");
      assert.equal(live.askedBy.length, 2);

      // A refusal every replica would repeat is not retried elsewhere.
      const strict = createDecisionAsker({ urls: [refusing.url, live.url], tls, onFailover });
      await assert.rejects(
        strict(newTxnId(), "gateway-0"),
        (e: unknown) => errorInfo(e).code === Code.PermissionDenied,
      );
      assert.equal(live.askedBy.length, 2);

      // Every URL down: one attempt each, then the call fails naming them all.
      await live.server.close(100);
      failovers.length = 0;
      await assert.rejects(
        ask(newTxnId(), "gateway-0"),
        (e: unknown) =>
          e instanceof Error &&
          e.message.includes(dead) &&
          e.message.includes(live.url) &&
          /failed at 2 of 2/.test(e.message),
      );
      assert.equal(failovers.length, 1);
    } finally {
      await live.server.close(100);
      await refusing.server.close(100);
    }
  });

  test("PrepareBatch / CommitBatch / AbortBatch answer each item as its single call would, in order", async () => {
    // An account of its own, so the other tests' balances stay as they expect.
    const acct = (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD", accountId: "bank-a/7000" }))
      .account!.accountId;
    const before = (
      await gw.ledger.deposit({ depositId: "batch-test", accountId: acct, amountMinor: 1_000n, currency: "USD" })
    ).account!;
    const [big, late, fine] = [newTxnId(), newTxnId(), newTxnId()];
    const prepared = await gw.participant.prepareBatch({
      items: [
        { txnId: big, legs: [debit(acct, before.availableMinor - 10n)] },
        // Sees the first item's hold: only 10 is left.
        { txnId: late, legs: [debit(acct, 20n)] },
        { txnId: "nope", legs: [debit(acct, 1n)] },
        { txnId: fine, legs: [credit("bank-a/1002", 5n)] },
      ],
    });
    assert.deepEqual(
      prepared.results.map((r) =>
        r.outcome.case === "response"
          ? [r.outcome.value.vote, r.outcome.value.reason]
          : [r.outcome.case, r.outcome.value?.reason],
      ),
      [
        [Vote.YES, ""],
        [Vote.NO, "insufficient_funds"],
        ["error", "invalid_txn_id"],
        [Vote.YES, ""],
      ],
    );
    assert.equal(
      (await gw.ledger.getAccount({ accountId: acct })).account!.heldMinor,
      before.heldMinor + before.availableMinor - 10n,
    );

    const unknown = newTxnId();
    const committed = await gw.participant.commitBatch({ txnIds: [big, fine, unknown, late, big] });
    assert.deepEqual(
      committed.results.map((r) => r.error?.reason ?? "ok"),
      ["ok", "ok", "unknown_txn", "txn_aborted", "ok"],
      "a repeated commit in the same batch is a re-delivery",
    );
    const after1001 = (await gw.ledger.getAccount({ accountId: acct })).account!;
    assert.deepEqual(
      [after1001.balanceMinor, after1001.heldMinor],
      [before.balanceMinor - (before.availableMinor - 10n), before.heldMinor],
    );

    const tombstone = newTxnId();
    const aborted = await gw.participant.abortBatch({ txnIds: [late, tombstone, big] });
    assert.deepEqual(
      aborted.results.map((r) => r.error?.reason ?? "ok"),
      ["ok", "ok", "txn_committed"],
    );
    const lateVote = await gw.participant.prepare({ txnId: tombstone, legs: [debit(acct, 1n)] });
    assert.deepEqual([lateVote.vote, lateVote.reason], [Vote.NO, "txn_aborted"]);
    await assertLedgerConsistent(gw.ledger);
  });

  test("a PrepareBatch carrying Commits applies them first, in the same write, and answers each as CommitBatch would", async () => {
    const acct = (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD", accountId: "bank-a/7001" }))
      .account!.accountId;
    // A prepared credit is not yet available. `second` spends it: it can pass only
    // if the carried Commit of `first` is applied before `second` is judged.
    const first = newTxnId();
    assert.equal((await gw.participant.prepare({ txnId: first, legs: [credit(acct, 100n)] })).vote, Vote.YES);
    const [second, unknown] = [newTxnId(), newTxnId()];
    const res = await gw.participant.prepareBatch({
      items: [{ txnId: second, legs: [debit(acct, 100n)] }],
      commitTxnIds: [first, unknown, first],
    });
    assert.deepEqual(
      res.commitResults.map((r) => r.error?.reason ?? "ok"),
      ["ok", "unknown_txn", "ok"],
      "one answer per carried Commit, in order; a repeat is a re-delivery",
    );
    assert.deepEqual(
      res.results.map((r) => (r.outcome.case === "response" ? [r.outcome.value.vote, r.outcome.value.reason] : [])),
      [[Vote.YES, ""]],
    );
    const held = (await gw.ledger.getAccount({ accountId: acct })).account!;
    assert.deepEqual([held.balanceMinor, held.heldMinor], [100n, 100n], "credit posted, the debit held");
    // No Commits: no commit_results (what an older gateway expects).
    const plain = await gw.participant.prepareBatch({ items: [{ txnId: newTxnId(), legs: [credit(acct, 1n)] }] });
    assert.deepEqual(plain.commitResults, []);
    const before = await gw.ledger.totals({});
    assert.deepEqual(
      await rejected(
        gw.participant.prepareBatch({
          items: [{ txnId: newTxnId(), legs: [credit(acct, 1n)] }],
          commitTxnIds: Array.from({ length: 1025 }, () => second),
        }),
      ),
      { code: Code.InvalidArgument, reason: "invalid_argument" },
    );
    assert.deepEqual((await gw.ledger.totals({})).prepared, before.prepared, "a refused batch commits nothing");
    await assertLedgerConsistent(gw.ledger);
  });

  test("a batch carries 1 to 1024 items; other sizes are refused and change nothing", async () => {
    const before = await gw.ledger.totals({});
    assert.deepEqual(await rejected(gw.participant.prepareBatch({ items: [] })), {
      code: Code.InvalidArgument,
      reason: "invalid_argument",
    });
    const tooMany = Array.from({ length: 1025 }, () => ({ txnId: newTxnId(), legs: [credit("bank-a/1002", 1n)] }));
    assert.deepEqual(await rejected(gw.participant.prepareBatch({ items: tooMany })), {
      code: Code.InvalidArgument,
      reason: "invalid_argument",
    });
    assert.deepEqual(await rejected(gw.participant.commitBatch({ txnIds: [] })), {
      code: Code.InvalidArgument,
      reason: "invalid_argument",
    });
    assert.deepEqual(await rejected(gw.participant.abortBatch({ txnIds: tooMany.map((i) => i.txnId) })), {
      code: Code.InvalidArgument,
      reason: "invalid_argument",
    });
    const after = await gw.ledger.totals({});
    assert.deepEqual(after.prepared, before.prepared);
    assert.deepEqual(after.currencies, before.currencies);
    // None of the refused batch's txns was recorded, not even as a tombstone.
    assert.equal(
      (await gw.participant.prepare({ txnId: tooMany[0]!.txnId, legs: [credit("bank-a/1002", 1n)] })).vote,
      Vote.YES,
    );
    await gw.participant.abort({ txnId: tooMany[0]!.txnId });
  });
  test("LinkService: unlink, a new code, a link; every failure link_failed, then link_locked; the owner is what Prepare checks", async () => {
    const link = createClient(
      LinkService,
      createMtlsTransport({
        baseUrl: `https://127.0.0.1:${server.port}`,
        tls: tlsFiles(t.certs, "gateway"),
        timeoutMs: 10_000,
      }),
    );
    const acct = (await gw.ledger.openAccount({ ownerUserId: "carol", currency: "USD", accountId: "bank-a/7001" }))
      .account!;
    assert.deepEqual(await rejected(link.issueLinkCode({ accountId: acct.accountId, holderName: "Carol C" })), {
      code: Code.AlreadyExists,
      reason: "already_linked",
    });
    assert.equal((await link.unlink({ accountId: acct.accountId })).previousOwnerUserId, "carol");
    const { linkCode } = await link.issueLinkCode({ accountId: acct.accountId, holderName: "Carol C" });
    const verify = (code: string, userId = "dave") =>
      link.verifyLink({ accountId: acct.accountId, holderName: "carol c", linkCode: code, userId });
    assert.deepEqual(await rejected(verify("WRONG-CODE-1")), { code: Code.FailedPrecondition, reason: "link_failed" });
    assert.deepEqual(
      await rejected(link.verifyLink({ accountId: "bank-a/7999", holderName: "Carol C", linkCode, userId: "dave" })),
      { code: Code.FailedPrecondition, reason: "link_failed" },
    );
    assert.deepEqual(await rejected(verify("nope")), { code: Code.InvalidArgument, reason: "invalid_argument" });
    assert.equal((await verify(linkCode)).account?.ownerUserId, "dave");
    assert.equal((await verify(linkCode)).account?.ownerUserId, "dave", "a repeat answers the same");
    assert.deepEqual(await rejected(verify(linkCode, "erin")), {
      code: Code.FailedPrecondition,
      reason: "link_failed",
    });
    const notDave = await gw.participant.prepare({ txnId: newTxnId(), legs: [debit(acct.accountId, 1n, "carol")] });
    assert.deepEqual([notDave.vote, notDave.reason], [Vote.NO, "not_account_owner"]);
    // LINK_ATTEMPTS_MAX (5 by default) failures since the link (erin's was the first): locked, even for the right code.
    for (let i = 0; i < 3; i++) assert.equal((await rejected(verify(`WRONG-CODE-${i}`))).reason, "link_failed");
    assert.deepEqual(await rejected(verify("WRONG-CODE-9")), { code: Code.ResourceExhausted, reason: "link_locked" });
    assert.deepEqual(await rejected(verify(linkCode)), { code: Code.ResourceExhausted, reason: "link_locked" });
    await assertLedgerConsistent(gw.ledger);
  });
});
