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
import { AMOUNT_MINOR_MAX, assert, AssertionError, parseCurrency } from "@paygate/money";
import type { Reason } from "@paygate/rpc";
import type { EventLogger, PreparePlan } from "./coordinator.js";
import { UNDECIDED_AUTHORIZATION, type AuthChange, type AuthRecord, type BatchItemRecord, type BatchRecord, type CardHasher, type CardRecord, type CardStore, type CreditReportResult, type CreditReports, type RefundRecord, type Rounds } from "./cards-ports.js";
import { binOfBank, generatePan, isPlausiblePan, normalizePan } from "./luhn.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type DecisionRecord, type Result } from "./model.js";
import { checkPrintable } from "./transfer-rules.js";
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
  /** Which capture failures are final (default CAPTURE_FINAL_REASONS); the simulator widens it to prove its checker catches the mistake. */
  readonly captureFinalReasons?: ReadonlySet<string>;
  /** This replica: it owns the authorizations it creates and the batches it settles. */
  readonly replica: string;
  /** Whether another replica's lease still runs (a batch it owns is then not ours to resume). */
  readonly isReplicaAlive: (replica: string) => Promise<boolean>;
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
  /**
   * False for a failure that may pass later (a bank unreachable, the hold
   * busy): not stored as the item's result, so sending the batch again retries it.
   */
  readonly final: boolean;
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
  issueCard(input: IssueCardInput): Promise<Result<IssuedCard>>;
  authorize(merchantUserId: string, input: AuthorizeInput): Promise<CardOutcome<AuthRecord>>;
  settleBatch(merchantUserId: string, idempotencyKey: string, items: readonly SettleItemInput[]): Promise<CardOutcome<Settlement>>;
  voidAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>>;
  refund(merchantUserId: string, idempotencyKey: string, authCode: string, amountMinor: bigint): Promise<CardOutcome<Refunded>>;
  getAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>>;
  /** One bounded sweep: APPROVED authorizations past their expiry become EXPIRED. */
  expireDue(): Promise<number>;
  /**
   * Settles every round `replica` (this one at start-up, a dead one at
   * takeover) was interrupted in: holds, captures and voids, refunds.
   */
  recover(replica?: string): Promise<CardsRecovery>;
  /** This replica's card records left mid-round by requests that no longer run (they lost the store). */
  settleOrphans(replica?: string): Promise<CardsRecovery>;
  /** Runs expireDue every interval until the returned stop() is awaited. */
  startExpiry(intervalMs: number): () => Promise<void>;
}

export const AUTH_CODE_PATTERN = /^[A-Z0-9]{6}$/;
const AUTH_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const CODE_ATTEMPTS_MAX = 20;
const ISSUE_ATTEMPTS_MAX = 20;
/** Lookups of a key that another request (perhaps on another replica) is inserting at the same moment. */
const INSERT_ATTEMPTS_MAX = 5;
/** Re-runs of the risk rule when another authorization of the card changed today's spend meanwhile. */
const RISK_ATTEMPTS_MAX = 20;
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
/**
 * A capture that failed for one of these is the item's last word: the
 * authorization itself says no. Anything else (a bank unreachable, the hold
 * busy with another round, a restart) may pass later and is retried.
 */
export const CAPTURE_FINAL_REASONS: ReadonlySet<string> = new Set([
  "invalid_amount",
  "authorization_not_found",
  "already_captured",
  "authorization_voided",
  "authorization_expired",
  "amount_exceeds_authorization",
  "hold_not_found",
  "currency_mismatch",
  "account_not_found",
  "account_closed",
  "balance_limit_exceeded",
]);

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
  // Batches this process is working on (it owns them in the store while it does).
  const runningBatches = new Set<string>();
  // Authorizations between their insert and their answer in this process. (Captures,
  // voids and refunds are covered by their round: rounds.isRunning.)
  const authorizing = new Set<string>();

  const digits = (n: number) => Array.from({ length: n }, () => String(rand(10))).join("");
  const opId = () => randomUUID();

  async function newAuthCode(): Promise<string | undefined> {
    for (let i = 0; i < CODE_ATTEMPTS_MAX; i++) {
      const code = Array.from({ length: 6 }, () => AUTH_CODE_ALPHABET[rand(AUTH_CODE_ALPHABET.length)]).join("");
      if (!(await store.authByCode(code))) return code;
    }
    return undefined;
  }

  // ---- issuing -------------------------------------------------------------

  async function issueCard(input: IssueCardInput): Promise<Result<IssuedCard>> {
    if (!ACCOUNT_ID_PATTERN.test(input.accountId)) return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
    const account = await directory.find(input.accountId);
    if (!account) return fail("account_not_found", `account ${input.accountId} not found`, { account_id: input.accountId });
    const cardholderName = input.cardholderName.trim();
    if ([...cardholderName].length > CARDHOLDER_NAME_LENGTH_MAX || !checkPrintable(cardholderName, "cardholder_name").ok) {
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
      if (await store.insertCard(card)) {
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
  async function checkAuthorize(merchantUserId: string, input: AuthorizeInput): Promise<Result<CheckedAuthorize>> {
    const key = checkIdempotencyKey(input.idempotencyKey);
    if (!key.ok) return key;
    const amount = checkAmount(input.amountMinor);
    if (!amount.ok) return amount;
    if (!parseCurrency(input.currency)) return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
    if ([...input.merchantReference].length > MEMO_LENGTH_MAX) return fail("invalid_argument", `merchant_reference must be at most ${MEMO_LENGTH_MAX} characters`, { field: "merchant_reference" });
    const reference = checkPrintable(input.merchantReference, "merchant_reference");
    if (!reference.ok) return reference;
    if (!ACCOUNT_ID_PATTERN.test(input.merchantAccountId)) return fail("invalid_account_id", 'merchant_account_id must look like "<bank>/<number>"', { field: "merchant_account_id" });
    const merchant = await directory.find(input.merchantAccountId);
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
  async function checkCard(details: CardDetails, pan: string, currency: string): Promise<Result<CardRecord>> {
    const shape = checkExpiryShape(details.expMonth, details.expYear);
    if (!shape.ok) return fail("invalid_argument", shape.message, { field: `card.${shape.metadata?.field ?? "exp"}` });
    const nowMs = clock.nowMs();
    if (cardExpired(details.expMonth, details.expYear, nowMs)) return fail("expired_card", "the card has expired");
    const card = await store.cardByPanHmac(hasher.panHmac(pan));
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
    assert(a.status === "DECLINED", "only a declined authorization declines");
    assert(a.declineReason !== "", "a declined authorization has a reason");
    const meta: Record<string, string> = a.riskRule !== "" ? { risk_rule: a.riskRule } : {};
    return fail(a.declineReason as Reason, `card declined: ${a.declineReason}`, meta);
  }

  /**
   * A PENDING authorization whose hold round ended in a transient ABORT: once
   * that Abort reached the bank (its hold is gone), the row goes and the key
   * may try again. True if it went.
   */
  async function clearAbortedAttempt(a: AuthRecord): Promise<boolean> {
    if (a.status !== "PENDING" || a.holdTxnId === "" || rounds.isRunning(a.holdTxnId)) return false;
    const d = await rounds.decisionOf(a.holdTxnId);
    if (d?.decision !== "ABORT" || !TRANSIENT_ABORT_REASONS.has(d.reason)) return false;
    if (!(await rounds.abortDelivered(a.holdTxnId))) return false;
    await store.deleteAuth(a.authId);
    return true;
  }

  function newAuthRecord(merchantUserId: string, input: AuthorizeInput, card: CardRecord, authCode: string, fingerprint: string, merchantBank: string): AuthRecord {
    const nowMs = clock.nowMs();
    return {
      authId: `auth_${randomUUID()}`,
      replica: o.replica,
      authCode,
      merchantUserId,
      idempotencyKey: input.idempotencyKey,
      fingerprint,
      cardId: card.cardId,
      cardLast4: card.last4,
      cardAccountId: card.accountId,
      cardBank: card.bank,
      cardOwnerUserId: card.ownerUserId,
      merchantAccountId: input.merchantAccountId,
      merchantBank,
      amountMinor: input.amountMinor,
      currency: input.currency,
      merchantReference: input.merchantReference,
      ...UNDECIDED_AUTHORIZATION,
      createdAtMs: nowMs,
      expiresAtMs: nowMs + o.authHoldTtlMs,
      updatedAtMs: nowMs,
    };
  }

  async function authorize(merchantUserId: string, input: AuthorizeInput): Promise<CardOutcome<AuthRecord>> {
    const checked = await checkAuthorize(merchantUserId, input);
    if (!checked.ok) return { result: checked, replayed: false };
    const { pan, fingerprint, merchantBank } = checked.value;
    for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
      const existing = await store.authByKey(merchantUserId, input.idempotencyKey);
      if (existing) {
        if (existing.fingerprint === fingerprint && (await clearAbortedAttempt(existing))) continue;
        return { result: replayAuthorize(existing, fingerprint), replayed: true, authCode: existing.authCode, cardLast4: existing.cardLast4 };
      }
      const card = await checkCard(input.card, pan, input.currency);
      if (!card.ok) return { result: card, replayed: false, cardLast4: pan.slice(-4) };
      const authCode = await newAuthCode();
      if (!authCode) return { result: fail("internal", "could not allocate an authorization code"), replayed: false };
      const auth = newAuthRecord(merchantUserId, input, card.value, authCode, fingerprint, merchantBank);
      // False: another request (on any replica) took the key or the code first; look again.
      if (await store.insertAuth(auth)) {
        // Ours until we answer: the orphan sweep leaves it alone (the bureau call may take a while).
        authorizing.add(auth.authId);
        try {
          return { result: await placeHold(auth), replayed: false, authCode, cardLast4: auth.cardLast4 };
        } finally {
          authorizing.delete(auth.authId);
        }
      }
    }
    return { result: fail("idempotency_key_in_use", "this authorization is still in progress; retry with the same key"), replayed: true };
  }

  /** The risk rule over today's spend, recorded only if that spend is still what the rule saw. */
  async function decideRisk(auth: AuthRecord, report: CreditReportResult): Promise<{ readonly risk: RiskDecision; readonly txnId: string } | undefined> {
    for (let attempt = 0; attempt < RISK_ATTEMPTS_MAX; attempt++) {
      const nowMs = clock.nowMs();
      const sinceMs = utcDayStartMs(nowMs);
      const spentMinor = await store.spentSince(auth.cardId, sinceMs, auth.authId);
      const risk: RiskDecision = report.ok ? evaluateRisk(o.risk, { score: report.report.score, amountMinor: auth.amountMinor, spentTodayMinor: spentMinor }) : noReportDecision();
      const recorded: AuthChange = { riskScore: risk.score, riskApproved: risk.approved, riskRule: risk.rule };
      const txnId = risk.approved ? rounds.newTxnId() : "";
      const change: AuthChange = risk.approved ? { ...recorded, holdTxnId: txnId } : { ...recorded, status: "DECLINED", declineReason: risk.reason ?? "risk_declined" };
      if (await store.recordRisk(auth.authId, auth.cardId, sinceMs, spentMinor, change, nowMs)) return { risk, txnId };
    }
    return undefined;
  }

  async function placeHold(auth: AuthRecord): Promise<Result<AuthRecord>> {
    const report = await bureau.fetch(auth.cardOwnerUserId);
    if (!report.ok && report.reason === "bureau_unavailable") {
      // Nothing was decided: free the key so a retry can ask again.
      await store.deleteAuth(auth.authId);
      logger.warn({ authCode: auth.authCode, reason: report.message }, "credit bureau unavailable");
      return fail("bureau_unavailable", "the credit bureau is unavailable; retry with the same idempotency key");
    }
    const decided = await decideRisk(auth, report);
    if (!decided) {
      await store.deleteAuth(auth.authId);
      return fail("idempotency_key_in_use", "too many authorizations of this card at once; retry with the same key");
    }
    const { risk, txnId } = decided;
    if (!risk.approved) {
      logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, score: risk.score, rule: risk.rule, reason: risk.reason }, "authorization declined by the risk rule");
      return declined(must(await store.authById(auth.authId)));
    }
    const d = await rounds.runRound(txnId, "auth_hold", [{ bank: auth.cardBank, legs: [holdLeg(auth)] }]);
    return finishHold(auth.authId, d);
  }

  function holdLeg(a: AuthRecord): Leg {
    // The bank decides the expiry (its clock, from its prepare); ours began
    // before the prepare, so it is never later than the bank's: we stop
    // capturing no later than the bank releases the hold.
    return { accountId: a.cardAccountId, direction: "AUTH_HOLD", amountMinor: a.amountMinor, currency: a.currency, ownerUserId: a.cardOwnerUserId, holdId: a.authId, holdTtlMs: o.authHoldTtlMs };
  }

  /** The authorization as it now stands, after someone else (a retry, a takeover) finished its hold round first. */
  function finishedElsewhere(a: AuthRecord | undefined, d: DecisionRecord): Result<AuthRecord> {
    if (!a) {
      // Only a retry after a transient abort deletes a PENDING row.
      assert(d.decision === "ABORT", "an approved authorization is never deleted");
      return fail(d.reason as Reason, "the issuing bank could not be reached; nothing was held; retry with the same idempotency key");
    }
    if (a.status === "DECLINED") return declined(a);
    return ok(a);
  }

  async function finishHold(authId: string, d: DecisionRecord): Promise<Result<AuthRecord>> {
    const nowMs = clock.nowMs();
    const auth = await store.authById(authId);
    if (!auth || auth.status !== "PENDING") return finishedElsewhere(auth, d);
    assert(auth.holdTxnId === d.txnId, "the hold round belongs to this pending authorization");
    const id = `${d.txnId}/hold`;
    if (d.decision === "COMMIT") {
      if (!(await store.updateAuth(authId, { status: "PENDING" }, { status: "APPROVED" }, nowMs, id))) return finishedElsewhere(await store.authById(authId), d);
      logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId }, "authorization approved");
      return ok(must(await store.authById(authId)));
    }
    if (TRANSIENT_ABORT_REASONS.has(d.reason)) {
      // The key may try again, but only once the Abort has released this
      // round's hold (else the retry meets it: insufficient_funds, for good).
      // Until then the row stays PENDING and no longer counts as spend.
      await store.updateAuth(authId, { status: "PENDING" }, { riskApproved: false }, nowMs, id);
      if (await rounds.abortDelivered(d.txnId)) await store.deleteAuth(authId);
      return fail(d.reason as Reason, "the issuing bank could not be reached; nothing was held; retry with the same idempotency key");
    }
    if (!(await store.updateAuth(authId, { status: "PENDING" }, { status: "DECLINED", declineReason: d.reason || "internal" }, nowMs, id))) {
      return finishedElsewhere(await store.authById(authId), d);
    }
    logger.info({ authCode: auth.authCode, cardLast4: auth.cardLast4, transactionId: d.txnId, reason: d.reason }, "authorization declined by the issuing bank");
    return declined(must(await store.authById(authId)));
  }

  // ---- capture (settlement) and void --------------------------------------

  /** The merchant's own, decided authorization (others' codes and declines look the same: not found). */
  async function visibleAuth(merchantUserId: string, authCode: string): Promise<AuthRecord | undefined> {
    if (!AUTH_CODE_PATTERN.test(authCode)) return undefined;
    const a = await store.authByCode(authCode);
    if (!a || a.merchantUserId !== merchantUserId || a.status === "PENDING" || a.status === "DECLINED") return undefined;
    return a;
  }

  /** Marks an APPROVED authorization past its expiry EXPIRED; true when its time is up. */
  async function expireIfDue(a: AuthRecord): Promise<boolean> {
    const nowMs = clock.nowMs();
    if (a.expiresAtMs > nowMs) return false;
    if (a.status === "APPROVED" && (await store.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { status: "EXPIRED" }, nowMs, opId()))) {
      logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
    }
    return true;
  }

  /**
   * One capture or void at a time per authorization: claims it with the
   * round's txn id. A lock left by a round that is decided and that no one
   * runs (its request lost the store mid-round) is settled first, then taken.
   */
  async function lockOp(a: AuthRecord, change: Omit<AuthChange, "opTxnId">): Promise<string | undefined> {
    const txnId = rounds.newTxnId();
    const take = () => store.updateAuth(a.authId, { status: "APPROVED", opTxnId: "" }, { ...change, opTxnId: txnId }, clock.nowMs(), `${txnId}/lock`);
    if (await take()) return txnId;
    const now = await store.authById(a.authId);
    if (!now || now.opTxnId === "" || rounds.isRunning(now.opTxnId)) return undefined;
    const d = await rounds.decisionOf(now.opTxnId);
    if (!d) return undefined;
    const after = await applyOp(now.authId, d);
    return after.status === "APPROVED" && (await take()) ? txnId : undefined;
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

  /** Applies a capture's or void's decided round to the authorization (once: a second caller finds it applied). */
  async function applyOp(authId: string, d: DecisionRecord): Promise<AuthRecord> {
    const a = must(await store.authById(authId));
    if (a.opTxnId !== d.txnId) return a; // settled already (by a takeover, or the request itself)
    assert(a.status === "APPROVED", "an operation runs on an approved authorization");
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
    await store.updateAuth(authId, { opTxnId: d.txnId }, change, clock.nowMs(), `${d.txnId}/apply`);
    return must(await store.authById(authId));
  }

  const finalReasons = o.captureFinalReasons ?? CAPTURE_FINAL_REASONS;
  const failedItem = (authCode: string, reason: Reason): SettleItemResult => ({ authCode, status: "FAILED", reason, capturedMinor: 0n, txnId: "", final: finalReasons.has(reason) });

  async function captureItem(merchantUserId: string, batchId: string, item: BatchItemRecord): Promise<SettleItemResult> {
    if (item.amountMinor <= 0n || item.amountMinor > AMOUNT_MINOR_MAX) return failedItem(item.authCode, "invalid_amount");
    const a = await visibleAuth(merchantUserId, item.authCode);
    if (!a) return failedItem(item.authCode, "authorization_not_found");
    if (a.status === "CAPTURED") {
      // Captured by this very item before a crash cut the batch short: report it as captured.
      if (a.captureBatchId === batchId && a.captureItemIndex === item.index) return { authCode: a.authCode, status: "CAPTURED", reason: "", capturedMinor: a.capturedMinor, txnId: a.captureTxnId, final: true };
      return failedItem(a.authCode, "already_captured");
    }
    if (a.status === "VOIDED") return failedItem(a.authCode, "authorization_voided");
    if (a.status === "EXPIRED" || (await expireIfDue(a))) return failedItem(a.authCode, "authorization_expired");
    if (item.amountMinor > a.amountMinor) return failedItem(a.authCode, "amount_exceeds_authorization");
    // Another capture or void of it is in flight (e.g. a second batch naming the same code): retry later.
    const txnId = await lockOp(a, { opKind: "capture", opAmountMinor: item.amountMinor, opBatchId: batchId, opItemIndex: item.index });
    if (!txnId) return failedItem(a.authCode, "idempotency_key_in_use");
    const d = await rounds.runRound(txnId, "capture", capturePlan(a, item.amountMinor));
    const after = await applyOp(a.authId, d);
    if (d.decision === "COMMIT") {
      logger.info({ authCode: a.authCode, cardLast4: a.cardLast4, batchId, transactionId: txnId, capturedMinor: item.amountMinor.toString() }, "authorization captured");
      return { authCode: a.authCode, status: "CAPTURED", reason: "", capturedMinor: after.capturedMinor, txnId, final: true };
    }
    return { ...failedItem(a.authCode, (d.reason || "internal") as Reason), txnId };
  }

  const storedResult = (it: BatchItemRecord): SettleItemResult => ({
    authCode: it.authCode,
    status: it.status === "CAPTURED" ? "CAPTURED" : "FAILED",
    reason: it.reason,
    capturedMinor: it.capturedMinor,
    txnId: it.txnId,
    final: true,
  });

  type BatchStart = { readonly batch: BatchRecord; readonly replayed: boolean } | { readonly failure: Result<Settlement>; readonly replayed: boolean };

  /** Finds or creates the batch and makes this replica its owner while it settles. */
  async function startBatch(merchantUserId: string, idempotencyKey: string, fingerprint: string, items: readonly SettleItemInput[]): Promise<BatchStart> {
    for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
      const batch = await store.batchByKey(merchantUserId, idempotencyKey);
      if (!batch) {
        const created: BatchRecord = { batchId: `batch_${randomUUID()}`, merchantUserId, idempotencyKey, fingerprint, status: "PENDING", ownerReplica: o.replica, createdAtMs: clock.nowMs() };
        const rows = items.map((i, index) => ({ batchId: created.batchId, index, authCode: i.authCode, amountMinor: i.amountMinor, status: "" as const, reason: "", capturedMinor: 0n, txnId: "" }));
        if (await store.insertBatch(created, rows)) return { batch: created, replayed: false };
        continue; // another request created it first
      }
      const inUse = { failure: fail("idempotency_key_in_use", "this batch is still being settled; retry with the same key", { batch_id: batch.batchId }), replayed: true };
      if (batch.fingerprint !== fingerprint) return { failure: fail("idempotency_key_reused", "this idempotency key was used for a different batch"), replayed: true };
      if (batch.status === "DONE") return { batch, replayed: true };
      if (runningBatches.has(batch.batchId)) return inUse;
      // PENDING: free (its last run left items to retry), ours from before a
      // restart, or a dead replica's. A live replica's is in progress.
      const owner = batch.ownerReplica;
      if (owner !== "" && owner !== o.replica && (await o.isReplicaAlive(owner))) return inUse;
      if (!(await store.takeBatch(batch.batchId, owner, o.replica))) return inUse;
      return { batch: { ...batch, ownerReplica: o.replica }, replayed: true };
    }
    return { failure: fail("idempotency_key_in_use", "this batch is still being settled; retry with the same key"), replayed: true };
  }

  async function runBatch(merchantUserId: string, batchId: string): Promise<SettleItemResult[]> {
    const items = await store.batchItems(batchId);
    const results = new Map<number, SettleItemResult>();
    // Different authorizations settle concurrently; the items naming one code run
    // one at a time, in order, so the same code twice captures once, deterministically.
    const byCode = new Map<string, BatchItemRecord[]>();
    for (const item of items) {
      if (item.status !== "") continue;
      const same = byCode.get(item.authCode);
      if (same) same.push(item);
      else byCode.set(item.authCode, [item]);
    }
    await forEachConcurrently([...byCode.values()], SETTLE_CONCURRENCY, async (sameCode) => {
      for (const item of sameCode) {
        const r = await captureItem(merchantUserId, batchId, item);
        results.set(item.index, r);
        // Only a final result is the item's; a transient one is retried when the batch is sent again.
        if (r.final) await store.setBatchItem(batchId, item.index, { status: r.status, reason: r.reason, capturedMinor: r.capturedMinor, txnId: r.txnId });
      }
    });
    return items.map((it) => results.get(it.index) ?? storedResult(it));
  }

  async function settleBatch(merchantUserId: string, idempotencyKey: string, items: readonly SettleItemInput[]): Promise<CardOutcome<Settlement>> {
    const key = checkIdempotencyKey(idempotencyKey);
    if (!key.ok) return { result: key, replayed: false };
    if (items.length === 0 || items.length > SETTLE_ITEMS_MAX) return { result: fail("invalid_argument", `a batch has 1 to ${SETTLE_ITEMS_MAX} items`, { field: "items" }), replayed: false };
    // Unknown codes fail per item, but what is stored and echoed stays small.
    if (items.some((i) => i.authCode.length > AUTH_CODE_LENGTH_MAX)) return { result: fail("invalid_argument", `auth codes are at most ${AUTH_CODE_LENGTH_MAX} characters`, { field: "items.auth_code" }), replayed: false };
    const fingerprint = sha256(["settle.v1", ...items.map((i) => [i.authCode, i.amountMinor])]);
    const started = await startBatch(merchantUserId, idempotencyKey, fingerprint, items);
    if ("failure" in started) return { result: started.failure, replayed: started.replayed };
    const { batch, replayed } = started;
    if (batch.status === "DONE") return { result: ok({ batchId: batch.batchId, results: (await store.batchItems(batch.batchId)).map(storedResult) }), replayed };
    runningBatches.add(batch.batchId);
    let results: SettleItemResult[];
    try {
      results = await runBatch(merchantUserId, batch.batchId);
      if (results.every((r) => r.final)) await store.finishBatch(batch.batchId, clock.nowMs());
    } finally {
      runningBatches.delete(batch.batchId);
      // Whatever is left may be resumed by any replica that receives the batch
      // again. If the store cannot take this now, the orphan sweep frees it
      // (recover releases every batch this replica owns but is not settling).
      await store.takeBatch(batch.batchId, o.replica, "").catch(() => false);
    }
    return { result: ok({ batchId: batch.batchId, results }), replayed };
  }

  async function voidAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>> {
    const a = await visibleAuth(merchantUserId, authCode);
    if (!a) return fail("authorization_not_found", "no such authorization");
    if (a.status === "VOIDED") return ok(a);
    if (a.status === "CAPTURED") return fail("already_captured", "the authorization is captured; refund it instead");
    if (a.status === "EXPIRED" || (await expireIfDue(a))) return fail("authorization_expired", "the authorization has expired; its hold is released");
    const txnId = await lockOp(a, { opKind: "void", opAmountMinor: 0n, opBatchId: "", opItemIndex: -1 });
    if (!txnId) return fail("idempotency_key_in_use", "a capture or void of this authorization is in progress; retry");
    const release: Leg = { accountId: a.cardAccountId, direction: "RELEASE", amountMinor: a.amountMinor, currency: a.currency, ownerUserId: "", holdId: a.authId };
    const d = await rounds.runRound(txnId, "release", [{ bank: a.cardBank, legs: [release] }]);
    const after = await applyOp(a.authId, d);
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

  const refundBanks = (a: AuthRecord) => (a.cardBank === a.merchantBank ? [a.cardBank] : [a.merchantBank, a.cardBank]);

  async function replayRefund(r: RefundRecord, fingerprint: string): Promise<Result<Refunded>> {
    if (r.fingerprint !== fingerprint) return fail("idempotency_key_reused", "this idempotency key was used for a different refund");
    if (r.status === "PENDING") return fail("idempotency_key_in_use", "this refund is still in progress; retry with the same key", { refund_id: r.refundId });
    if (r.status === "FAILED") return fail(r.reason as Reason, `refund failed: ${r.reason}`, { refund_id: r.refundId });
    return ok({ refund: r, authorization: must(await store.authById(r.authId)) });
  }

  /** Applies a refund's decided round: the reservation becomes a refund, or goes. */
  async function finishRefund(refundId: string, d: DecisionRecord): Promise<Result<Refunded>> {
    const nowMs = clock.nowMs();
    const r = await store.refundById(refundId);
    // Finished elsewhere meanwhile (a takeover, a retry clearing a transient abort): report what it became.
    if (!r) {
      assert(d.decision === "ABORT", "only a transiently aborted refund is deleted");
      return fail((d.reason || "internal") as Reason, "a bank could not be reached; nothing moved; retry with the same idempotency key");
    }
    if (r.status !== "PENDING") return replayRefund(r, r.fingerprint);
    assert(r.txnId === d.txnId, "the round is this refund's");
    if (d.decision === "COMMIT") {
      await store.finishRefund(refundId, { status: "COMMITTED" }, nowMs);
      return ok({ refund: must(await store.refundById(refundId)), authorization: must(await store.authById(r.authId)) });
    }
    const reason = (d.reason || "internal") as Reason;
    if (TRANSIENT_ABORT_REASONS.has(reason)) {
      // Nothing moved: the key may try again, once the Abort released this round's debit hold.
      if (await rounds.abortDelivered(d.txnId)) await store.finishRefund(refundId, { status: "RETRY" }, nowMs);
      return fail(reason, "a bank could not be reached; nothing moved; retry with the same idempotency key");
    }
    await store.finishRefund(refundId, { status: "FAILED", reason }, nowMs);
    return fail(reason, `refund failed: ${reason}`, { refund_id: refundId });
  }

  /** A PENDING refund left by a transient abort whose Abort has now been delivered: gone, so the key may try again. */
  async function clearAbortedRefund(r: RefundRecord): Promise<boolean> {
    if (r.status !== "PENDING" || rounds.isRunning(r.txnId)) return false;
    const d = await rounds.decisionOf(r.txnId);
    if (d?.decision !== "ABORT" || !TRANSIENT_ABORT_REASONS.has(d.reason) || !(await rounds.abortDelivered(r.txnId))) return false;
    await store.finishRefund(r.refundId, { status: "RETRY" }, clock.nowMs());
    return true;
  }

  async function refund(merchantUserId: string, idempotencyKey: string, authCode: string, amountMinor: bigint): Promise<CardOutcome<Refunded>> {
    const key = checkIdempotencyKey(idempotencyKey);
    if (!key.ok) return { result: key, replayed: false };
    const amount = checkAmount(amountMinor);
    if (!amount.ok) return { result: amount, replayed: false };
    const fingerprint = sha256(["refund.v1", authCode, amountMinor]);
    for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
      const existing = await store.refundByKey(merchantUserId, idempotencyKey);
      if (existing) {
        if (existing.fingerprint === fingerprint && (await clearAbortedRefund(existing))) continue;
        return { result: await replayRefund(existing, fingerprint), replayed: true, authCode };
      }
      const a = await visibleAuth(merchantUserId, authCode);
      if (!a) return { result: fail("authorization_not_found", "no such authorization"), replayed: false };
      if (a.status !== "CAPTURED") return { result: fail("not_captured", "only a captured authorization can be refunded"), replayed: false };
      const r: RefundRecord = { refundId: `refund_${randomUUID()}`, merchantUserId, idempotencyKey, fingerprint, authId: a.authId, amountMinor, txnId: rounds.newTxnId(), status: "PENDING", reason: "", createdAtMs: clock.nowMs() };
      // Check and reserve in one step: concurrent refunds (on any replica) see each other's reservations.
      const started = await store.startRefund(r, clock.nowMs());
      if (!started.started) {
        if ("existing" in started) continue; // a concurrent request with this key got in first
        const refundable = started.refundableMinor;
        return { result: fail("refund_exceeds_capture", `at most ${refundable} can be refunded now`, { refundable_minor: refundable.toString() }), replayed: false };
      }
      const d = await rounds.runRound(r.txnId, "refund", refundPlan(a, amountMinor));
      const result = await finishRefund(r.refundId, d);
      if (result.ok) logger.info({ authCode, cardLast4: a.cardLast4, refundId: r.refundId, transactionId: d.txnId, amountMinor: amountMinor.toString() }, "refund committed");
      return { result, replayed: false, authCode, cardLast4: a.cardLast4 };
    }
    return { result: fail("idempotency_key_in_use", "this refund is still in progress; retry with the same key"), replayed: true, authCode };
  }

  // ---- reads, expiry, recovery ----------------------------------------------

  async function getAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>> {
    const a = await visibleAuth(merchantUserId, authCode);
    if (!a) return fail("authorization_not_found", "no such authorization");
    // Reading a lapsed authorization records its expiry right away rather than at the next sweep.
    if (a.status === "APPROVED" && (await expireIfDue(a))) return ok(must(await store.authById(a.authId)));
    return ok(a);
  }

  async function expireDue(): Promise<number> {
    const expired = await store.expireDue(clock.nowMs(), EXPIRE_BATCH_MAX);
    for (const a of expired) logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
    return expired.length;
  }

  /** Pages through `page()` until it yields nothing new (rows left as they were, e.g. an Abort not yet delivered, are not revisited). */
  /** Returns how many rows fn acted on (it returns false for a row it leaves alone). */
  async function forEachPage<T>(page: () => Promise<T[]>, id: (row: T) => string, fn: (row: T) => Promise<boolean>): Promise<number> {
    const seen = new Set<string>();
    let acted = 0;
    for (let i = 0; i < RECOVERY_PAGES_MAX; i++) {
      const fresh = (await page()).filter((row) => !seen.has(id(row)));
      if (fresh.length === 0) break;
      for (const row of fresh) {
        seen.add(id(row));
        if (await fn(row)) acted++;
      }
    }
    return acted;
  }

  async function recover(replica = o.replica): Promise<CardsRecovery> {
    const authorizations = await forEachPage(
      () => store.pendingAuths(RECOVERY_BATCH_MAX, replica),
      (a) => a.authId,
      async (a) => {
        if (authorizing.has(a.authId) || (a.holdTxnId !== "" && rounds.isRunning(a.holdTxnId))) return false;
        // Its request is gone before the hold round started: nothing reached a bank.
        if (a.holdTxnId === "") await store.deleteAuth(a.authId);
        else await finishHold(a.authId, await rounds.settleRound(a.holdTxnId, [a.cardBank]));
        return true;
      },
    );
    const operations = await forEachPage(
      () => store.authsWithOp(RECOVERY_BATCH_MAX, replica),
      (a) => a.authId,
      async (a) => {
        if (rounds.isRunning(a.opTxnId)) return false;
        await applyOp(a.authId, await rounds.settleRound(a.opTxnId, opBanks(a)));
        return true;
      },
    );
    const refunds = await forEachPage(
      () => store.pendingRefunds(RECOVERY_BATCH_MAX, replica),
      (r) => r.refundId,
      async (r) => {
        if (rounds.isRunning(r.txnId)) return false;
        const a = must(await store.authById(r.authId));
        await finishRefund(r.refundId, await rounds.settleRound(r.txnId, refundBanks(a)));
        return true;
      },
    );
    // Batches it owns but is not settling (a run that ended while the store was unreachable, or a restart).
    const batches = await store.releaseBatches(replica, replica === o.replica ? [...runningBatches] : []);
    if (authorizations + operations + refunds + batches > 0) logger.info({ replica, authorizations, operations, refunds, batches }, "card recovery");
    return { authorizations, operations, refunds };
  }

  /**
   * Card records of this replica left mid-round by a request that no longer
   * runs (it lost the store: a write whose outcome is unknown, a round never
   * registered): settled as recovery settles them — from the round's decision,
   * or a presumed abort, which is safe for a round no request runs.
   */
  const settleOrphans = (replica = o.replica) => recover(replica);

  function startExpiry(intervalMs: number): () => Promise<void> {
    let stopped = false;
    let running: Promise<unknown> = Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      running = expireDue()
        .catch((e: unknown) => {
          if (e instanceof AssertionError) throw e;
          logger.error({ err: e instanceof Error ? e.message : String(e) }, "authorization expiry sweep failed");
        })
        .finally(() => {
          if (!stopped) timer = setTimeout(tick, intervalMs);
        });
    };
    timer = setTimeout(tick, intervalMs);
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    };
  }

  return { issueCard, authorize, settleBatch, voidAuthorization, refund, getAuthorization, expireDue, recover, settleOrphans, startExpiry };
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
