// Linking against in-memory ports and a scripted bank: the bank decides, the
// directory follows, every replica's reads follow the bank.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createDecidedFeed } from "./decided-feed.js";
import {
  createManualClock,
  createMemoryDirectory,
  createMemoryLog,
  createMemoryRateLimits,
} from "../../test-support/fakes.js";
import { createLinks } from "./links.js";
import type { DirectoryAccount, Result } from "./model.js";
import { createPaymentQueries } from "./payments.js";
import type { BankAccount, BankLinks, BankResult, Ledgers, VerifyLinkInput } from "./ports.js";
import { createCapturingLogger, throwingFaults } from "../../test-support/test-harness.js";

const reasonOf = (r: Result<unknown>) => (r.ok ? "ok" : r.reason);
const CODE = "K7QF-9XMB-3TRW";

/** A bank that knows one holder per account and links like the real one (a repeat by the same user answers the same). */
function scriptedBank() {
  const owners = new Map<string, string>([
    ["bank-a/1004", ""],
    ["bank-a/1001", "alice"],
  ]);
  const calls: { op: string; accountId: string; userId?: string; linkCode?: string }[] = [];
  const account = (accountId: string): BankAccount => ({
    accountId,
    ownerUserId: owners.get(accountId) ?? "",
    currency: "USD",
    balanceMinor: 20_000n,
    heldMinor: 0n,
    availableMinor: 20_000n,
  });
  let used = "";
  let down = false;
  const links: BankLinks = {
    async verify(_bank, i: VerifyLinkInput): Promise<BankResult<BankAccount>> {
      calls.push({ op: "verify", accountId: i.accountId, userId: i.userId, linkCode: i.linkCode });
      if (down) return { ok: false, reason: "participant_unavailable", message: "down" };
      const right =
        i.accountId === "bank-a/1004" && i.holderName === "Dana Newcomer" && i.linkCode === CODE.replaceAll("-", "");
      if (right && used === "" && owners.get(i.accountId) === "") {
        used = i.userId;
        owners.set(i.accountId, i.userId);
        return { ok: true, value: account(i.accountId) };
      }
      if (right && used === i.userId) return { ok: true, value: account(i.accountId) };
      return { ok: false, reason: "link_failed", message: "the bank's words" };
    },
    async issueCode(_bank, accountId, holderName) {
      calls.push({ op: "issue", accountId });
      return { ok: true, value: { linkCode: "ABCD-EFGH-JKMN", holderName: holderName || "Dana Newcomer" } };
    },
    async unlink(_bank, accountId) {
      calls.push({ op: "unlink", accountId });
      if (down) return { ok: false, reason: "participant_unavailable", message: "down" };
      const previousOwnerUserId = owners.get(accountId) ?? "";
      owners.set(accountId, "");
      used = "";
      return { ok: true, value: { account: account(accountId), previousOwnerUserId } };
    },
  };
  const ledgers: Ledgers = {
    getAccount: async (_bank, accountId) => ({ ok: true, value: account(accountId) }),
    openAccount: async () => ({ ok: false, reason: "internal", message: "unused" }),
    deposit: async () => ({ ok: false, reason: "internal", message: "unused" }),
    totals: async () => ({ ok: false, reason: "internal", message: "unused" }),
  };
  return {
    links,
    ledgers,
    calls,
    owners,
    set down(v: boolean) {
      down = v;
    },
  };
}

function setup(attemptsMax = 100) {
  const bank = scriptedBank();
  const directory = createMemoryDirectory([
    { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  ]);
  const faults = throwingFaults();
  const logger = createCapturingLogger();
  const clock = createManualClock();
  const links = createLinks({
    directory,
    banks: bank.links,
    limits: createMemoryRateLimits(),
    clock,
    bankNames: ["bank-a", "bank-b"],
    faults,
    logger,
    attemptsMax,
    windowMs: 60_000,
  });
  const payments = createPaymentQueries({
    directory,
    history: createMemoryLog(directory),
    ledgers: bank.ledgers,
    feed: createDecidedFeed(),
  });
  const link = (userId = "dana", over: Partial<{ accountId: string; holderName: string; linkCode: string }> = {}) =>
    links.link(userId, { accountId: "bank-a/1004", holderName: "Dana Newcomer", linkCode: CODE, ...over });
  return { bank, directory, faults, logger, clock, links, payments, link };
}

test("a verified link puts the account in the directory under the caller; GetBalance shows it; a repeat answers the same", async () => {
  const h = setup();
  const r = await h.link("dana", { linkCode: "k7qf 9xmb 3trw" });
  assert.ok(r.ok);
  assert.deepEqual(r.value.steps, ["bank_verified", "directory_recorded"]);
  assert.deepEqual(
    [r.value.account.accountId, r.value.account.ownerUserId, r.value.account.balanceMinor],
    ["bank-a/1004", "dana", 20_000n],
  );
  assert.equal(h.bank.calls[0]?.linkCode, "K7QF9XMB3TRW", "the bank gets the code normalized");
  const balances = await h.payments.getBalance("dana", "");
  assert.ok(balances.ok);
  assert.deepEqual(
    balances.value.map((a) => a.accountId),
    ["bank-a/1004"],
  );
  const again = await h.link();
  assert.ok(again.ok);
  assert.deepEqual(again.value.steps, ["bank_verified", "directory_had_it"]);
});

test("whatever the bank does not verify answers link_failed with one message, and an unknown bank answers the same without asking any", async () => {
  const h = setup();
  const answers = [
    await h.link("dana", { linkCode: "WRONG-CODE-XX" }),
    await h.link("dana", { holderName: "Dana Oldtimer" }),
    await h.link("dana", { accountId: "bank-a/9999" }),
    await h.link("dana", { accountId: "bank-z/1004" }),
  ];
  for (const a of answers)
    assert.deepEqual(a, {
      ok: false,
      reason: "link_failed",
      message: "the account, the holder's name and the link code do not match",
    });
  assert.equal(h.bank.calls.length, 3, "bank-z is not configured: no call");
  assert.equal(await h.directory.find("bank-a/1004"), undefined);
});

test("malformed input is refused before the bank is asked or the attempt counted; well-formed attempts count per user", async () => {
  const h = setup(2);
  assert.equal(reasonOf(await h.link("dana", { accountId: "BANK-A/1004" })), "invalid_account_id");
  assert.equal(reasonOf(await h.link("dana", { holderName: "" })), "invalid_argument");
  assert.equal(reasonOf(await h.link("dana", { holderName: "Dana\x1b[2J" })), "invalid_argument");
  assert.equal(reasonOf(await h.link("dana", { linkCode: "no" })), "invalid_argument");
  assert.equal(h.bank.calls.length, 0);
  assert.equal(reasonOf(await h.link("dana", { linkCode: "WRONG-CODE-1" })), "link_failed");
  assert.equal(reasonOf(await h.link("dana", { linkCode: "WRONG-CODE-2" })), "link_failed");
  const limited = await h.link("dana");
  assert.equal(reasonOf(limited), "rate_limited");
  assert.ok(!limited.ok && Number(limited.metadata?.retry_after_ms) > 0);
  assert.equal(h.bank.calls.length, 2, "past the limit the bank is not asked");
  assert.equal(
    reasonOf(await h.link("erin", { linkCode: "WRONG-CODE-3" })),
    "link_failed",
    "another user has their own count",
  );
  h.clock.advance(60_000);
  assert.equal(reasonOf(await h.link("dana")), "ok");
});

test("two users racing with the same code: the bank lets exactly one have it", async () => {
  const h = setup();
  const [a, b] = await Promise.all([h.link("dana"), h.link("erin")]);
  assert.deepEqual([reasonOf(a), reasonOf(b)].sort(), ["link_failed", "ok"]);
  const winner = a.ok ? "dana" : "erin";
  assert.equal((await h.directory.find("bank-a/1004"))?.ownerUserId, winner);
  assert.equal(h.bank.owners.get("bank-a/1004"), winner);
});

test("a crash after the bank said yes leaves the account the caller's at the bank and no one's in the directory; the retry completes it", async () => {
  const h = setup();
  h.faults.arm("gateway.after_link_verified");
  await assert.rejects(h.link(), /crash at gateway.after_link_verified/);
  h.faults.arm(undefined);
  assert.equal(await h.directory.find("bank-a/1004"), undefined);
  assert.equal(reasonOf(await h.link("erin")), "link_failed", "nobody else can take it meanwhile");
  const ok = await h.link();
  assert.ok(ok.ok);
  assert.equal((await h.directory.find("bank-a/1004"))?.ownerUserId, "dana");
});

test("a bank that says yes for an account the directory gives someone else (a half-done unlink): already_linked, logged as an error", async () => {
  const h = setup();
  await h.directory.add({ accountId: "bank-a/1004", bank: "bank-a", ownerUserId: "zed", currency: "USD" }, 1);
  assert.equal(reasonOf(await h.link()), "already_linked");
  assert.ok(h.logger.logged.some((l) => l.level === "error" && /UnlinkBankAccount/.test(l.msg)));
});

test("admin: a code only for an account no user holds; unlink goes to the bank first, then the directory, and the old owner sees nothing more", async () => {
  const h = setup();
  assert.equal(reasonOf(await h.links.issueCode("bank-a/1001", "")), "already_linked");
  assert.equal(h.bank.calls.length, 0, "refused before asking the bank");
  assert.equal(reasonOf(await h.links.issueCode("bank-z/1", "")), "bank_not_found");
  assert.equal(reasonOf(await h.links.issueCode("bank-a/1004", "bad\x1b")), "invalid_argument");
  assert.deepEqual(await h.links.issueCode("bank-a/1004", ""), {
    ok: true,
    value: { accountId: "bank-a/1004", linkCode: "ABCD-EFGH-JKMN", holderName: "Dana Newcomer" },
  });

  h.bank.down = true;
  assert.equal(reasonOf(await h.links.unlink("bank-a/1001")), "participant_unavailable");
  assert.equal(
    (await h.directory.find("bank-a/1001"))?.ownerUserId,
    "alice",
    "the bank did not unlink: the directory keeps it",
  );
  h.bank.down = false;
  assert.deepEqual(await h.links.unlink("bank-a/1001"), {
    ok: true,
    value: { accountId: "bank-a/1001", previousOwnerUserId: "alice" },
  });
  assert.deepEqual(h.bank.calls.slice(-1), [{ op: "unlink", accountId: "bank-a/1001" }]);
  assert.equal(await h.directory.find("bank-a/1001"), undefined);
  assert.deepEqual(
    await h.links.unlink("bank-a/1001"),
    { ok: true, value: { accountId: "bank-a/1001", previousOwnerUserId: "" } },
    "idempotent",
  );
});

test("GetBalance follows the bank's owner: a directory entry the bank no longer agrees with (cached before an unlink) shows nothing", async () => {
  const h = setup();
  const stale: DirectoryAccount = { accountId: "bank-a/1004", bank: "bank-a", ownerUserId: "zed", currency: "USD" };
  await h.directory.add(stale, 1);
  assert.equal(reasonOf(await h.payments.getBalance("zed", "bank-a/1004")), "not_account_owner");
  const all = await h.payments.getBalance("zed", "");
  assert.ok(all.ok);
  assert.deepEqual(all.value, []);
  const alice = await h.payments.getBalance("alice", "bank-a/1001");
  assert.ok(alice.ok && alice.value.length === 1);
});
