// Issuing a card (DESIGN.md §6.1): an admin issues it against a customer's
// account. Only a token, the last 4 and keyed hashes of the number and CVC are
// stored; the number and CVC are answered once and never again.
import { randomBytes } from "node:crypto";
import type { CardRecord } from "../cards-ports.js";
import { binOfBank, generatePan, isPlausiblePan, normalizePan } from "../luhn.js";
import { fail, ok, type Result } from "../model.js";
import { ACCOUNT_ID_PATTERN, checkPrintable } from "../transfer-rules.js";
import type { CardsContext } from "./context.js";

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

const ISSUE_ATTEMPTS_MAX = 20;
const CARDHOLDER_NAME_LENGTH_MAX = 100;
const EXP_YEAR_MIN = 2000;
const EXP_YEAR_MAX = 2099;
const CARD_VALIDITY_YEARS = 3;

/** A card is good through the last day of its expiry month (UTC). */
export function cardExpired(expMonth: number, expYear: number, nowMs: number): boolean {
  return nowMs >= Date.UTC(expYear, expMonth, 1); // Date.UTC months are 0-based: this is the 1st of the next month
}

export function checkExpiryShape(expMonth: number, expYear: number): Result<void> {
  if (!Number.isInteger(expMonth) || expMonth < 1 || expMonth > 12)
    return fail("invalid_argument", "exp_month must be 1-12", { field: "exp_month" });
  if (!Number.isInteger(expYear) || expYear < EXP_YEAR_MIN || expYear > EXP_YEAR_MAX)
    return fail("invalid_argument", `exp_year must be ${EXP_YEAR_MIN}-${EXP_YEAR_MAX}`, { field: "exp_year" });
  return ok(undefined);
}

export async function issueCard(ctx: CardsContext, input: IssueCardInput): Promise<Result<IssuedCard>> {
  const { store, directory, hasher, clock, logger, rand } = ctx;
  if (!ACCOUNT_ID_PATTERN.test(input.accountId))
    return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
  const account = await directory.find(input.accountId);
  if (!account)
    return fail("account_not_found", `account ${input.accountId} not found`, { account_id: input.accountId });
  const cardholderName = input.cardholderName.trim();
  if (
    [...cardholderName].length > CARDHOLDER_NAME_LENGTH_MAX ||
    !checkPrintable(cardholderName, "cardholder_name").ok
  ) {
    return fail(
      "invalid_argument",
      `cardholder_name must be at most ${CARDHOLDER_NAME_LENGTH_MAX} printable characters`,
      { field: "cardholder_name" },
    );
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
  if (input.cvc !== "" && !/^[0-9]{3}$/.test(input.cvc))
    return fail("invalid_argument", "cvc must be 3 digits", { field: "cvc" });
  const cvc = input.cvc || Array.from({ length: 3 }, () => String(rand(10))).join("");
  const given = input.number !== "" ? normalizePan(input.number) : undefined;
  if (given !== undefined && !isPlausiblePan(given))
    return fail("invalid_number", "number must be 12-19 digits passing the Luhn check", { field: "number" });

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
    if (given !== undefined)
      return fail("already_exists", "a card with this number already exists", { field: "number" });
  }
  return fail("internal", "could not allocate a card number");
}
