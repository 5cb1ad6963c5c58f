// Many transfers racing out of one account: the bank's check-and-hold is
// atomic, so the account is never overdrawn and every success moved money
// exactly once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { Stack } from "@paygate/testkit";

describe("concurrency", () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({ prepareTimeoutMs: 10_000 });
  });
  after(async () => stack?.close());

  test("250 concurrent transfers out of one account never overdraw it", async () => {
    const alice = stack.client(PaymentService, await stack.login("alice"));
    const start = (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!;
    const amount = 1_000n;
    const n = 250; // 250 x 10.00 USD against 1,000.00 USD: at most 100 can succeed
    const targets = ["bank-b/2001", "bank-a/1002", "bank-b/2002"];
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        alice.transfer({
          idempotencyKey: randomUUID(),
          fromAccountId: "bank-a/1001",
          toAccountId: targets[i % targets.length]!,
          amountMinor: amount,
          currency: "USD",
        }),
      ),
    );
    let committed = 0n;
    const reasons = new Map<string, number>();
    for (const r of results) {
      if (r.status === "fulfilled") {
        assert.equal(r.value.transaction?.status, TransactionStatus.COMMITTED);
        committed += 1n;
      } else {
        const reason = errorInfo(r.reason).reason;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
    }
    // Only one kind of refusal is acceptable here.
    assert.deepEqual(
      [...reasons.keys()].filter((r) => r !== "insufficient_funds"),
      [],
      JSON.stringify([...reasons]),
    );
    assert.equal(
      committed,
      start.availableMinor / amount,
      `committed ${committed} of ${n}; refusals ${JSON.stringify([...reasons])}`,
    );
    const end = (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!;
    assert.equal(end.balanceMinor, start.balanceMinor - committed * amount);
    assert.ok(end.availableMinor >= 0n);
    assert.equal(end.heldMinor, 0n);
    await stack.assertConserved();
  });
});
