// Money is an integer count of minor units (cents) plus an ISO 4217 code.
// No floating point anywhere money passes; amounts travel as int64 in proto.

export const INT64_MAX = 9_223_372_036_854_775_807n;
/** Largest amount one request may move; far below int64 so sums cannot overflow. */
export const AMOUNT_MINOR_MAX = 1_000_000_000_000_00n; // 1e14 minor units (1 trillion in major units)

export type Currency = string & { readonly __brand: "Currency" };

export interface Money {
  readonly amountMinor: bigint;
  readonly currency: Currency;
}

const CURRENCY_PATTERN = /^[A-Z]{3}$/;

export type MoneyProblem = "invalid_amount" | "invalid_currency";

export function parseCurrency(code: string): Currency | undefined {
  return CURRENCY_PATTERN.test(code) ? (code as Currency) : undefined;
}

/** A positive amount that one transfer, deposit or capture may move. */
export function checkPositiveAmount(amountMinor: bigint): MoneyProblem | undefined {
  if (amountMinor <= 0n || amountMinor > AMOUNT_MINOR_MAX) return "invalid_amount";
  return undefined;
}

export function money(amountMinor: bigint, currency: string): Money {
  const c = parseCurrency(currency);
  assert(c !== undefined, `invalid currency ${JSON.stringify(currency)}`);
  return { amountMinor, currency: c };
}

/** Formats 12345n USD as "123.45 USD" for people (never parsed back). */
export function formatMoney(amountMinor: bigint, currency: string): string {
  const negative = amountMinor < 0n;
  const abs = negative ? -amountMinor : amountMinor;
  const whole = abs / 100n;
  const cents = (abs % 100n).toString().padStart(2, "0");
  return `${negative ? "-" : ""}${whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${cents} ${currency}`;
}

/**
 * Parses a decimal amount typed by a person ("12", "12.5", "12.50") into minor
 * units. Exactly two decimal places at most; no exponent, no sign.
 */
export function parseMajorAmount(text: string): bigint | undefined {
  const m = /^(\d{1,15})(?:\.(\d{1,2}))?$/.exec(text.trim());
  if (!m) return undefined;
  const whole = BigInt(m[1] ?? "0");
  const frac = BigInt((m[2] ?? "").padEnd(2, "0"));
  return whole * 100n + frac;
}

export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Invariant check: a false condition is a programmer error, never a user error. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`invariant violated: ${message}`);
}
