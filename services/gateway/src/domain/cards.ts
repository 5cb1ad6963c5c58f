// Card payments (DESIGN.md §6). An admin issues a card against a customer's
// account; a merchant authorizes (card checks -> credit report -> risk rule ->
// an authorization hold at the issuing bank), then settles in batches
// (capture: the hold becomes a debit, the merchant's account is credited),
// voids (the hold is released) or refunds (money goes back).
//
// Every money step is one 2PC round run by the coordinator (runRound). Before
// a round starts, its txn id is stored with the authorization (or refund), so
// a gateway that dies mid-round settles it on restart: the logged decision,
// or presumed abort (recover()). Exactly once per (merchant, key): the card
// store's unique indexes; declines are stored outcomes, failed validation and
// transient failures (bureau or bank unreachable) are not.
import { createHash, randomBytes, randomInt, randomUUID } from "node:crypto";
import { AMOUNT_MINOR_MAX, assert, parseCurrency } from "@paygate/money";
import type { Reason } from "@paygate/rpc";
import type { EventLogger, PreparePlan } from "./coordinator.js";
import type { AuthChange, AuthRecord, BatchItemRecord, BatchRecord, CardHasher, CardRecord, CardStore, CreditReports, RefundRecord, Rounds } from "./cards-ports.js";
import { binOfBank, generatePan, isPlausiblePan, normalizePan } from "./luhn.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type DecisionRecord, type Result } from "./model.js";
import type { Clock, Directory, Leg } from "./ports.js";
import { evaluateRisk, noReportDecision, utcDayStartMs, type RiskConfig, type RiskDecision } from "./risk.js";
import { ACCOUNT_ID_PATTERN, checkAmount, checkIdempotencyKey, MEMO_LENGTH_MAX } from "./transfer-rules.js";

export interface CardsOptions {
  readonly store: CardStore;
  readonly rounds: Rounds;
  readonly directory: Directory;
  readonly bureau: CreditReports;
  readonly hasher: CardHasher;
  readonly clock: Clock;
  readonly logger: EventLogger;
  readonly risk: RiskConfig;
  /** How long an authorization (and its hold at the bank) lives before it expires. */
  readonly authHoldTtlMs: number;
  /** Test seam: crypto.randomInt otherwise. */
  readonly randomInt?: (maxExclusive: number) => number;
}

export interface IssueCardInput {
  readonly accountId: string;
  readonly cardholderName: string;
  /** "" = generate one under the bank's BIN. */
  readonly number: string;
  /** 0 and 0 = three years from now. */
  readonly expMonth: number;
  readonly expYear: number;
  /** "" = generate one. */
  readonly cvc: string;
}

/** The only moment the number and CVC exist outside the card holder's hands. */
export interface IssuedCard {
  readonly card: CardRecord;
  readonly number: string;
  readonly cvc: string;
}

export interface CardDetails {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvc: string;
}

export interface AuthorizeInput {
  readonly idempotencyKey: string;
  readonly card: CardDetails;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly merchantReference: string;
  readonly merchantAccountId: string;
}

export interface CardOutcome<T> {
  readonly result: Result<T>;
  /** The key had been seen before: the stored outcome was returned. */
  readonly replayed: boolean;
  /** For the log line: which authorization (never card data beyond last 4). */
  readonly authCode?: string;
  readonly cardLast4?: string;
}

export interface SettleItemInput {
  readonly authCode: string;
  readonly amountMinor: bigint;
}

export interface SettleItemResult {
  readonly authCode: string;
  readonly status: "CAPTURED" | "FAILED";
  readonly reason: string;
  readonly capturedMinor: bigint;
  readonly txnId: string;
}

export interface Settlement {
  readonly batchId: string;
  readonly results: readonly SettleItemResult[];
}

export interface Refunded {
  readonly refund: RefundRecord;
  readonly authorization: AuthRecord;
}

export interface CardsRecovery {
  readonly authorizations: number;
  readonly operations: number;
  readonly refunds: number;
}

export interface Cards {
  issueCard(input: IssueCardInput): Result<IssuedCard>;
  authorize(merchantUserId: string, input: AuthorizeInput): Promise<CardOutcome<AuthRecord>>;
  settleBatch(merchantUserId: string, idempotencyKey: string, items: readonly SettleItemInput[]): Promise<CardOutcome<Settlement>>;
  voidAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>>;
  refund(merchantUserId: string, idempotencyKey: string, authCode: string, amountMinor: bigint): Promise<CardOutcome<Refunded>>;
  getAuthorization(merchantUserId: string, authCode: string): Result<AuthRecord>;
  /** One bounded sweep: APPROVED authorizations past their expiry become EXPIRED. */
  expireDue(): number;
  /** Start-up: settles every round an earlier process was interrupted in. */
  recover(): CardsRecovery;
  /** Runs expireDue every interval until the returned stop() is awaited. */
  startExpiry(intervalMs: number): () => Promise<void>;
}

export const AUTH_CODE_PATTERN = /^[A-Z0-9]{6}$/;
const AUTH_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const CODE_ATTEMPTS_MAX = 20;
const ISSUE_ATTEMPTS_MAX = 20;
export const SETTLE_ITEMS_MAX = 500;
/** Captures of one batch in flight at once (their prepares and commits share batched RPCs and fsyncs). */
const SETTLE_CONCURRENCY = 64;
const AUTH_CODE_LENGTH_MAX = 64;
const CARDHOLDER_NAME_LENGTH_MAX = 100;
const EXP_YEAR_MIN = 2000;
const EXP_YEAR_MAX = 2099;
const CARD_VALIDITY_YEARS = 3;
const EXPIRE_BATCH_MAX = 500;
const RECOVERY_BATCH_MAX = 256;
const RECOVERY_PAGES_MAX = 10_000;
const CLEAR_OP: AuthChange = { opTxnId: "", opKind: "", opAmountMinor: 0n, opBatchId: "", opItemIndex: -1 };

const sha256 = (parts: readonly unknown[]) =>
  createHash("sha256")
    .update(JSON.stringify(parts, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)))
    .digest("base64url");

/** A card is good through the last day of its expiry month (UTC). */
export function cardExpired(expMonth: number, expYear: number, nowMs: number): boolean {
  return nowMs >= Date.UTC(expYear, expMonth, 1); // Date.UTC months are 0-based: this is the 1st of the next month
}

function checkExpiryShape(expMonth: number, expYear: number): Result<void> {
  if (!Number.isInteger(expMonth) || expMonth < 1 || expMonth > 12) return fail("invalid_argument", "exp_month must be 1-12", { field: "exp_month" });
  if (!Number.isInteger(expYear) || expYear < EXP_YEAR_MIN || expYear > EXP_YEAR_MAX) return fail("invalid_argument", `exp_year must be ${EXP_YEAR_MIN}-${EXP_YEAR_MAX}`, { field: "exp_year" });
  return ok(undefined);
}

export function createCards(o: CardsOptions): Cards {
  const { store, rounds, directory, bureau, hasher, clock, logger } = o;
  const rand = o.randomInt ?? ((max: number) => randomInt(max));
  // Batches this process is working on; a PENDING batch not in here was cut short by a crash and a replay resumes it.
  const runningBatches = new Set<string>();

  const digits = (n: number) => Array.from({ length: n }, () => String(rand(10))).join("");

  function newAuthCode(): string | undefined {
    for (let i = 0; i < CODE_ATTEMPTS_MAX; i++) {
      const code = Array.from({ length: 6 }, () => AUTH_CODE_ALPHABET[rand(AUTH_CODE_ALPHABET.length)]).join("");
      if (!store.authByCode(code)) return code;
    }
    return undefined;
  }

  // ---- issuing -------------------------------------------------------------

  function issueCard(input: IssueCardInput): Result<IssuedCard> {
    if (!ACCOUNT_ID_PATTERN.test(input.accountId)) return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
    const account = directory.find(input.accountId);
    if (!account) return fail("account_not_found", `account ${input.accountId} not found`, { account_id: input.accountId });
    const cardholderName = input.cardholderName.trim();
    if ([...cardholderName].length > CARDHOLDER_NAME_LENGTH_MAX || /[\x00-\x1f\x7f]/.test(cardholderName)) {
      return fail("invalid_argument", `cardholder_name must be at most ${CARDHOLDER_NAME_LENGTH_MAX} printable characters`, { field: "cardholder_name" });
    }
    let expMonth = input.expMonth;
    let expYear = input.expYear;
    if (expMonth === 0 && expYear === 0) {
      const now = new Date(clock.nowMs());
      expMonth = now.getUTCMonth() + 1;
      expYear = now.getUTCFullYear() + CARD_VALIDITY_YEARS;
    }
    // A past expiry is allowed on purpose: test cards for the expired_card decline.
    const expiry = checkExpiryShape(expMonth, expYear);
    if (!expiry.ok) return expiry;
    if (input.cvc !== "" && !/^[0-9]{3}$/.test(input.cvc)) return fail("invalid_argument", "cvc must be 3 digits", { field: "cvc" });
    const cvc = input.cvc || digits(3);
    const given = input.number !== "" ? normalizePan(input.number) : undefined;
    if (given !== undefined && !isPlausiblePan(given)) return fail("invalid_number", "number must be 12-19 digits passing the Luhn check", { field: "number" });

    for (let attempt = 0; attempt < ISSUE_ATTEMPTS_MAX; attempt++) {
      const number = given ?? generatePan(binOfBank(account.bank), () => rand(10));
      const cardId = `card_${randomBytes(12).toString("hex")}`;
      const card: CardRecord = {
        cardId,
        panHmac: hasher.panHmac(number),
        last4: number.slice(-4),
        expMonth,
        expYear,
        cvcHash: hasher.cvcHash(cardId, cvc),
        cardholderName,
        accountId: account.accountId,
        bank: account.bank,
        ownerUserId: account.ownerUserId,
        currency: account.currency,
        createdAtMs: clock.nowMs(),
      };
      if (store.insertCard(card)) {
        logger.info({ cardId, last4: card.last4, accountId: card.accountId }, "card issued");
        return ok({ card, number, cvc });
      }
      if (given !== undefined) return fail("already_exists", "a card with this number already exists", { field: "number" });
    }
    return fail("internal", "could not allocate a card number");
  }

  // ---- authorize -----------------------------------------------------------

  interface CheckedAuthorize {
    readonly merchantBank: string;
    readonly pan: string;
    readonly fingerprint: string;
  }

  /** Everything that needs no stored state beyond the directory: shape, merchant account, number. */
  function checkAuthorize(merchantUserId: string, input: AuthorizeInput): Result<CheckedAuthorize> {
    const key = checkIdempotencyKey(input.idempotencyKey);
    if (!key.ok) return key;
    const amount = checkAmount(input.amountMinor);
    if (!amount.ok) return amount;
    if (!parseCurrency(input.currency)) return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
    if ([...input.merchantReference].length > MEMO_LENGTH_MAX) return fail("invalid_argument", `merchant_reference must be at most ${MEMO_LENGTH_MAX} characters`, { field: "merchant_reference" });
    if (!ACCOUNT_ID_PATTERN.test(input.merchantAccountId)) return fail("invalid_account_id", 'merchant_account_id must look like "<bank>/<number>"', { field: "merchant_account_id" });
    const merchant = directory.find(input.merchantAccountId);
    if (!merchant) return fail("account_not_found", `account ${input.merchantAccountId} not found`, { account_id: input.merchantAccountId });
    if (merchant.ownerUserId !== merchantUserId) return fail("not_account_owner", `you do not own ${input.merchantAccountId}`, { account_id: input.merchantAccountId });
    if (merchant.currency !== input.currency) return fail("currency_mismatch", `account ${input.merchantAccountId} holds ${merchant.currency}`, { account_id: input.merchantAccountId });
    // Never echo the number back: the message names the rule only.
    const pan = normalizePan(input.card.number);
    if (!isPlausiblePan(pan)) return fail("invalid_number", "the card number is not valid", { field: "card.number" });
    const panHmac = hasher.panHmac(pan);
    const fingerprint = sha256(["authorize.v1", panHmac, input.card.expMonth, input.card.expYear, input.amountMinor, input.currency, input.merchantAccountId, input.merchantReference]);
    return ok({ merchantBank: merchant.bank, pan, fingerprint });
  }

  /** The card itself: expiry, existence, CVC, currency. Not stored when it fails. */
  function checkCard(details: CardDetails, pan: string, currency: string): Result<CardRecord> {
    const shape = checkExpiryShape(details.expMonth, details.expYear);
    if (!shape.ok) return fail("invalid_argument", shape.message, { field: `card.${shape.metadata?.field ?? "exp"}` });
    const nowMs = clock.nowMs();
    if (cardExpired(details.expMonth, details.expYear, nowMs)) return fail("expired_card", "the card has expired");
    const card = store.cardByPanHmac(hasher.panHmac(pan));
    if (!card) return fail("card_not_found", "no such card");
    if (cardExpired(card.expMonth, card.expYear, nowMs)) return fail("expired_card", "the card has expired");
    if (card.expMonth !== details.expMonth || card.expYear !== details.expYear) return fail("invalid_argument", "the expiry date does not match the card", { field: "card.exp" });
    if (!hasher.cvcMatches(card.cardId, details.cvc, card.cvcHash)) return fail("incorrect_cvc", "the security code is incorrect");
    if (card.currency !== currency) return fail("currency_mismatch", `the card's account holds ${card.currency}`);
    return ok(card);
  }

  function replayAuthorize(existing: AuthRecord, fingerprint: string): Result<AuthRecord> {
    const meta = { auth_code: existing.authCode };
    if (existing.fingerprint !== fingerprint) return fail("idempotency_key_reused", "this idempotency key was used for a different request");
    if (existing.status === "PENDING") return fail("idempotency_key_in_use", "this authorization is still in progress; retry with the same key", meta);
    if (existing.status === "DECLINED") return declined(existing);
    return ok(existing);
  }

  function declined(a: AuthRecord): Result<AuthRecord> {
    assert(a.status === "DECLINED" && a.declineReason !== "", "only a declined authorization has a decline reason");
    const meta: Record<string, string> = a.riskRule !== "" ? { risk_rule: a.riskRule } : {};
    return fail(a.declineReason as Reason, `card declined: ${a.declineReason}`, meta);
  }

  async function authorize(merchantUserId: string, input: AuthorizeInput): Promise<CardOutcome<AuthRecord>> {
    const checked = checkAuthorize(merchantUserId, input);
    if (!checked.ok) return { result: checked, replayed: false };
    const { pan, fingerprint, merchantBank } = checked.value;
    const existing = store.authByKey(merchantUserId, input.idempotencyKey);
    if (existing) return { result: replayAuthorize(existing, fingerprint), replayed: true, authCode: existing.authCode, cardLast4: existing.cardLast4 };

    const card = checkCard(input.card, pan, input.currency);
    if (!card.ok) return { result: card, replayed: false, cardLast4: pan.slice(-4) };
    const authCode = newAuthCode();
    if (!authCode) return { result: fail("internal", "could not allocate an authorization code"), replayed: false };
    const nowMs = clock.nowMs();
    const auth: AuthRecord = {
      authId: `auth_${randomUUID()}`,
      authCode,
      merchantUserId,
      idempotencyKey: input.idempotencyKey,
      fingerprint,
      cardId: card.value.cardId,
      cardLast4: card.value.last4,
      cardAccountId: card.value.accountId,
      cardBank: card.value.bank,
      cardOwnerUserId: card.value.ownerUserId,
      merchantAccountId: input.merchantAccountId,
      merchantBank,
      amountMinor: input.amountMinor,
      currency: input.currency,
      merchantReference: input.merchantReference,
      status: "PENDING",
      declineReason: "",
      riskScore: 0,
      riskApproved: false,
      riskRule: "",
      holdTxnId: "",
      opTxnId: "",
      opKind: "",
      opAmountMinor: 0n,
      opBatchId: "",
      opItemIndex: -1,
      capturedMinor: 0n,
      captureTxnId: "",
      captureBatchId: "",
      captureItemIndex: -1,
      refundedMinor: 0n,
      refundReservedMinor: 0n,
      createdAtMs: nowMs,
      expiresAtMs: nowMs + o.authHoldTtlMs,
      updatedAtMs: nowMs,
    };
    // Nothing awaited since the lookup above: no other request can have taken the key meanwhile.
    assert(store.insertAuth(auth), "the idempotency key and the code were free");
    const result = await placeHold(auth);
    return { result, replayed: false, authCode, cardLast4: auth.cardLast4 };
  }

  async function placeHold(auth: AuthRecord): Promise<Result<AuthRecord>> {
    const report = await bureau.fetch(auth.cardOwnerUserId);
    if (!report.ok && report.reason === "bureau_unavailable") {
      // Nothing was decided: free the key so a retry can ask again.
      store.deleteAuth(auth.authId);
      logger.warn({ authCode: auth.authCode, reason: report.message }, "credit bureau unavailable");
      return fail("bureau_unavailable", "the credit bureau is unavailable; retry with the same idempotency key");
    }
    // Today's spend and this decision in one step, so two authorizations of one card cannot both fit under the limit.
    const { risk, txnId } = store.atomically(() => {
      const nowMs = clock.nowMs();
      const decision: RiskDecision = report.ok
        ? evaluateRisk(o.risk, { score: report.report.score, amountMinor: auth.amountMinor, spentTodayMinor: store.spentSince(auth.cardId, utcDayStartMs(nowMs), auth.authId) })
        : noReportDecision();
      const recorded: AuthChange = { riskScore: decision.score, riskApproved: decision.approved, riskRule: decision.rule };
      if (!decision.approved) {
        assert(store.updateAuth(auth.authId, { status: "PENDING" }, { ...recorded, status: "DECLINED", declineReason: decision.reason ?? "risk_declined" }, nowMs), "pending authorization declines");
        return { risk: decision, txnId: "" };
      }
      const id = rounds.newTxnId();
      assert(store.updateAuth(auth.authId, { status: "PENDING" }, { ...recorded, holdTxnId: id }, nowMs), "pending authorization records its risk decision");
      return { risk: decision, txnId: id };
    });
    if (!risk.approved) {
      logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, score: risk.score, rule: risk.rule, reason: risk.reason }, "authorization declined by the risk rule");
      return declined(must(store.authById(auth.authId)));
    }
    const d = await rounds.runRound(txnId, [{ bank: auth.cardBank, legs: [holdLeg(auth)] }]);
    return finishHold(auth.authId, d);
  }

  function holdLeg(a: AuthRecord): Leg {
    return { accountId: a.cardAccountId, direction: "AUTH_HOLD", amountMinor: a.amountMinor, currency: a.currency, ownerUserId: a.cardOwnerUserId, holdId: a.authId, holdExpiresAtMs: a.expiresAtMs };
  }

  function finishHold(authId: string, d: DecisionRecord): Result<AuthRecord> {
    const nowMs = clock.nowMs();
    const auth = must(store.authById(authId));
    assert(auth.status === "PENDING" && auth.holdTxnId === d.txnId, "the hold round belongs to this pending authorization");
    if (d.decision === "COMMIT") {
      assert(store.updateAuth(authId, { status: "PENDING" }, { status: "APPROVED" }, nowMs), "approve once");
      logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId }, "authorization approved");
      return ok(must(store.authById(authId)));
    }
    if (TRANSIENT_ABORT_REASONS.has(d.reason)) {
      store.deleteAuth(authId);
      return fail(d.reason as Reason, "the issuing bank could not be reached; nothing was held; retry with the same idempotency key");
    }
    assert(store.updateAuth(authId, { status: "PENDING" }, { status: "DECLINED", declineReason: d.reason || "internal" }, nowMs), "decline once");
    logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId, reason: d.reason }, "authorization declined by the issuing bank");
    return declined(must(store.authById(authId)));
  }

  // ---- capture (settlement) and void --------------------------------------

  /** The merchant's own, decided authorization (others' codes and declines look the same: not found). */
  function visibleAuth(merchantUserId: string, authCode: string): AuthRecord | undefined {
    if (!AUTH_CODE_PATTERN.test(authCode)) return undefined;
    const a = store.authByCode(authCode);
    if (!a || a.merchantUserId !== merchantUserId || a.status === "PENDING" || a.status === "DECLINED") return undefined;
    return a;
  }

  /** Marks an APPROVED authorization past its expiry EXPIRED; true when its time is up. */
  function expireIfDue(a: AuthRecord): boolean {
    const nowMs = clock.nowMs();
    if (a.expiresAtMs > nowMs) return false;
    if (a.status === "APPROVED" && store.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { status: "EXPIRED" }, nowMs)) {
      logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
    }
    return true;
  }

  /** One capture or void at a time per authorization: claims it with the round's txn id. */
  function lockOp(a: AuthRecord, change: Omit<AuthChange, "opTxnId">): string | undefined {
    const txnId = rounds.newTxnId();
    return store.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { ...change, opTxnId: txnId }, clock.nowMs()) ? txnId : undefined;
  }

  function opBanks(a: AuthRecord): string[] {
    return a.opKind === "capture" && a.merchantBank !== a.cardBank ? [a.cardBank, a.merchantBank] : [a.cardBank];
  }

  function capturePlan(a: AuthRecord, amountMinor: bigint): PreparePlan[] {
    const capture: Leg = { accountId: a.cardAccountId, direction: "CAPTURE", amountMinor, currency: a.currency, ownerUserId: "", holdId: a.authId };
    const credit: Leg = { accountId: a.merchantAccountId, direction: "CREDIT", amountMinor, currency: a.currency, ownerUserId: "" };
    if (a.cardBank === a.merchantBank) return [{ bank: a.cardBank, legs: [capture, credit] }];
    return [
      { bank: a.cardBank, legs: [capture] },
      { bank: a.merchantBank, legs: [credit] },
    ];
  }

  /** Applies a capture's or void's decided round to the authorization. */
  function applyOp(authId: string, d: DecisionRecord): AuthRecord {
    const a = must(store.authById(authId));
    assert(a.opTxnId === d.txnId && a.status === "APPROVED", "the round is this authorization's operation");
    let change: AuthChange = CLEAR_OP;
    if (d.decision === "COMMIT") {
      change =
        a.opKind === "capture"
          ? { ...CLEAR_OP, status: "CAPTURED", capturedMinor: a.opAmountMinor, captureTxnId: d.txnId, captureBatchId: a.opBatchId, captureItemIndex: a.opItemIndex }
          : { ...CLEAR_OP, status: "VOIDED" };
    } else if (d.reason === "authorization_expired") {
      change = { ...CLEAR_OP, status: "EXPIRED" }; // the bank's hold expired (its own sweep, its own clock)
    } else if (d.reason === "already_captured" || d.reason === "authorization_voided" || d.reason === "hold_not_found") {
      logger.error({ authCode: a.authCode, transactionId: d.txnId, reason: d.reason, alarm: true }, "ALARM: the issuing bank's hold disagrees with the authorization");
    }
    assert(store.updateAuth(authId, { opTxnId: d.txnId }, change, clock.nowMs()), "the operation is settled once");
    return must(store.authById(authId));
  }

  const failedItem = (authCode: string, reason: Reason): SettleItemResult => ({ authCode, status: "FAILED", reason, capturedMinor: 0n, txnId: "" });

  async function captureItem(merchantUserId: string, batchId: string, item: BatchItemRecord): Promise<SettleItemResult> {
    if (item.amountMinor <= 0n || item.amountMinor > AMOUNT_MINOR_MAX) return failedItem(item.authCode, "invalid_amount");
    const a = visibleAuth(merchantUserId, item.authCode);
    if (!a) return failedItem(item.authCode, "authorization_not_found");
    if (a.status === "CAPTURED") {
      // Captured by this very item before a crash cut the batch short: report it as captured.
      if (a.captureBatchId === batchId && a.captureItemIndex === item.index) return { authCode: a.authCode, status: "CAPTURED", reason: "", capturedMinor: a.capturedMinor, txnId: a.captureTxnId };
      return failedItem(a.authCode, "already_captured");
    }
    if (a.status === "VOIDED") return failedItem(a.authCode, "authorization_voided");
    if (a.status === "EXPIRED" || expireIfDue(a)) return failedItem(a.authCode, "authorization_expired");
    if (item.amountMinor > a.amountMinor) return failedItem(a.authCode, "amount_exceeds_authorization");
    const txnId = lockOp(a, { opKind: "capture", opAmountMinor: item.amountMinor, opBatchId: batchId, opItemIndex: item.index });
    if (!txnId) return failedItem(a.authCode, "idempotency_key_in_use");
    const d = await rounds.runRound(txnId, capturePlan(a, item.amountMinor));
    const after = applyOp(a.authId, d);
    if (d.decision === "COMMIT") {
      logger.info({ authCode: a.authCode, cardLast4: a.cardLast4, batchId, transactionId: txnId, capturedMinor: item.amountMinor.toString() }, "authorization captured");
      return { authCode: a.authCode, status: "CAPTURED", reason: "", capturedMinor: after.capturedMinor, txnId };
    }
    return { ...failedItem(a.authCode, (d.reason || "internal") as Reason), txnId };
  }

  function itemResults(batchId: string): SettleItemResult[] {
    return store.batchItems(batchId).map((it) => {
      assert(it.status !== "", "every item of a finished batch has a result");
      return { authCode: it.authCode, status: it.status === "CAPTURED" ? "CAPTURED" : "FAILED", reason: it.reason, capturedMinor: it.capturedMinor, txnId: it.txnId };
    });
  }

  async function settleBatch(merchantUserId: string, idempotencyKey: string, items: readonly SettleItemInput[]): Promise<CardOutcome<Settlement>> {
    const key = checkIdempotencyKey(idempotencyKey);
    if (!key.ok) return { result: key, replayed: false };
    if (items.length === 0 || items.length > SETTLE_ITEMS_MAX) return { result: fail("invalid_argument", `a batch has 1 to ${SETTLE_ITEMS_MAX} items`, { field: "items" }), replayed: false };
    // Unknown codes fail per item, but what is stored and echoed stays small.
    if (items.some((i) => i.authCode.length > AUTH_CODE_LENGTH_MAX)) return { result: fail("invalid_argument", `auth codes are at most ${AUTH_CODE_LENGTH_MAX} characters`, { field: "items.auth_code" }), replayed: false };
    const fingerprint = sha256(["settle.v1", ...items.map((i) => [i.authCode, i.amountMinor])]);
    let batch = store.batchByKey(merchantUserId, idempotencyKey);
    const replayed = batch !== undefined;
    if (batch) {
      if (batch.fingerprint !== fingerprint) return { result: fail("idempotency_key_reused", "this idempotency key was used for a different batch"), replayed };
      if (batch.status === "DONE") return { result: ok({ batchId: batch.batchId, results: itemResults(batch.batchId) }), replayed };
      if (runningBatches.has(batch.batchId)) return { result: fail("idempotency_key_in_use", "this batch is still being settled; retry with the same key", { batch_id: batch.batchId }), replayed };
      // PENDING and nobody working on it: a crash cut it short. Carry on where it stopped.
    } else {
      const created: BatchRecord = { batchId: `batch_${randomUUID()}`, merchantUserId, idempotencyKey, fingerprint, status: "PENDING", createdAtMs: clock.nowMs() };
      store.insertBatch(
        created,
        items.map((i, index) => ({ batchId: created.batchId, index, authCode: i.authCode, amountMinor: i.amountMinor, status: "", reason: "", capturedMinor: 0n, txnId: "" })),
      );
      batch = created;
    }
    const { batchId } = batch;
    runningBatches.add(batchId);
    try {
      // Different authorizations settle concurrently; the items naming one code run
      // one at a time, in order, so the same code twice captures once, deterministically.
      const byCode = new Map<string, BatchItemRecord[]>();
      for (const item of store.batchItems(batchId)) {
        if (item.status !== "") continue;
        const same = byCode.get(item.authCode);
        if (same) same.push(item);
        else byCode.set(item.authCode, [item]);
      }
      await forEachConcurrently([...byCode.values()], SETTLE_CONCURRENCY, async (items) => {
        for (const item of items) {
          const r = await captureItem(merchantUserId, batchId, item);
          store.setBatchItem(batchId, item.index, { status: r.status, reason: r.reason, capturedMinor: r.capturedMinor, txnId: r.txnId });
        }
      });
      store.finishBatch(batchId, clock.nowMs());
    } finally {
      runningBatches.delete(batchId);
    }
    return { result: ok({ batchId, results: itemResults(batchId) }), replayed };
  }

  async function voidAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>> {
    const a = visibleAuth(merchantUserId, authCode);
    if (!a) return fail("authorization_not_found", "no such authorization");
    if (a.status === "VOIDED") return ok(a);
    if (a.status === "CAPTURED") return fail("already_captured", "the authorization is captured; refund it instead");
    if (a.status === "EXPIRED" || expireIfDue(a)) return fail("authorization_expired", "the authorization has expired; its hold is released");
    const txnId = lockOp(a, { opKind: "void", opAmountMinor: 0n, opBatchId: "", opItemIndex: -1 });
    if (!txnId) return fail("idempotency_key_in_use", "a capture or void of this authorization is in progress; retry");
    const release: Leg = { accountId: a.cardAccountId, direction: "RELEASE", amountMinor: a.amountMinor, currency: a.currency, ownerUserId: "", holdId: a.authId };
    const d = await rounds.runRound(txnId, [{ bank: a.cardBank, legs: [release] }]);
    const after = applyOp(a.authId, d);
    if (d.decision === "COMMIT") {
      logger.info({ authCode: a.authCode, cardLast4: a.cardLast4, transactionId: txnId }, "authorization voided");
      return ok(after);
    }
    return fail((d.reason || "internal") as Reason, `void failed: ${d.reason}`);
  }

  // ---- refunds -------------------------------------------------------------

  function refundPlan(a: AuthRecord, amountMinor: bigint): PreparePlan[] {
    const debit: Leg = { accountId: a.merchantAccountId, direction: "DEBIT", amountMinor, currency: a.currency, ownerUserId: a.merchantUserId };
    const credit: Leg = { accountId: a.cardAccountId, direction: "CREDIT", amountMinor, currency: a.currency, ownerUserId: "" };
    if (a.cardBank === a.merchantBank) return [{ bank: a.merchantBank, legs: [debit, credit] }];
    return [
      { bank: a.merchantBank, legs: [debit] },
      { bank: a.cardBank, legs: [credit] },
    ];
  }

  function replayRefund(r: RefundRecord, fingerprint: string): Result<Refunded> {
    if (r.fingerprint !== fingerprint) return fail("idempotency_key_reused", "this idempotency key was used for a different refund");
    if (r.status === "PENDING") return fail("idempotency_key_in_use", "this refund is still in progress; retry with the same key", { refund_id: r.refundId });
    if (r.status === "FAILED") return fail(r.reason as Reason, `refund failed: ${r.reason}`, { refund_id: r.refundId });
    return ok({ refund: r, authorization: must(store.authById(r.authId)) });
  }

  /** Applies a refund's decided round: the reservation becomes a refund, or goes. */
  function finishRefund(refundId: string, d: DecisionRecord): Result<Refunded> {
    const nowMs = clock.nowMs();
    const outcome = store.atomically((): Result<Refunded> => {
      const r = must(store.refundById(refundId));
      assert(r.status === "PENDING" && r.txnId === d.txnId, "the round is this pending refund's");
      if (d.decision === "COMMIT") {
        store.adjustRefunds(r.authId, r.amountMinor, -r.amountMinor, nowMs);
        store.decideRefund(refundId, "COMMITTED", "", nowMs);
        return ok({ refund: must(store.refundById(refundId)), authorization: must(store.authById(r.authId)) });
      }
      store.adjustRefunds(r.authId, 0n, -r.amountMinor, nowMs);
      const reason = (d.reason || "internal") as Reason;
      if (TRANSIENT_ABORT_REASONS.has(reason)) {
        store.deleteRefund(refundId); // nothing moved: the key may try again
        return fail(reason, "a bank could not be reached; nothing moved; retry with the same idempotency key");
      }
      store.decideRefund(refundId, "FAILED", reason, nowMs);
      return fail(reason, `refund failed: ${reason}`, { refund_id: refundId });
    });
    return outcome;
  }

  async function refund(merchantUserId: string, idempotencyKey: string, authCode: string, amountMinor: bigint): Promise<CardOutcome<Refunded>> {
    const key = checkIdempotencyKey(idempotencyKey);
    if (!key.ok) return { result: key, replayed: false };
    const amount = checkAmount(amountMinor);
    if (!amount.ok) return { result: amount, replayed: false };
    const fingerprint = sha256(["refund.v1", authCode, amountMinor]);
    // Check and reserve in one step: concurrent refunds see each other's reservations.
    const started = store.atomically((): { replay: RefundRecord } | { refund: RefundRecord; auth: AuthRecord } | { failure: Result<Refunded> } => {
      const existing = store.refundByKey(merchantUserId, idempotencyKey);
      if (existing) return { replay: existing };
      const a = visibleAuth(merchantUserId, authCode);
      if (!a) return { failure: fail("authorization_not_found", "no such authorization") };
      if (a.status !== "CAPTURED") return { failure: fail("not_captured", "only a captured authorization can be refunded") };
      const refundableMinor = a.capturedMinor - a.refundedMinor - a.refundReservedMinor;
      if (amountMinor > refundableMinor) return { failure: fail("refund_exceeds_capture", `at most ${refundableMinor} can be refunded now`, { refundable_minor: refundableMinor.toString() }) };
      const nowMs = clock.nowMs();
      const r: RefundRecord = { refundId: `refund_${randomUUID()}`, merchantUserId, idempotencyKey, fingerprint, authId: a.authId, amountMinor, txnId: rounds.newTxnId(), status: "PENDING", reason: "", createdAtMs: nowMs };
      store.insertRefund(r);
      store.adjustRefunds(a.authId, 0n, amountMinor, nowMs);
      return { refund: r, auth: a };
    });
    if ("failure" in started) return { result: started.failure, replayed: false };
    if ("replay" in started) return { result: replayRefund(started.replay, fingerprint), replayed: true, authCode };
    const d = await rounds.runRound(started.refund.txnId, refundPlan(started.auth, amountMinor));
    const result = finishRefund(started.refund.refundId, d);
    if (result.ok) logger.info({ authCode, cardLast4: started.auth.cardLast4, refundId: started.refund.refundId, transactionId: d.txnId, amountMinor: amountMinor.toString() }, "refund committed");
    return { result, replayed: false, authCode, cardLast4: started.auth.cardLast4 };
  }

  // ---- reads, expiry, recovery ----------------------------------------------

  function getAuthorization(merchantUserId: string, authCode: string): Result<AuthRecord> {
    const a = visibleAuth(merchantUserId, authCode);
    if (!a) return fail("authorization_not_found", "no such authorization");
    // Reading a lapsed authorization records its expiry right away rather than at the next sweep.
    if (a.status === "APPROVED" && expireIfDue(a)) return ok(must(store.authById(a.authId)));
    return ok(a);
  }

  function expireDue(): number {
    const expired = store.expireDue(clock.nowMs(), EXPIRE_BATCH_MAX);
    for (const a of expired) logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
    return expired.length;
  }

  function recover(): CardsRecovery {
    let authorizations = 0;
    let operations = 0;
    let refunds = 0;
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const pending = store.pendingAuths(RECOVERY_BATCH_MAX);
      if (pending.length === 0) break;
      for (const a of pending) {
        authorizations++;
        // Died before the hold round started: nothing reached a bank.
        if (a.holdTxnId === "") store.deleteAuth(a.authId);
        else finishHold(a.authId, rounds.settleRound(a.holdTxnId, [a.cardBank]));
      }
    }
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const busy = store.authsWithOp(RECOVERY_BATCH_MAX);
      if (busy.length === 0) break;
      for (const a of busy) {
        operations++;
        applyOp(a.authId, rounds.settleRound(a.opTxnId, opBanks(a)));
      }
    }
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const pending = store.pendingRefunds(RECOVERY_BATCH_MAX);
      if (pending.length === 0) break;
      for (const r of pending) {
        refunds++;
        const a = must(store.authById(r.authId));
        finishRefund(r.refundId, rounds.settleRound(r.txnId, a.cardBank === a.merchantBank ? [a.cardBank] : [a.merchantBank, a.cardBank]));
      }
    }
    assert(store.pendingAuths(1).length === 0 && store.authsWithOp(1).length === 0 && store.pendingRefunds(1).length === 0, "card recovery settles every interrupted round");
    if (authorizations + operations + refunds > 0) logger.info({ authorizations, operations, refunds }, "card recovery");
    return { authorizations, operations, refunds };
  }

  function startExpiry(intervalMs: number): () => Promise<void> {
    let stopped = false;
    const tick = () => {
      try {
        expireDue();
      } catch (e) {
        logger.error({ err: e instanceof Error ? e.message : String(e) }, "authorization expiry sweep failed");
      }
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    let timer: NodeJS.Timeout | undefined = setTimeout(tick, intervalMs);
    return async () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  return { issueCard, authorize, settleBatch, voidAuthorization, refund, getAuthorization, expireDue, recover, startExpiry };
}

function must<T>(v: T | undefined): T {
  assert(v !== undefined, "record exists");
  return v;
}

/**
 * Runs fn over the items with at most `limit` in flight. After a failure no
 * new item starts; it rejects with that failure once the running ones stop.
 */
async function forEachConcurrently<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  });
  const first = (await Promise.allSettled(workers)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (first) throw first.reason;
}
