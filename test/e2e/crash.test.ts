// Crashes and hangs at the exact protocol steps that matter. Each case ends
// with the transfer applied at both banks or at neither, and Reconcile
// saying money is conserved with nothing left in doubt.
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { rejectsWith, Stack } from "@paygate/testkit";

const FROM = "bank-a/1001";
const TO = "bank-b/2001";

async function balances(stack: Stack) {
  const alice = stack.client(PaymentService, await stack.login("alice"));
  const bob = stack.client(PaymentService, await stack.login("bob"));
  const a = (await alice.getBalance({ accountId: FROM })).accounts[0]!;
  const b = (await bob.getBalance({ accountId: TO })).accounts[0]!;
  return { from: a.balanceMinor, fromHeld: a.heldMinor, to: b.balanceMinor };
}

function transferReq(amountMinor: bigint) {
  return {
    idempotencyKey: randomUUID(),
    fromAccountId: FROM,
    toAccountId: TO,
    amountMinor,
    currency: "USD",
    memo: "crash test",
  };
}

describe("crash safety", () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  test("a frozen bank (SIGSTOP) makes the transfer time out and abort; both sides untouched", async () => {
    stack = await Stack.start({ prepareTimeoutMs: 1000 });
    const before = await balances(stack);
    const alice = stack.client(PaymentService, await stack.login("alice"));
    stack.bank("bank-b").freeze();
    try {
      await rejectsWith(alice.transfer(transferReq(700n)), Code.Unavailable, "participant_timeout");
    } finally {
      stack.bank("bank-b").thaw();
    }
    // The late Prepare bank-b now processes must not move money either.
    await stack.assertConserved();
    const after = await balances(stack);
    assert.deepEqual(after, { ...before, fromHeld: 0n });
  });

  test("kill -9 of a bank after it voted YES (before applying Commit): the commit is redriven after restart", async () => {
    stack = await Stack.start();
    const before = await balances(stack);
    const alice = stack.client(PaymentService, await stack.login("alice"));
    await stack.bank("bank-b").restart({ PAYGATE_FAULTPOINTS: "bank.before_commit_apply" });
    const req = transferReq(900n);
    const res = await alice.transfer(req);
    // COMMIT was logged before any Commit was sent: the transfer is decided.
    assert.equal(res.transaction?.status, TransactionStatus.COMMITTED);
    await stack.bank("bank-b").waitForExit();
    assert.equal(stack.bank("bank-b").lastExit?.signal, "SIGKILL");
    await stack.bank("bank-b").start();
    await stack.assertConserved();
    const after = await balances(stack);
    assert.equal(after.from, before.from - 900n);
    assert.equal(after.to, before.to + 900n);
    // A retry of the same request is answered from the log, not repeated.
    const again = await alice.transfer(req);
    assert.equal(again.transaction?.transactionId, res.transaction?.transactionId);
    assert.equal((await balances(stack)).from, before.from - 900n);
  });

  test("kill -9 of a bank after it logged PREPARED (before its vote): aborted everywhere", async () => {
    stack = await Stack.start();
    const before = await balances(stack);
    const alice = stack.client(PaymentService, await stack.login("alice"));
    await stack.bank("bank-b").restart({ PAYGATE_FAULTPOINTS: "bank.after_prepare_logged" });
    let failed = false;
    try {
      await alice.transfer(transferReq(300n));
    } catch (e) {
      failed = true;
      assert.equal(errorInfo(e).code, Code.Unavailable, JSON.stringify(errorInfo(e)));
    }
    assert.ok(failed, "the transfer must not succeed without bank-b's vote");
    await stack.bank("bank-b").waitForExit();
    await stack.bank("bank-b").start();
    await stack.assertConserved();
    assert.deepEqual(await balances(stack), { ...before, fromHeld: 0n });
  });

  test("kill -9 of the gateway after it logged COMMIT: recovery commits at both banks, a replay is answered once", async () => {
    stack = await Stack.start();
    const before = await balances(stack);
    const token = await stack.login("alice");
    await stack.gateway.restart({ PAYGATE_FAULTPOINTS: "gateway.after_commit_logged" });
    const alice = stack.client(PaymentService, token);
    const req = transferReq(1100n);
    let failed = false;
    try {
      await alice.transfer(req);
    } catch {
      failed = true; // the gateway died mid-call
    }
    assert.ok(failed);
    await stack.gateway.waitForExit();
    assert.equal(stack.gateway.lastExit?.signal, "SIGKILL");
    await stack.gateway.start();
    await stack.assertConserved();
    const after = await balances(stack);
    assert.equal(after.from, before.from - 1100n);
    assert.equal(after.to, before.to + 1100n);
    // paycli's replay with the same key gets the committed transaction.
    const alice2 = stack.client(PaymentService, await stack.login("alice"));
    const replay = await alice2.transfer(req);
    assert.equal(replay.transaction?.status, TransactionStatus.COMMITTED);
    assert.equal((await balances(stack)).from, before.from - 1100n);
  });

  test("kill -9 of the gateway after every YES but before a decision: presumed abort, nothing moves", async () => {
    stack = await Stack.start();
    const before = await balances(stack);
    const token = await stack.login("alice");
    await stack.gateway.restart({ PAYGATE_FAULTPOINTS: "gateway.after_votes_before_decision" });
    const req = transferReq(1300n);
    await assert.rejects(stack.client(PaymentService, token).transfer(req));
    await stack.gateway.waitForExit();
    await stack.gateway.start();
    await stack.assertConserved();
    assert.deepEqual(await balances(stack), { ...before, fromHeld: 0n });
    // The aborted attempt does not burn the key: a retry may now succeed, once.
    const alice = stack.client(PaymentService, await stack.login("alice"));
    const retry = await alice.transfer(req);
    assert.equal(retry.transaction?.status, TransactionStatus.COMMITTED);
    const again = await alice.transfer(req);
    assert.equal(again.transaction?.transactionId, retry.transaction?.transactionId);
    await stack.assertConserved();
    assert.equal((await balances(stack)).from, before.from - 1300n);
  });
});
