// The store contract: every behaviour the coordinator, idempotency,
// sessions, leases and card payments rely on, written once and run against
// each adapter (sqlite-store.test.ts, postgres/store.test.ts). A new adapter
// is done when this passes on it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  UNDECIDED_AUTHORIZATION,
  type AuthOperation,
  type AuthRecord,
  type BatchItemRecord,
  type BatchRecord,
  type CardRecord,
  type RefundRecord,
} from "../domain/cards-ports.js";
import type { NewTxn } from "../domain/model.js";
import { CARD_PARTS_SCHEMA_VERSION } from "./db.js";
import { CARD_PARTS_MIGRATION } from "./postgres/schema.js";
import type { PostgresStore } from "./postgres/store.js";
import type { SqliteStore } from "./sqlite-store.js";
import type { GatewayStore } from "../domain/ports.js";
import { transferEvent } from "../domain/webhook-events.js";
import {
  WEBHOOK_EVENT_TYPES,
  type ClaimedDelivery,
  type WebhookEndpoint,
  type WebhookEventType,
} from "../domain/webhooks-ports.js";

export interface StoreHarness {
  readonly store: GatewayStore;
  /** Closes this store and opens the same database again (durability). */
  reopen(): Promise<GatewayStore>;
  /** A second store on the same database, as another replica would have (shared stores only). */
  another?(): Promise<GatewayStore>;
  close(): Promise<void>;
}

let n = 0;
const uuid = () => `00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`;
export const txnIdOf = (replica = "gateway-0") => `${replica}:${uuid()}`;

export const newTxn = (over: Partial<NewTxn> = {}): NewTxn => ({
  txnId: txnIdOf(),
  callerUserId: "alice",
  idempotencyKey: `key-${n}`,
  fingerprint: "fp-1",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  fromBank: "bank-a",
  toBank: "bank-b",
  amountMinor: 2500n,
  currency: "USD",
  memo: "rent",
  createdAtMs: 1_000,
  ...over,
});

const decideInput = (
  txnId: string,
  decision: "COMMIT" | "ABORT",
  over: { reason?: string; participants?: string[]; nowMs?: number } = {},
) => ({
  txnId,
  decision,
  reason: over.reason ?? (decision === "ABORT" ? "insufficient_funds" : ""),
  participants: over.participants ?? ["bank-a", "bank-b"],
  nowMs: over.nowMs ?? 2_000,
  firstResendAtMs: (over.nowMs ?? 2_000) + 100,
});

const SEED = {
  users: [
    { userId: "alice", username: "alice", passwordHash: "scrypt$1$1$1$a$a", roles: ["customer"], displayName: "Alice" },
    {
      userId: "bob",
      username: "bob",
      passwordHash: "scrypt$1$1$1$b$b",
      roles: ["customer", "merchant"],
      displayName: "Bob",
    },
  ],
  accounts: [
    { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
    { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
  ],
};

export const card = (over: Partial<CardRecord> = {}): CardRecord => ({
  cardId: `card_${++n}`,
  panHmac: `pan-${n}`,
  last4: "4242",
  expMonth: 12,
  expYear: 2030,
  cvcHash: "cvc",
  cardholderName: "Alice",
  accountId: "bank-a/1001",
  bank: "bank-a",
  ownerUserId: "alice",
  currency: "USD",
  createdAtMs: 1_000,
  ...over,
});

export const auth = (cardId: string, over: Partial<AuthRecord> = {}): AuthRecord => ({
  authId: `auth_${++n}`,
  replica: "gateway-0",
  authCode: `C${String(n).padStart(5, "0")}`,
  merchantUserId: "bob",
  idempotencyKey: `auth-key-${n}`,
  fingerprint: "afp",
  cardId,
  cardLast4: "4242",
  cardAccountId: "bank-a/1001",
  cardBank: "bank-a",
  cardOwnerUserId: "alice",
  merchantAccountId: "bank-b/2001",
  merchantBank: "bank-b",
  amountMinor: 1_000n,
  currency: "USD",
  merchantReference: "order-1",
  ...UNDECIDED_AUTHORIZATION,
  createdAtMs: 1_000,
  expiresAtMs: 100_000,
  updatedAtMs: 1_000,
  ...over,
});

/** A capture or void in flight (a void unless told). */
const op = (txnId: string, kind: AuthOperation["kind"] = "void", amountMinor = 0n): AuthOperation => ({
  txnId,
  kind,
  amountMinor,
  batchId: kind === "capture" ? "batch_1" : "",
  itemIndex: kind === "capture" ? 0 : -1,
});

const refund = (a: AuthRecord, amountMinor: bigint, over: Partial<RefundRecord> = {}): RefundRecord => ({
  refundId: `refund_${++n}`,
  merchantUserId: a.merchantUserId,
  idempotencyKey: `refund-key-${n}`,
  fingerprint: "rfp",
  authId: a.authId,
  amountMinor,
  txnId: txnIdOf(),
  status: "PENDING",
  reason: "",
  createdAtMs: 1_000,
  ...over,
});

/** A captured authorization of `capturedMinor`, ready for refunds. */
async function captured(s: GatewayStore, capturedMinor: bigint): Promise<AuthRecord> {
  const c = card();
  assert.equal(await s.cards.insertCard(c), true);
  const a = auth(c.cardId);
  assert.equal(await s.cards.insertAuth(a), true);
  assert.equal(
    await s.cards.updateAuth(
      a.authId,
      { status: "PENDING" },
      { status: "CAPTURED", capturedMinor },
      2_000,
      `op-${++n}`,
    ),
    true,
  );
  return (await s.cards.authById(a.authId))!;
}

const endpoint = (over: Partial<WebhookEndpoint> = {}): WebhookEndpoint => ({
  endpointId: `we_${++n}`,
  ownerUserId: "bob",
  url: "https://hooks.example/paygate",
  eventTypes: [...WEBHOOK_EVENT_TYPES],
  status: "ENABLED",
  createdAtMs: 1_000,
  ...over,
});

/** A registered endpoint with its first secret. */
async function withEndpoint(s: GatewayStore, over: Partial<WebhookEndpoint> = {}): Promise<WebhookEndpoint> {
  const e = endpoint(over);
  await s.webhooks.createEndpoint(e, {
    endpointId: e.endpointId,
    secret: `whsec_${++n}`,
    createdAtMs: e.createdAtMs,
    expiresAtMs: undefined,
  });
  return e;
}

const newDeliveryId = () => `wd_${++n}`;

/** An authorization of bob's moved PENDING -> APPROVED through updateAuth (one authorization.approved event). */
async function approvedAuth(s: GatewayStore, nowMs = 2_000, over: Partial<AuthRecord> = {}): Promise<AuthRecord> {
  const c = card();
  assert.equal(await s.cards.insertCard(c), true);
  const a = auth(c.cardId, over);
  assert.equal(await s.cards.insertAuth(a), true);
  assert.equal(
    await s.cards.updateAuth(a.authId, { status: "PENDING" }, { status: "APPROVED" }, nowMs, `op-${++n}`),
    true,
  );
  return (await s.cards.authById(a.authId))!;
}

/** Event types of an endpoint's deliveries, oldest first. */
async function deliveredTypes(s: GatewayStore, endpointId: string): Promise<WebhookEventType[]> {
  return (await s.webhooks.deliveriesOf(endpointId, 100)).reverse().map((d) => d.eventType);
}

const bodyOf = (c: ClaimedDelivery) =>
  JSON.parse(c.event.bodyJson) as { id: string; type: string; object_id: string; data: Record<string, unknown> };

/**
 * SQL on the adapter's own database, as a previous-release replica writes
 * it: no parameters, text both dialects accept. Only the card-parts cases use it.
 */
async function sql(s: GatewayStore, text: string): Promise<Record<string, unknown>[]> {
  if (s.kind === "postgres") return (s as PostgresStore).driver.query(text);
  const stmt = (s as SqliteStore).db.prepare(text);
  if (stmt.reader) return stmt.all() as Record<string, unknown>[];
  stmt.run();
  return [];
}

/** "txn kind amount | column": the authorization's operation row and the op_txn_id column beside it. */
async function opRows(s: GatewayStore, authId: string): Promise<string[]> {
  const rows = await sql(
    s,
    `SELECT o.txn_id, o.kind, o.amount_minor, a.op_txn_id FROM card_auth_ops o JOIN card_authorizations a ON a.auth_id = o.auth_id WHERE o.auth_id = '${authId}'`,
  );
  const column = await sql(s, `SELECT op_txn_id FROM card_authorizations WHERE auth_id = '${authId}'`);
  if (rows.length === 0) assert.equal(String(column[0]?.op_txn_id), "", "no row, no lock in the column either");
  return rows.map((r) => `${r.txn_id} ${r.kind} ${r.amount_minor} | ${r.op_txn_id}`);
}

/** "refund-txn amount" per reservation row, oldest first, then the refund_reserved_minor column. */
async function reservationRows(s: GatewayStore, authId: string): Promise<string[]> {
  const rows = await sql(
    s,
    `SELECT v.refund_txn_id, v.amount_minor FROM card_refund_reservations v JOIN card_refunds f ON f.txn_id = v.refund_txn_id
     WHERE v.auth_id = '${authId}' ORDER BY f.refund_id`,
  );
  const column = await sql(s, `SELECT refund_reserved_minor FROM card_authorizations WHERE auth_id = '${authId}'`);
  return [...rows.map((r) => `${r.refund_txn_id} ${r.amount_minor}`), `column ${column[0]?.refund_reserved_minor}`];
}

/** A PENDING refund row as the previous release inserts it (no reservation row). */
const legacyRefundSql = (r: RefundRecord) =>
  `INSERT INTO card_refunds (refund_id, merchant_user_id, idempotency_key, fingerprint, auth_id, amount_minor, txn_id, status, reason, created_at)
   VALUES ('${r.refundId}', '${r.merchantUserId}', '${r.idempotencyKey}', '${r.fingerprint}', '${r.authId}', ${r.amountMinor}, '${r.txnId}', 'PENDING', '', ${r.createdAtMs})`;

/** Takes the schema back to before card_auth_ops and card_refund_reservations; the next open migrates it again. */
async function rewindCardParts(s: GatewayStore): Promise<void> {
  for (const text of [
    "DROP TABLE card_refund_reservations",
    "DROP TABLE card_auth_ops",
    "DROP INDEX card_refund_txn",
    "DROP INDEX card_auth_op_txn",
    "CREATE INDEX card_auth_ops ON card_authorizations (op_txn_id) WHERE op_txn_id != ''",
    s.kind === "sqlite"
      ? `PRAGMA user_version = ${CARD_PARTS_SCHEMA_VERSION - 1}`
      : `DELETE FROM schema_migrations WHERE version >= ${CARD_PARTS_MIGRATION}`,
  ])
    await sql(s, text);
}

async function seeded(h: StoreHarness): Promise<GatewayStore> {
  await h.store.seedOnce(SEED, 1);
  return h.store;
}

export function storeContract(label: string, open: () => Promise<StoreHarness>): void {
  const it = (name: string, fn: (h: StoreHarness) => Promise<void>) =>
    test(`${label}: ${name}`, async () => {
      const h = await open();
      try {
        await fn(h);
      } finally {
        await h.close();
      }
    });

  // ---- idempotency claims ----------------------------------------------------

  it("a key is claimed once; its owner answers every other claim; a re-run of the same claim reports it claimed", async (h) => {
    const s = await seeded(h);
    const first = newTxn({ idempotencyKey: "k" });
    const c1 = await s.log.claim(first);
    assert.equal(c1.claimed, true);
    assert.equal(c1.claimed && c1.txn.status, "PENDING");
    const c2 = await s.log.claim(newTxn({ idempotencyKey: "k" }));
    assert.equal(c2.claimed, false);
    assert.equal(!c2.claimed && c2.owner.txnId, first.txnId);
    // Scope is (caller, key): another caller's same key is another claim.
    assert.equal((await s.log.claim(newTxn({ idempotencyKey: "k", callerUserId: "bob" }))).claimed, true);
    // Idempotent: running the very same claim again (after an unknown outcome) finds itself.
    const again = await s.log.claim(first);
    assert.equal(again.claimed && again.txn.txnId, first.txnId);
  });

  it("concurrent claims of one key: exactly one wins and every loser names the winner", async (h) => {
    const s = await seeded(h);
    const claims = await Promise.all(Array.from({ length: 20 }, () => s.log.claim(newTxn({ idempotencyKey: "race" }))));
    const winners = claims.filter((c) => c.claimed);
    assert.equal(winners.length, 1);
    const winner = winners[0]!.claimed ? winners[0]!.txn.txnId : "";
    for (const c of claims) if (!c.claimed) assert.equal(c.owner.txnId, winner);
  });

  it("reclaim moves the key only from an ABORTED owner; the old txn stays in the log; concurrent reclaims: one wins", async (h) => {
    const s = await seeded(h);
    const old = newTxn({ idempotencyKey: "retry" });
    await s.log.claim(old);
    const early = await s.log.reclaim(old.txnId, newTxn({ idempotencyKey: "retry" }));
    assert.equal(early.claimed, false, "a PENDING owner keeps its key");
    await s.log.decide(decideInput(old.txnId, "ABORT", { reason: "participant_timeout" }));
    const retries = await Promise.all(
      Array.from({ length: 5 }, () => s.log.reclaim(old.txnId, newTxn({ idempotencyKey: "retry" }))),
    );
    assert.equal(retries.filter((c) => c.claimed).length, 1);
    assert.equal((await s.log.findTxn(old.txnId))?.status, "ABORTED");
  });

  // ---- decisions ---------------------------------------------------------------

  it("a decision is insert-if-absent: the first wins, settles the txn with a sequence and adds acks for its participants", async (h) => {
    const s = await seeded(h);
    const t = newTxn();
    await s.log.claim(t);
    const d1 = await s.log.decide(decideInput(t.txnId, "COMMIT"));
    assert.equal(d1.decision.decision, "COMMIT");
    assert.equal(d1.txn?.status, "COMMITTED");
    assert.ok(d1.txn !== undefined && d1.txn.sequence > 0n);
    const d2 = await s.log.decide(decideInput(t.txnId, "ABORT", { reason: "participant_timeout" }));
    assert.equal(d2.decision.decision, "COMMIT", "the loser obeys the winner");
    assert.equal(d2.txn?.sequence, d1.txn?.sequence);
    assert.deepEqual(await s.log.unackedBanks(t.txnId), ["bank-a", "bank-b"]);
    assert.equal((await s.log.findDecision(t.txnId))?.decision, "COMMIT");
  });

  it("racing decisions for one txn (all YES vs presumed abort): one winner, every caller gets it", async (h) => {
    const s = await seeded(h);
    const t = newTxn();
    await s.log.claim(t);
    const answers = await Promise.all([
      s.log.decide(decideInput(t.txnId, "COMMIT")),
      s.log.decide(decideInput(t.txnId, "ABORT", { reason: "participant_timeout" })),
      s.log.decide(decideInput(t.txnId, "ABORT", { reason: "participant_timeout" })),
    ]);
    const winner = answers[0]!.decision.decision;
    for (const a of answers) assert.equal(a.decision.decision, winner);
    assert.equal((await s.log.findTxn(t.txnId))?.status, winner === "COMMIT" ? "COMMITTED" : "ABORTED");
  });

  it("sequences are unique and increasing in decision order, also for decisions made concurrently", async (h) => {
    const s = await seeded(h);
    const txns = Array.from({ length: 30 }, () => newTxn());
    await Promise.all(txns.map((t) => s.log.claim(t)));
    const decided = await Promise.all(
      txns.map((t, i) => s.log.decide(decideInput(t.txnId, i % 3 === 0 ? "ABORT" : "COMMIT"))),
    );
    const seqs = decided.map((d) => d.txn!.sequence);
    assert.equal(new Set(seqs.map(String)).size, seqs.length);
    const later = newTxn();
    await s.log.claim(later);
    const last = await s.log.decide(decideInput(later.txnId, "COMMIT"));
    for (const q of seqs) assert.ok(last.txn!.sequence > q, "a later decision sorts after every earlier one");
  });

  it("a decision for a txn the log never saw (presumed abort) is kept, with acks, and settles nothing", async (h) => {
    const s = await seeded(h);
    const id = txnIdOf("gateway-7");
    const d = await s.log.decide(decideInput(id, "ABORT", { reason: "participant_timeout", participants: ["bank-a"] }));
    assert.equal(d.txn, undefined);
    assert.equal(d.decision.decision, "ABORT");
    assert.deepEqual(await s.log.unackedBanks(id), ["bank-a"]);
  });

  it("rounds are registered once, found by id, and listed undecided per replica and age", async (h) => {
    const s = await seeded(h);
    const mine = txnIdOf("gateway-0");
    const theirs = txnIdOf("gateway-1");
    await s.log.registerRound({ txnId: mine, kind: "capture", banks: ["bank-a", "bank-b"], createdAtMs: 1_000 });
    await s.log.registerRound({ txnId: mine, kind: "capture", banks: ["bank-a", "bank-b"], createdAtMs: 1_000 });
    await s.log.registerRound({ txnId: theirs, kind: "auth_hold", banks: ["bank-a"], createdAtMs: 5_000 });
    assert.deepEqual((await s.log.findRound(mine))?.banks, ["bank-a", "bank-b"]);
    assert.deepEqual(
      (await s.log.undecidedRounds(10, "gateway-0", 2_000)).map((r) => r.txnId),
      [mine],
    );
    assert.deepEqual(await s.log.undecidedRounds(10, "gateway-1", 2_000), [], "created after the cut-off");
    await s.log.decide(decideInput(mine, "ABORT", { reason: "coordinator_restarted" }));
    assert.deepEqual(await s.log.undecidedRounds(10, "gateway-0", 9_000), []);
  });

  it("pending undecided txns are listed per replica prefix and creation time", async (h) => {
    const s = await seeded(h);
    const a = newTxn({ txnId: txnIdOf("gateway-0"), createdAtMs: 1_000 });
    const b = newTxn({ txnId: txnIdOf("gateway-1"), createdAtMs: 1_000 });
    const c = newTxn({ txnId: txnIdOf("gateway-1"), createdAtMs: 9_000 });
    for (const t of [a, b, c]) await s.log.claim(t);
    assert.deepEqual(
      (await s.log.pendingUndecided(10, { replica: "gateway-1", createdBeforeMs: 5_000 })).map((t) => t.txnId),
      [b.txnId],
    );
    assert.equal((await s.log.pendingUndecided(10)).length, 3);
    await s.log.decide(decideInput(b.txnId, "ABORT", { reason: "coordinator_restarted" }));
    assert.deepEqual(await s.log.pendingUndecided(10, { replica: "gateway-1", createdBeforeMs: 5_000 }), []);
  });

  // ---- acknowledgements and redrive ------------------------------------------------

  it("acks shrink the unacknowledged set; due acks are claimed for a while; rescheduling makes them due again", async (h) => {
    const s = await seeded(h);
    const t = newTxn();
    await s.log.claim(t);
    await s.log.decide(decideInput(t.txnId, "COMMIT", { nowMs: 2_000 })); // first resend at 2_100
    assert.deepEqual(await s.log.dueAcks(2_050, 10, 1_000), [], "not due before the first resend time");
    const due = await s.log.dueAcks(2_200, 10, 1_000);
    assert.deepEqual(
      due.map((d) => `${d.bank}:${d.decision}:${d.attempts}`),
      ["bank-a:COMMIT:0", "bank-b:COMMIT:0"],
    );
    assert.deepEqual(await s.log.dueAcks(2_300, 10, 1_000), [], "claimed: no second redrive pass gets them meanwhile");
    assert.equal((await s.log.dueAcks(3_300, 10, 1_000)).length, 2, "the claim ran out");
    s.log.ack(t.txnId, "bank-a", 3_400);
    s.log.deferAck(t.txnId, "bank-b", 1, 10_000, "participant_unavailable: down");
    await eventually(async () => assert.deepEqual(await s.log.unackedBanks(t.txnId), ["bank-b"]));
    const unacked = await s.log.unackedDecisions(10);
    assert.equal(unacked.length, 1);
    assert.deepEqual(unacked[0]!.banks, ["bank-b"]);
    assert.match(unacked[0]!.lastError, /participant_unavailable/);
    assert.deepEqual(await s.log.dueAcks(9_000, 10, 1_000), [], "deferred to 10_000");
    assert.equal(await s.log.rescheduleUnacked(9_000), 1);
    assert.deepEqual(
      (await s.log.dueAcks(9_000, 10, 1_000)).map((d) => `${d.bank}:${d.attempts}`),
      ["bank-b:1"],
    );
    const doubt = await s.log.inDoubtSummary(11_000);
    assert.equal(doubt.count, 1);
    assert.equal(doubt.oldestAgeSeconds, 10, "aged from the txn's creation");
    s.log.ack(t.txnId, "bank-b", 11_000);
    await eventually(async () =>
      assert.deepEqual(await s.log.inDoubtSummary(11_000), { count: 0, oldestAgeSeconds: 0 }),
    );
  });

  it("history: decided txns visible to their initiator and to the accounts' owners, in sequence order, resumable", async (h) => {
    const s = await seeded(h);
    const t1 = newTxn();
    const t2 = newTxn({
      callerUserId: "bob",
      fromAccountId: "bank-b/2001",
      toAccountId: "bank-a/1001",
      fromBank: "bank-b",
      toBank: "bank-a",
    });
    const pending = newTxn();
    for (const t of [t1, t2, pending]) await s.log.claim(t);
    const d1 = await s.log.decide(decideInput(t1.txnId, "COMMIT"));
    const d2 = await s.log.decide(decideInput(t2.txnId, "ABORT"));
    const alice = await s.log.listVisible("alice", 0n, 10);
    assert.deepEqual(
      alice.map((t) => t.txnId),
      [t1.txnId, t2.txnId],
      "alice owns bank-a/1001, which t2 credits",
    );
    assert.deepEqual(
      (await s.log.listVisible("alice", d1.txn!.sequence, 10)).map((t) => t.txnId),
      [t2.txnId],
    );
    assert.deepEqual(
      (await s.log.listVisible("carol", 0n, 10)).map((t) => t.txnId),
      [],
    );
    assert.equal(d2.txn?.declineReason, "insufficient_funds");
  });

  // ---- directory, users, sessions, seed ------------------------------------------

  it("the seed loads once, also when two replicas start at the same moment", async (h) => {
    assert.equal(await h.store.seeded(), false);
    const reports = await Promise.all([h.store.seedOnce(SEED, 1), h.store.seedOnce(SEED, 1)]);
    assert.deepEqual(reports.map((r) => r.loaded).sort(), [false, true]);
    assert.equal(await h.store.seeded(), true);
    assert.equal((await h.store.users.byUsername("alice"))?.userId, "alice");
    assert.deepEqual(
      (await h.store.directory.ownedBy("bob")).map((a) => a.accountId),
      ["bank-b/2001"],
    );
  });

  it("directory: accounts are added once and found by id and owner", async (h) => {
    const s = await seeded(h);
    const acct = { accountId: "bank-a/1009", bank: "bank-a", ownerUserId: "alice", currency: "EUR" };
    assert.equal(await s.directory.add(acct, 5), true);
    assert.equal(await s.directory.add({ ...acct, currency: "USD" }, 6), false);
    assert.deepEqual(await s.directory.find("bank-a/1009"), acct);
    assert.equal(await s.directory.find("bank-a/4040"), undefined);
    assert.deepEqual(
      (await s.directory.ownedBy("alice")).map((a) => a.accountId),
      ["bank-a/1001", "bank-a/1009"],
    );
  });

  it("directory: remove (unlinking) deletes the entry, drops it from the cache, returns it once; the id can be added again", async (h) => {
    const s = await seeded(h);
    assert.equal((await s.directory.find("bank-a/1001"))?.ownerUserId, "alice", "found, so cached");
    const removed = await s.directory.remove("bank-a/1001");
    assert.deepEqual(removed, { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" });
    assert.equal(await s.directory.find("bank-a/1001"), undefined, "not served from the cache");
    assert.deepEqual(
      (await s.directory.ownedBy("alice")).map((a) => a.accountId),
      [],
    );
    assert.equal(await s.directory.remove("bank-a/1001"), undefined);
    assert.equal(
      await s.directory.add({ accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "bob", currency: "USD" }, 7),
      true,
      "linked again, to someone else",
    );
    assert.equal((await s.directory.find("bank-a/1001"))?.ownerUserId, "bob");
    if (!h.another) return;
    // Shared: another replica that cached the entry forgets it when it is removed here.
    const other = await h.another();
    assert.equal((await other.directory.find("bank-a/1001"))?.ownerUserId, "bob");
    await s.directory.remove("bank-a/1001");
    await eventually(async () =>
      assert.equal(await other.directory.find("bank-a/1001"), undefined, "the other replica dropped its cached entry"),
    );
    await s.directory.add({ accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" }, 8);
    assert.equal((await other.directory.find("bank-a/1001"))?.ownerUserId, "alice", "and reads the new owner");
  });

  it("rate limits: hits count per (scope, key) within a window, atomically (on every replica); a hit after the window starts a new one", async (h) => {
    const s = await seeded(h);
    const hits = await Promise.all(
      Array.from({ length: 5 }, () => s.limits.hit("register", "10.0.0.1 paycli", 1_000, 500)),
    );
    assert.deepEqual(hits.map((x) => x.count).sort(), [1, 2, 3, 4, 5], "concurrent hits all count");
    assert.ok(hits.every((x) => x.resetAtMs === 1_500));
    assert.deepEqual(
      await s.limits.hit("register", "10.0.0.2 paycli", 1_100, 500),
      { count: 1, resetAtMs: 1_600 },
      "another key",
    );
    assert.deepEqual(
      await s.limits.hit("link", "10.0.0.1 paycli", 1_100, 500),
      { count: 1, resetAtMs: 1_600 },
      "another scope",
    );
    if (h.another) {
      const other = await h.another();
      assert.equal(
        (await other.limits.hit("register", "10.0.0.1 paycli", 1_200, 500)).count,
        6,
        "another replica's hits add up",
      );
    }
    assert.deepEqual(
      await s.limits.hit("register", "10.0.0.1 paycli", 1_500, 500),
      { count: 1, resetAtMs: 2_000 },
      "the window ended: a new one",
    );
    assert.equal(await s.limits.purgeExpired(1_700, 10), 2, "the two windows that ended at 1_600");
    assert.equal((await s.limits.hit("link", "10.0.0.1 paycli", 1_700, 500)).count, 1);
  });

  it("users: unique ids and usernames; login failures count per (user, client), atomically, and lock at the maximum", async (h) => {
    const s = await seeded(h);
    assert.equal(
      await s.users.create(
        { userId: "carol", username: "carol", passwordHash: "h", roles: ["customer"], displayName: "C" },
        5,
      ),
      true,
    );
    assert.equal(
      await s.users.create(
        { userId: "carol2", username: "carol", passwordHash: "h", roles: ["customer"], displayName: "C" },
        5,
      ),
      false,
    );
    assert.equal(
      await s.users.create(
        { userId: "carol", username: "carol3", passwordHash: "h", roles: ["customer"], displayName: "C" },
        5,
      ),
      false,
    );
    assert.deepEqual((await s.users.byId("carol"))?.roles, ["customer"]);
    const fails = await Promise.all(
      Array.from({ length: 4 }, () => s.users.recordLoginFailure("alice", "10.0.0.1 x", 100, 5, 1_000)),
    );
    assert.deepEqual(fails.map((f) => f.failures).sort(), [1, 2, 3, 4], "concurrent failures all count");
    const locked = await s.users.recordLoginFailure("alice", "10.0.0.1 x", 100, 5, 1_000);
    assert.deepEqual(locked, { failures: 0, lockedUntilMs: 1_100 });
    assert.deepEqual(
      await s.users.loginFailures("alice", "10.0.0.2 x"),
      { failures: 0, lockedUntilMs: 0 },
      "another client is not locked",
    );
    await s.users.clearLoginFailures("alice", "10.0.0.1 x");
    assert.deepEqual(await s.users.loginFailures("alice", "10.0.0.1 x"), { failures: 0, lockedUntilMs: 0 });
  });

  it("sessions: created, found, revoked, and purged once expired", async (h) => {
    const s = await seeded(h);
    await s.sessions.create({ tokenHash: "t1", userId: "alice", expiresAtMs: 100 }, 1);
    await s.sessions.create({ tokenHash: "t2", userId: "bob", expiresAtMs: 900 }, 1);
    assert.equal((await s.sessions.find("t1"))?.userId, "alice");
    await s.sessions.revoke("t2");
    assert.equal(await s.sessions.find("t2"), undefined);
    assert.equal(await s.sessions.purgeExpired(200, 10), 1);
    assert.equal(await s.sessions.find("t1"), undefined);
  });

  it("leases: a heartbeat keeps a replica alive; an expired one is claimed for takeover once, never by itself", async (h) => {
    const s = await seeded(h);
    await s.leases.heartbeat("gateway-0", "boot-a", 60_000);
    await s.leases.heartbeat("gateway-1", "boot-b", 50);
    assert.equal(await s.leases.isAlive("gateway-0"), true);
    assert.equal(await s.leases.isAlive("gateway-9"), false);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(await s.leases.isAlive("gateway-1"), false);
    // Grace 50 ms: the lease ran out ~70 ms ago; a fresh takeover claim is not stale yet.
    assert.deepEqual(await s.leases.claimExpired("gateway-1", 50, 10), [], "never itself");
    const claims = await Promise.all([
      s.leases.claimExpired("gateway-0", 50, 10),
      s.leases.claimExpired("gateway-2", 50, 10),
    ]);
    assert.deepEqual(claims.flat(), ["gateway-1"], "one taker");
    await s.leases.takenOver("gateway-1", "gateway-0");
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(await s.leases.claimExpired("gateway-2", 50, 10), [], "done until it heartbeats again");
    await s.leases.heartbeat("gateway-1", "boot-c", 60_000);
    assert.equal(await s.leases.isAlive("gateway-1"), true);
  });

  // ---- cards ------------------------------------------------------------------------

  it("cards: one card per number; one authorization per (merchant, key) and per code", async (h) => {
    const s = await seeded(h);
    const c = card();
    assert.equal(await s.cards.insertCard(c), true);
    assert.equal(await s.cards.insertCard({ ...c, cardId: "card_other" }), false);
    assert.equal(await s.cards.insertCard(c), true, "a re-run finds its own row");
    assert.equal((await s.cards.cardByPanHmac(c.panHmac))?.cardId, c.cardId);
    const a = auth(c.cardId);
    assert.equal(await s.cards.insertAuth(a), true);
    assert.equal(await s.cards.insertAuth({ ...auth(c.cardId), idempotencyKey: a.idempotencyKey }), false);
    assert.equal(await s.cards.insertAuth({ ...auth(c.cardId), authCode: a.authCode }), false);
    assert.deepEqual(await s.cards.authByKey("bob", a.idempotencyKey), a);
    assert.equal((await s.cards.authByCode(a.authCode))?.authId, a.authId);
  });

  it("cards: compare-and-set updates apply once; the same opId re-run reports applied", async (h) => {
    const s = await seeded(h);
    const c = card();
    await s.cards.insertCard(c);
    const a = auth(c.cardId, { status: "APPROVED" });
    await s.cards.insertAuth(a);
    const lock = await Promise.all([
      s.cards.updateAuth(
        a.authId,
        { status: "APPROVED", opTxnId: "" },
        { op: op("gateway-0:x1", "capture", 500n) },
        3_000,
        "op-1",
      ),
      s.cards.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { op: op("gateway-0:x2") }, 3_000, "op-2"),
    ]);
    assert.deepEqual(lock.filter(Boolean).length, 1, "one capture or void at a time");
    const winner = lock[0] ? "op-1" : "op-2";
    const after = (await s.cards.authById(a.authId))!;
    assert.deepEqual(after.op, winner === "op-1" ? op("gateway-0:x1", "capture", 500n) : op("gateway-0:x2"));
    assert.equal(after.updatedAtMs, 3_000);
    assert.equal(
      await s.cards.updateAuth(
        a.authId,
        { status: "APPROVED", opTxnId: "" },
        { op: op("gateway-0:x9") },
        3_000,
        winner,
      ),
      true,
      "re-run of the winner",
    );
    assert.deepEqual((await s.cards.authById(a.authId))!.op, after.op, "and it changed nothing");
    assert.equal(await s.cards.updateAuth("auth_missing", {}, { status: "VOIDED" }, 3_000, "op-3"), false);
    await s.cards.deleteAuth(a.authId);
    assert.notEqual(await s.cards.authById(a.authId), undefined, "only a PENDING authorization can be deleted");
  });

  it("cards: the risk decision is recorded only if the card's spend is still what the rule saw (two at once: one)", async (h) => {
    const s = await seeded(h);
    const c = card();
    await s.cards.insertCard(c);
    const a1 = auth(c.cardId, { amountMinor: 600n });
    const a2 = auth(c.cardId, { amountMinor: 600n });
    await s.cards.insertAuth(a1);
    await s.cards.insertAuth(a2);
    assert.equal(await s.cards.spentSince(c.cardId, 0, a1.authId), 0n);
    const both = await Promise.all([
      s.cards.recordRisk(
        a1.authId,
        c.cardId,
        0,
        0n,
        { riskApproved: true, riskScore: 700, holdTxnId: "gateway-0:h1" },
        3_000,
      ),
      s.cards.recordRisk(
        a2.authId,
        c.cardId,
        0,
        0n,
        { riskApproved: true, riskScore: 700, holdTxnId: "gateway-0:h2" },
        3_000,
      ),
    ]);
    assert.equal(both.filter(Boolean).length, 1, "the second saw a stale spend");
    const loser = both[0] ? a2 : a1;
    assert.equal(await s.cards.spentSince(c.cardId, 0, loser.authId), 600n);
    assert.equal(
      await s.cards.recordRisk(
        loser.authId,
        c.cardId,
        0,
        600n,
        { riskApproved: false, status: "DECLINED", declineReason: "spend_limit_exceeded" },
        3_000,
      ),
      true,
    );
    assert.equal((await s.cards.authById(loser.authId))?.status, "DECLINED");
  });

  it("cards: expiry takes APPROVED authorizations past expires_at with nothing in flight, once", async (h) => {
    const s = await seeded(h);
    const c = card();
    await s.cards.insertCard(c);
    const due = auth(c.cardId, { status: "APPROVED", expiresAtMs: 5_000 });
    const busy = auth(c.cardId, { status: "APPROVED", expiresAtMs: 5_000, op: op("gateway-0:op", "capture") });
    const later = auth(c.cardId, { status: "APPROVED", expiresAtMs: 50_000 });
    for (const a of [due, busy, later]) await s.cards.insertAuth(a);
    const [x, y] = await Promise.all([s.cards.expireDue(6_000, 10), s.cards.expireDue(6_000, 10)]);
    assert.deepEqual(
      [...x!, ...y!].map((a) => a.authId),
      [due.authId],
    );
    assert.equal((await s.cards.authById(due.authId))?.status, "EXPIRED");
  });

  it("cards: refunds reserve within the captured amount, also concurrently; finishing commits, fails or frees the key", async (h) => {
    const s = await seeded(h);
    const a = await captured(s, 1_000n);
    const starts = await Promise.all(Array.from({ length: 6 }, () => s.cards.startRefund(refund(a, 300n), 3_000)));
    assert.equal(starts.filter((r) => r.started).length, 3, "3 x 300 fit in 1000, the rest do not");
    for (const r of starts) if (!r.started && "refundableMinor" in r) assert.equal(r.refundableMinor, 100n);
    const reserved = (await s.cards.authById(a.authId))!;
    assert.equal(reserved.refundReservedMinor, 900n);
    const pending = await s.cards.pendingRefunds(10);
    assert.equal(pending.length, 3);
    const [r1, r2, r3] = pending;
    await s.cards.finishRefund(r1!.refundId, { status: "COMMITTED" }, 4_000);
    await s.cards.finishRefund(r1!.refundId, { status: "COMMITTED" }, 4_000); // a re-run changes nothing
    await s.cards.finishRefund(r2!.refundId, { status: "FAILED", reason: "insufficient_funds" }, 4_000);
    await s.cards.finishRefund(r3!.refundId, { status: "RETRY" }, 4_000);
    const after = (await s.cards.authById(a.authId))!;
    assert.equal(after.refundedMinor, 300n);
    assert.equal(after.refundReservedMinor, 0n);
    assert.equal((await s.cards.refundById(r1!.refundId))?.status, "COMMITTED");
    assert.equal((await s.cards.refundById(r2!.refundId))?.reason, "insufficient_funds");
    assert.equal(await s.cards.refundById(r3!.refundId), undefined, "RETRY frees the key");
    const dup = refund(a, 100n, { idempotencyKey: r1!.idempotencyKey });
    const again = await s.cards.startRefund(dup, 5_000);
    assert.equal(!again.started && "existing" in again && again.existing.refundId, r1!.refundId);
    assert.equal((await s.cards.startRefund(refund(a, 800n), 5_000)).started, false, "at most 700 left");
  });

  it("cards: settlement batches — one per key, items stored, ownership moves only from the named owner", async (h) => {
    const s = await seeded(h);
    const b: BatchRecord = {
      batchId: `batch_${++n}`,
      merchantUserId: "bob",
      idempotencyKey: "settle-1",
      fingerprint: "sfp",
      status: "PENDING",
      ownerReplica: "gateway-0",
      createdAtMs: 1,
    };
    const items: BatchItemRecord[] = [0, 1].map((index) => ({
      batchId: b.batchId,
      index,
      authCode: `CODE0${index}`,
      amountMinor: 100n,
      status: "",
      reason: "",
      capturedMinor: 0n,
      txnId: "",
    }));
    assert.equal(await s.cards.insertBatch(b, items), true);
    assert.equal(await s.cards.insertBatch({ ...b, batchId: "batch_other" }, items), false);
    assert.equal((await s.cards.batchByKey("bob", "settle-1"))?.ownerReplica, "gateway-0");
    const takes = await Promise.all([
      s.cards.takeBatch(b.batchId, "gateway-0", "gateway-1"),
      s.cards.takeBatch(b.batchId, "gateway-0", "gateway-2"),
    ]);
    assert.equal(takes.filter(Boolean).length, 1);
    await s.cards.setBatchItem(b.batchId, 1, {
      status: "CAPTURED",
      reason: "",
      capturedMinor: 100n,
      txnId: "gateway-1:t",
    });
    assert.deepEqual(
      (await s.cards.batchItems(b.batchId)).map((i) => i.status),
      ["", "CAPTURED"],
    );
    await s.cards.finishBatch(b.batchId, 9);
    assert.equal((await s.cards.batchByKey("bob", "settle-1"))?.status, "DONE");
    assert.equal(
      await s.cards.takeBatch(b.batchId, takes[0] ? "gateway-1" : "gateway-2", "gateway-3"),
      false,
      "a finished batch stays",
    );
    // A replica frees the PENDING batches it owns but is not settling; the ones it settles stay its own.
    const mk = (key: string): BatchRecord => ({
      ...b,
      batchId: `batch_${++n}`,
      idempotencyKey: key,
      status: "PENDING",
      ownerReplica: "gateway-5",
    });
    const [idle, busy, other] = [mk("idle"), mk("busy"), { ...mk("other"), ownerReplica: "gateway-6" }];
    for (const x of [idle, busy, other]) assert.equal(await s.cards.insertBatch(x, []), true);
    assert.equal(await s.cards.releaseBatches("gateway-5", [busy.batchId]), 1);
    assert.equal((await s.cards.batchByKey("bob", "idle"))?.ownerReplica, "");
    assert.equal((await s.cards.batchByKey("bob", "busy"))?.ownerReplica, "gateway-5");
    assert.equal((await s.cards.batchByKey("bob", "other"))?.ownerReplica, "gateway-6");
  });

  it("cards: pending authorizations, operations and refunds are listed per replica", async (h) => {
    const s = await seeded(h);
    const c = card();
    await s.cards.insertCard(c);
    const mine = auth(c.cardId, { replica: "gateway-0" });
    const theirs = auth(c.cardId, { replica: "gateway-1" });
    const busy = auth(c.cardId, { status: "APPROVED", op: op(txnIdOf("gateway-1")) });
    for (const a of [mine, theirs, busy]) await s.cards.insertAuth(a);
    assert.deepEqual(
      (await s.cards.pendingAuths(10, "gateway-1")).map((a) => a.authId),
      [theirs.authId],
    );
    assert.equal((await s.cards.pendingAuths(10)).length, 2);
    assert.deepEqual(
      (await s.cards.authsWithOp(10, "gateway-1")).map((a) => a.authId),
      [busy.authId],
    );
    assert.deepEqual(await s.cards.authsWithOp(10, "gateway-0"), []);
  });

  it("cards: an operation in flight has its own row, gone once it ends; each refund in flight one reservation row; the old columns in step", async (h) => {
    const s = await seeded(h);
    const a = await approvedAuth(s);
    const lock = op("gateway-0:v1");
    assert.ok(await s.cards.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { op: lock }, 3_000, "lock"));
    assert.deepEqual(await opRows(s, a.authId), [`gateway-0:v1 void 0 | gateway-0:v1`]);
    const ended = { status: "VOIDED", op: null } as const;
    assert.ok(await s.cards.updateAuth(a.authId, { opTxnId: lock.txnId }, ended, 4_000, "apply"));
    assert.deepEqual(await opRows(s, a.authId), [], "the row goes with the lock, and so does the column");
    assert.equal((await s.cards.authById(a.authId))?.op, null);

    const x = await captured(s, 1_000n);
    const [r1, r2] = [refund(x, 300n), refund(x, 200n)];
    for (const r of [r1, r2]) assert.equal((await s.cards.startRefund(r, 3_000)).started, true);
    assert.deepEqual(await reservationRows(s, x.authId), [`${r1.txnId} 300`, `${r2.txnId} 200`, "column 500"]);
    await s.cards.finishRefund(r1.refundId, { status: "COMMITTED" }, 4_000);
    assert.deepEqual(await reservationRows(s, x.authId), [`${r2.txnId} 200`, "column 200"]);
    await s.cards.finishRefund(r2.refundId, { status: "RETRY" }, 4_000);
    assert.deepEqual(await reservationRows(s, x.authId), ["column 0"]);
  });

  it("cards: a lock a previous release wrote (the columns alone) is read and honoured; a row it left behind is not", async (h) => {
    const s = await seeded(h);
    const a = await approvedAuth(s);
    await sql(
      s,
      `UPDATE card_authorizations SET op_txn_id = 'gateway-1:old', op_kind = 'capture', op_amount_minor = 400, op_batch_id = 'b', op_item_index = 2 WHERE auth_id = '${a.authId}'`,
    );
    const old: AuthOperation = {
      txnId: "gateway-1:old",
      kind: "capture",
      amountMinor: 400n,
      batchId: "b",
      itemIndex: 2,
    };
    assert.deepEqual((await s.cards.authById(a.authId))?.op, old);
    assert.deepEqual(
      (await s.cards.authsWithOp(10, "gateway-1")).map((x) => x.op),
      [old],
    );
    assert.equal(await s.cards.updateAuth(a.authId, { opTxnId: "" }, { op: op("gateway-0:n1") }, 3_000, "n1"), false);
    assert.ok(await s.cards.updateAuth(a.authId, { opTxnId: old.txnId }, { op: null }, 3_000, "clear-old"));
    assert.equal((await s.cards.authById(a.authId))?.op, null);

    // This release locks; a previous-release replica clears the columns only (its view of the round's end).
    assert.ok(await s.cards.updateAuth(a.authId, { opTxnId: "" }, { op: op("gateway-0:n2") }, 4_000, "n2"));
    await sql(s, `UPDATE card_authorizations SET op_txn_id = '', op_kind = '' WHERE auth_id = '${a.authId}'`);
    assert.equal((await s.cards.authById(a.authId))?.op, null, "the row left behind is not a lock");
    assert.deepEqual(await s.cards.authsWithOp(10), []);
    assert.ok(await s.cards.updateAuth(a.authId, { opTxnId: "" }, { op: op("gateway-0:n3") }, 5_000, "n3"));
    assert.deepEqual(await opRows(s, a.authId), ["gateway-0:n3 void 0 | gateway-0:n3"], "and is replaced");

    // A refund a previous release started (no reservation row), and one it finished (its row left behind).
    const x = await captured(s, 1_000n);
    const mine = refund(x, 300n);
    assert.equal((await s.cards.startRefund(mine, 3_000)).started, true);
    await sql(s, `UPDATE card_refunds SET status = 'FAILED' WHERE refund_id = '${mine.refundId}'`);
    await sql(s, `UPDATE card_authorizations SET refund_reserved_minor = 0 WHERE auth_id = '${x.authId}'`);
    assert.equal((await s.cards.authById(x.authId))?.refundReservedMinor, 0n, "a finished refund reserves nothing");
    await sql(s, legacyRefundSql(refund(x, 250n)));
    await sql(s, `UPDATE card_authorizations SET refund_reserved_minor = 250 WHERE auth_id = '${x.authId}'`);
    assert.equal((await s.cards.authById(x.authId))?.refundReservedMinor, 250n);
    const left = await s.cards.startRefund(refund(x, 800n), 4_000);
    assert.equal(!left.started && "refundableMinor" in left && left.refundableMinor, 750n, "and counts against it");
  });

  it("cards: the migration backfills operations and reservations from the old columns", async (h) => {
    const s = await seeded(h);
    const c = card();
    await s.cards.insertCard(c);
    const locked = auth(c.cardId, { status: "APPROVED", op: op("gateway-0:c1", "capture", 600n) });
    const legacy = auth(c.cardId, { status: "APPROVED" });
    for (const a of [locked, legacy]) await s.cards.insertAuth(a);
    const x = await captured(s, 1_000n);
    const [r1, r2] = [refund(x, 300n), refund(x, 200n)];
    for (const r of [r1, r2]) assert.equal((await s.cards.startRefund(r, 3_000)).started, true);
    await rewindCardParts(s);
    // Written as the previous release writes: the columns alone.
    await sql(
      s,
      `UPDATE card_authorizations SET op_txn_id = 'gateway-0:l1', op_kind = 'void' WHERE auth_id = '${legacy.authId}'`,
    );
    const after = await h.reopen();
    assert.deepEqual(await opRows(after, locked.authId), ["gateway-0:c1 capture 600 | gateway-0:c1"]);
    assert.deepEqual(await opRows(after, legacy.authId), ["gateway-0:l1 void 0 | gateway-0:l1"]);
    assert.deepEqual((await after.cards.authById(locked.authId))?.op, op("gateway-0:c1", "capture", 600n));
    assert.deepEqual(await reservationRows(after, x.authId), [`${r1.txnId} 300`, `${r2.txnId} 200`, "column 500"]);
    await after.cards.finishRefund(r1.refundId, { status: "COMMITTED" }, 4_000);
    assert.deepEqual(
      [(await after.cards.authById(x.authId))?.refundReservedMinor, await reservationRows(after, x.authId)],
      [200n, [`${r2.txnId} 200`, "column 200"]],
    );
  });

  // ---- webhooks ---------------------------------------------------------------------------

  it("webhooks: an approval through updateAuth writes one authorization.approved event; a re-run opId or a failed compare-and-set writes none", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    const c = card();
    await s.cards.insertCard(c);
    const a = auth(c.cardId);
    assert.equal(await s.cards.insertAuth(a), true, "PENDING: nothing to tell yet");
    assert.equal(
      await s.cards.updateAuth(a.authId, { status: "PENDING" }, { riskScore: 700, riskApproved: true }, 1_500, "risk"),
      true,
      "no status change, no event",
    );
    assert.equal(
      await s.cards.updateAuth(a.authId, { status: "PENDING" }, { status: "APPROVED" }, 2_000, "hold-1"),
      true,
    );
    assert.equal(
      await s.cards.updateAuth(a.authId, { status: "PENDING" }, { status: "APPROVED" }, 2_500, "hold-1"),
      true,
      "the same update re-run after an unknown outcome",
    );
    assert.equal(
      await s.cards.updateAuth(
        a.authId,
        { status: "PENDING" },
        { status: "DECLINED", declineReason: "x" },
        2_500,
        "hold-2",
      ),
      false,
    );
    // alice has no endpoint: her merchant's events are not kept.
    await approvedAuth(s, 2_000, { merchantUserId: "alice", idempotencyKey: "alice-1" });
    assert.equal(await s.webhooks.fanOut(100, 3_000, newDeliveryId), 1);
    assert.equal(await s.webhooks.fanOut(100, 3_000, newDeliveryId), 0, "fanned out once");
    const [d] = await s.webhooks.deliveriesOf(ep.endpointId, 10);
    assert.equal(d?.eventType, "authorization.approved");
    assert.equal(d?.objectId, a.authCode);
    assert.equal(d?.status, "PENDING");
    const [claimed] = await s.webhooks.claimDue("gateway-0", 3_000, 33_000, 10);
    const body = bodyOf(claimed!);
    assert.equal(body.id, claimed!.event.eventId);
    assert.equal(body.type, "authorization.approved");
    assert.equal(body.object_id, a.authCode);
    assert.equal(body.data.status, "APPROVED");
    assert.equal(claimed!.event.createdAtMs, 2_000);
    assert.equal(claimed!.endpoint.endpointId, ep.endpointId);
  });

  it("webhooks: a declined risk decision, an expiry, a failed batch item, a finished batch and a committed refund each write their event once", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    const c = card();
    await s.cards.insertCard(c);
    const risky = auth(c.cardId);
    await s.cards.insertAuth(risky);
    assert.equal(
      await s.cards.recordRisk(
        risky.authId,
        c.cardId,
        0,
        0n,
        { riskApproved: false, status: "DECLINED", declineReason: "risk_declined" },
        2_000,
      ),
      true,
    );
    const lapsing = await approvedAuth(s, 2_000, { expiresAtMs: 5_000 });
    assert.equal(await s.webhooks.fanOut(100, 2_000, newDeliveryId), 2);
    assert.equal((await s.cards.expireDue(6_000, 10)).length, 1);
    assert.equal((await s.cards.expireDue(6_000, 10)).length, 0);
    // A batch: one item failing on bob's authorization, one on a code nobody has, one captured.
    const open = await approvedAuth(s, 6_000);
    assert.equal(await s.webhooks.fanOut(100, 6_000, newDeliveryId), 2, "expired, approved");
    const b: BatchRecord = {
      batchId: `batch_${++n}`,
      merchantUserId: "bob",
      idempotencyKey: "wh-settle",
      fingerprint: "sfp",
      status: "PENDING",
      ownerReplica: "gateway-0",
      createdAtMs: 1,
    };
    const codes = [open.authCode, "NOSUCH", lapsing.authCode];
    const items: BatchItemRecord[] = codes.map((authCode, index) => ({
      batchId: b.batchId,
      index,
      authCode,
      amountMinor: 5_000n,
      status: "",
      reason: "",
      capturedMinor: 0n,
      txnId: "",
    }));
    assert.equal(await s.cards.insertBatch(b, items), true);
    await s.cards.setBatchItem(b.batchId, 0, {
      status: "FAILED",
      reason: "amount_exceeds_authorization",
      capturedMinor: 0n,
      txnId: "",
    });
    await s.cards.setBatchItem(b.batchId, 0, {
      status: "FAILED",
      reason: "amount_exceeds_authorization",
      capturedMinor: 0n,
      txnId: "",
    }); // a re-run
    await s.cards.setBatchItem(b.batchId, 1, {
      status: "FAILED",
      reason: "authorization_not_found",
      capturedMinor: 0n,
      txnId: "",
    });
    await s.cards.setBatchItem(b.batchId, 2, {
      status: "CAPTURED",
      reason: "",
      capturedMinor: 5_000n,
      txnId: "gateway-0:t",
    });
    await s.cards.finishBatch(b.batchId, 7_000);
    await s.cards.finishBatch(b.batchId, 7_500);
    // A refund: captured (capture.succeeded), one refund committed (twice), one failed.
    const cap = await captured(s, 1_000n);
    const r1 = refund(cap, 300n);
    const r2 = refund(cap, 200n);
    for (const r of [r1, r2]) assert.equal((await s.cards.startRefund(r, 8_000)).started, true);
    await s.cards.finishRefund(r1.refundId, { status: "COMMITTED" }, 9_000);
    await s.cards.finishRefund(r1.refundId, { status: "COMMITTED" }, 9_000);
    await s.cards.finishRefund(r2.refundId, { status: "FAILED", reason: "insufficient_funds" }, 9_000);
    assert.equal(await s.webhooks.fanOut(100, 9_000, newDeliveryId), 4);
    assert.deepEqual(await deliveredTypes(s, ep.endpointId), [
      "authorization.declined",
      "authorization.approved",
      "authorization.expired",
      "authorization.approved",
      "capture.failed",
      "settlement.completed",
      "capture.succeeded",
      "refund.succeeded",
    ]);
    // Deliver in order, reading what each says.
    const bodies: ReturnType<typeof bodyOf>[] = [];
    for (let i = 0; i < 10; i++) {
      const claims = await s.webhooks.claimDue("gateway-0", 10_000, 40_000, 100);
      if (claims.length === 0) break;
      for (const c of claims) {
        bodies.push(bodyOf(c));
        assert.equal(
          await s.webhooks.recordAttempt(
            {
              deliveryId: c.delivery.deliveryId,
              attempt: 1,
              atMs: 10_000,
              statusCode: 200,
              latencyMs: 5,
              error: "",
              replica: "gateway-0",
            },
            { status: "DELIVERED" },
          ),
          true,
        );
      }
    }
    const byType = new Map(bodies.map((b) => [b.type, b]));
    assert.equal(bodies.length, 8);
    assert.equal(byType.get("authorization.declined")?.data.decline_reason, "risk_declined");
    assert.equal(byType.get("authorization.expired")?.object_id, lapsing.authCode);
    const failed = byType.get("capture.failed")!;
    assert.equal(failed.object_id, open.authCode);
    assert.equal(failed.data.reason, "amount_exceeds_authorization");
    assert.equal(failed.data.amount_minor, "5000");
    const settled = byType.get("settlement.completed")!;
    assert.equal(settled.object_id, b.batchId);
    assert.deepEqual(
      (settled.data.items as { status: string }[]).map((i) => i.status),
      ["FAILED", "FAILED", "CAPTURED"],
    );
    const refunded = byType.get("refund.succeeded")!;
    assert.equal(refunded.object_id, cap.authCode);
    assert.equal(refunded.data.refund_id, r1.refundId);
    assert.equal((refunded.data.authorization as { refunded_minor: string }).refunded_minor, "300");
  });

  it("webhooks: fan-out makes one delivery per enabled endpoint of the owner subscribed to the type", async (h) => {
    const s = await seeded(h);
    const all = await withEndpoint(s);
    const expiredOnly = await withEndpoint(s, { eventTypes: ["authorization.expired"] });
    const off = await withEndpoint(s);
    assert.equal(await s.webhooks.setEndpointStatus(off.endpointId, "DISABLED"), true);
    assert.equal(await s.webhooks.setEndpointStatus("we_missing", "DISABLED"), false);
    const alices = await withEndpoint(s, { ownerUserId: "alice" });
    assert.deepEqual(
      (await s.webhooks.endpointsOf("bob")).map((e) => e.endpointId),
      [all.endpointId, expiredOnly.endpointId, off.endpointId],
    );
    assert.equal((await s.webhooks.endpointById(off.endpointId))?.status, "DISABLED");
    assert.deepEqual((await s.webhooks.endpointById(expiredOnly.endpointId))?.eventTypes, ["authorization.expired"]);
    await approvedAuth(s);
    await approvedAuth(s);
    assert.equal(await s.webhooks.fanOut(1, 3_000, newDeliveryId), 1, "at most limit events");
    assert.equal(await s.webhooks.fanOut(100, 3_000, newDeliveryId), 1);
    assert.equal(await s.webhooks.fanOut(100, 3_000, newDeliveryId), 0);
    assert.deepEqual(await deliveredTypes(s, all.endpointId), ["authorization.approved", "authorization.approved"]);
    for (const e of [expiredOnly, off, alices])
      assert.deepEqual(await s.webhooks.deliveriesOf(e.endpointId, 10), [], e.endpointId);
    // Deleting an endpoint takes its secrets and deliveries with it.
    assert.equal(await s.webhooks.deleteEndpoint(all.endpointId), true);
    assert.equal(await s.webhooks.deleteEndpoint(all.endpointId), false);
    assert.equal(await s.webhooks.endpointById(all.endpointId), undefined);
    assert.deepEqual(await s.webhooks.deliveriesOf(all.endpointId, 10), []);
    assert.deepEqual(await s.webhooks.signingSecrets(all.endpointId, 3_000), []);
  });

  it("webhooks: claimDue takes due deliveries not under a live claim, oldest first, one at a time per object", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    const a = await approvedAuth(s, 2_000);
    assert.equal(
      await s.cards.updateAuth(a.authId, { status: "APPROVED" }, { status: "VOIDED" }, 2_100, "void-1"),
      true,
    );
    const b = await approvedAuth(s, 2_200);
    assert.equal(await s.webhooks.fanOut(100, 3_000, newDeliveryId), 3);
    assert.deepEqual(await s.webhooks.claimDue("r1", 2_999, 40_000, 10), [], "not due yet");
    const first = await s.webhooks.claimDue("r1", 3_000, 40_000, 10);
    assert.deepEqual(
      first.map((c) => [c.delivery.objectId, c.delivery.eventType]),
      [
        [a.authCode, "authorization.approved"],
        [b.authCode, "authorization.approved"],
      ],
      "a's void waits for its approval",
    );
    assert.ok(first[0]!.delivery.eventSeq < first[1]!.delivery.eventSeq);
    assert.deepEqual(await s.webhooks.claimDue("r2", 4_000, 40_000, 10), [], "claimed by r1 meanwhile");
    const [ca, cb] = first;
    const at = (c: ClaimedDelivery, replica: string, atMs: number, statusCode: number) => ({
      deliveryId: c.delivery.deliveryId,
      attempt: c.delivery.attempts + 1,
      atMs,
      statusCode,
      latencyMs: 10,
      error: statusCode === 200 ? "" : `HTTP ${statusCode}`,
      replica,
    });
    assert.equal(await s.webhooks.recordAttempt(at(ca!, "r1", 4_000, 200), { status: "DELIVERED" }), true);
    assert.equal(
      await s.webhooks.recordAttempt(at(cb!, "r1", 4_000, 503), { status: "PENDING", nextAttemptAtMs: 9_000 }),
      true,
    );
    const voided = await s.webhooks.claimDue("r2", 5_000, 40_000, 10);
    assert.deepEqual(
      voided.map((c) => c.delivery.eventType),
      ["authorization.voided"],
      "a's approval delivered: its void goes; b's retry is not due",
    );
    const retry = await s.webhooks.claimDue("r2", 9_000, 20_000, 10);
    assert.deepEqual(
      retry.map((c) => c.delivery.objectId),
      [b.authCode],
    );
    assert.equal(retry[0]!.delivery.attempts, 1);
    assert.equal(retry[0]!.delivery.lastStatusCode, 503);
    // r2's claim of the retry runs out at 20 000 (of the void at 40 000): r3 may claim the retry then, and r2's late answer is not recorded.
    assert.deepEqual(await s.webhooks.claimDue("r3", 19_999, 60_000, 10), []);
    const taken = await s.webhooks.claimDue("r3", 20_000, 60_000, 10);
    assert.deepEqual(
      taken.map((c) => c.delivery.deliveryId),
      [retry[0]!.delivery.deliveryId],
    );
    assert.equal(
      await s.webhooks.recordAttempt(at(retry[0]!, "r2", 9_000, 200), { status: "DELIVERED" }),
      false,
      "r2 lost its claim",
    );
    assert.equal((await s.webhooks.deliveryById(retry[0]!.delivery.deliveryId))?.status, "PENDING");
    assert.equal((await s.webhooks.attemptsOf(retry[0]!.delivery.deliveryId)).length, 1, "only r1's attempt");
    assert.deepEqual(ep.endpointId, taken[0]!.endpoint.endpointId);
  });

  it("webhooks: an attempt is recorded only while its claim holds; retries, failure, redelivery and the delivery log", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    await approvedAuth(s);
    await s.webhooks.fanOut(100, 3_000, newDeliveryId);
    const [c] = await s.webhooks.claimDue("r1", 3_000, 10_000, 10);
    const id = c!.delivery.deliveryId;
    const attempt = (replica: string, atMs: number, latencyMs: number, statusCode: number, error = "") => ({
      deliveryId: id,
      attempt: 1,
      atMs,
      statusCode,
      latencyMs,
      error,
      replica,
    });
    assert.equal(
      await s.webhooks.recordAttempt(attempt("r1", 9_000, 2_000, 200), { status: "DELIVERED" }),
      false,
      "answered after the claim ran out",
    );
    assert.equal(
      await s.webhooks.recordAttempt(attempt("r9", 4_000, 10, 200), { status: "DELIVERED" }),
      false,
      "not r9's claim",
    );
    assert.deepEqual(await s.webhooks.attemptsOf(id), []);
    assert.equal((await s.webhooks.deliveryById(id))?.attempts, 0);
    assert.equal(
      await s.webhooks.recordAttempt(attempt("r1", 4_000, 30, 500, "HTTP 500"), {
        status: "PENDING",
        nextAttemptAtMs: 20_000,
      }),
      true,
    );
    assert.equal(
      await s.webhooks.recordAttempt(attempt("r1", 4_000, 30, 500, "HTTP 500"), {
        status: "PENDING",
        nextAttemptAtMs: 20_000,
      }),
      false,
      "the claim ends with its attempt",
    );
    let d = (await s.webhooks.deliveryById(id))!;
    assert.deepEqual(
      [d.status, d.attempts, d.nextAttemptAtMs, d.lastStatusCode, d.lastError],
      ["PENDING", 1, 20_000, 500, "HTTP 500"],
    );
    assert.equal(await s.webhooks.redeliver(id, 5_000), false, "PENDING already");
    await s.webhooks.claimDue("r1", 20_000, 30_000, 10);
    assert.equal(
      await s.webhooks.recordAttempt(attempt("r1", 20_000, 5_000, 0, "timeout"), { status: "FAILED" }),
      true,
    );
    d = (await s.webhooks.deliveryById(id))!;
    assert.deepEqual([d.status, d.attempts, d.lastStatusCode, d.lastError], ["FAILED", 2, 0, "timeout"]);
    assert.deepEqual(await s.webhooks.claimDue("r1", 99_000, 130_000, 10), [], "a FAILED delivery is not claimed");
    assert.equal(await s.webhooks.redeliver(id, 40_000), true);
    assert.equal(await s.webhooks.redeliver("wd_missing", 40_000), false);
    d = (await s.webhooks.deliveryById(id))!;
    assert.deepEqual([d.status, d.attempts, d.nextAttemptAtMs], ["PENDING", 2, 40_000], "its attempts stay");
    const [again] = await s.webhooks.claimDue("r2", 40_000, 50_000, 10);
    assert.equal(again?.delivery.deliveryId, id);
    assert.equal(await s.webhooks.recordAttempt(attempt("r2", 40_000, 12, 204), { status: "DELIVERED" }), true);
    d = (await s.webhooks.deliveryById(id))!;
    assert.deepEqual(
      [d.status, d.attempts, d.deliveredAtMs, d.lastStatusCode, d.lastError],
      ["DELIVERED", 3, 40_012, 204, ""],
    );
    assert.deepEqual(
      (await s.webhooks.attemptsOf(id)).map((x) => [x.attempt, x.statusCode, x.latencyMs, x.error, x.replica]),
      [
        [1, 500, 30, "HTTP 500", "r1"],
        [2, 0, 5_000, "timeout", "r1"],
        [3, 204, 12, "", "r2"],
      ],
    );
    assert.equal(await s.webhooks.redeliver(id, 60_000), true, "a delivered one may be sent again");
    assert.equal((await s.webhooks.deliveryById(id))?.deliveredAtMs, 0);
    // The log pages newest first.
    await approvedAuth(s);
    await approvedAuth(s);
    await s.webhooks.fanOut(100, 3_000, newDeliveryId);
    const page1 = await s.webhooks.deliveriesOf(ep.endpointId, 2);
    assert.equal(page1.length, 2);
    assert.ok(page1[0]!.eventSeq > page1[1]!.eventSeq);
    const page2 = await s.webhooks.deliveriesOf(ep.endpointId, 2, page1[1]!.eventSeq);
    assert.deepEqual(
      page2.map((x) => x.deliveryId),
      [id],
    );
  });

  it("webhooks: concurrent fan-outs and claims (two replicas on a shared store) never make or hand out a delivery twice", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    const other = h.another ? await h.another() : s;
    for (let i = 0; i < 24; i++) await approvedAuth(s);
    const fanned = await Promise.all([s, other, s, other].map((x) => x.webhooks.fanOut(8, 3_000, newDeliveryId)));
    assert.equal(fanned.reduce((a, b) => a + b, 0) + (await s.webhooks.fanOut(100, 3_000, newDeliveryId)), 24);
    assert.equal((await s.webhooks.deliveriesOf(ep.endpointId, 100)).length, 24, "one delivery per event");
    const claims = await Promise.all(
      [s, other, s, other, s, other].map((x, i) => x.webhooks.claimDue(`r${i}`, 3_000, 60_000, 5)),
    );
    const ids = claims.flat().map((c) => c.delivery.deliveryId);
    assert.equal(new Set(ids).size, ids.length, "no delivery claimed twice");
    assert.equal(ids.length, 24, "6 x 5 claims cover the 24");
  });

  it("webhooks: a rolled secret keeps signing through its overlap, then goes", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s);
    const [first] = await s.webhooks.signingSecrets(ep.endpointId, 2_000);
    assert.equal(first?.expiresAtMs, undefined);
    await s.webhooks.rollSecret(
      ep.endpointId,
      { endpointId: ep.endpointId, secret: "whsec_second", createdAtMs: 2_000, expiresAtMs: undefined },
      5_000,
      2_000,
    );
    assert.deepEqual(
      (await s.webhooks.signingSecrets(ep.endpointId, 2_000)).map((x) => [x.secret, x.expiresAtMs]),
      [
        ["whsec_second", undefined],
        [first!.secret, 5_000],
      ],
      "the current one first, then the rolled-out one",
    );
    assert.deepEqual(
      (await s.webhooks.signingSecrets(ep.endpointId, 5_000)).map((x) => x.secret),
      ["whsec_second"],
      "past its overlap",
    );
    await s.webhooks.rollSecret(
      ep.endpointId,
      { endpointId: ep.endpointId, secret: "whsec_third", createdAtMs: 6_000, expiresAtMs: undefined },
      9_000,
      6_000,
    );
    assert.deepEqual(
      (await s.webhooks.signingSecrets(ep.endpointId, 1)).map((x) => x.secret),
      ["whsec_third", "whsec_second"],
      "the expired first one was dropped by the roll",
    );
  });

  it("webhooks: transfer.committed for committed transfers whose payee's owner has a subscribed endpoint, once each, also when one commits later", async (h) => {
    const s = await seeded(h);
    const ep = await withEndpoint(s, { eventTypes: ["transfer.committed"] });
    await withEndpoint(s, { ownerUserId: "alice", eventTypes: ["authorization.approved"] });
    const toBob = newTxn({ idempotencyKey: "tb" });
    const toAlice = newTxn({
      idempotencyKey: "ta",
      fromAccountId: "bank-b/2001",
      toAccountId: "bank-a/1001",
      callerUserId: "bob",
    });
    const aborted = newTxn({ idempotencyKey: "tx" });
    const later = newTxn({ idempotencyKey: "tl", amountMinor: 7n });
    for (const t of [toBob, toAlice, aborted, later]) await s.log.claim(t);
    await s.log.decide(decideInput(toBob.txnId, "COMMIT"));
    await s.log.decide(decideInput(toAlice.txnId, "COMMIT"));
    await s.log.decide(decideInput(aborted.txnId, "ABORT"));
    assert.equal(await s.webhooks.materializeTransferEvents(100, transferEvent), 1);
    assert.equal(await s.webhooks.materializeTransferEvents(100, transferEvent), 0, "once");
    await s.log.decide(decideInput(later.txnId, "COMMIT", { nowMs: 3_000 }));
    assert.equal(await s.webhooks.materializeTransferEvents(100, transferEvent), 1);
    assert.equal(await s.webhooks.fanOut(100, 4_000, newDeliveryId), 2);
    const claims = await s.webhooks.claimDue("gateway-0", 4_000, 40_000, 10);
    assert.deepEqual(
      claims.map((c) => [c.delivery.eventType, c.delivery.objectId, c.endpoint.endpointId]),
      [
        ["transfer.committed", toBob.txnId, ep.endpointId],
        ["transfer.committed", later.txnId, ep.endpointId],
      ],
    );
    const body = bodyOf(claims[1]!);
    assert.equal(body.data.amount_minor, "7");
    assert.equal(body.data.to_account_id, "bank-b/2001");
    assert.equal(claims[1]!.event.ownerUserId, "bob");
  });

  it("webhooks: stats count PENDING deliveries to enabled endpoints and the age of the oldest one's event", async (h) => {
    const s = await seeded(h);
    assert.deepEqual(await s.webhooks.stats(10_000), { backlog: 0, oldestPendingAgeMs: 0 });
    const ep = await withEndpoint(s);
    const off = await withEndpoint(s);
    await approvedAuth(s, 2_000);
    await approvedAuth(s, 4_000);
    await s.webhooks.fanOut(100, 5_000, newDeliveryId);
    await s.webhooks.setEndpointStatus(off.endpointId, "DISABLED");
    assert.deepEqual(await s.webhooks.stats(10_000), { backlog: 2, oldestPendingAgeMs: 8_000 });
    const [c] = await s.webhooks.claimDue("r1", 10_000, 20_000, 1);
    assert.equal(c?.endpoint.endpointId, ep.endpointId);
    await s.webhooks.recordAttempt(
      {
        deliveryId: c!.delivery.deliveryId,
        attempt: 1,
        atMs: 10_000,
        statusCode: 200,
        latencyMs: 1,
        error: "",
        replica: "r1",
      },
      { status: "DELIVERED" },
    );
    assert.deepEqual(await s.webhooks.stats(10_000), { backlog: 1, oldestPendingAgeMs: 6_000 });
    await s.webhooks.setEndpointStatus(off.endpointId, "ENABLED");
    assert.deepEqual(
      await s.webhooks.stats(10_000),
      { backlog: 3, oldestPendingAgeMs: 8_000 },
      "a re-enabled endpoint's deliveries count again",
    );
  });

  // ---- durability -----------------------------------------------------------------------

  it("everything acknowledged survives closing and reopening the store", async (h) => {
    const s = await seeded(h);
    const t = newTxn({ idempotencyKey: "durable" });
    await s.log.claim(t);
    await s.log.decide(decideInput(t.txnId, "COMMIT"));
    await s.sessions.create({ tokenHash: "tok", userId: "alice", expiresAtMs: 10_000 }, 1);
    const c = card();
    await s.cards.insertCard(c);
    const ep = await withEndpoint(s);
    await approvedAuth(s);
    const reopened = await h.reopen();
    assert.equal((await reopened.webhooks.endpointById(ep.endpointId))?.url, ep.url);
    assert.equal(await reopened.webhooks.fanOut(10, 3_000, newDeliveryId), 1, "the outbox event survives");
    assert.equal((await reopened.log.findTxn(t.txnId))?.status, "COMMITTED");
    const c2 = await reopened.log.claim(newTxn({ idempotencyKey: "durable" }));
    assert.equal(!c2.claimed && c2.owner.txnId, t.txnId, "the key's owner survives");
    assert.equal((await reopened.sessions.find("tok"))?.userId, "alice");
    assert.equal((await reopened.cards.cardByPanHmac(c.panHmac))?.cardId, c.cardId);
    assert.equal(await reopened.seeded(), true);
  });
}

/** Background writes (acks) become visible shortly after; polls until `check` passes (bounded). */
export async function eventually(check: () => Promise<void>, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
