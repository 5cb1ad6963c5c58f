// Card payments' state machine: the real coordinator with scripted banks, a
// fake credit bureau, a manual clock, and the real card store on an in-memory
// SQLite database (its unique indexes and CHECKs are part of the rules).
import { test } from "node:test";
import assert from "node:assert/strict";
import { retryableReasons } from "@paygate/vocab";
import { createSqliteStore } from "../store/sqlite-store.js";
import type { AuthRecord, CardStore } from "./cards-ports.js";
import {
  CAPTURE_FINAL_REASONS,
  type AuthorizeInput,
  type Cards,
  type IssueCardInput,
  type IssuedCard,
  type SettleItemInput,
  type SettleItemResult,
} from "./cards.js";
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
import { binOfBank, luhnValid } from "./luhn.js";
import { TRANSIENT_ABORT_REASONS } from "./model.js";
import type { Vote } from "./ports.js";
import {
  approveWith,
  askBeforeVoting,
  AUTH_HOLD_TTL_MS as TTL_MS,
  authReq,
  CARD_ACCOUNTS,
  COMMIT_TIMEOUT_MS,
  createCapturingLogger,
  createFakeBureau,
  createGate,
  createTestCards,
  createTestCoordinator,
  DAY_MS,
  holdFundsAt,
  issueTestCard,
  loseAbortsTo,
  reasonOf as reason,
  txnIdOf,
  until,
  value,
  type FakeBureau,
} from "../../test-support/test-harness.js";

interface Harness {
  cards: Cards;
  coordinator: Coordinator;
  store: CardStore;
  banks: FakeBanks;
  log: MemoryLog;
  clock: ManualClock;
  bureau: FakeBureau;
  lines(): string[];
  /** A second process on the same store and log (a restart). */
  restart(): Cards;
}

function setup(): Harness {
  const directory = createMemoryDirectory(CARD_ACCOUNTS);
  const log = createMemoryLog(directory);
  const banks = createFakeBanks();
  const clock = createManualClock(Date.UTC(2026, 0, 15, 12));
  const store = createSqliteStore(":memory:").cards;
  const bureau = createFakeBureau([
    ["alice", 780],
    ["bob", 650],
  ]);
  const logger = createCapturingLogger();
  const make = () => {
    const coordinator = createTestCoordinator({ log, directory, participants: banks, clock, logger });
    return { coordinator, cards: createTestCards({ store, coordinator, directory, bureau, clock, logger }) };
  };
  const first = make();
  return { ...first, store, banks, log, clock, bureau, lines: logger.lines, restart: () => make().cards };
}

const issue = (h: Harness, over: Partial<IssueCardInput> = {}) => issueTestCard(h.cards, over);
const approve = (h: Harness, card: IssuedCard, over: Partial<AuthorizeInput> = {}) => approveWith(h.cards, card, over);

test("issuing: a generated number has the bank's BIN and passes Luhn; only hashes and the last 4 are stored", async () => {
  const h = setup();
  const c = await issue(h);
  assert.equal(c.number.length, 16);
  assert.ok(c.number.startsWith(binOfBank("bank-a")));
  assert.ok(luhnValid(c.number));
  assert.match(c.cvc, /^[0-9]{3}$/);
  assert.deepEqual([c.card.expMonth, c.card.expYear], [1, 2029], "three years from now");
  const stored = JSON.stringify(c.card);
  assert.ok(!stored.includes(c.number) && !stored.includes(c.number.slice(0, 12)), "the number is not stored");
  assert.ok(!Object.values(c.card).includes(c.cvc), "the CVC is not stored");
  assert.equal(c.card.last4, c.number.slice(-4));
  assert.equal((await h.store.cardByPanHmac(c.card.panHmac))?.cardId, c.card.cardId);
});

/** The reason issueCard refuses `over` (an empty request to bank-a/1002 otherwise). */
const issueRefusal = async (h: Harness, over: Partial<IssueCardInput>) =>
  reason(
    await h.cards.issueCard({
      accountId: "bank-a/1002",
      cardholderName: "",
      number: "",
      expMonth: 0,
      expYear: 0,
      cvc: "",
      ...over,
    }),
  );

test("issuing: a given test number must pass Luhn and be unique; the account must exist", async () => {
  const h = setup();
  await issue(h, { number: "4242 4242 4242 4242", cvc: "123", expMonth: 12, expYear: 2030 });
  assert.equal(await issueRefusal(h, { number: "4242424242424242" }), "already_exists");
  assert.equal(await issueRefusal(h, { number: "4242424242424241" }), "invalid_number");
  assert.equal(await issueRefusal(h, { accountId: "bank-a/9999" }), "account_not_found");
  assert.equal(await issueRefusal(h, { expMonth: 13, expYear: 2030 }), "invalid_argument");
  assert.equal(await issueRefusal(h, { cvc: "12" }), "invalid_argument");
});

test("authorize: validation declines are not stored, so the key stays free", async () => {
  const h = setup();
  const card = await issue(h);
  const expired = await issue(h, { expMonth: 12, expYear: 2025 });
  const key = "same-key";
  const cases: [Partial<AuthorizeInput>, string][] = [
    [
      {
        card: {
          ...authReq(card).card,
          number: card.number.slice(0, -1) + String((Number(card.number.at(-1)) + 1) % 10),
        },
      },
      "invalid_number",
    ],
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
    assert.equal(
      reason(out.result),
      want,
      JSON.stringify(over, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
    );
  }
  assert.equal(h.banks.prepares.length, 0, "no bank was asked");
  assert.equal(h.bureau.calls, 0, "no report was fetched");
  const a = await approve(h, card, { idempotencyKey: key });
  assert.equal(a.status, "APPROVED");
});

test("authorize: approved with a 6-character code; the hold is an AUTH_HOLD leg named by the authorization; a replay answers from the store", async () => {
  const h = setup();
  const card = await issue(h);
  const req = authReq(card, { amountMinor: 4_200n });
  const a = value((await h.cards.authorize("shop", req)).result);
  assert.match(a.authCode, /^[A-Z0-9]{6}$/);
  assert.deepEqual(
    [a.status, a.amountMinor, a.riskScore, a.riskApproved, a.riskRule],
    ["APPROVED", 4_200n, 780, true, "score>=600"],
  );
  assert.equal(a.expiresAtMs, h.clock.nowMs() + TTL_MS);
  assert.equal(h.banks.prepares.length, 1);
  const p = h.banks.prepares[0]!;
  assert.equal(p.bank, "bank-a");
  assert.deepEqual(p.legs, [
    {
      accountId: "bank-a/1001",
      direction: "AUTH_HOLD",
      amountMinor: 4_200n,
      currency: "USD",
      ownerUserId: "alice",
      holdId: a.authId,
      holdTtlMs: TTL_MS,
    },
  ]);
  assert.deepEqual(
    h.banks.commits.map((c) => c.bank),
    ["bank-a"],
  );

  const again = await h.cards.authorize("shop", req);
  assert.equal(again.replayed, true);
  assert.equal(value(again.result).authCode, a.authCode);
  assert.equal(h.banks.prepares.length, 1, "no second hold");
  assert.equal(h.bureau.calls, 1, "no second report");
  assert.equal(
    reason((await h.cards.authorize("shop", { ...req, amountMinor: 4_201n })).result),
    "idempotency_key_reused",
  );
  // The key is the merchant's: another merchant's same key is another request.
  assert.equal(
    value((await h.cards.authorize("shop2", { ...req, merchantAccountId: "bank-a/1009" })).result).status,
    "APPROVED",
  );
  // No log line carries the number or the CVC.
  for (const line of h.lines()) assert.ok(!line.includes(card.number) && !line.includes(`"${card.cvc}"`), line);
});

test("risk rule: low score and large amounts decline (stored, replayed without a new report); the daily limit is per card", async () => {
  const h = setup();
  const bobCard = await issue(h, { accountId: "bank-a/1002" }); // bob's score is 650
  const small = await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }));
  assert.equal(value(small.result).riskRule, "score>=600");
  const large = authReq(bobCard, { amountMinor: 50_000n });
  const declined = await h.cards.authorize("shop", large);
  assert.equal(reason(declined.result), "risk_declined");
  assert.ok(!declined.result.ok && declined.result.metadata?.risk_rule === "amount>=50000:score<700");
  const calls = h.bureau.calls;
  assert.equal(
    reason((await h.cards.authorize("shop", large)).result),
    "risk_declined",
    "the decline is the key's stored outcome",
  );
  assert.equal(h.bureau.calls, calls);

  h.bureau.scores.set("bob", 550);
  assert.equal(
    reason((await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }))).result),
    "risk_declined",
  );
  h.bureau.scores.delete("bob");
  assert.equal(
    reason((await h.cards.authorize("shop", authReq(bobCard, { amountMinor: 100n }))).result),
    "risk_declined",
    "no credit report",
  );

  const alice = await issue(h);
  await approve(h, alice, { amountMinor: 60_000n });
  await approve(h, alice, { amountMinor: 40_000n }); // exactly the daily maximum
  const over = await h.cards.authorize("shop", authReq(alice, { amountMinor: 1n }));
  assert.equal(reason(over.result), "spend_limit_exceeded");
  // A void gives the room back; the next UTC day starts fresh.
  const other = await issue(h, { accountId: "bank-a/1001" });
  const a = await approve(h, other, { amountMinor: 100_000n });
  assert.equal(
    reason((await h.cards.authorize("shop", authReq(other, { amountMinor: 1n }))).result),
    "spend_limit_exceeded",
  );
  value(await h.cards.voidAuthorization("shop", a.authCode));
  await approve(h, other, { amountMinor: 1n });
  h.clock.advance(DAY_MS);
  await approve(h, alice, { amountMinor: 100_000n });
});

test("bureau down: bureau_unavailable and nothing stored; the same key succeeds once it is back", async () => {
  const h = setup();
  const card = await issue(h);
  const req = authReq(card);
  h.bureau.down = true;
  assert.equal(reason((await h.cards.authorize("shop", req)).result), "bureau_unavailable");
  assert.equal(h.banks.prepares.length, 0);
  h.bureau.down = false;
  assert.equal(value((await h.cards.authorize("shop", req)).result).status, "APPROVED");
});

test("the issuing bank: NO insufficient_funds is a stored decline; an unreachable bank frees the key for a retry", async () => {
  const h = setup();
  const card = await issue(h);
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
  const card = await issue(h);
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
  const legs = h.banks.prepares
    .slice(-2)
    .map((p) => [p.bank, p.legs.map((l) => [l.direction, l.accountId, l.amountMinor, l.holdId])]);
  assert.deepEqual(legs, [
    ["bank-a", [["CAPTURE", "bank-a/1001", 1_200n, a.authId]]],
    ["bank-b", [["CREDIT", "bank-b/2003", 1_200n, undefined]]],
  ]);
  const got = value(await h.cards.getAuthorization("shop", a.authCode));
  assert.deepEqual([got.status, got.capturedMinor], ["CAPTURED", 1_200n]);

  const replay = await h.cards.settleBatch("shop", "batch-1", items);
  assert.equal(replay.replayed, true);
  assert.deepEqual(value(replay.result), s);
  assert.equal(h.banks.prepares.length, prepares + 2, "a replay moves nothing");
  assert.equal(reason((await h.cards.settleBatch("shop", "batch-1", items.slice(1))).result), "idempotency_key_reused");
  const later = value(
    (
      await h.cards.settleBatch("shop", "batch-2", [
        { authCode: a.authCode, amountMinor: 1n },
        { authCode: b.authCode, amountMinor: 1_000n },
      ])
    ).result,
  );
  assert.deepEqual(
    later.results.map((r) => r.reason || r.status),
    ["already_captured", "CAPTURED"],
  );
});

test("settlement runs different authorizations concurrently; the same code repeated still captures once, at its first item", async () => {
  const h = setup();
  const card = await issue(h);
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
  const items = [
    ...auths.map((a) => ({ authCode: a.authCode, amountMinor: 60n })),
    { authCode: dup, amountMinor: 1n },
    { authCode: dup, amountMinor: 2n },
  ];
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
  assert.equal(
    value(await h.cards.getAuthorization("shop", dup)).capturedMinor,
    60n,
    "the first item naming the code captured",
  );
});

test("void: a RELEASE leg; then capture says authorization_voided; a captured one cannot be voided", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card);
  const v = value(await h.cards.voidAuthorization("shop", a.authCode));
  assert.equal(v.status, "VOIDED");
  assert.deepEqual(
    h.banks.prepares.at(-1)!.legs.map((l) => [l.direction, l.holdId]),
    [["RELEASE", a.authId]],
  );
  assert.equal(
    value(await h.cards.voidAuthorization("shop", a.authCode)).status,
    "VOIDED",
    "voiding twice is harmless",
  );
  const b = await approve(h, card);
  value((await h.cards.settleBatch("shop", "b", [{ authCode: b.authCode, amountMinor: b.amountMinor }])).result);
  assert.equal(reason(await h.cards.voidAuthorization("shop", b.authCode)), "already_captured");
  assert.equal(reason(await h.cards.voidAuthorization("shop2", b.authCode)), "authorization_not_found");
});

test("expiry: past expires_at the authorization is EXPIRED (sweep or read) and cannot be captured; the bank's own expiry counts too", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card);
  const b = await approve(h, card);
  const c = await approve(h, card);
  h.clock.advance(TTL_MS - 1);
  assert.equal(await h.cards.expireDue(), 0);
  h.clock.advance(1);
  assert.equal(await h.cards.expireDue(), 3);
  assert.equal(value(await h.cards.getAuthorization("shop", a.authCode)).status, "EXPIRED");
  const s = value((await h.cards.settleBatch("shop", "late", [{ authCode: b.authCode, amountMinor: 1n }])).result);
  assert.deepEqual(
    s.results.map((r) => r.reason),
    ["authorization_expired"],
  );
  assert.equal(reason(await h.cards.voidAuthorization("shop", c.authCode)), "authorization_expired");

  // The bank expired the hold first (its clock): the capture's NO records the expiry.
  const d = await approve(h, card);
  h.banks.onPrepare = async (call): Promise<Vote> =>
    call.legs.some((l) => l.direction === "CAPTURE")
      ? { vote: "NO", reason: "authorization_expired" }
      : { vote: "YES" };
  const s2 = value((await h.cards.settleBatch("shop", "late-2", [{ authCode: d.authCode, amountMinor: 1n }])).result);
  assert.deepEqual(
    s2.results.map((r) => [r.status, r.reason]),
    [["FAILED", "authorization_expired"]],
  );
  assert.equal(value(await h.cards.getAuthorization("shop", d.authCode)).status, "EXPIRED");
});

test("refunds: concurrent refunds never exceed the captured amount; an aborted refund releases its reservation", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  value((await h.cards.settleBatch("shop", "s", [{ authCode: a.authCode, amountMinor: 1_000n }])).result);
  assert.equal(
    reason((await h.cards.refund("shop", "r0", (await approve(h, card)).authCode, 1n)).result),
    "not_captured",
  );

  // Every refund round waits at the banks until released, so all five are in flight at once.
  const gate = createGate();
  h.banks.onPrepare = (call) =>
    gate.wait<Vote>(() =>
      call.bank === "bank-b" && call.legs[0]!.amountMinor === 301n
        ? { vote: "NO", reason: "insufficient_funds" }
        : { vote: "YES" },
    );
  const amounts = [300n, 300n, 301n, 300n, 300n];
  let answered = 0;
  const pending = amounts.map((amt, i) =>
    h.cards.refund("shop", `refund-${i}`, a.authCode, amt).finally(() => answered++),
  );
  // 300 + 300 + 301 reserved = 901; the fourth and fifth do not fit in the remaining 99.
  await until("two refunds refused and three at the banks", () => answered === 2 && gate.waiting === 3 * 2);
  assert.equal(gate.waiting, 3 * 2, "three refunds reached the banks (two banks each)");
  gate.open();
  const results = await Promise.all(pending);
  assert.deepEqual(
    results.map((r) => (r.result.ok ? "ok" : r.result.reason)),
    ["ok", "ok", "insufficient_funds", "refund_exceeds_capture", "refund_exceeds_capture"],
  );
  h.banks.onPrepare = async () => ({ vote: "YES" });
  const after = value(await h.cards.getAuthorization("shop", a.authCode));
  assert.deepEqual([after.refundedMinor, after.refundReservedMinor], [600n, 0n]);
  // The aborted refund's 301 is refundable again; 400 is all there is.
  assert.equal(reason((await h.cards.refund("shop", "r-more", a.authCode, 401n)).result), "refund_exceeds_capture");
  const last = value((await h.cards.refund("shop", "r-last", a.authCode, 400n)).result);
  assert.equal(last.authorization.refundedMinor, 1_000n);
  // The refund moves money from the merchant (owner-checked debit) back to the card's account.
  assert.deepEqual(
    h.banks.prepares.slice(-2).map((p) => [p.bank, p.legs[0]!.direction, p.legs[0]!.accountId, p.legs[0]!.ownerUserId]),
    [
      ["bank-b", "DEBIT", "bank-b/2003", "shop"],
      ["bank-a", "CREDIT", "bank-a/1001", ""],
    ],
  );
  // A replay answers from the store; a failed one replays its failure.
  const replay = await h.cards.refund("shop", "r-last", a.authCode, 400n);
  assert.equal(replay.replayed, true);
  assert.equal(value(replay.result).refund.refundId, last.refund.refundId);
  assert.equal(reason((await h.cards.refund("shop", "refund-2", a.authCode, 301n)).result), "insufficient_funds");
  assert.equal(reason((await h.cards.refund("shop", "r-last", a.authCode, 399n)).result), "idempotency_key_reused");
});

test("recovery: rounds cut short by a crash are settled from the decision log (presumed abort when none was logged)", async () => {
  const h = setup();
  const card = await issue(h);
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
  const txn = (n: number) => txnIdOf(n);
  // 1: died before the hold round; 2: COMMIT was logged; 3: nothing logged.
  assert.ok(await h.store.insertAuth(pendingAuth("auth_1", "AAAAA1", "k1", "")));
  assert.ok(await h.store.insertAuth(pendingAuth("auth_2", "AAAAA2", "k2", txn(2))));
  assert.ok(await h.store.insertAuth(pendingAuth("auth_3", "AAAAA3", "k3", txn(3))));
  await h.log.decide({
    txnId: txn(2),
    decision: "COMMIT",
    reason: "",
    participants: ["bank-a"],
    nowMs: now,
    firstResendAtMs: now,
  });
  // A capture whose COMMIT was logged, of the approved `base`.
  const lock = {
    op: { txnId: txn(4), kind: "capture", amountMinor: 700n, batchId: "batch_x", itemIndex: 0 },
  } as const;
  assert.ok(await h.store.updateAuth(base.authId, { status: "APPROVED", opTxnId: "" }, lock, now, `${txn(4)}/lock`));
  await h.log.decide({
    txnId: txn(4),
    decision: "COMMIT",
    reason: "",
    participants: ["bank-a", "bank-b"],
    nowMs: now,
    firstResendAtMs: now,
  });

  const restarted = h.restart();
  assert.deepEqual(await restarted.recover(), { authorizations: 3, operations: 1, refunds: 0 });
  assert.equal(await h.store.authById("auth_1"), undefined, "never reached a bank: gone, key free");
  assert.equal((await h.store.authById("auth_2"))?.status, "APPROVED");
  assert.equal(await h.store.authById("auth_3"), undefined, "presumed abort: gone, key free");
  assert.equal(
    (await h.log.findDecision(txn(3)))?.decision,
    "ABORT",
    "the abort is logged before anything else can commit it",
  );
  assert.ok(
    h.banks.aborts.some((a) => a.txnId === txn(3) && a.bank === "bank-a"),
    "and its Abort delivered before the key is freed",
  );
  const captured = (await h.store.authById(base.authId))!;
  assert.deepEqual([captured.status, captured.capturedMinor, captured.op], ["CAPTURED", 700n, null]);

  // A refund in flight: its amount is reserved while the round runs, and counted once it commits.
  const gate = createGate();
  h.banks.onPrepare = () => gate.wait<Vote>(() => ({ vote: "YES" }));
  const r = restarted.refund("shop", "rr", base.authCode, 100n);
  await until("the refund's prepares", () => gate.waiting === 2);
  const pendingRefund = await h.store.refundByKey("shop", "rr");
  assert.equal(pendingRefund?.status, "PENDING");
  assert.equal((await h.store.authById(base.authId))?.refundReservedMinor, 100n);
  gate.open();
  value((await r).result);
  const refunded = (await h.store.authById(base.authId))!;
  assert.deepEqual([refunded.refundedMinor, refunded.refundReservedMinor], [100n, 0n]);
});

test("recovery of a refund whose round was cut short releases the reservation", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  value((await h.cards.settleBatch("shop", "s", [{ authCode: a.authCode, amountMinor: 800n }])).result);
  const now = h.clock.nowMs();
  const txnId = txnIdOf(77);
  // Inserted PENDING with its 500 reserved, in one step (what refund() does before its round).
  const started = await h.store.startRefund(
    {
      refundId: "refund_x",
      merchantUserId: "shop",
      idempotencyKey: "rx",
      fingerprint: "f",
      authId: a.authId,
      amountMinor: 500n,
      txnId,
      status: "PENDING",
      reason: "",
      createdAtMs: now,
    },
    now,
  );
  assert.deepEqual(started, { started: true });
  assert.equal(
    reason((await h.cards.refund("shop", "ry", a.authCode, 301n)).result),
    "refund_exceeds_capture",
    "the reservation counts",
  );
  assert.deepEqual(await h.restart().recover(), { authorizations: 0, operations: 0, refunds: 1 });
  assert.equal(await h.store.refundById("refund_x"), undefined, "presumed abort: nothing moved, the key is free");
  assert.equal((await h.store.authById(a.authId))?.refundReservedMinor, 0n);
  assert.equal(value((await h.cards.refund("shop", "ry", a.authCode, 800n)).result).authorization.refundedMinor, 800n);
});

// ---- issue 13 #1: a transient capture failure is not the item's last word -----

/** What the store keeps of a batch: its status and each item's stored result. */
async function batchState(h: Harness, key: string) {
  const batch = await h.store.batchByKey("shop", key);
  assert.ok(batch, `batch ${key} exists`);
  return { status: batch.status, items: (await h.store.batchItems(batch.batchId)).map((i) => [i.status, i.reason]) };
}

/** What the merchant's account was credited by committed rounds (each prepare's CREDIT to it, counted once per txn). */
function creditedMinor(h: Harness, accountId = "bank-b/2003"): bigint {
  let total = 0n;
  for (const p of h.banks.prepares) {
    if (h.log.decisions.get(p.txnId)?.decision !== "COMMIT") continue;
    for (const l of p.legs) if (l.direction === "CREDIT" && l.accountId === accountId) total += l.amountMinor;
  }
  return total;
}

const outcomes = (results: readonly SettleItemResult[]) => results.map((r) => [r.status, r.reason, r.final]);

test("settlement: the final capture reasons are business reasons, never retryable ones", () => {
  for (const r of CAPTURE_FINAL_REASONS) assert.ok(!retryableReasons.has(r as never), r);
  for (const r of TRANSIENT_ABORT_REASONS) assert.ok(!CAPTURE_FINAL_REASONS.has(r), r);
  for (const r of ["hold_in_use", "idempotency_key_in_use"]) assert.ok(!CAPTURE_FINAL_REASONS.has(r), r);
});

for (const transient of [
  "participant_unavailable",
  "participant_timeout",
  "hold_in_use",
  "coordinator_restarted",
] as const) {
  test(`settlement: a capture aborted by ${transient} is FAILED with final=false and not stored; the batch stays PENDING and resending it captures once`, async () => {
    const h = setup();
    const card = await issue(h);
    const a = await approve(h, card, { amountMinor: 1_000n });
    const b = await approve(h, card, { amountMinor: 500n });
    let failuresLeft = 1;
    h.banks.onPrepare = async (call): Promise<Vote> => {
      if (!call.legs.some((l) => l.direction === "CAPTURE" && l.holdId === a.authId) || failuresLeft === 0)
        return { vote: "YES" };
      failuresLeft--;
      if (transient !== "coordinator_restarted") return { vote: "NO", reason: transient };
      // Meanwhile another replica took the round over and presumed abort: the YES votes obey it.
      const nowMs = h.clock.nowMs();
      await h.log.decide({
        txnId: call.txnId,
        decision: "ABORT",
        reason: transient,
        participants: ["bank-a", "bank-b"],
        nowMs,
        firstResendAtMs: nowMs,
      });
      return { vote: "YES" };
    };
    const items: SettleItemInput[] = [
      { authCode: a.authCode, amountMinor: 600n },
      { authCode: b.authCode, amountMinor: 500n },
    ];
    const first = value((await h.cards.settleBatch("shop", "batch-t", items)).result);
    // Before the fix the item was stored FAILED for good and the batch was DONE: the merchant was never paid.
    assert.deepEqual(outcomes(first.results), [
      ["FAILED", transient, false],
      ["CAPTURED", "", true],
    ]);
    assert.ok(retryableReasons.has(transient));
    assert.deepEqual(await batchState(h, "batch-t"), {
      status: "PENDING",
      items: [
        ["", ""],
        ["CAPTURED", ""],
      ],
    });
    const untouched = value(await h.cards.getAuthorization("shop", a.authCode));
    assert.deepEqual(
      [untouched.status, untouched.op, untouched.capturedMinor],
      ["APPROVED", null, 0n],
      "nothing captured, nothing in flight",
    );
    assert.equal(creditedMinor(h), 500n);

    const again = await h.cards.settleBatch("shop", "batch-t", items);
    assert.equal(again.replayed, true);
    const second = value(again.result);
    assert.deepEqual(outcomes(second.results), [
      ["CAPTURED", "", true],
      ["CAPTURED", "", true],
    ]);
    assert.equal(second.results[1]!.txnId, first.results[1]!.txnId, "the captured item was not run again");
    assert.deepEqual(await batchState(h, "batch-t"), {
      status: "DONE",
      items: [
        ["CAPTURED", ""],
        ["CAPTURED", ""],
      ],
    });
    assert.equal(creditedMinor(h), 1_100n, "the merchant is paid once per item");
    assert.equal(value(await h.cards.getAuthorization("shop", a.authCode)).capturedMinor, 600n);

    const prepares = h.banks.prepares.length;
    assert.deepEqual(
      value((await h.cards.settleBatch("shop", "batch-t", items)).result),
      second,
      "a DONE batch replays",
    );
    assert.equal(h.banks.prepares.length, prepares);
  });
}

test("settlement: two batches naming one code at once: the second's item is in use (not final); whichever is resent later captures it, once", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  const items = [{ authCode: a.authCode, amountMinor: 1_000n }];
  // Batch A's capture waits at the banks, then the merchant's bank turns out to be unreachable.
  const gate = createGate();
  h.banks.onPrepare = (call) =>
    gate.wait<Vote>(() =>
      call.bank === "bank-b" ? { vote: "NO", reason: "participant_unavailable" } : { vote: "YES" },
    );
  const batchA = h.cards.settleBatch("shop", "batch-A", items);
  await until("batch A's capture at the banks", () => gate.waiting === 2);
  const b = value((await h.cards.settleBatch("shop", "batch-B", items)).result);
  // Before the fix this in_use was stored as B's final result and B was DONE.
  assert.deepEqual(outcomes(b.results), [["FAILED", "idempotency_key_in_use", false]]);
  assert.deepEqual(await batchState(h, "batch-B"), { status: "PENDING", items: [["", ""]] });
  gate.open();
  assert.deepEqual(outcomes(value((await batchA).result).results), [["FAILED", "participant_unavailable", false]]);

  h.banks.onPrepare = async () => ({ vote: "YES" });
  assert.deepEqual(outcomes(value((await h.cards.settleBatch("shop", "batch-B", items)).result).results), [
    ["CAPTURED", "", true],
  ]);
  assert.deepEqual(
    outcomes(value((await h.cards.settleBatch("shop", "batch-A", items)).result).results),
    [["FAILED", "already_captured", true]],
    "now a business answer, final",
  );
  assert.deepEqual((await batchState(h, "batch-A")).status, "DONE");
  assert.equal(creditedMinor(h), 1_000n, "paid once");
});

test("settlement: business failures (expired, voided, amount too large, already captured) are final: stored, the batch is DONE, a resend replays them", async () => {
  const h = setup();
  const card = await issue(h);
  const expiring = await approve(h, card, { amountMinor: 100n });
  h.clock.advance(TTL_MS);
  const big = await approve(h, card, { amountMinor: 100n });
  const voided = await approve(h, card, { amountMinor: 100n });
  value(await h.cards.voidAuthorization("shop", voided.authCode));
  const captured = await approve(h, card, { amountMinor: 100n });
  value((await h.cards.settleBatch("shop", "earlier", [{ authCode: captured.authCode, amountMinor: 100n }])).result);
  const items = [
    { authCode: big.authCode, amountMinor: 101n },
    { authCode: voided.authCode, amountMinor: 1n },
    { authCode: captured.authCode, amountMinor: 1n },
    { authCode: expiring.authCode, amountMinor: 1n },
  ];
  const prepares = h.banks.prepares.length;
  const s = value((await h.cards.settleBatch("shop", "final", items)).result);
  const want = [
    ["FAILED", "amount_exceeds_authorization", true],
    ["FAILED", "authorization_voided", true],
    ["FAILED", "already_captured", true],
    ["FAILED", "authorization_expired", true],
  ];
  assert.deepEqual(outcomes(s.results), want);
  assert.deepEqual(await batchState(h, "final"), { status: "DONE", items: want.map(([status, r]) => [status, r]) });
  const replay = await h.cards.settleBatch("shop", "final", items);
  assert.equal(replay.replayed, true);
  assert.deepEqual(value(replay.result), s);
  assert.equal(h.banks.prepares.length, prepares, "no bank was asked");
});

// ---- issue 13 #2: a leftover hold never makes a retry's answer final ----------

test("authorize: a retry after a transient abort whose Abort has not reached the issuer is retryable (never insufficient_funds) until the hold is released, then approves", async () => {
  const h = setup();
  const card = await issue(h);
  // The issuer holds what it is asked for, but its reply is lost (participant_timeout) and so is the Abort.
  const issuer = holdFundsAt(h.banks, "bank-a", 2_500n);
  issuer.answerAfterHold = () => ({ vote: "NO", reason: "participant_timeout" });
  issuer.abortsReach = false;
  const req = authReq(card, { amountMinor: 2_500n });
  assert.equal(reason((await h.cards.authorize("shop", req)).result), "participant_timeout");
  assert.equal(issuer.holds.size, 1, "the first attempt's hold is still at the issuer");
  const leftover = await h.store.authByKey("shop", req.idempotencyKey);
  assert.deepEqual(
    [leftover?.status, leftover?.riskApproved],
    ["PENDING", false],
    "kept until its Abort is delivered, no longer counted as spend",
  );
  assert.equal(await h.store.spentSince(card.card.cardId, 0, ""), 0n);

  issuer.answerAfterHold = () => ({ vote: "YES" });
  const prepares = h.banks.prepares.length;
  const retry = await h.cards.authorize("shop", req);
  // Before the fix the row was deleted at once: the retry met its own hold and was DECLINED insufficient_funds, for good.
  const why = reason(retry.result);
  assert.ok(retryableReasons.has(why as never), why);
  assert.equal(h.banks.prepares.length, prepares, "no second hold was asked for");

  issuer.abortsReach = true;
  const approved = value((await h.cards.authorize("shop", req)).result);
  assert.equal(approved.status, "APPROVED");
  assert.notEqual(approved.authId, leftover?.authId, "a new authorization, a new hold id");
  assert.deepEqual([...issuer.holds.values()], [2_500n], "only the approved hold stands");
  assert.equal(
    value((await h.cards.authorize("shop", req)).result).authCode,
    approved.authCode,
    "the key now replays the approval",
  );
});

test("refund: a retry after a transient abort whose Abort has not reached the merchant's bank is retryable (never insufficient_funds) until the debit hold is released, then refunds", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  value((await h.cards.settleBatch("shop", "s", [{ authCode: a.authCode, amountMinor: 1_000n }])).result);
  // The merchant's bank holds the refund's debit; the card's bank is unreachable; the Abort is lost.
  const merchant = holdFundsAt(h.banks, "bank-b", 1_000n);
  merchant.othersVote = async () => ({ vote: "NO", reason: "participant_unavailable" });
  merchant.abortsReach = false;
  assert.equal(reason((await h.cards.refund("shop", "rf", a.authCode, 1_000n)).result), "participant_unavailable");
  assert.equal(merchant.holds.size, 1);
  assert.equal(
    (await h.store.refundByKey("shop", "rf"))?.status,
    "PENDING",
    "kept (and reserved) until its Abort is delivered",
  );

  merchant.othersVote = async () => ({ vote: "YES" });
  const prepares = h.banks.prepares.length;
  const retry = await h.cards.refund("shop", "rf", a.authCode, 1_000n);
  // Before the fix the retry ran at once and the merchant's own hold made it FAILED insufficient_funds, for good.
  const why = reason(retry.result);
  assert.ok(retryableReasons.has(why as never), why);
  assert.equal(h.banks.prepares.length, prepares);
  assert.equal((await h.store.authById(a.authId))?.refundReservedMinor, 1_000n);

  merchant.abortsReach = true;
  const done = value((await h.cards.refund("shop", "rf", a.authCode, 1_000n)).result);
  assert.equal(done.refund.status, "COMMITTED");
  assert.deepEqual([done.authorization.refundedMinor, done.authorization.refundReservedMinor], [1_000n, 0n]);
  assert.deepEqual([merchant.holds.size, merchant.availableMinor], [0, 0n], "refunded once");
});

// ---- issue 13 #3 and #4: GetDecision for card rounds ---------------------------

test("GetDecision about an authorization's hold round from a bank outside it is refused; the hold is approved", async () => {
  const h = setup();
  const card = await issue(h);
  const asked: string[] = [];
  h.banks.onPrepare = async (call) => {
    const r = await h.coordinator.getDecision(call.txnId, "bank-b");
    asked.push(r.ok ? r.value : r.reason);
    assert.equal(h.log.decisions.has(call.txnId), false, "no decision logged for the stranger");
    return { vote: "YES" };
  };
  const a = await approve(h, card);
  // Before the fix bank-b's question presumed abort on bank-a's hold round.
  assert.deepEqual(asked, ["not_participant"]);
  assert.equal(a.status, "APPROVED");
});

test("a capture round aborted through GetDecision is redriven to the merchant's bank until acknowledged, and is in doubt until then", async () => {
  const h = setup();
  const card = await issue(h);
  const a = await approve(h, card, { amountMinor: 1_000n });
  // The issuer's prepare timed out on its side: it asks, and the coordinator presumes abort.
  askBeforeVoting(h.banks, h.coordinator, "bank-a");
  const merchantBank = loseAbortsTo(h.banks, "bank-b");
  const s = value((await h.cards.settleBatch("shop", "b4", [{ authCode: a.authCode, amountMinor: 1_000n }])).result);
  assert.deepEqual(outcomes(s.results), [["FAILED", "participant_timeout", false]]);
  const txnId = s.results[0]!.txnId;
  // Before the fix the presumed abort named only bank-a: bank-b's lost Abort was never resent, nor counted.
  assert.deepEqual(await h.log.unackedBanks(txnId), ["bank-b"]);
  assert.equal((await h.log.inDoubtSummary(h.clock.nowMs())).count, 1);
  h.clock.advance(COMMIT_TIMEOUT_MS);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(await h.log.unackedBanks(txnId), ["bank-b"]);
  merchantBank.down = false;
  h.clock.advance(COMMIT_TIMEOUT_MS);
  assert.equal(await h.coordinator.redriveOnce(), 1);
  assert.deepEqual(await h.log.unackedBanks(txnId), []);
  assert.equal((await h.log.inDoubtSummary(h.clock.nowMs())).count, 0);
  assert.equal(h.banks.aborts.filter((x) => x.txnId === txnId && x.bank === "bank-b").length, 3);
  // Nothing was captured; the authorization can be settled again.
  h.banks.onPrepare = async () => ({ vote: "YES" });
  assert.deepEqual(
    outcomes(
      value((await h.cards.settleBatch("shop", "b4", [{ authCode: a.authCode, amountMinor: 1_000n }])).result).results,
    ),
    [["CAPTURED", "", true]],
  );
});
