// The gateway coalesces concurrent Prepares / Commits into PrepareBatch /
// CommitBatch RPCs (one fsync per batch at the bank). Under load the batched
// path must give exactly what one RPC per txn gives: every answer right, every
// balance exact, nothing in doubt. With PARTICIPANT_BATCH_MAX=0 no batch RPC is sent.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { Stack } from "@paygate/testkit";

/** Sum of a counter's samples whose labels contain every `match` fragment. */
async function counter(stack: Stack, service: string, name: string, ...match: string[]): Promise<number> {
  const proc = service === "gateway" ? stack.gateway : stack.bank(service);
  const text = await (await fetch(`http://127.0.0.1:${proc.metricsPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && match.every((m) => line.includes(m)))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

async function storm(stack: Stack, n: number) {
  const alice = stack.client(PaymentService, await stack.login("alice"));
  const bob = stack.client(PaymentService, await stack.login("bob"));
  const before = {
    a: (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!,
    b: (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!,
  };
  // Both directions at once, and some that must be declined (bob's EUR-less USD account cannot pay in EUR).
  const calls = Array.from({ length: n }, (_, i) => {
    if (i % 10 === 9)
      return bob.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-b/2001",
        toAccountId: "bank-a/1001",
        amountMinor: 1n,
        currency: "EUR",
      });
    return i % 2 === 0
      ? alice.transfer({
          idempotencyKey: randomUUID(),
          fromAccountId: "bank-a/1001",
          toAccountId: "bank-b/2001",
          amountMinor: 3n,
          currency: "USD",
        })
      : bob.transfer({
          idempotencyKey: randomUUID(),
          fromAccountId: "bank-b/2001",
          toAccountId: "bank-a/1001",
          amountMinor: 2n,
          currency: "USD",
        });
  });
  const results = await Promise.allSettled(calls);
  let aToB = 0n;
  let bToA = 0n;
  const refusals = new Map<string, number>();
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      const reason = errorInfo(r.reason).reason;
      refusals.set(reason, (refusals.get(reason) ?? 0) + 1);
      return;
    }
    assert.equal(r.value.transaction?.status, TransactionStatus.COMMITTED);
    if (i % 2 === 0) aToB += 1n;
    else bToA += 1n;
  });
  const expectedRefusals = Math.floor(n / 10);
  assert.deepEqual([...refusals], [["currency_mismatch", expectedRefusals]], "only the EUR transfers are refused");
  const after = {
    a: (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!,
    b: (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!,
  };
  assert.equal(aToB + bToA, BigInt(n - expectedRefusals));
  assert.equal(after.a.balanceMinor, before.a.balanceMinor - 3n * aToB + 2n * bToA);
  assert.equal(after.b.balanceMinor, before.b.balanceMinor + 3n * aToB - 2n * bToA);
  assert.deepEqual([after.a.heldMinor, after.b.heldMinor], [0n, 0n]);
  await stack.assertConserved();
}

describe("batched participant calls", () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({ prepareTimeoutMs: 10_000 });
  });
  after(async () => stack?.close());

  test("300 concurrent transfers in both directions: exact balances, and the banks saw batches", async () => {
    await storm(stack, 300);
    for (const bank of ["bank-a", "bank-b"]) {
      const batches = await counter(
        stack,
        bank,
        "paygate_rpc_server_requests_total",
        "ParticipantService/PrepareBatch",
        'code="ok"',
      );
      const commits = await counter(
        stack,
        bank,
        "paygate_rpc_server_requests_total",
        "ParticipantService/CommitBatch",
        'code="ok"',
      );
      const votes = await counter(stack, bank, "paygate_bank_prepare_votes_total");
      const singleCommits = await counter(
        stack,
        bank,
        "paygate_rpc_server_requests_total",
        'ParticipantService/Commit"',
      );
      const applied = await counter(stack, bank, "paygate_bank_decisions_total", 'decision="commit"');
      assert.ok(batches > 0, `${bank}: ${batches} PrepareBatch calls`);
      // Commits travel in CommitBatches or ride along with PrepareBatches (DESIGN.md §3.3): fewer RPCs than commits.
      assert.ok(
        commits + singleCommits < applied,
        `${bank}: ${commits} CommitBatch + ${singleCommits} single Commits for ${applied} commits`,
      );
      // Fewer RPCs than votes: some batches carried several txns.
      const singles = await counter(stack, bank, "paygate_rpc_server_requests_total", 'ParticipantService/Prepare"');
      assert.ok(
        batches + singles < votes,
        `${bank}: ${batches} batches + ${singles} single Prepares for ${votes} votes`,
      );
    }
  });
});

describe("Commits ride along with the next PrepareBatch (COMMIT_RIDE_MS)", () => {
  let stack: Stack;
  // Longer than the test: only a Prepare to the bank, or a read of it, takes a waiting Commit.
  before(async () => {
    stack = await Stack.start({ prepareTimeoutMs: 10_000, gatewayEnv: { COMMIT_RIDE_MS: "1000" } });
  });
  after(async () => stack?.close());

  test("sequential transfers: each Commit rides the next transfer's Prepare; a read delivers the last", async () => {
    const alice = stack.client(PaymentService, await stack.login("alice"));
    const bob = stack.client(PaymentService, await stack.login("bob"));
    const before = (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!;
    const n = 10;
    for (let i = 0; i < n; i++) {
      const r = await alice.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2001",
        amountMinor: 7n,
        currency: "USD",
      });
      assert.equal(r.transaction?.status, TransactionStatus.COMMITTED);
    }
    // A read of bank-b sends its waiting Commit first: the last transfer's credit is posted.
    const after = (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!;
    assert.equal(after.balanceMinor, before.balanceMinor + 7n * BigInt(n));
    await stack.assertConserved();
    for (const bank of ["bank-a", "bank-b"]) {
      const alone =
        (await counter(stack, bank, "paygate_rpc_server_requests_total", 'ParticipantService/Commit"')) +
        (await counter(stack, bank, "paygate_rpc_server_requests_total", "ParticipantService/CommitBatch"));
      const applied = await counter(stack, bank, "paygate_bank_decisions_total", 'decision="commit"');
      assert.equal(applied, n, `${bank}: every transfer committed once`);
      assert.ok(alone <= 1, `${bank}: ${alone} Commit RPCs of their own for ${n} commits (the rest rode along)`);
    }
  });
});

describe("batching off (PARTICIPANT_BATCH_MAX=0)", () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({ prepareTimeoutMs: 10_000, gatewayEnv: { PARTICIPANT_BATCH_MAX: "0" } });
  });
  after(async () => stack?.close());

  test("the same storm, one RPC per txn: same exact balances, no batch RPC", async () => {
    await storm(stack, 100);
    for (const bank of ["bank-a", "bank-b"]) {
      assert.equal(await counter(stack, bank, "paygate_rpc_server_requests_total", "Batch"), 0);
      assert.ok((await counter(stack, bank, "paygate_rpc_server_requests_total", 'ParticipantService/Prepare"')) > 0);
    }
  });
});
