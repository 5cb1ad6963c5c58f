// What the shopper typed, checked before anything leaves the shop. The same
// rules run in the browser (web/client-script.ts, tested against these) so
// most mistakes never cause a round trip; the server checks again because the
// browser's checks are a convenience, not a guard.

export type Field = "idempotencyKey" | "cardholderName" | "cardNumber" | "expiry" | "cvc";

/** Raw form input: strings exactly as posted. */
export interface CardInput {
  readonly cardholderName: string;
  readonly cardNumber: string;
  readonly expiry: string;
  readonly cvc: string;
}

export interface CardDetails {
  readonly cardholderName: string;
  /** Digits only. */
  readonly number: string;
  readonly expMonth: number;
  /** Four digits. */
  readonly expYear: number;
  readonly cvc: string;
}

export type FieldErrors = Partial<Record<Field, string>>;

export const CARD_DIGITS_MIN = 12;
export const CARD_DIGITS_MAX = 19;
export const NAME_LENGTH_MAX = 100;
/** Cards are not issued for longer than this; a later year is a typo. */
export const EXPIRY_YEARS_AHEAD_MAX = 20;
// Hidden-field keys are UUIDs; API clients may choose their own in this alphabet.
export const ATTEMPT_KEY_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/** Spaces and dashes are how people group card numbers; anything else is an error. */
export function cardDigits(text: string): string | undefined {
  const stripped = text.replace(/[\s-]/g, "");
  return /^\d*$/.test(stripped) ? stripped : undefined;
}

export function luhnValid(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** "MM/YY", "MM / YY", "MM/YYYY", "MMYY" -> month and four-digit year. */
export function parseExpiry(text: string): { month: number; year: number } | undefined {
  const m = /^\s*(\d{1,2})\s*\/?\s*(\d{2}|\d{4})\s*$/.exec(text);
  if (!m) return undefined;
  const month = Number(m[1]);
  const yy = m[2] ?? "";
  const year = yy.length === 2 ? 2000 + Number(yy) : Number(yy);
  if (month < 1 || month > 12) return undefined;
  return { month, year };
}

/** A card is good through the last day of its expiry month (UTC). */
export function expiryProblem(month: number, year: number, nowMs: number): "expired" | "too_far" | undefined {
  const now = new Date(nowMs);
  const nowIndex = now.getUTCFullYear() * 12 + now.getUTCMonth();
  const index = year * 12 + (month - 1);
  if (index < nowIndex) return "expired";
  if (year > now.getUTCFullYear() + EXPIRY_YEARS_AHEAD_MAX) return "too_far";
  return undefined;
}

export type CardCheck =
  | { readonly ok: true; readonly card: CardDetails }
  | { readonly ok: false; readonly errors: FieldErrors };

/** Every field checked, every problem reported, in words a shopper understands. */
export function validateCard(input: CardInput, nowMs: number): CardCheck {
  const errors: FieldErrors = {};

  const name = input.cardholderName.trim().replace(/\s+/g, " ");
  if (name.length === 0) errors.cardholderName = "Enter the name as it appears on the card.";
  else if (name.length < 2 || name.length > NAME_LENGTH_MAX || /[\p{Cc}\p{Cf}]/u.test(name)) {
    errors.cardholderName = `Enter the name on the card (2 to ${NAME_LENGTH_MAX} characters).`;
  }

  const digits = cardDigits(input.cardNumber);
  if (input.cardNumber.trim() === "") errors.cardNumber = "Enter your card number.";
  else if (digits === undefined) errors.cardNumber = "A card number has digits only.";
  else if (digits.length < CARD_DIGITS_MIN || digits.length > CARD_DIGITS_MAX)
    errors.cardNumber = `A card number has ${CARD_DIGITS_MIN} to ${CARD_DIGITS_MAX} digits.`;
  else if (!luhnValid(digits)) errors.cardNumber = "This card number is not valid. Check it for typos.";

  const exp = parseExpiry(input.expiry);
  if (input.expiry.trim() === "") errors.expiry = "Enter the expiry date (MM/YY).";
  else if (!exp) errors.expiry = "Enter the expiry date as MM/YY, for example 04/29.";
  else {
    const p = expiryProblem(exp.month, exp.year, nowMs);
    if (p === "expired") errors.expiry = "This card has expired.";
    else if (p === "too_far") errors.expiry = "Check the expiry year.";
  }

  const cvc = input.cvc.trim();
  if (cvc === "") errors.cvc = "Enter the security code (CVC).";
  else if (!/^\d{3,4}$/.test(cvc)) errors.cvc = "The security code is 3 digits (4 on some cards).";

  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return { ok: true, card: { cardholderName: name, number: digits!, expMonth: exp!.month, expYear: exp!.year, cvc } };
}

export function last4(digits: string): string {
  return digits.slice(-4);
}
