// Card numbers (PANs): the Luhn check digit, and generating numbers under a
// bank's BIN. Digits only; callers strip spaces and dashes first.

export const PAN_LENGTH_MIN = 12;
export const PAN_LENGTH_MAX = 19;
/** What IssueCard generates: BIN (6) + account digits + check digit. */
export const GENERATED_PAN_LENGTH = 16;
const DIGITS = /^[0-9]+$/;

/** The digit that makes `partial` + digit pass Luhn. */
export function luhnCheckDigit(partial: string): number {
  if (!DIGITS.test(partial)) throw new RangeError("luhnCheckDigit takes digits only");
  let sum = 0;
  // Walking from the right of the partial number, every first digit gets doubled
  // (it sits second-from-right once the check digit is appended).
  for (let i = partial.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = partial.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - (sum % 10)) % 10;
}

export function luhnValid(pan: string): boolean {
  if (!DIGITS.test(pan) || pan.length < 2) return false;
  return luhnCheckDigit(pan.slice(0, -1)) === pan.charCodeAt(pan.length - 1) - 48;
}

/** Spaces and dashes as people type them; anything else makes the number invalid. */
export function normalizePan(input: string): string {
  return input.replace(/[\s-]/g, "");
}

export function isPlausiblePan(pan: string): boolean {
  return DIGITS.test(pan) && pan.length >= PAN_LENGTH_MIN && pan.length <= PAN_LENGTH_MAX && luhnValid(pan);
}

/**
 * A new number under `bin`; `randomDigit` supplies the account digits
 * (crypto-random in production, scripted in tests).
 */
export function generatePan(bin: string, randomDigit: () => number, length = GENERATED_PAN_LENGTH): string {
  if (!DIGITS.test(bin) || bin.length >= length - 1)
    throw new RangeError("bin must be digits, shorter than the number");
  let partial = bin;
  while (partial.length < length - 1) {
    const d = randomDigit();
    if (!Number.isInteger(d) || d < 0 || d > 9) throw new RangeError("randomDigit must return 0..9");
    partial += String(d);
  }
  return partial + String(luhnCheckDigit(partial));
}

/** A stable 6-digit BIN per bank ("4" + 5 digits from the name), so a card's number says which bank issued it. */
export function binOfBank(bank: string): string {
  let h = 0;
  for (const c of bank) h = (h * 31 + c.charCodeAt(0)) % 100_000;
  return `4${String(h).padStart(5, "0")}`;
}
