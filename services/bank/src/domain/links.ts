// Who may link an account to a gateway user (DESIGN.md §11). The bank knows
// its account holders: the holder's name and, once the bank gave them one, a
// link code, kept only as a salted hash. VerifyLink checks name and code
// together; a success makes the gateway user the account's owner (the owner
// every debit's Prepare checks, so the bank stays the truth for ownership)
// and uses the code up. Failures are counted durably per account id, for ids
// the bank does not know too: an unknown account, a wrong name and a wrong
// code answer, count and lock alike, so a stranger learns nothing from them.
//
// Every function runs inside ONE store transaction (LinkTx) and checks
// everything before its first write; a failed verification is a value (so
// its count commits), not a throw.
import { createHash, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { USER_ID_PATTERN } from "@paygate/seed";
import {
  checkHolderNameShape,
  formatLinkCode,
  LINK_CODE_ALPHABET,
  LINK_CODE_LENGTH,
  normalizeHolderName,
  normalizeLinkCode,
} from "@paygate/vocab";
import { checkAccountId } from "./ledger.js";
import { fail, ok, type Account, type Result } from "./types.js";

/** What the bank keeps about linking one account id (a row exists for unknown ids that were tried, too). */
export interface AccountLink {
  readonly accountId: string;
  /** The holder's name as the bank knows it ("" = none recorded). */
  readonly holderName: string;
  /** "sha256$<salt hex>$<hash hex>"; "" = no code (never issued, or void). */
  readonly codeHash: string;
  /** The user the code linked the account to; "" while unused. */
  readonly codeUsedBy: string;
  /** Failed attempts since the last code was issued. */
  readonly failures: number;
  /** Linking is refused until a new code is issued. */
  readonly locked: boolean;
  readonly updatedAtMs: number;
}

/** What the link rules read and write, inside one atomic transaction. */
export interface LinkTx {
  account(accountId: string): Account | undefined;
  /** "" = the account belongs to nobody. */
  setAccountOwner(accountId: string, ownerUserId: string): void;
  link(accountId: string): AccountLink | undefined;
  saveLink(link: AccountLink): void;
}

/** Failed attempts on one account before its linking locks (LINK_ATTEMPTS_MAX). */
export const LINK_ATTEMPTS_MAX_DEFAULT = 5;

export interface VerifyLinkInput {
  readonly accountId: string;
  readonly holderName: string;
  readonly linkCode: string;
  /** The gateway user the account will belong to. */
  readonly userId: string;
}

export interface Verified {
  readonly account: Account;
  /** False for a repeat of a link already made (same user, same code). */
  readonly changed: boolean;
}

export type VerifyLinkFailure = "invalid_argument" | "invalid_account_id" | "link_failed" | "link_locked";
export type IssueLinkCodeFailure =
  | "invalid_argument"
  | "invalid_account_id"
  | "account_not_found"
  | "account_closed"
  | "already_linked";
export type UnlinkFailure = "invalid_account_id" | "account_not_found";

/** The one answer to every failed verification: it names no cause. */
export const LINK_FAILED_MESSAGE = "the account, the holder's name and the link code do not match";

const HASH_PREFIX = "sha256";

/**
 * A salted SHA-256 of the normalized code, bound to the account id. Why not
 * scrypt: an issued code is 59 random bits, and guessing online is capped at
 * a few attempts per account; offline, a stolen ledger still costs ~2^58
 * hashes per account. (Codes chosen by a setup file may be weaker: demo only.)
 */
export function hashLinkCode(accountId: string, code: string, salt: Buffer = randomBytes(16)): string {
  const digest = createHash("sha256").update(salt).update(`\0${accountId}\0${code}`).digest("hex");
  return `${HASH_PREFIX}$${salt.toString("hex")}$${digest}`;
}

function codeMatches(stored: string, accountId: string, code: string): boolean {
  const [prefix, salt = "", digest = ""] = stored.split("$");
  if (prefix !== HASH_PREFIX || !/^[0-9a-f]{32}$/.test(salt)) return false;
  const again = hashLinkCode(accountId, code, Buffer.from(salt, "hex")).split("$")[2] ?? "";
  return digest.length === again.length && timingSafeEqual(Buffer.from(digest), Buffer.from(again));
}

/** A fresh code from the unambiguous alphabet (the caller formats it for people). */
export function newLinkCode(): string {
  let code = "";
  for (let i = 0; i < LINK_CODE_LENGTH; i++) code += LINK_CODE_ALPHABET[randomInt(LINK_CODE_ALPHABET.length)];
  return code;
}

const DUMMY_HASH = hashLinkCode("-", "-");

export function verifyLink(
  tx: LinkTx,
  bank: string,
  input: VerifyLinkInput,
  nowMs: number,
  attemptsMax: number,
): Result<Verified, VerifyLinkFailure> {
  // Shape first: it does not depend on what the bank knows, so refusing it reveals nothing.
  if (!USER_ID_PATTERN.test(input.userId))
    return fail("invalid_argument", "user_id must be a user id (lowercase letters, digits, _ and -)");
  const id = checkAccountId(bank, input.accountId);
  if (!id.ok) return id;
  const nameProblem = checkHolderNameShape(input.holderName);
  if (nameProblem) return fail("invalid_argument", nameProblem);
  const code = normalizeLinkCode(input.linkCode);
  if (code === undefined)
    return fail("invalid_argument", "link_code must be 8 to 32 letters and digits (dashes and spaces allowed)");

  const row = tx.link(input.accountId);
  if (row?.locked)
    return fail("link_locked", "too many failed attempts to link this account: ask the bank for a new code");
  const account = tx.account(input.accountId);
  // The hash is computed whether or not there is a code to compare with: an unknown account takes as long.
  const codeOk =
    codeMatches(row?.codeHash || DUMMY_HASH, input.accountId, code) && row !== undefined && row.codeHash !== "";
  const nameOk =
    row !== undefined &&
    row.holderName !== "" &&
    normalizeHolderName(row.holderName) === normalizeHolderName(input.holderName);
  if (account?.status === "open" && row && codeOk && nameOk) {
    if (row.codeUsedBy === "" && account.ownerUserId === "") {
      tx.setAccountOwner(account.accountId, input.userId);
      tx.saveLink({ ...row, codeUsedBy: input.userId, failures: 0, updatedAtMs: nowMs });
      return ok({ account: { ...account, ownerUserId: input.userId }, changed: true });
    }
    // The same link again (its answer was lost): the same answer, nothing counted.
    if (row.codeUsedBy === input.userId && account.ownerUserId === input.userId) return ok({ account, changed: false });
  }
  const failures = (row?.failures ?? 0) + 1;
  const locked = failures >= attemptsMax;
  tx.saveLink({
    accountId: input.accountId,
    holderName: row?.holderName ?? "",
    codeHash: row?.codeHash ?? "",
    codeUsedBy: row?.codeUsedBy ?? "",
    failures,
    locked,
    updatedAtMs: nowMs,
  });
  // The attempt that reaches the maximum already answers with the lock (as a login does).
  return locked
    ? fail("link_locked", "too many failed attempts to link this account: ask the bank for a new code")
    : fail("link_failed", LINK_FAILED_MESSAGE);
}

export interface IssueLinkCodeInput {
  readonly accountId: string;
  /** "" = keep the holder's name the bank has. */
  readonly holderName: string;
}

export interface IssuedLinkCode {
  /** Formatted for people (XXXX-XXXX-XXXX); only its hash is kept. */
  readonly linkCode: string;
  readonly holderName: string;
}

export function issueLinkCode(
  tx: LinkTx,
  bank: string,
  input: IssueLinkCodeInput,
  nowMs: number,
  newCode: () => string = newLinkCode,
): Result<IssuedLinkCode, IssueLinkCodeFailure> {
  const id = checkAccountId(bank, input.accountId);
  if (!id.ok) return id;
  if (input.holderName !== "") {
    const problem = checkHolderNameShape(input.holderName);
    if (problem) return fail("invalid_argument", problem);
  }
  const account = tx.account(input.accountId);
  if (!account) return fail("account_not_found", `no account ${input.accountId} at ${bank}`);
  if (account.status !== "open") return fail("account_closed", `account ${input.accountId} is closed`);
  // A code for someone's account would let another person take it: unlink it first.
  if (account.ownerUserId !== "")
    return fail("already_linked", `account ${input.accountId} belongs to a user; unlink it first`);
  const row = tx.link(input.accountId);
  const holderName = input.holderName !== "" ? input.holderName.trim() : (row?.holderName ?? "");
  if (holderName === "")
    return fail("invalid_argument", `the bank has no holder name for ${input.accountId}: send holder_name`);
  const code = newCode();
  tx.saveLink({
    accountId: input.accountId,
    holderName,
    codeHash: hashLinkCode(input.accountId, code),
    codeUsedBy: "",
    failures: 0,
    locked: false,
    updatedAtMs: nowMs,
  });
  return ok({ linkCode: formatLinkCode(code), holderName });
}

export interface Unlinked {
  readonly account: Account;
  /** "" when it already belonged to nobody. */
  readonly previousOwnerUserId: string;
}

export function unlink(tx: LinkTx, bank: string, accountId: string, nowMs: number): Result<Unlinked, UnlinkFailure> {
  const id = checkAccountId(bank, accountId);
  if (!id.ok) return id;
  const account = tx.account(accountId);
  if (!account) return fail("account_not_found", `no account ${accountId} at ${bank}`);
  const previousOwnerUserId = account.ownerUserId;
  if (previousOwnerUserId === "") return ok({ account, previousOwnerUserId });
  tx.setAccountOwner(accountId, "");
  const row = tx.link(accountId);
  // The code that linked it is void: its user could otherwise replay it to take the account back.
  if (row) tx.saveLink({ ...row, codeHash: "", codeUsedBy: "", updatedAtMs: nowMs });
  return ok({ account: { ...account, ownerUserId: "" }, previousOwnerUserId });
}

export interface SeedHolder {
  readonly id: string;
  readonly holder: string;
  readonly linkCode?: string;
}

/** First start only: the holders (and the codes given to them) of this bank's seed accounts. */
export function seedHolders(tx: LinkTx, bank: string, accounts: readonly SeedHolder[], nowMs: number): number {
  let n = 0;
  for (const a of accounts) {
    if (a.holder === "" || !checkAccountId(bank, a.id).ok) continue;
    const code = a.linkCode === undefined ? undefined : normalizeLinkCode(a.linkCode);
    tx.saveLink({
      accountId: a.id,
      holderName: a.holder,
      codeHash: code === undefined ? "" : hashLinkCode(a.id, code),
      codeUsedBy: "",
      failures: 0,
      locked: false,
      updatedAtMs: nowMs,
    });
    n++;
  }
  return n;
}
