// Transfers across and within banks over real processes and mTLS, and every
// kind of bad input the public API can get: a clear code and reason, and
// nothing changes.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { rejectsWith, Stack } from "@paygate/testkit";

describe("transfers", () => {
  let stack: Stack;
  let alice: ReturnType<typeof stack.client<typeof PaymentService>>;
  let bob: ReturnType<typeof stack.client<typeof PaymentService>>;

  before(async () => {
    stack = await Stack.start();
    alice = stack.client(PaymentService, await stack.login("alice"));
    bob = stack.client(PaymentService, await stack.login("bob"));
  });
  after(async () => stack?.close());

  const balanceOf = async (client: typeof alice, accountId: string) => {
    const res = await client.getBalance({ accountId });
    assert.equal(res.accounts.length, 1);
    return res.accounts[0]!;
  };

  test("a cross-bank transfer moves money at both banks, once", async () => {
    const before = await balanceOf(alice, "bank-a/1001");
    const bobBefore = await balanceOf(bob, "bank-b/2001");
    const key = randomUUID();
    const req = {
      idempotencyKey: key,
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 1234n,
      currency: "USD",
      memo: "lunch",
    };
    const res = await alice.transfer(req);
    assert.equal(res.transaction?.status, TransactionStatus.COMMITTED);
    assert.match(res.transaction!.transactionId, /^gateway-0:/);
    // The same key again is answered, not repeated.
    const again = await alice.transfer(req);
    assert.equal(again.transaction?.transactionId, res.transaction?.transactionId);
    assert.equal(again.transaction?.status, TransactionStatus.COMMITTED);
    assert.equal((await balanceOf(alice, "bank-a/1001")).balanceMinor, before.balanceMinor - 1234n);
    assert.equal((await balanceOf(bob, "bank-b/2001")).balanceMinor, bobBefore.balanceMinor + 1234n);
    const got = await alice.getTransaction({ transactionId: res.transaction!.transactionId });
    assert.equal(got.transaction?.memo, "lunch");
    assert.equal(got.transaction?.amountMinor, 1234n);
    // Bob sees it in his history too (he owns the receiving account).
    const seen: string[] = [];
    for await (const m of bob.listTransactions({ afterSequence: 0n })) seen.push(m.transaction!.transactionId);
    assert.ok(seen.includes(res.transaction!.transactionId));
    await stack.assertConserved();
  });

  test("a same-bank transfer also goes through 2PC and moves money once", async () => {
    const before = await balanceOf(alice, "bank-a/1001");
    const bobBefore = await balanceOf(bob, "bank-a/1002");
    const res = await alice.transfer({
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-a/1002",
      amountMinor: 500n,
      currency: "USD",
    });
    assert.equal(res.transaction?.status, TransactionStatus.COMMITTED);
    assert.equal((await balanceOf(alice, "bank-a/1001")).balanceMinor, before.balanceMinor - 500n);
    assert.equal((await balanceOf(bob, "bank-a/1002")).balanceMinor, bobBefore.balanceMinor + 500n);
    await stack.assertConserved();
  });

  test("history is ordered and resumable from a sequence number", async () => {
    const all: bigint[] = [];
    for await (const m of alice.listTransactions({ afterSequence: 0n })) all.push(m.transaction!.sequence);
    assert.ok(all.length >= 2);
    assert.deepEqual(
      [...all].sort((a, b) => (a < b ? -1 : 1)),
      all,
    );
    const rest: bigint[] = [];
    for await (const m of alice.listTransactions({ afterSequence: all[0]! })) rest.push(m.transaction!.sequence);
    assert.deepEqual(rest, all.slice(1));
  });

  test("bad input gets a code and a reason, and changes nothing", async (t) => {
    const before = await balanceOf(alice, "bank-a/1001");
    const ok = {
      idempotencyKey: "k",
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 100n,
      currency: "USD",
      memo: "",
    };
    const cases: Array<[string, Partial<typeof ok>, Code, string]> = [
      ["unknown account", { toAccountId: "bank-b/9999" }, Code.NotFound, "account_not_found"],
      ["insufficient funds", { amountMinor: 100_000_000n }, Code.FailedPrecondition, "insufficient_funds"],
      ["wrong currency", { currency: "EUR" }, Code.FailedPrecondition, "currency_mismatch"],
      ["zero amount", { amountMinor: 0n }, Code.InvalidArgument, "invalid_amount"],
      ["negative amount", { amountMinor: -5n }, Code.InvalidArgument, "invalid_amount"],
      ["overflowing amount", { amountMinor: 9_223_372_036_854_775_807n }, Code.InvalidArgument, "invalid_amount"],
      ["malformed from id", { fromAccountId: "1001" }, Code.InvalidArgument, "invalid_account_id"],
      ["malformed to id", { toAccountId: "bank-b/../../etc" }, Code.InvalidArgument, "invalid_account_id"],
      ["bad currency code", { currency: "usd" }, Code.InvalidArgument, "invalid_currency"],
      ["huge memo", { memo: "x".repeat(10_000) }, Code.InvalidArgument, "memo_too_long"],
      [
        "someone else's account",
        { fromAccountId: "bank-b/2001", toAccountId: "bank-a/1001" },
        Code.PermissionDenied,
        "not_account_owner",
      ],
      ["same account", { toAccountId: "bank-a/1001" }, Code.InvalidArgument, "same_account"],
      ["no idempotency key", { idempotencyKey: "" }, Code.InvalidArgument, "idempotency_key_missing"],
      [
        "overlong idempotency key",
        { idempotencyKey: "k".repeat(256) },
        Code.InvalidArgument,
        "idempotency_key_missing",
      ],
    ];
    for (const [name, patch, code, reason] of cases) {
      await t.test(name, async () => {
        await rejectsWith(
          alice.transfer({ ...ok, ...patch, idempotencyKey: patch.idempotencyKey ?? randomUUID() }),
          code,
          reason,
        );
      });
    }
    const after = await balanceOf(alice, "bank-a/1001");
    assert.equal(after.balanceMinor, before.balanceMinor);
    assert.equal(after.heldMinor, 0n);
    await stack.assertConserved();
  });

  test("a key reused with different parameters is refused and moves nothing", async () => {
    const key = randomUUID();
    const req = {
      idempotencyKey: key,
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 10n,
      currency: "USD",
    };
    await alice.transfer(req);
    const mid = await balanceOf(alice, "bank-a/1001");
    await rejectsWith(alice.transfer({ ...req, amountMinor: 11n }), Code.InvalidArgument, "idempotency_key_reused");
    assert.equal((await balanceOf(alice, "bank-a/1001")).balanceMinor, mid.balanceMinor);
    await stack.assertConserved();
  });

  test("expired and invalid sessions are refused", async () => {
    const stranger = stack.client(PaymentService, "not-a-real-token");
    await rejectsWith(stranger.getBalance({}), Code.Unauthenticated, "unauthenticated");
    await rejectsWith(stack.client(PaymentService).getBalance({}), Code.Unauthenticated, "unauthenticated");
  });
});
