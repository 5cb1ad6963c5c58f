// Payments reads and admin use cases against in-memory ports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAdmin } from "./admin.js";
import { createDecidedFeed } from "./decided-feed.js";
import {
  createManualClock,
  createMemoryDirectory,
  createMemoryLog,
  createMemoryUsers,
} from "../../test-support/fakes.js";
import type { DirectoryAccount, NewTxn, Result } from "./model.js";
import { createPaymentQueries } from "./payments.js";
import type { BankAccount, BankResult, BankTotals, Ledgers } from "./ports.js";

const ACCOUNTS: DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
  { accountId: "bank-b/2002", bank: "bank-b", ownerUserId: "carol", currency: "USD" },
];

function fakeLedgers(down: Set<string> = new Set()) {
  const deposits: string[] = [];
  const balance = (accountId: string): BankAccount => {
    const a = ACCOUNTS.find((x) => x.accountId === accountId);
    return {
      accountId,
      ownerUserId: a?.ownerUserId ?? "",
      currency: "USD",
      balanceMinor: 1000n,
      heldMinor: 100n,
      availableMinor: 900n,
    };
  };
  const unavailable = { ok: false as const, reason: "participant_unavailable" as const, message: "down" };
  const totals: Record<string, BankTotals> = {
    "bank-a": {
      bank: "bank-a",
      currencies: [
        { currency: "USD", balanceMinor: 700n, heldMinor: 5n, depositedMinor: 1000n, transferNetMinor: -300n },
      ],
      prepared: [{ txnId: "gateway-0:p", preparedAtMs: 0 }],
      ledgerConsistent: true,
      problems: [],
    },
    "bank-b": {
      bank: "bank-b",
      currencies: [{ currency: "USD", balanceMinor: 300n, heldMinor: 0n, depositedMinor: 0n, transferNetMinor: 300n }],
      prepared: [],
      ledgerConsistent: true,
      problems: [],
    },
  };
  const ledgers: Ledgers = {
    getAccount: async (bank, id): Promise<BankResult<BankAccount>> =>
      down.has(bank) ? unavailable : { ok: true, value: balance(id) },
    openAccount: async (bank, owner, currency) => ({
      ok: true,
      value: {
        ...balance(""),
        accountId: `${bank}/9001`,
        ownerUserId: owner,
        currency,
        balanceMinor: 0n,
        heldMinor: 0n,
        availableMinor: 0n,
      },
    }),
    deposit: async (_bank, depositId, accountId, amountMinor) => {
      deposits.push(depositId);
      return { ok: true, value: { ...balance(accountId), balanceMinor: 1000n + amountMinor } };
    },
    totals: async (bank): Promise<BankResult<BankTotals>> =>
      down.has(bank) ? unavailable : { ok: true, value: totals[bank]! },
  };
  return { ledgers, deposits };
}

let n = 0;
const txn = (over: Partial<NewTxn> = {}): NewTxn => ({
  txnId: `gateway-0:00000000-0000-4000-8000-${String(++n).padStart(12, "0")}`,
  callerUserId: "alice",
  idempotencyKey: `k${n}`,
  fingerprint: "f",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  fromBank: "bank-a",
  toBank: "bank-b",
  amountMinor: 5n,
  currency: "USD",
  memo: "",
  createdAtMs: 0,
  ...over,
});

function reasonOf(r: Result<unknown>): string {
  return r.ok ? "ok" : r.reason;
}

function setup(down?: Set<string>) {
  const directory = createMemoryDirectory(ACCOUNTS);
  const log = createMemoryLog(directory);
  const feed = createDecidedFeed();
  const { ledgers, deposits } = fakeLedgers(down);
  const payments = createPaymentQueries({ directory, history: log, ledgers, feed });
  const decide = async (t: NewTxn, decision: "COMMIT" | "ABORT" = "COMMIT") => {
    const c = await log.claim(t);
    assert.ok(c.claimed);
    await log.decide({
      txnId: t.txnId,
      decision,
      reason: decision === "ABORT" ? "insufficient_funds" : "",
      participants: [t.fromBank, t.toBank],
      nowMs: 1,
      firstResendAtMs: 1,
    });
    feed.notify();
    return t.txnId;
  };
  return { directory, log, feed, payments, decide, ledgers, deposits };
}

test("GetBalance: own accounts only, from the banks", async () => {
  const h = setup();
  const mine = await h.payments.getBalance("alice", "");
  assert.ok(mine.ok);
  assert.deepEqual(
    mine.value.map((a) => [a.accountId, a.availableMinor]),
    [["bank-a/1001", 900n]],
  );
  assert.equal(reasonOf(await h.payments.getBalance("alice", "bank-b/2001")), "not_account_owner");
  assert.equal(reasonOf(await h.payments.getBalance("alice", "bank-b/9999")), "account_not_found");
  assert.equal(reasonOf(await h.payments.getBalance("alice", "nonsense")), "invalid_account_id");
  assert.equal(reasonOf(await setup(new Set(["bank-a"])).payments.getBalance("alice", "")), "participant_unavailable");
});

test("GetTransaction: initiator and account owners see it; others get not found", async () => {
  const h = setup();
  const id = await h.decide(txn());
  assert.equal(reasonOf(await h.payments.getTransaction("alice", id)), "ok");
  assert.equal(reasonOf(await h.payments.getTransaction("bob", id)), "ok");
  assert.equal(reasonOf(await h.payments.getTransaction("carol", id)), "transaction_not_found");
  assert.equal(
    reasonOf(await h.payments.getTransaction("alice", "gateway-0:00000000-0000-4000-8000-999999999999")),
    "transaction_not_found",
  );
  assert.equal(reasonOf(await h.payments.getTransaction("alice", "x")), "invalid_txn_id");
});

async function collect(it: AsyncIterable<{ txnId: string }>, max = 100): Promise<string[]> {
  const out: string[] = [];
  for await (const t of it) {
    out.push(t.txnId);
    if (out.length >= max) break;
  }
  return out;
}

test("ListTransactions: visible txns in sequence order, after a sequence, capped by limit", async () => {
  const h = setup();
  const ids = [
    await h.decide(txn()),
    await h.decide(
      txn({ callerUserId: "carol", fromAccountId: "bank-b/2002", toAccountId: "bank-b/2001", fromBank: "bank-b" }),
    ),
    await h.decide(txn(), "ABORT"),
  ];
  const signal = new AbortController().signal;
  const list = (user: string, afterSequence: bigint, limit: number) => {
    const r = h.payments.listTransactions(user, { afterSequence, limit, follow: false, signal });
    assert.ok(r.ok);
    return collect(r.value);
  };
  assert.deepEqual(await list("alice", 0n, 0), [ids[0], ids[2]]);
  assert.deepEqual(await list("bob", 0n, 0), ids);
  assert.deepEqual(await list("bob", 1n, 0), ids.slice(1));
  assert.deepEqual(await list("bob", 0n, 2), ids.slice(0, 2));
  assert.deepEqual(await list("carol", 0n, 0), [ids[1]]);
  assert.equal(
    reasonOf(h.payments.listTransactions("bob", { afterSequence: -1n, limit: 0, follow: false, signal })),
    "invalid_argument",
  );
  assert.equal(
    reasonOf(h.payments.listTransactions("bob", { afterSequence: 0n, limit: -1, follow: false, signal })),
    "invalid_argument",
  );
});

test("ListTransactions with follow sends txns decided later and ends when the caller cancels", async () => {
  const h = setup();
  const first = await h.decide(txn());
  const controller = new AbortController();
  const r = h.payments.listTransactions("bob", {
    afterSequence: 0n,
    limit: 0,
    follow: true,
    signal: controller.signal,
  });
  assert.ok(r.ok);
  const seen: string[] = [];
  const later: string[] = [];
  const done = (async () => {
    for await (const t of r.value) {
      seen.push(t.txnId);
      if (seen.length === 1) later.push(await h.decide(txn()), await h.decide(txn()));
      if (seen.length === 3) controller.abort();
    }
  })();
  await done;
  assert.deepEqual(seen, [first, ...later]);
});

test("Reconcile: sums per currency, lists in-doubt txns, and is not conserved when a bank is unreachable", async () => {
  const h = setup();
  const pending = txn();
  await h.log.claim(pending);
  const admin = (down?: Set<string>) =>
    createAdmin({
      users: createMemoryUsers(),
      directory: h.directory,
      ledgers: fakeLedgers(down).ledgers,
      log: h.log,
      banks: ["bank-a", "bank-b"],
      clock: createManualClock(),
      hashPassword: async (pw) => `hash:${pw}`,
      reconcileTimeoutMs: 100,
    });
  const r = await admin().reconcile();
  assert.equal(r.conserved, true);
  assert.deepEqual(r.currencies, [
    { currency: "USD", balanceMinor: 1000n, heldMinor: 5n, depositedMinor: 1000n, conserved: true },
  ]);
  assert.deepEqual(
    r.inDoubt.map((d) => [d.transactionId, d.where, d.state]),
    [
      ["gateway-0:p", "bank-a", "PREPARED"],
      [pending.txnId, "gateway", "PENDING"],
    ],
  );
  const partial = await admin(new Set(["bank-b"])).reconcile();
  assert.equal(partial.conserved, false);
  assert.deepEqual(
    partial.banks.map((b) => [b.bank, b.reachable]),
    [
      ["bank-a", true],
      ["bank-b", false],
    ],
  );
});

test("admin: users, accounts and deposits are validated before any bank is called", async () => {
  const h = setup();
  const users = createMemoryUsers();
  const admin = createAdmin({
    users,
    directory: h.directory,
    ledgers: h.ledgers,
    log: h.log,
    banks: ["bank-a", "bank-b"],
    clock: createManualClock(),
    hashPassword: async (pw) => `hash:${pw}`,
    reconcileTimeoutMs: 100,
  });
  assert.equal(
    reasonOf(
      await admin.createUser({ username: "Dave!", password: "long-enough-pw", roles: ["customer"], displayName: "" }),
    ),
    "invalid_username",
  );
  assert.equal(
    reasonOf(
      await admin.createUser({ username: "dave", password: "Password123", roles: ["customer"], displayName: "" }),
    ),
    "common_password",
    "the sign-up rules, for admins too",
  );
  assert.equal(
    reasonOf(await admin.createUser({ username: "dave", password: "short", roles: ["customer"], displayName: "" })),
    "weak_password",
  );
  assert.equal(
    reasonOf(await admin.createUser({ username: "dave", password: "long-enough-pw", roles: [], displayName: "" })),
    "invalid_argument",
  );
  assert.equal(
    reasonOf(
      await admin.createUser({ username: "dave", password: "long-enough-pw", roles: ["king"], displayName: "" }),
    ),
    "invalid_argument",
  );
  const dave = await admin.createUser({
    username: "dave",
    password: "long-enough-pw",
    roles: ["customer"],
    displayName: "",
  });
  assert.ok(dave.ok);
  assert.deepEqual(
    [dave.value.userId, dave.value.displayName, dave.value.passwordHash],
    ["dave", "dave", "hash:long-enough-pw"],
  );
  assert.equal(
    reasonOf(
      await admin.createUser({ username: "dave", password: "long-enough-pw", roles: ["customer"], displayName: "" }),
    ),
    "username_taken",
  );
  const dotted = await admin.createUser({
    username: "d.v",
    password: "long-enough-pw",
    roles: ["merchant"],
    displayName: "",
  });
  assert.ok(dotted.ok && /^u-[0-9a-f]{16}$/.test(dotted.value.userId));

  assert.equal(reasonOf(await admin.openAccount("dave", "bank-z", "USD")), "bank_not_found");
  assert.equal(reasonOf(await admin.openAccount("nobody", "bank-a", "USD")), "user_not_found");
  const opened = await admin.openAccount("dave", "bank-a", "USD");
  assert.ok(opened.ok);
  assert.equal((await h.directory.find("bank-a/9001"))?.ownerUserId, "dave");

  assert.equal(reasonOf(await admin.deposit("", "bank-a/9001", 5n, "USD")), "idempotency_key_missing");
  assert.equal(reasonOf(await admin.deposit("d1", "bank-a/9001", 0n, "USD")), "invalid_amount");
  assert.equal(reasonOf(await admin.deposit("d1", "bank-a/9001", 5n, "EUR")), "currency_mismatch");
  assert.equal(reasonOf(await admin.deposit("d1", "bank-a/7777", 5n, "USD")), "account_not_found");
  assert.deepEqual(h.deposits, []);
  assert.equal(reasonOf(await admin.deposit("d1", "bank-a/9001", 5n, "USD")), "ok");
  assert.deepEqual(h.deposits, ["admin:d1"]);
});
