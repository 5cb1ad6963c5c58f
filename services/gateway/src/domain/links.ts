// Linking bank accounts to users (DESIGN.md §11). A customer links an account
// they hold at a bank by proving it to that bank: the holder's name and the
// link code the bank gave them. The bank decides (it counts failures and
// locks, and answers an unknown account exactly like a wrong code) and, on
// success, makes the caller the account's owner; only then does the
// directory get the entry, so the account appears in GetBalance and can pay
// and be paid, on every replica (the directory is in the shared store).
//
// A crash between the bank's yes and the directory's write leaves the account
// the caller's at the bank and no one's in the directory: nobody else can
// link it (the code is used up) and the caller's retry completes it (the
// bank answers a repeat of the same link the same way).
//
// An admin issues new codes and unlinks: the bank first (its owner is what
// every debit's Prepare checks), then the directory, whose removal every
// replica's cache hears of.
import type { Faults } from "@paygate/faults";
import { ACCOUNT_ID_PATTERN, bankOfAccountId, checkHolderNameShape, normalizeLinkCode } from "@paygate/vocab";
import type { EventLogger } from "./coordinator.js";
import { fail, ok, type Result } from "./model.js";
import { accountView, type AccountView } from "./payments.js";
import type { BankLinks, Clock, Directory, RateLimits } from "./ports.js";
import { hitRateLimit } from "./sign-up.js";

export interface LinksOptions {
  readonly directory: Directory;
  readonly banks: BankLinks;
  readonly limits: RateLimits;
  readonly clock: Clock;
  /** Configured bank names (BANKS). */
  readonly bankNames: readonly string[];
  readonly faults: Faults;
  readonly logger: EventLogger;
  /** Link attempts per user per window (LINK_RATE_MAX / LINK_RATE_WINDOW_MS). */
  readonly attemptsMax: number;
  readonly windowMs: number;
}

export interface LinkInput {
  readonly accountId: string;
  readonly holderName: string;
  readonly linkCode: string;
}

export interface Linked {
  readonly account: AccountView;
  /** For the call's log line: what happened, in order (never the code). */
  readonly steps: readonly string[];
}

export interface IssuedLinkCode {
  readonly accountId: string;
  /** Shown once; the bank keeps only a hash. */
  readonly linkCode: string;
  readonly holderName: string;
}

export interface UnlinkedAccount {
  readonly accountId: string;
  readonly previousOwnerUserId: string;
}

export interface Links {
  link(callerUserId: string, input: LinkInput): Promise<Result<Linked>>;
  issueCode(accountId: string, holderName: string): Promise<Result<IssuedLinkCode>>;
  unlink(accountId: string): Promise<Result<UnlinkedAccount>>;
}

export const LINK_SCOPE = "link";
/** What a caller hears for anything the bank did not verify, and for a bank this gateway does not know. */
const LINK_FAILED = "the account, the holder's name and the link code do not match";

function checkAccount(accountId: string, bankNames: readonly string[]): Result<string> {
  if (!ACCOUNT_ID_PATTERN.test(accountId))
    return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
  const bank = bankOfAccountId(accountId) ?? "";
  return bankNames.includes(bank)
    ? ok(bank)
    : fail("bank_not_found", `bank ${JSON.stringify(bank)} is not configured`, { field: "account_id" });
}

export function createLinks(o: LinksOptions): Links {
  const { directory, banks, clock } = o;

  async function link(callerUserId: string, input: LinkInput): Promise<Result<Linked>> {
    if (!ACCOUNT_ID_PATTERN.test(input.accountId))
      return fail("invalid_account_id", 'account_id must look like "<bank>/<number>"', { field: "account_id" });
    const nameProblem = checkHolderNameShape(input.holderName);
    if (nameProblem) return fail("invalid_argument", nameProblem, { field: "holder_name" });
    const code = normalizeLinkCode(input.linkCode);
    if (code === undefined)
      return fail("invalid_argument", "link_code must be 8 to 32 letters and digits (dashes and spaces allowed)", {
        field: "link_code",
      });
    const nowMs = clock.nowMs();
    // Every well-formed attempt counts: the banks' per-account locks bound guessing one account, this bounds trying many.
    const limited = await hitRateLimit(o, LINK_SCOPE, callerUserId, nowMs, "link attempts");
    if (limited) return limited;
    const bank = bankOfAccountId(input.accountId) ?? "";
    // An unknown bank answers as an unknown account does.
    if (!o.bankNames.includes(bank)) return fail("link_failed", LINK_FAILED);
    const steps: string[] = [];
    // Always the bank, even for an account the directory says is the caller's: one path, one answer time.
    const verified = await banks.verify(bank, {
      accountId: input.accountId,
      holderName: input.holderName,
      linkCode: code,
      userId: callerUserId,
    });
    if (!verified.ok) return fail(verified.reason, verified.reason === "link_failed" ? LINK_FAILED : verified.message);
    steps.push("bank_verified");
    o.faults.hit("gateway.after_link_verified");
    const entry = { accountId: input.accountId, bank, ownerUserId: callerUserId, currency: verified.value.currency };
    if (await directory.add(entry, clock.nowMs())) {
      steps.push("directory_recorded");
    } else {
      const known = await directory.find(input.accountId);
      if (known?.ownerUserId !== callerUserId) {
        // The bank says it is the caller's now, the directory someone else's: an unlink that stopped half-way. An admin re-runs it.
        o.logger.error(
          { accountId: input.accountId, bank, caller: callerUserId, directoryOwner: known?.ownerUserId },
          "the bank linked an account the directory gives to another user; re-run UnlinkBankAccount",
        );
        return fail("already_linked", `account ${input.accountId} belongs to another user`, {
          account_id: input.accountId,
        });
      }
      steps.push("directory_had_it");
    }
    o.faults.hit("gateway.after_link_recorded");
    return ok({ account: accountView(entry, verified.value), steps });
  }

  async function issueCode(accountId: string, holderName: string): Promise<Result<IssuedLinkCode>> {
    const bank = checkAccount(accountId, o.bankNames);
    if (!bank.ok) return bank;
    if (holderName !== "") {
      const problem = checkHolderNameShape(holderName);
      if (problem) return fail("invalid_argument", problem, { field: "holder_name" });
    }
    // A code for an account someone holds would let another person take it.
    if (await directory.find(accountId))
      return fail("already_linked", `account ${accountId} belongs to a user: unlink it first`, {
        account_id: accountId,
      });
    const r = await banks.issueCode(bank.value, accountId, holderName);
    if (!r.ok) return fail(r.reason, `bank ${bank.value}: ${r.message}`, { account_id: accountId, bank: bank.value });
    return ok({ accountId, linkCode: r.value.linkCode, holderName: r.value.holderName });
  }

  async function unlink(accountId: string): Promise<Result<UnlinkedAccount>> {
    const bank = checkAccount(accountId, o.bankNames);
    if (!bank.ok) return bank;
    // The bank first: once it has no owner, no debit of the account can prepare, whatever any cache says.
    const r = await banks.unlink(bank.value, accountId);
    if (!r.ok) return fail(r.reason, `bank ${bank.value}: ${r.message}`, { account_id: accountId, bank: bank.value });
    const removed = await directory.remove(accountId);
    return ok({ accountId, previousOwnerUserId: removed?.ownerUserId ?? r.value.previousOwnerUserId });
  }

  return { link, issueCode, unlink };
}
