// Authorize (DESIGN.md §6.1): check the request and the card, claim the
// (merchant, key) by inserting the authorization PENDING, ask the credit
// bureau, apply the risk rule (recorded with today's spend, serialized per
// card), then place the hold in a round of its own (hold.ts). Declines are
// stored outcomes; failed validation and transient failures are not.
import { randomUUID } from "node:crypto";
import { parseCurrency } from "@paygate/money";
import {
  UNDECIDED_AUTHORIZATION,
  type AuthChange,
  type AuthRecord,
  type CardRecord,
  type CreditReportResult,
} from "../cards-ports.js";
import { isPlausiblePan, normalizePan } from "../luhn.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type Result } from "../model.js";
import { evaluateRisk, noReportDecision, utcDayStartMs, type RiskDecision } from "../risk.js";
import {
  ACCOUNT_ID_PATTERN,
  checkAmount,
  checkIdempotencyKey,
  checkPrintable,
  MEMO_LENGTH_MAX,
} from "../transfer-rules.js";
import { fingerprintOf, INSERT_ATTEMPTS_MAX, must, type CardOutcome, type CardsContext } from "./context.js";
import { declined, finishHold, holdPlan } from "./hold.js";
import { cardExpired, checkExpiryShape } from "./issue.js";

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

const AUTH_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const CODE_ATTEMPTS_MAX = 20;
/** Re-runs of the risk rule when another authorization of the card changed today's spend meanwhile. */
const RISK_ATTEMPTS_MAX = 20;

interface CheckedAuthorize {
  readonly merchantBank: string;
  readonly pan: string;
  readonly fingerprint: string;
}

/** Everything that needs no stored state beyond the directory: shape, merchant account, number. */
async function checkAuthorize(
  ctx: CardsContext,
  merchantUserId: string,
  input: AuthorizeInput,
): Promise<Result<CheckedAuthorize>> {
  const key = checkIdempotencyKey(input.idempotencyKey);
  if (!key.ok) return key;
  const amount = checkAmount(input.amountMinor);
  if (!amount.ok) return amount;
  if (!parseCurrency(input.currency))
    return fail("invalid_currency", "currency must be three capital letters (ISO 4217)", { field: "currency" });
  if ([...input.merchantReference].length > MEMO_LENGTH_MAX)
    return fail("invalid_argument", `merchant_reference must be at most ${MEMO_LENGTH_MAX} characters`, {
      field: "merchant_reference",
    });
  const reference = checkPrintable(input.merchantReference, "merchant_reference");
  if (!reference.ok) return reference;
  if (!ACCOUNT_ID_PATTERN.test(input.merchantAccountId))
    return fail("invalid_account_id", 'merchant_account_id must look like "<bank>/<number>"', {
      field: "merchant_account_id",
    });
  const merchant = await ctx.directory.find(input.merchantAccountId);
  if (!merchant)
    return fail("account_not_found", `account ${input.merchantAccountId} not found`, {
      account_id: input.merchantAccountId,
    });
  if (merchant.ownerUserId !== merchantUserId)
    return fail("not_account_owner", `you do not own ${input.merchantAccountId}`, {
      account_id: input.merchantAccountId,
    });
  if (merchant.currency !== input.currency)
    return fail("currency_mismatch", `account ${input.merchantAccountId} holds ${merchant.currency}`, {
      account_id: input.merchantAccountId,
    });
  // Never echo the number back: the message names the rule only.
  const pan = normalizePan(input.card.number);
  if (!isPlausiblePan(pan)) return fail("invalid_number", "the card number is not valid", { field: "card.number" });
  const panHmac = ctx.hasher.panHmac(pan);
  const fingerprint = fingerprintOf([
    "authorize.v1",
    panHmac,
    input.card.expMonth,
    input.card.expYear,
    input.amountMinor,
    input.currency,
    input.merchantAccountId,
    input.merchantReference,
  ]);
  return ok({ merchantBank: merchant.bank, pan, fingerprint });
}

/** The card itself: expiry, existence, CVC, currency. Not stored when it fails. */
async function checkCard(
  ctx: CardsContext,
  details: CardDetails,
  pan: string,
  currency: string,
): Promise<Result<CardRecord>> {
  const shape = checkExpiryShape(details.expMonth, details.expYear);
  if (!shape.ok) return fail("invalid_argument", shape.message, { field: `card.${shape.metadata?.field ?? "exp"}` });
  const nowMs = ctx.clock.nowMs();
  if (cardExpired(details.expMonth, details.expYear, nowMs)) return fail("expired_card", "the card has expired");
  const card = await ctx.store.cardByPanHmac(ctx.hasher.panHmac(pan));
  if (!card) return fail("card_not_found", "no such card");
  if (cardExpired(card.expMonth, card.expYear, nowMs)) return fail("expired_card", "the card has expired");
  if (card.expMonth !== details.expMonth || card.expYear !== details.expYear)
    return fail("invalid_argument", "the expiry date does not match the card", { field: "card.exp" });
  if (!ctx.hasher.cvcMatches(card.cardId, details.cvc, card.cvcHash))
    return fail("incorrect_cvc", "the security code is incorrect");
  if (card.currency !== currency) return fail("currency_mismatch", `the card's account holds ${card.currency}`);
  return ok(card);
}

function replayAuthorize(existing: AuthRecord, fingerprint: string): Result<AuthRecord> {
  const meta = { auth_code: existing.authCode };
  if (existing.fingerprint !== fingerprint)
    return fail("idempotency_key_reused", "this idempotency key was used for a different request");
  if (existing.status === "PENDING")
    return fail("idempotency_key_in_use", "this authorization is still in progress; retry with the same key", meta);
  if (existing.status === "DECLINED") return declined(existing);
  return ok(existing);
}

/**
 * A PENDING authorization whose hold round ended in a transient ABORT: once
 * that Abort reached the bank (its hold is gone), the row goes and the key
 * may try again. True if it went.
 */
async function clearAbortedAttempt(ctx: CardsContext, a: AuthRecord): Promise<boolean> {
  const { rounds } = ctx;
  if (a.status !== "PENDING" || a.holdTxnId === "" || rounds.isRunning(a.holdTxnId)) return false;
  const d = await rounds.decisionOf(a.holdTxnId);
  if (d?.decision !== "ABORT" || !TRANSIENT_ABORT_REASONS.has(d.reason)) return false;
  if (!(await rounds.abortDelivered(a.holdTxnId))) return false;
  await ctx.store.deleteAuth(a.authId);
  return true;
}

async function newAuthCode(ctx: CardsContext): Promise<string | undefined> {
  for (let i = 0; i < CODE_ATTEMPTS_MAX; i++) {
    const code = Array.from({ length: 6 }, () => AUTH_CODE_ALPHABET[ctx.rand(AUTH_CODE_ALPHABET.length)]).join("");
    if (!(await ctx.store.authByCode(code))) return code;
  }
  return undefined;
}

function newAuthRecord(
  ctx: CardsContext,
  merchantUserId: string,
  input: AuthorizeInput,
  card: CardRecord,
  authCode: string,
  fingerprint: string,
  merchantBank: string,
): AuthRecord {
  const nowMs = ctx.clock.nowMs();
  return {
    authId: `auth_${randomUUID()}`,
    replica: ctx.replica,
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
    expiresAtMs: nowMs + ctx.authHoldTtlMs,
    updatedAtMs: nowMs,
  };
}

export async function authorize(
  ctx: CardsContext,
  merchantUserId: string,
  input: AuthorizeInput,
): Promise<CardOutcome<AuthRecord>> {
  const checked = await checkAuthorize(ctx, merchantUserId, input);
  if (!checked.ok) return { result: checked, replayed: false };
  const { pan, fingerprint, merchantBank } = checked.value;
  for (let attempt = 0; attempt < INSERT_ATTEMPTS_MAX; attempt++) {
    const existing = await ctx.store.authByKey(merchantUserId, input.idempotencyKey);
    if (existing) {
      if (existing.fingerprint === fingerprint && (await clearAbortedAttempt(ctx, existing))) continue;
      return {
        result: replayAuthorize(existing, fingerprint),
        replayed: true,
        authCode: existing.authCode,
        cardLast4: existing.cardLast4,
      };
    }
    const card = await checkCard(ctx, input.card, pan, input.currency);
    if (!card.ok) return { result: card, replayed: false, cardLast4: pan.slice(-4) };
    const authCode = await newAuthCode(ctx);
    if (!authCode) return { result: fail("internal", "could not allocate an authorization code"), replayed: false };
    const auth = newAuthRecord(ctx, merchantUserId, input, card.value, authCode, fingerprint, merchantBank);
    // False: another request (on any replica) took the key or the code first; look again.
    if (await ctx.store.insertAuth(auth)) {
      // Ours until we answer: the orphan sweep leaves it alone (the bureau call may take a while).
      ctx.authorizing.add(auth.authId);
      try {
        return { result: await placeHold(ctx, auth), replayed: false, authCode, cardLast4: auth.cardLast4 };
      } finally {
        ctx.authorizing.delete(auth.authId);
      }
    }
  }
  return {
    result: fail("idempotency_key_in_use", "this authorization is still in progress; retry with the same key"),
    replayed: true,
  };
}

/** The risk rule over today's spend, recorded only if that spend is still what the rule saw. */
async function decideRisk(
  ctx: CardsContext,
  auth: AuthRecord,
  report: CreditReportResult,
): Promise<{ readonly risk: RiskDecision; readonly txnId: string } | undefined> {
  for (let attempt = 0; attempt < RISK_ATTEMPTS_MAX; attempt++) {
    const nowMs = ctx.clock.nowMs();
    const sinceMs = utcDayStartMs(nowMs);
    const spentMinor = await ctx.store.spentSince(auth.cardId, sinceMs, auth.authId);
    const risk: RiskDecision = report.ok
      ? evaluateRisk(ctx.risk, {
          score: report.report.score,
          amountMinor: auth.amountMinor,
          spentTodayMinor: spentMinor,
        })
      : noReportDecision();
    const recorded: AuthChange = { riskScore: risk.score, riskApproved: risk.approved, riskRule: risk.rule };
    const txnId = risk.approved ? ctx.rounds.newTxnId() : "";
    const change: AuthChange = risk.approved
      ? { ...recorded, holdTxnId: txnId }
      : { ...recorded, status: "DECLINED", declineReason: risk.reason ?? "risk_declined" };
    if (await ctx.store.recordRisk(auth.authId, auth.cardId, sinceMs, spentMinor, change, nowMs))
      return { risk, txnId };
  }
  return undefined;
}

/** The bureau, the risk rule, then the hold round; a transient failure frees the key. */
async function placeHold(ctx: CardsContext, auth: AuthRecord): Promise<Result<AuthRecord>> {
  const { store, logger } = ctx;
  const report = await ctx.bureau.fetch(auth.cardOwnerUserId);
  if (!report.ok && report.reason === "bureau_unavailable") {
    // Nothing was decided: free the key so a retry can ask again.
    await store.deleteAuth(auth.authId);
    logger.warn({ authCode: auth.authCode, reason: report.message }, "credit bureau unavailable");
    return fail("bureau_unavailable", "the credit bureau is unavailable; retry with the same idempotency key");
  }
  const decided = await decideRisk(ctx, auth, report);
  if (!decided) {
    await store.deleteAuth(auth.authId);
    return fail("idempotency_key_in_use", "too many authorizations of this card at once; retry with the same key");
  }
  const { risk, txnId } = decided;
  if (!risk.approved) {
    logger.info(
      { authCode: auth.authCode, cardLast4: auth.cardLast4, score: risk.score, rule: risk.rule, reason: risk.reason },
      "authorization declined by the risk rule",
    );
    return declined(must(await store.authById(auth.authId)));
  }
  const d = await ctx.rounds.runRound(txnId, "auth_hold", holdPlan(ctx, auth));
  return finishHold(ctx, auth.authId, d);
}
