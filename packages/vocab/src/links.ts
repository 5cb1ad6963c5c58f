// Linking a bank account to a gateway user (DESIGN.md §11): the shapes of the
// link code a bank gives its customer and of the holder's name. One rule for
// paycli (checks before sending), the gateway (at the edge) and the bank
// (which compares them).
import { findControlCharacter } from "./text.js";

/** What a bank issues: letters and digits no one misreads for another (no 0/O, 1/I/L, U). */
export const LINK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789";
/** An issued code has 12 of those 30 symbols: about 59 bits, shown as XXXX-XXXX-XXXX. */
export const LINK_CODE_LENGTH = 12;
/** Longer input is never a code: refused before any work. */
export const LINK_CODE_INPUT_LENGTH_MAX = 64;
/** A code once dashes and spaces are gone: letters (any case) and digits, 8 to 32 (a setup file may choose its own). */
const NORMALIZED_LINK_CODE = /^[A-Z0-9]{8,32}$/;

/** The code as compared and hashed (grouping and case do not matter), or undefined when it cannot be one. */
export function normalizeLinkCode(text: string): string | undefined {
  if (text.length > LINK_CODE_INPUT_LENGTH_MAX) return undefined;
  const code = text.replace(/[\s-]/g, "").toUpperCase();
  return NORMALIZED_LINK_CODE.test(code) ? code : undefined;
}

/** "K7QF9XMB3TRW" -> "K7QF-9XMB-3TRW", for people. */
export function formatLinkCode(code: string): string {
  return (code.match(/.{1,4}/g) ?? []).join("-");
}

export const HOLDER_NAME_LENGTH_MAX = 100;

/** Why a holder name cannot be one (for the caller), undefined when it can. */
export function checkHolderNameShape(name: string): string | undefined {
  const n = [...name.trim()].length;
  if (n === 0 || n > HOLDER_NAME_LENGTH_MAX) return `holder_name must be 1 to ${HOLDER_NAME_LENGTH_MAX} characters`;
  if (findControlCharacter(name) !== -1) return "holder_name must not contain control characters";
  return undefined;
}

/** The holder name as a bank compares it: Unicode NFKC, spaces collapsed and trimmed, case folded. */
export function normalizeHolderName(name: string): string {
  return name.normalize("NFKC").trim().replace(/\s+/g, " ").toLowerCase();
}
