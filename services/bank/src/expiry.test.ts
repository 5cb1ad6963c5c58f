// Card holds over the bank's real routes and mTLS: AUTH_HOLD / CAPTURE /
// RELEASE legs as the gateway sends them, GetHold, and the expiry sweeper
// releasing a hold on its own.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HoldState, LegDirection, Vote } from "@paygate/proto/bank";
import {
  createAccessInterceptor,
  createLogger,
  createLoggingInterceptor,
  errorInfo,
  startRpcServer,
  type RpcServer,
} from "@paygate/rpc";
import { noFaults } from "@paygate/faults";
import { loadSeedFile } from "@paygate/seed";
import { createBank } from "./bank.js";
import { createHoldExpiry, type HoldExpiry } from "./expiry.js";
import { bankAccessTable } from "./access.js";
import { bankRoutes } from "./routes.js";
import { openLedgerStore, type LedgerStore } from "./store/ledger-store.js";
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

describe("card holds over mTLS", () => {
  let t: TestDir;
  let store: LedgerStore;
  let server: RpcServer;
  let gw: BankClients;
  let expiry: HoldExpiry;
  let nowMs = Date.now();
  const expiredLogged: object[] = [];

  before(async () => {
    t = makeTestDir("bank-holds");
    store = openLedgerStore({ dataDir: join(t.dir, "bank-a"), bank: "bank-a" });
    const bank = createBank({
      name: "bank-a",
      store,
      faults: noFaults,
      clock: () => nowMs,
      onInvariantBroken: (e) => assert.fail(e),
    });
    bank.loadSeedOnce(() => loadSeedFile(t.seedFile).accounts);
    expiry = createHoldExpiry({
      expireHolds: () => bank.expireHolds(),
      intervalMs: 60_000,
      logger: { info: (f) => void expiredLogged.push(f), error: (f) => assert.fail(JSON.stringify(f)) },
    });
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
    await expiry.stop();
    await server.close(100);
    store.close();
    t.cleanup();
  });

  const available = async (accountId = "bank-a/1001") =>
    (await gw.ledger.getAccount({ accountId })).account!.availableMinor;

  async function placeHold(holdId: string, amountMinor: bigint, expiresAtMs: number): Promise<void> {
    const txnId = newTxnId();
    const v = await gw.participant.prepare({
      txnId,
      legs: [
        {
          accountId: "bank-a/1001",
          direction: LegDirection.AUTH_HOLD,
          amountMinor,
          currency: "USD",
          ownerUserId: "alice",
          holdId,
          holdExpiresAt: timestampFromMs(expiresAtMs),
        },
      ],
    });
    assert.equal(v.vote, Vote.YES, v.reason);
    await gw.participant.commit({ txnId });
  }

  test("AUTH_HOLD then partial CAPTURE with a credit: GetHold follows, available is back minus the capture", async () => {
    const before = await available();
    await placeHold("auth-a", 2_000n, nowMs + 60_000);
    assert.equal(await available(), before - 2_000n);
    const hold = (await gw.ledger.getHold({ holdId: "auth-a" })).hold!;
    assert.deepEqual([hold.state, hold.amountMinor, hold.accountId], [HoldState.ACTIVE, 2_000n, "bank-a/1001"]);

    const txnId = newTxnId();
    const v = await gw.participant.prepare({
      txnId,
      legs: [
        {
          accountId: "bank-a/1001",
          direction: LegDirection.CAPTURE,
          amountMinor: 1_500n,
          currency: "USD",
          holdId: "auth-a",
        },
        { accountId: "bank-a/1002", direction: LegDirection.CREDIT, amountMinor: 1_500n, currency: "USD" },
      ],
    });
    assert.equal(v.vote, Vote.YES, v.reason);
    await gw.participant.commit({ txnId });
    assert.equal(await available(), before - 1_500n);
    const captured = (await gw.ledger.getHold({ holdId: "auth-a" })).hold!;
    assert.deepEqual([captured.state, captured.capturedMinor], [HoldState.CAPTURED, 1_500n]);
    await assertLedgerConsistent(gw.ledger);
  });

  test("a capture above the hold votes NO amount_exceeds_authorization; GetHold of an unknown id is NotFound", async () => {
    await placeHold("auth-b", 100n, nowMs + 60_000);
    const v = await gw.participant.prepare({
      txnId: newTxnId(),
      legs: [
        {
          accountId: "bank-a/1001",
          direction: LegDirection.CAPTURE,
          amountMinor: 101n,
          currency: "USD",
          holdId: "auth-b",
        },
      ],
    });
    assert.deepEqual([v.vote, v.reason], [Vote.NO, "amount_exceeds_authorization"]);
    try {
      await gw.ledger.getHold({ holdId: "nope" });
      assert.fail("expected NotFound");
    } catch (e) {
      assert.deepEqual([errorInfo(e).code, errorInfo(e).reason], [Code.NotFound, "hold_not_found"]);
    }
    // RELEASE gives it all back.
    const before = await available();
    const txnId = newTxnId();
    await gw.participant.prepare({
      txnId,
      legs: [
        {
          accountId: "bank-a/1001",
          direction: LegDirection.RELEASE,
          amountMinor: 100n,
          currency: "USD",
          holdId: "auth-b",
        },
      ],
    });
    await gw.participant.commit({ txnId });
    assert.equal(await available(), before + 100n);
    assert.equal((await gw.ledger.getHold({ holdId: "auth-b" })).hold!.state, HoldState.RELEASED);
    await assertLedgerConsistent(gw.ledger);
  });

  test("the sweeper releases a hold past its expiry on its own; a later capture votes authorization_expired", async () => {
    const before = await available();
    await placeHold("auth-c", 700n, nowMs + 1_000);
    assert.equal(expiry.sweepOnce(), 0, "not due yet");
    nowMs += 1_000;
    assert.equal(expiry.sweepOnce(), 1);
    assert.equal(expiredLogged.length, 1);
    assert.equal((await gw.ledger.getHold({ holdId: "auth-c" })).hold!.state, HoldState.EXPIRED);
    assert.equal(await available(), before);
    const v = await gw.participant.prepare({
      txnId: newTxnId(),
      legs: [
        {
          accountId: "bank-a/1001",
          direction: LegDirection.CAPTURE,
          amountMinor: 700n,
          currency: "USD",
          holdId: "auth-c",
        },
      ],
    });
    assert.deepEqual([v.vote, v.reason], [Vote.NO, "authorization_expired"]);
    await assertLedgerConsistent(gw.ledger);
  });
});
