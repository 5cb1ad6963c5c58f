// Card payments' state machine: the real coordinator with scripted banks, a
// fake credit bureau, a manual clock, and the real card store on an in-memory
// SQLite database (its unique indexes and CHECKs are part of the rules).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { openDb } from "../store/db.js";
import { createSqliteCardStore } from "../store/cards-store.js";
import { createCardHasher } from "./cards-crypto.js";
import type { AuthRecord, CardStore, CreditReportResult } from "./cards-ports.js";
import { createCards, type AuthorizeInput, type Cards, type IssuedCard } from "./cards.js";
import { createCoordinator } from "./coordinator.js";
import { createDecidedFeed } from "./decided-feed.js";
import { createFakeBanks, createManualClock, createMemoryDirectory, createMemoryLog, type FakeBanks, type ManualClock, type MemoryLog } from "./fakes.js";
import { binOfBank, luhnValid } from "./luhn.js";
import type { DirectoryAccount, Result } from "./model.js";
import type { Vote } from "./ports.js";

const ACCOUNTS: DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "bob", currency: "USD" },
  { accountId: "bank-a/1003", bank: "bank-a", ownerUserId: "alice", currency: "EUR" },
  { accountId: "bank-b/2003", bank: "bank-b", ownerUserId: "shop", currency: "USD" },
  { accountId: "bank-a/1009", bank: "bank-a", ownerUserId: "shop2", currency: "USD" },
];
const DAY_MS = 86_400_000;
const TTL_MS = 7 * DAY_MS;

interface Harness {
  cards: Cards;
  store: CardStore;
  banks: FakeBanks;
  log: MemoryLog;
  clock: ManualClock;
  bureau: { scores: Map<string, number>; down: boolean; calls: number };
  lines: string[];
  /** A second process on the same store and log (a restart). */
  restart(): Cards;
}

function setup(): Harness {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = createMemoryLog(directory);
  const banks = createFakeBanks();
  const clock = createManualClock(Date.UTC(2026, 0, 15, 12));
  const store = createSqliteCardStore(openDb(":memory:"));
  const hasher = createCardHasher(randomBytes(32));
  const bureau = { scores: new Map([["alice", 780], ["bob", 650]]), down: false, calls: 0 };
  const lines: string[] = [];
  const logger = {
    info: (f: object, m: string) => void lines.push(JSON.stringify({ ...f, m }, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))),
    warn: (f: object, m: string) => void lines.push(JSON.stringify({ ...f, m })),
    error: (f: object, m: string) => void lines.push(JSON.stringify({ ...f, m })),
  };
  const make = () => {
    const coordinator = createCoordinator({
      replica: "gateway-0",
      log,
      directory,
      participants: banks,
      clock,
      faults: { hit: () => {} },
      feed: createDecidedFeed(),
      logger,
      prepareTimeoutMs: 10_000,
      commitTimeoutMs: 5_000,
      redriveIntervalMs: 1_000,
      redriveBackoffMaxMs: 8_000,
    });
    return createCards({
      store,
      rounds: coordinator,
      directory,
      bureau: {
        async fetch(userId): Promise<CreditReportResult> {
          bureau.calls++;
          if (bureau.down) return { ok: false, reason: "bureau_unavailable", message: "down" };
          const score = bureau.scores.get(userId);
          return score === undefined ? { ok: false, reason: "user_not_found", message: "no report" } : { ok: true, report: { userId, score, delinquencies: 0 } };
        },
      },
      hasher,
      clock,
      logger,
      risk: { scoreMin: 600, reviewAmountMinor: 50_000n, reviewScoreMin: 700, dailySpendMaxMinor: 100_000n },
      authHoldTtlMs: TTL_MS,
    });
  };
  return { cards: make(), store, banks, log, clock, bureau, lines, restart: make };
}

function value<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(`expected ok, got ${r.reason}: ${r.message}`);
  return r.value;
}

function reason(r: Result<unknown>): string {
  assert.ok(!r.ok, "expected a failure");
  return r.reason;
}

function issue(h: Harness, over: Partial<Parameters<Cards["issueCard"]>[0]> = {}): IssuedCard {
  return value(h.cards.issueCard({ accountId: "bank-a/1001", cardholderName: "Alice", number: "", expMonth: 0, expYear: 0, cvc: "", ...over }));
}

let keys = 0;
function authReq(card: IssuedCard, over: Partial<AuthorizeInput> = {}): AuthorizeInput {
  return {
    idempotencyKey: `key-${++keys}`,
    card: { number: card.number, expMonth: card.card.expMonth, expYear: card.card.expYear, cvc: card.cvc },
    amountMinor: 2_500n,
    currency: "USD",
    merchantReference: "order-1",
    merchantAccountId: "bank-b/2003",
    ...over,
  };
}

async function approve(h: Harness, card: IssuedCard, over: Partial<AuthorizeInput> = {}): Promise<AuthRecord> {
  const out = await h.cards.authorize("shop", authReq(card, over));
  return value(out.result);
}

test("issuing: a generated number has the bank's BIN and passes Luhn; only hashes and the last 4 are stored", () => {
  const h = setup();
  const c = issue(h);
  assert.equal(c.number.length, 16);
  assert.ok(c.number.startsWith(binOfBank("bank-a")));
  assert.ok(luhnValid(c.number));
  assert.match(c.cvc, /^[0-9]{3}$/);
  assert.deepEqual([c.card.expMonth, c.card.expYear], [1, 2029], "three years from now");
  const stored = JSON.stringify(c.card);
  assert.ok(!stored.includes(c.number) && !stored.includes(c.number.slice(0, 12)), "the number is not stored");
  assert.ok(!Object.values(c.card).includes(c.cvc), "the CVC is not stored");
  assert.equal(c.card.last4, c.number.slice(-4));
  assert.equal(h.store.cardByPanHmac(c.card.panHmac)?.cardId, c.card.cardId);
});

test("issuing: a given test number must pass Luhn and be unique; the account must exist", () => {
  const h = setup();
  issue(h, { number: "4242 4242 4242 4242", cvc: "123", expMonth: 12, expYear: 2030 });
  assert.equal(reason(h.cards.issueCard({ accountId: "bank-a/1002", cardholderName: "", number: "4242424242424242", expMonth: 0, expYear: 0, cvc: "" })), "already_exists");
  assert.equal(reason(h.cards.issueCard({ accountId: "bank-a/1002", cardholderName: "", number: "4242424242424241", expMonth: 0, expYear: 0, cvc: "" })), "invalid_number");
  assert.equal(reason(h.cards.issueCard({ accountId: "bank-a/9999", cardholderName: "", number: "", expMonth: 0, expYear: 0, cvc: "" })), "account_not_found");
  assert.equal(reason(h.cards.issueCard({ accountId: "bank-a/1002", cardholderName: "", number: "", expMonth: 13, expYear: 2030, cvc: "" })), "invalid_argument");
  assert.equal(reason(h.cards.issueCard({ accountId: "bank-a/1002", cardholderName: "", number: "", expMonth: 0, expYear: 0, cvc: "12" })), "invalid_argument");
});

test("authorize: validation declines are not stored, so the key stays free", async () => {
  const h = setup();
  const card = issue(h);
  const expired = issue(h, { expMonth: 12, expYear: 2025 });
  const key = "same-key";
  const cases: [Partial<AuthorizeInput>, string][] = [
    [{ card: { ...authReq(card).card, number: card.number.slice(0, -1) + String((Number(card.number.at(-1)) + 1) % 10) } }, "invalid_number"],
    [{ card: { ...authReq(card).card, expMonth: 12, expYear: 2025 } }, "expired_card"],
    [{ card: authReq(expired).card }, "expired_card"],
    [{ card: { ...authReq(card).card, cvc: card.cvc === "000" ? "001" : "000" } }, "incorrect_cvc"],
    [{ card: { ...authReq(card).card, number: "4242424242424242" } }, "card_not_found"],
    [{ currency: "EUR" }, "currency_mismatch"],
    [{ merchantAccountId: "bank-a/1009" }, "not_account_owner"],
    [{ amountMinor: 0n }, "invalid_amount"],
  ];
  for (const [over, want] of cases) {
    const out = await h.cards.authorize("shop", authReq(card, { ...over, idempotencyKey: key }));
    assert.equal(reason(out.result), want, JSON.stringify(over, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
  }
  assert.equal(h.banks.prepares.length, 0, "no bank was asked");
  assert.equal(h.bureau.calls, 0, "no report was fetched");
  const a = await approve(h, card, { idempotencyKey: key });
  assert.equal(a.status, "APPROVED");
});

test("authorize: approved with a 6-character code; the hold is an AUTH_HOLD leg named by the authorization; a replay answers from the store", async () => {
  const h = setup();
  const card = issue(h);
  const req = authReq(card, { amountMinor: 4_200n });
  const a = value((await h.cards.authorize("shop", req)).result);
  assert.match(a.authCode, /^[A-Z0-9]{6}$/);
  assert.deepEqual([a.status, a.amountMinor, a.riskScore, a.riskApproved, a.riskRule], ["APPROVED", 4_200n, 780, true, "score>=600"]);
  assert.equal(a.expiresAtMs, h.clock.nowMs() + TTL_MS);
  assert.equal(h.banks.prepares.length, 1);
  const p = h.banks.prepares[0]!;
  assert.equal(p.bank, "bank-a");
  assert.deepEqual(p.legs, [{ accountId: "bank-a/1001", direction: "AUTH_HOLD", amountMinor: 4_200n, currency: "USD", ownerUserId: "alice", holdId: a.authId, holdExpiresAtMs: a.expiresAtMs }]);
  assert.deepEqual(h.banks.commits.map((c) => c.bank), ["bank-a"]);

  const again = await h.cards.authorize("shop", req);
  assert.equal(again.replayed, true);
  assert.equal(value(again.result).authCode, a.authCode);
  assert.equal(h.banks.prepares.length, 1, "no second hold");
  assert.equal(h.bureau.calls, 1, "no second report");
  assert.equal(reason((await h.cards.authorize("shop", { ...req, amountMinor: 4_201n })).result), "idempotency_key_reused");
  // The key is the merchant's: another merchant's same key is another request.
  assert.equal(value((await h.cards.authorize("shop2", { ...req, merchantAccountId: "bank-a/1009" })).result).status, "APPROVED");
  // No log line carries the number or the CVC.
  for (const line of h.lines) assert.ok(!line.includes(card.number) && !line.includes(`"${card.cvc}"`), line);
});

test("risk rule: low score and large amounts decline (stored, replayed without a new report); the daily limit is per card", async () => {
  const h = setup();
  const bobCard = issue(h, { accountId: "bank-a/1002" }); // bob's score is 650
  const small = await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }));
  assert.equal(value(small.result).riskRule, "score>=600");
  const large = authReq(bobCard, { amountMinor: 50_000n });
  const declined = await h.cards.authorize("shop", large);
  assert.equal(reason(declined.result), "risk_declined");
  assert.ok(!declined.result.ok && declined.result.metadata?.risk_rule === "amount>=50000:score<700");
  const calls = h.bureau.calls;
  assert.equal(reason((await h.cards.authorize("shop", large)).result), "risk_declined", "the decline is the key's stored outcome");
  assert.equal(h.bureau.calls, calls);

  h.bureau.scores.set("bob", 550);
  assert.equal(reason((await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }))).result), "risk_declined");
  h.bureau.scores.delete("bob");
  assert.equal(reason((await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }))).result), "risk_declined", "no credit report");

  const alice = issue(h);
  await approve(h, alice, { amountMinor: 60_000n });
  await approve(h, alice, { amountMinor: 40_000n }); // exactly the daily maximum
  const over = await h.cards.authorize("shop", authReq(alice, { amountMinor: 1n }));
  assert.equal(reason(over.result), "spend_limit_exceeded");
  // A void gives the room back; the next UTC day starts fresh.
  const other = issue(h, { accountId: "bank-a/1001" });
  const a = await approve(h, other, { amountMinor: 100_000n });
  assert.equal(reason((await h.cards.authorize("shop", authReq(other, { amountMinor: 1n }))).result), "spend_limit_exceeded");
  value(await h.cards.voidAuthorization("shop", a.authCode));
  await approve(h, other, { amountMinor: 1n });
  h.clock.advance(DAY_MS);
  await approve(h, alice, { amountMinor: 100_000n });
});

test("bureau down: bureau_unavailable and nothing stored; the same key succeeds once it is back", async () => {
  const h = setup();
  const card = issue(h);
  const req = authReq(card);
  h.bureau.down = true;
  assert.equal(reason((await h.cards.authorize("shop", req)).result), "bureau_unavailable");
  assert.equal(h.banks.prepares.length, 0);
  h.bureau.down = false;
  assert.equal(value((await h.cards.authorize("shop", req)).result).status, "APPROVED");
});

test("the issuing bank: NO insufficient_funds is a stored decline; an unreachable bank frees the key for a retry", async () => {
  const h = setup();
  const card = issue(h);
  h.banks.onPrepare = async (): Promise<Vote> => ({ vote: "NO", reason: "insufficient_funds" });
  const req = authReq(card);
  assert.equal(reason((await h.cards.authorize("shop", req)).result), "insufficient_funds");
  assert.equal(reason((await h.cards.authorize("shop", req)).result), "insufficient_funds");
  assert.equal(h.banks.prepares.length, 1, "the decline is replayed, not retried");
  h.banks.onPrepare = async (): Promise<Vote> => ({ vote: "NO", reason: "participant_unavailable" });
  const req2 = authReq(card);
  assert.equal(reason((await h.cards.authorize("shop", req2)).result), "participant_unavailable");
  h.banks.onPrepare = async (): Promise<Vote> => ({ vote: "YES" });
  const a = value((await h.cards.authorize("shop", req2)).result);
  assert.equal(a.status, "APPROVED");
  // The retry placed a hold under a new authorization id (the aborted attempt's hold id stays dead at the bank).
  const [first, second] = h.banks.prepares.slice(-2);
  assert.notEqual(first!.legs[0]!.holdId, second!.legs[0]!.holdId);
});

test("settlement: partial capture is a CAPTURE leg at the issuer plus a CREDIT at the merchant's bank; per-item failures; the batch replays", async () => {
  const h = setup();
  const card = issue(h);
  const a = await approve(h, card, { amountMinor: 3_000n });
  const b = await approve(h, card, { amountMinor: 1_000n });
  const voided = await approve(h, card, { amountMinor: 500n });
  value(await h.cards.voidAuthorization("shop", voided.authCode));
  const theirs = value((await h.cards.authorize("shop2", authReq(card, { merchantAccountId: "bank-a/1009" }))).result);
  const prepares = h.banks.prepares.length;
  const items = [
    { authCode: a.authCode, amountMinor: 1_200n },
    { authCode: b.authCode, amountMinor: 1_001n },
    { authCode: "ZZZZZZ", amountMinor: 1n },
    { authCode: voided.authCode, amountMinor: 1n },
    { authCode: theirs.authCode, amountMinor: 1n },
    { authCode: a.authCode, amountMinor: 1n },
  ];
  const s = value((await h.cards.settleBatch("shop", "batch-1", items)).result);
  assert.deepEqual(
    s.results.map((r) => [r.status, r.reason, r.capturedMinor]),
    [
      ["CAPTURED", "", 1_200n],
      ["FAILED", "amount_exceeds_authorization", 0n],
      ["FAILED", "authorization_not_found", 0n],
      ["FAILED", "authorization_voided", 0n],
      ["FAILED", "authorization_not_found", 0n],
      ["FAILED", "already_captured", 0n],
    ],
  );
  assert.equal(h.banks.prepares.length, prepares + 2, "one round, two banks");
  const legs = h.banks.prepares.slice(-2).map((p) => [p.bank, p.legs.map((l) => [l.direction, l.accountId, l.amountMinor, l.holdId])]);
  assert.deepEqual(legs, [
    ["bank-a", [["CAPTURE", "bank-a/1001", 1_200n, a.authId]]],
    ["bank-b", [["CREDIT", "bank-b/2003", 1_200n, undefined]]],
  ]);
  const got = value(h.cards.getAuthorization("shop", a.authCode));
  assert.deepEqual([got.status, got.capturedMinor], ["CAPTURED", 1_200n]);

  const replay = await h.cards.settleBatch("shop", "batch-1", items);
  assert.equal(replay.replayed, true);
  assert.deepEqual(value(replay.result), s);
  assert.equal(h.banks.prepares.length, prepares + 2, "a replay moves nothing");
  assert.equal(reason((await h.cards.settleBatch("shop", "batch-1", items.slice(1))).result), "idempotency_key_reused");
  const later = value((await h.cards.settleBatch("shop", "batch-2", [{ authCode: a.authCode, amountMinor: 1n }, { authCode: b.authCode, amountMinor: 1_000n }])).result);
  assert.deepEqual(later.results.map((r) => r.reason || r.status), ["already_captured", "CAPTURED"]);
});

test("settlement runs different authorizations concurrently; the same code repeated still captures once, at its first item", async () => {
  const h = setup();
  const card = issue(h);
  const auths = [];
  for (let i = 0; i < 20; i++) auths.push(await approve(h, card, { amountMinor: 100n }));
  // Every prepare waits until the test lets it go: count how many are in flight at once.
  let inFlight = 0;
  let peak = 0;
  const waiting: Array<() => void> = [];
  h.banks.onPrepare = () => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    return new Promise((resolve) =>
      waiting.push(() => {
        inFlight--;
        resolve({ vote: "YES" });
      }),
    );
  };
  const dup = auths[3]!.authCode;
  const items = [...auths.map((a) => ({ authCode: a.authCode, amountMinor: 60n })), { authCode: dup, amountMinor: 1n }, { authCode: dup, amountMinor: 2n }];
  const settling = h.cards.settleBatch("shop", "concurrent", items);
  // Each capture prepares at the card's bank and the merchant's: 40 prepares.
  for (let turn = 0; turn < 1_000 && waiting.length < 40; turn++) await new Promise((r) => setImmediate(r));
  assert.equal(peak, 40, "all 20 authorizations were being captured at once");
  while (waiting.length > 0 || inFlight > 0) {
    waiting.splice(0).forEach((go) => go());
    await new Promise((r) => setImmediate(r));
  }
  const s = value((await settling).result);
  assert.deepEqual(
    s.results.map((r) => r.reason || r.status),
    [...auths.map(() => "CAPTURED"), "already_captured", "already_captured"],
  );
  assert.equal(value(h.cards.getAuthorization("shop", dup)).capturedMinor, 60n, "the first item naming the code captured");
});

test("void: a RELEASE leg; then capture says authorization_voided; a captured one cannot be voided", async () => {
  const h = setup();
  const card = issue(h);
  const a = await approve(h, card);
  const v = value(await h.cards.voidAuthorization("shop", a.authCode));
  assert.equal(v.status, "VOIDED");
  assert.deepEqual(h.banks.prepares.at(-1)!.legs.map((l) => [l.direction, l.holdId]), [["RELEASE", a.authId]]);
  assert.equal(value(await h.cards.voidAuthorization("shop", a.authCode)).status, "VOIDED", "voiding twice is harmless");
  const b = await approve(h, card);
  value((await h.cards.settleBatch("shop", "b", [{ authCode: b.authCode, amountMinor: b.amountMinor }])).result);
  assert.equal(reason(await h.cards.voidAuthorization("shop", b.authCode)), "already_captured");
  assert.equal(reason(await h.cards.voidAuthorization("shop2", b.authCode)), "authorization_not_found");
});

test("expiry: past expires_at the authorization is EXPIRED (sweep or read) and cannot be captured; the bank's own expiry counts too", async () => {
  const h = setup();
  const card = issue(h);
  const a = await approve(h, card);
  const b = await approve(h, card);
  const c = await approve(h, card);
  h.clock.advance(TTL_MS - 1);
  assert.equal(h.cards.expireDue(), 0);
  h.clock.advance(1);
  assert.equal(h.cards.expireDue(), 3);
  assert.equal(value(h.cards.getAuthorization("shop", a.authCode)).status, "EXPIRED");
  const s = value((await h.cards.settleBatch("shop", "late", [{ authCode: b.authCode, amountMinor: 1n }])).result);
  assert.deepEqual(s.results.map((r) => r.reason), ["authorization_expired"]);
  assert.equal(reason(await h.cards.voidAuthorization("shop", c.authCode)), "authorization_expired");

  // The bank expired the hold first (its clock): the capture's NO records the expiry.
  const d = await approve(h, card);
  h.banks.onPrepare = async (call): Promise<Vote> => (call.legs.some((l) => l.direction === "CAPTURE") ? { vote: "NO", reason: "authorization_expired" } : { vote: "YES" });
  const s2 = value((await h.cards.settleBatch("shop", "late-2", [{ authCode: d.authCode, amountMinor: 1n }])).result);
  assert.deepEqual(s2.results.map((r) => [r.status, r.reason]), [["FAILED", "authorization_expired"]]);
  assert.equal(value(h.cards.getAuthorization("shop", d.authCode)).status, "EXPIRED");
});

test("refunds: concurrent refunds never exceed the captured amount; an aborted refund releases its reservation", async () => {
  const h = setup();
  const card = issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  value((await h.cards.settleBatch("shop", "s", [{ authCode: a.authCode, amountMinor: 1_000n }])).result);
  assert.equal(reason((await h.cards.refund("shop", "r0", (await approve(h, card)).authCode, 1n)).result), "not_captured");

  // Every refund round waits at the banks until released, so all five are in flight at once.
  const gates: (() => void)[] = [];
  h.banks.onPrepare = (call) => new Promise<Vote>((resolve) => gates.push(() => resolve(call.bank === "bank-b" && call.legs[0]!.amountMinor === 301n ? { vote: "NO", reason: "insufficient_funds" } : { vote: "YES" })));
  const amounts = [300n, 300n, 301n, 300n, 300n];
  const pending = amounts.map((amt, i) => h.cards.refund("shop", `refund-${i}`, a.authCode, amt));
  await new Promise((r) => setImmediate(r));
  // 300 + 300 + 301 reserved = 901; the fourth and fifth do not fit in the remaining 99.
  assert.equal(gates.length, 3 * 2, "three refunds reached the banks (two banks each)");
  for (const open of gates.splice(0)) open();
  const results = await Promise.all(pending);
  assert.deepEqual(results.map((r) => (r.result.ok ? "ok" : r.result.reason)), ["ok", "ok", "insufficient_funds", "refund_exceeds_capture", "refund_exceeds_capture"]);
  h.banks.onPrepare = async () => ({ vote: "YES" });
  const after = value(h.cards.getAuthorization("shop", a.authCode));
  assert.deepEqual([after.refundedMinor, after.refundReservedMinor], [600n, 0n]);
  // The aborted refund's 301 is refundable again; 400 is all there is.
  assert.equal(reason((await h.cards.refund("shop", "r-more", a.authCode, 401n)).result), "refund_exceeds_capture");
  const last = value((await h.cards.refund("shop", "r-last", a.authCode, 400n)).result);
  assert.equal(last.authorization.refundedMinor, 1_000n);
  // The refund moves money from the merchant (owner-checked debit) back to the card's account.
  assert.deepEqual(h.banks.prepares.slice(-2).map((p) => [p.bank, p.legs[0]!.direction, p.legs[0]!.accountId, p.legs[0]!.ownerUserId]), [
    ["bank-b", "DEBIT", "bank-b/2003", "shop"],
    ["bank-a", "CREDIT", "bank-a/1001", ""],
  ]);
  // A replay answers from the store; a failed one replays its failure.
  const replay = await h.cards.refund("shop", "r-last", a.authCode, 400n);
  assert.equal(replay.replayed, true);
  assert.equal(value(replay.result).refund.refundId, last.refund.refundId);
  assert.equal(reason((await h.cards.refund("shop", "refund-2", a.authCode, 301n)).result), "insufficient_funds");
  assert.equal(reason((await h.cards.refund("shop", "r-last", a.authCode, 399n)).result), "idempotency_key_reused");
});

test("recovery: rounds cut short by a crash are settled from the decision log (presumed abort when none was logged)", async () => {
  const h = setup();
  const card = issue(h);
  const base = await approve(h, card, { amountMinor: 1_000n });
  const now = h.clock.nowMs();
  const pendingAuth = (id: string, code: string, key: string, holdTxnId: string): AuthRecord => ({
    ...base,
    authId: id,
    authCode: code,
    idempotencyKey: key,
    status: "PENDING",
    riskApproved: holdTxnId !== "",
    holdTxnId,
    createdAtMs: now,
    updatedAtMs: now,
  });
  const txn = (n: number) => `gateway-0:00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
  // 1: died before the hold round; 2: COMMIT was logged; 3: nothing logged.
  assert.ok(h.store.insertAuth(pendingAuth("auth_1", "AAAAA1", "k1", "")));
  assert.ok(h.store.insertAuth(pendingAuth("auth_2", "AAAAA2", "k2", txn(2))));
  assert.ok(h.store.insertAuth(pendingAuth("auth_3", "AAAAA3", "k3", txn(3))));
  h.log.decide({ txnId: txn(2), decision: "COMMIT", reason: "", participants: ["bank-a"], nowMs: now, firstResendAtMs: now });
  // A capture whose COMMIT was logged, of the approved `base`.
  assert.ok(h.store.updateAuth(base.authId, { status: "APPROVED", opTxnId: "" }, { opTxnId: txn(4), opKind: "capture", opAmountMinor: 700n, opBatchId: "batch_x", opItemIndex: 0 }, now));
  h.log.decide({ txnId: txn(4), decision: "COMMIT", reason: "", participants: ["bank-a", "bank-b"], nowMs: now, firstResendAtMs: now });

  const restarted = h.restart();
  assert.deepEqual(restarted.recover(), { authorizations: 3, operations: 1, refunds: 0 });
  assert.equal(h.store.authById("auth_1"), undefined, "never reached a bank: gone, key free");
  assert.equal(h.store.authById("auth_2")?.status, "APPROVED");
  assert.equal(h.store.authById("auth_3"), undefined, "presumed abort: gone, key free");
  assert.equal(h.log.findDecision(txn(3))?.decision, "ABORT", "the abort is logged before anything else can commit it");
  const captured = h.store.authById(base.authId)!;
  assert.deepEqual([captured.status, captured.capturedMinor, captured.opTxnId], ["CAPTURED", 700n, ""]);

  // A refund in flight with no decision: its reservation is released.
  const r = restarted.refund("shop", "rr", base.authCode, 100n);
  const pendingRefund = h.store.refundByKey("shop", "rr");
  assert.equal(pendingRefund?.status, "PENDING");
  assert.equal(h.store.authById(base.authId)?.refundReservedMinor, 100n);
  await r; // (the fake banks answer YES: it commits)
  assert.equal(h.store.authById(base.authId)?.refundedMinor, 100n);
});

test("recovery of a refund whose round was cut short releases the reservation", () => {
  const h = setup();
  const card = issue(h);
  return (async () => {
    const a = await approve(h, card, { amountMinor: 1_000n });
    value((await h.cards.settleBatch("shop", "s", [{ authCode: a.authCode, amountMinor: 800n }])).result);
    const now = h.clock.nowMs();
    const txnId = "gateway-0:00000000-0000-4000-8000-000000000077";
    h.store.atomically(() => {
      h.store.insertRefund({ refundId: "refund_x", merchantUserId: "shop", idempotencyKey: "rx", fingerprint: "f", authId: a.authId, amountMinor: 500n, txnId, status: "PENDING", reason: "", createdAtMs: now });
      h.store.adjustRefunds(a.authId, 0n, 500n, now);
    });
    assert.equal(reason((await h.cards.refund("shop", "ry", a.authCode, 301n)).result), "refund_exceeds_capture", "the reservation counts");
    assert.deepEqual(h.restart().recover(), { authorizations: 0, operations: 0, refunds: 1 });
    assert.equal(h.store.refundById("refund_x"), undefined, "presumed abort: nothing moved, the key is free");
    assert.equal(h.store.authById(a.authId)?.refundReservedMinor, 0n);
    assert.equal(value((await h.cards.refund("shop", "ry", a.authCode, 800n)).result).authorization.refundedMinor, 800n);
  })();
});
