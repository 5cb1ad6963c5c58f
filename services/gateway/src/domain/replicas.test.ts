// Replicas sharing one store (DESIGN.md §3b): leases, the takeover of a replica
// that died mid-protocol, and the sweep of a replica's own orphaned claims.
// Two coordinators and two card services share one log, one card store and
// one lease table, as two gateway processes share PostgreSQL; the leases are
// the real SQLite adapter on the test's clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { retryableReasons } from "@paygate/vocab";
import { createGroupCommit } from "../store/group-commit.js";
import { createSqliteLeases } from "../store/leases.js";
import { createSqliteStore } from "../store/sqlite-store.js";
import type { Cards } from "./cards.js";
import type { Coordinator } from "./coordinator.js";
import {
  createFakeBanks,
  createManualClock,
  createMemoryDirectory,
  createMemoryLog,
  type FakeBanks,
  type ManualClock,
  type MemoryLog,
} from "../../test-support/fakes.js";
import type { Result } from "./model.js";
import { StoreUnavailableError, type CoordinatorLog, type ReplicaLeases, type TxnHistory, type Vote } from "./ports.js";
import { createReplicaDuties, type ReplicaDuties } from "./replicas.js";
import {
  approveWith,
  authReq,
  CARD_ACCOUNTS,
  createCapturingLogger,
  createFakeBureau,
  createGate,
  createTestCards,
  createTestCoordinator,
  issueTestCard,
  until,
  value,
  type CapturingLogger,
} from "../../test-support/test-harness.js";
import type { CardStore } from "./cards-ports.js";

const LEASE_MS = 3_000;
const PREPARE_TIMEOUT_MS = 10_000;
const ACCOUNTS = [
  ...CARD_ACCOUNTS,
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "alice", currency: "USD" },
];

interface Replica {
  readonly name: string;
  readonly coordinator: Coordinator;
  readonly cards: Cards;
  readonly duties: ReplicaDuties;
}

interface World {
  readonly log: MemoryLog;
  /** While true, logging a decision fails as an unreachable store does (the write's outcome is lost). */
  decisionsFail: boolean;
  readonly store: CardStore;
  readonly leases: ReplicaLeases;
  readonly banks: FakeBanks;
  readonly clock: ManualClock;
  readonly logger: CapturingLogger;
  replica(name: string, options?: { readonly shared?: boolean }): Replica;
}

function world(): World {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = createMemoryLog(directory);
  const sqlite = createSqliteStore(":memory:");
  const clock = createManualClock(Date.UTC(2026, 0, 15, 12));
  const leases = createSqliteLeases(sqlite.db, createGroupCommit(sqlite.db), clock.nowMs);
  const banks = createFakeBanks();
  const bureau = createFakeBureau([["alice", 780]]);
  const logger = createCapturingLogger();
  const flaky: CoordinatorLog & TxnHistory = {
    ...log,
    decide: async (input) => {
      if (w.decisionsFail) throw new StoreUnavailableError("store unreachable");
      return log.decide(input);
    },
  };
  const replica = (name: string, options: { readonly shared?: boolean } = {}): Replica => {
    const coordinator = createTestCoordinator({
      replica: name,
      log: flaky,
      directory,
      participants: banks,
      clock,
      logger,
      prepareTimeoutMs: PREPARE_TIMEOUT_MS,
      sharedLog: true,
    });
    const cards = createTestCards({
      replica: name,
      store: sqlite.cards,
      coordinator,
      directory,
      bureau,
      clock,
      logger,
      isReplicaAlive: (r) => leases.isAlive(r),
    });
    const duties = createReplicaDuties({
      replica: name,
      bootId: `${name}-boot`,
      leases,
      coordinator,
      cards,
      clock,
      logger,
      shared: options.shared ?? true,
      leaseMs: LEASE_MS,
      heartbeatIntervalMs: 1_000,
      prepareTimeoutMs: PREPARE_TIMEOUT_MS,
      // Intervals on the test's clock too.
      monotonicMs: clock.nowMs,
    });
    return { name, coordinator, cards, duties };
  };
  const w: World = { log, decisionsFail: false, store: sqlite.cards, leases, banks, clock, logger, replica };
  return w;
}

const transferReq = (idempotencyKey: string) => ({
  idempotencyKey,
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 100n,
  currency: "USD",
  memo: "",
});
const reasonOr = (r: Result<unknown>) => (r.ok ? "ok" : r.reason);

/**
 * gateway-1 starts a transfer, an authorization, a capture and a refund and
 * then hangs mid-protocol (its prepares never return): a pod lost for good.
 * gateway-0 runs a transfer of its own that is in flight as well.
 */
async function deadReplicaMidProtocol(w: World) {
  const live = w.replica("gateway-0");
  const dead = w.replica("gateway-1");
  await live.duties.heartbeat();
  await dead.duties.heartbeat();
  const card = await issueTestCard(dead.cards);
  const toCapture = await approveWith(dead.cards, card, { amountMinor: 1_000n });
  const toRefund = await approveWith(dead.cards, card, { amountMinor: 1_000n });
  value(
    (await dead.cards.settleBatch("shop", "earlier", [{ authCode: toRefund.authCode, amountMinor: 1_000n }])).result,
  );

  const deadGate = createGate();
  const liveGate = createGate();
  const preparesBefore = w.banks.prepares.length;
  const deadCommitsBefore = w.banks.commits.filter((c) => c.txnId.startsWith("gateway-1:")).length;
  w.banks.onPrepare = (call) =>
    (call.txnId.startsWith("gateway-1:") ? deadGate : liveGate).wait<Vote>(() => ({ vote: "YES" }));
  const authorizing = authReq(card, { amountMinor: 500n });
  const batch = [{ authCode: toCapture.authCode, amountMinor: 1_000n }];
  const zombie = {
    transfer: dead.coordinator.transfer("alice", transferReq("t-dead")),
    authorize: dead.cards.authorize("shop", authorizing),
    settle: dead.cards.settleBatch("shop", "batch-dead", batch),
    refund: dead.cards.refund("shop", "r-dead", toRefund.authCode, 400n),
  };
  // Two prepares each for the transfer, the capture and the refund; one for the hold.
  await until("gateway-1's prepares", () => deadGate.waiting === 7);
  const running = live.coordinator.transfer("alice", transferReq("t-live"));
  await until("gateway-0's prepares", () => liveGate.waiting === 2);
  const hung = (prefix: string) => [
    ...new Set(
      w.banks.prepares
        .slice(preparesBefore)
        .filter((p) => p.txnId.startsWith(prefix))
        .map((p) => p.txnId),
    ),
  ];
  return {
    live,
    dead,
    deadGate,
    liveGate,
    zombie,
    running,
    toCapture,
    toRefund,
    authorizing,
    batch,
    deadCommitsBefore,
    deadTxnIds: hung("gateway-1:"),
    liveTxnIds: hung("gateway-0:"),
  };
}

/** gateway-1 stops heartbeating; gateway-0 renews its lease until past gateway-1's lease, a prepare timeout and two prepare timeouts of its own. */
async function outliveLease(w: World, live: Replica): Promise<void> {
  for (let elapsed = 0; elapsed <= LEASE_MS + 2 * PREPARE_TIMEOUT_MS; elapsed += 1_000) {
    w.clock.advance(1_000);
    await live.duties.heartbeat();
  }
}

test("takeover: a live replica aborts a dead replica's PENDING transfer and undecided rounds, settles its card records, and never touches its own running txn", async () => {
  const w = world();
  const s = await deadReplicaMidProtocol(w);
  assert.deepEqual(await s.live.duties.tick(), [], "gateway-1's lease still runs: not taken over");
  await outliveLease(w, s.live);
  assert.equal(await w.leases.isAlive("gateway-1"), false);
  assert.equal(await w.leases.isAlive("gateway-0"), true);

  assert.deepEqual(await s.live.duties.tick(), ["gateway-1"]);
  // Everything gateway-1 left undecided is aborted (presumed abort); nothing of it commits.
  assert.equal(s.deadTxnIds.length, 4, "a transfer, a hold, a capture and a refund");
  for (const txnId of s.deadTxnIds) {
    const d = w.log.decisions.get(txnId);
    assert.deepEqual([d?.decision, d?.reason], ["ABORT", "coordinator_restarted"], txnId);
  }
  const deadTransfer = [...w.log.txns.values()].find((t) => t.idempotencyKey === "t-dead");
  assert.deepEqual([deadTransfer?.status, deadTransfer?.declineReason], ["ABORTED", "coordinator_restarted"]);
  // Its card records are settled: the pending hold is gone (its key free), the capture lock released, the refund's reservation returned.
  assert.equal(await w.store.authByKey("shop", s.authorizing.idempotencyKey), undefined);
  const toCapture = await w.store.authById(s.toCapture.authId);
  assert.deepEqual([toCapture?.status, toCapture?.op], ["APPROVED", null]);
  assert.equal(await w.store.refundByKey("shop", "r-dead"), undefined);
  assert.equal((await w.store.authById(s.toRefund.authId))?.refundReservedMinor, 0n);
  assert.ok(w.logger.logged.some((l) => l.msg.startsWith("took over") && l.fields.deadReplica === "gateway-1"));

  // gateway-0's own transfer is older than two prepare timeouts but running: the sweep left it alone.
  for (const txnId of s.liveTxnIds) assert.equal(w.log.decisions.has(txnId), false, txnId);
  assert.deepEqual(await s.live.duties.tick(), [], "taken over once");
  s.liveGate.open();
  assert.equal(value((await s.running).result).status, "COMMITTED");

  // The banks hear every Abort (the shared redrive); nothing stays in doubt.
  w.banks.onPrepare = async () => ({ vote: "YES" });
  w.clock.advance(10_000);
  await s.live.coordinator.redriveOnce();
  assert.deepEqual(await w.log.unackedDecisions(100), []);
  assert.equal((await w.log.inDoubtSummary(w.clock.nowMs())).count, 0);

  // The keys answer again, on the live replica: the batch it owned is resumed, the refund and the authorization run.
  const settled = value((await s.live.cards.settleBatch("shop", "batch-dead", s.batch)).result);
  assert.deepEqual(
    settled.results.map((r) => [r.status, r.final]),
    [["CAPTURED", true]],
  );
  assert.equal(
    value((await s.live.cards.refund("shop", "r-dead", s.toRefund.authCode, 400n)).result).refund.status,
    "COMMITTED",
  );
  assert.equal(value((await s.live.cards.authorize("shop", s.authorizing)).result).status, "APPROVED");
  assert.equal(value((await s.live.coordinator.transfer("alice", transferReq("t-dead"))).result).status, "COMMITTED");
  s.deadGate.open();
  await Promise.allSettled(Object.values(s.zombie));
});

test("takeover: a replica that was taken over and then resumes (a paused pod) obeys the takeover; its requests end retryable and nothing moves twice", async () => {
  const w = world();
  const s = await deadReplicaMidProtocol(w);
  await outliveLease(w, s.live);
  assert.deepEqual(await s.live.duties.tick(), ["gateway-1"]);
  s.liveGate.open();
  await s.running;
  // gateway-1 wakes up: every reply it was waiting for arrives (YES), too late.
  s.deadGate.open();
  const [transfer, authorize, settle, refund] = await Promise.allSettled([
    s.zombie.transfer,
    s.zombie.authorize,
    s.zombie.settle,
    s.zombie.refund,
  ]);
  const outcome = (r: PromiseSettledResult<{ result: Result<unknown> }>) =>
    r.status === "fulfilled" ? reasonOr(r.value.result) : `threw: ${String(r.reason)}`;
  assert.equal(outcome(transfer), "coordinator_restarted");
  assert.equal(outcome(authorize), "coordinator_restarted");
  assert.ok(settle.status === "fulfilled" && settle.value.result.ok, outcome(settle));
  assert.deepEqual(
    settle.value.result.value.results.map((r) => [r.status, r.reason, r.final]),
    [["FAILED", "coordinator_restarted", false]],
  );
  // The refund's row was cleared by the takeover (its reservation released, its key free) while gateway-1 still waited on its round.
  const refundOutcome = outcome(refund);
  assert.ok(retryableReasons.has(refundOutcome as never), refundOutcome);
  assert.equal(
    w.banks.commits.filter((c) => c.txnId.startsWith("gateway-1:")).length,
    s.deadCommitsBefore,
    "nothing gateway-1 started after it hung committed",
  );
});

test("alone (SQLite), a replica takes nobody over but sweeps its own claims that no request runs any more", async () => {
  const w = world();
  const solo = w.replica("gateway-0", { shared: false });
  const other = w.replica("gateway-1");
  await other.duties.heartbeat();
  // `gone` is an earlier process of gateway-0 whose request died after its claim: nobody runs that txn any more.
  const gone = w.replica("gateway-0", { shared: false });
  const gate = createGate();
  w.banks.onPrepare = () => gate.wait<Vote>(() => ({ vote: "YES" }));
  const orphaned = gone.coordinator.transfer("alice", transferReq("orphaned"));
  const running = solo.coordinator.transfer("alice", transferReq("running"));
  const elsewhere = other.coordinator.transfer("alice", transferReq("elsewhere"));
  await until("the three transfers' prepares", () => gate.waiting === 6);
  w.clock.advance(2 * PREPARE_TIMEOUT_MS + LEASE_MS + 1);
  assert.equal(await w.leases.isAlive("gateway-1"), false);
  assert.deepEqual(await solo.duties.tick(), [], "no takeover without a shared store");
  const byKey = (key: string) => [...w.log.txns.values()].find((t) => t.idempotencyKey === key);
  assert.deepEqual([byKey("orphaned")?.status, byKey("orphaned")?.declineReason], ["ABORTED", "coordinator_restarted"]);
  assert.equal(byKey("running")?.status, "PENDING", "its own running txn is left alone");
  assert.equal(byKey("elsewhere")?.status, "PENDING", "another replica's txn is not ours to abort alone");
  gate.open();
  assert.equal(value((await running).result).status, "COMMITTED");
  assert.equal(value((await elsewhere).result).status, "COMMITTED");
  assert.equal(reasonOr((await orphaned).result), "coordinator_restarted", "the late votes obey the logged abort");
});

test("the orphan sweep releases a capture whose round it aborts: a batch resent after a store outage mid-capture captures", async () => {
  const w = world();
  const solo = w.replica("gateway-0", { shared: false });
  const card = await issueTestCard(solo.cards);
  const a = await approveWith(solo.cards, card, { amountMinor: 1_000n });
  const items = [{ authCode: a.authCode, amountMinor: 1_000n }];
  // Both banks vote YES, then the store is unreachable when the decision is logged.
  w.banks.onPrepare = async () => {
    w.decisionsFail = true;
    return { vote: "YES" };
  };
  await assert.rejects(solo.cards.settleBatch("shop", "during-outage", items), StoreUnavailableError);
  w.decisionsFail = false;
  w.banks.onPrepare = async () => ({ vote: "YES" });
  const locked = await w.store.authById(a.authId);
  assert.notEqual(locked?.op ?? null, null, "the capture's lock outlived the request");

  w.clock.advance(2 * PREPARE_TIMEOUT_MS + 1);
  await solo.duties.tick();
  const round = w.log.decisions.get(locked?.op?.txnId ?? "");
  assert.deepEqual(
    [round?.decision, round?.reason],
    ["ABORT", "coordinator_restarted"],
    "the sweep aborted the orphaned round",
  );
  // The process never restarted: nothing but the sweep (or the next request) can release the lock.
  const again = value((await solo.cards.settleBatch("shop", "during-outage", items)).result);
  assert.deepEqual(
    again.results.map((r) => [r.status, r.reason, r.final]),
    [["CAPTURED", "", true]],
  );
});

test("after an outage of the shared store every lease has run out: a replica coming back waits one lease of its own heartbeats before taking anyone over", async () => {
  const w = world();
  const a = w.replica("gateway-0");
  const b = w.replica("gateway-1");
  await a.duties.heartbeat();
  await b.duties.heartbeat();
  // The store is down for longer than a lease and a prepare timeout: nobody's heartbeat lands.
  const outage = w.leases.heartbeat;
  w.leases.heartbeat = async () => {
    throw new StoreUnavailableError("down");
  };
  w.clock.advance(LEASE_MS + PREPARE_TIMEOUT_MS + 1_000);
  await assert.rejects(a.duties.heartbeat(), StoreUnavailableError);
  await assert.rejects(b.duties.heartbeat(), StoreUnavailableError);
  w.leases.heartbeat = outage;
  // gateway-0 is back first; gateway-1's lease is long expired but gateway-1 is alive and about to renew.
  await a.duties.heartbeat();
  assert.deepEqual(await a.duties.tick(), [], "just back: it does not take the others over yet");
  w.clock.advance(500);
  await b.duties.heartbeat();
  w.clock.advance(LEASE_MS);
  await a.duties.heartbeat();
  assert.deepEqual(await a.duties.tick(), [], "by now gateway-1 has renewed: nothing to take over");
  // A replica that really stays dead is still taken over, once gateway-0 has been healthy a lease long.
  w.clock.advance(LEASE_MS + PREPARE_TIMEOUT_MS + 1_000);
  await a.duties.heartbeat();
  assert.deepEqual(await a.duties.tick(), ["gateway-1"]);
});
