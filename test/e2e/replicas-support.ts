// Shared by the multi-replica end-to-end tests (replicas.test.ts,
// replica-failures.test.ts): three gateway processes on one private
// PostgreSQL and one private Redis, clients that send every call (each retry
// a new call) to a random live replica, and the ledger checks that prove
// exactly-once: every key re-sent, one owning txn per key, at most one
// commit per key, balances equal to what the acknowledged transfers add up to.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { LedgerService } from "@paygate/proto/bank";
import { PaymentService, TransactionStatus, type TransferRequestSchema } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { PostgresServer, RedisServer, Stack, type StackOptions } from "@paygate/testkit";
import { reasonClass } from "@paygate/vocab";

export type TransferInit = MessageInitShape<typeof TransferRequestSchema>;

/** Short, so takeovers and presumed aborts happen within a test (production: 10 s). */
export const PREPARE_TIMEOUT_MS = 1_500;
/** A replica's lease; past it and a prepare timeout, another one takes over its transactions. */
export const LEASE_MS = 1_000;

export const REPLICA_ENV: Readonly<Record<string, string>> = {
  GATEWAY_LEASE_MS: String(LEASE_MS),
  GATEWAY_HEARTBEAT_INTERVAL_MS: "250",
  // A loaded CI machine may stall Redis past the 200 ms default; the log would answer, but slower.
  REDIS_COMMAND_TIMEOUT_MS: "1000",
  // An outage is noticed (and answered unavailable) within this, not the 5 s default.
  DATABASE_STATEMENT_TIMEOUT_MS: "2000",
};

export interface Replicas {
  readonly pg: PostgresServer;
  readonly redis: RedisServer;
  readonly stack: Stack;
  close(): Promise<void>;
}

/** A private PostgreSQL and Redis and a stack of `gateways` (default 3) replicas on them. */
export async function startReplicas(options: StackOptions = {}): Promise<Replicas> {
  const pg = await PostgresServer.start();
  let redis: RedisServer | undefined;
  try {
    redis = await RedisServer.start();
    const stack = await Stack.start({
      gateways: 3,
      prepareTimeoutMs: PREPARE_TIMEOUT_MS,
      ...options,
      postgres: pg,
      redisUrl: redis.url,
      gatewayEnv: { ...REPLICA_ENV, ...options.gatewayEnv },
    });
    const r = redis;
    return {
      pg,
      redis: r,
      stack,
      async close() {
        await stack.close();
        await r.close();
        await pg.close();
      },
    };
  } catch (e) {
    await redis?.close();
    await pg.close();
    throw e;
  }
}

/** How long the final re-send of a key may keep getting retryable answers. */
const RESEND_DEADLINE_MS = 30_000;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every `intervalMs` until it holds; throws after `timeoutMs` (a bound, not a timing assertion). */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await cond()) return;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await sleep(intervalMs);
  }
}

/** The replica that coordinated a txn: the id's prefix. */
export const replicaOf = (txnId: string): string => txnId.slice(0, txnId.indexOf(":"));

/** Resends a call until its answer is final (success or a final reason), as paycli does: jittered backoff, bounded by `deadlineMs`. */
export async function retrying<T>(
  call: () => Promise<T>,
  o: { deadlineMs?: number; onError?: (reason: string) => void } = {},
): Promise<T> {
  const deadline = Date.now() + (o.deadlineMs ?? 60_000);
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      const reason = errorInfo(e).reason;
      o.onError?.(reason);
      // "unknown" (internal, a dropped connection): resending under the same key is safe and finds out.
      if (reasonClass(reason) === "final" || Date.now() > deadline) throw e;
      await sleep(Math.min(500, 25 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random()));
    }
  }
}

/** A key's final answer: committed (with its txn), or declined for good (a final reason, with the txn if one was made). */
export type Outcome =
  | { readonly kind: "committed"; readonly txnId: string; readonly sequence: bigint }
  | { readonly kind: "declined"; readonly reason: string; readonly txnId: string };

export interface Sent {
  readonly payer: string;
  /** The run's prefix of the idempotency key (`<prefix>-<uuid>`), to find its txns in the store. */
  readonly keyPrefix: string;
  readonly req: TransferInit & {
    idempotencyKey: string;
    fromAccountId: string;
    toAccountId: string;
    amountMinor: bigint;
  };
  /** Every answer a call got (a key sent twice at once gets two). */
  readonly answers: Outcome[];
  /** Reasons of the failed attempts (retried). */
  readonly errors: string[];
}

/** One transfer, retried to random replicas until final or the deadline; the answer is recorded in `sent` (nothing if none came). */
export async function sendTransfer(
  pay: Client<typeof PaymentService>,
  sent: Sent,
  deadlineMs = 60_000,
): Promise<Outcome | undefined> {
  try {
    const res = await retrying(() => pay.transfer(sent.req), { deadlineMs, onError: (r) => sent.errors.push(r) });
    const t = res.transaction!;
    assert.equal(t.status, TransactionStatus.COMMITTED, `a successful transfer is committed: ${t.transactionId}`);
    const o: Outcome = { kind: "committed", txnId: t.transactionId, sequence: t.sequence };
    sent.answers.push(o);
    return o;
  } catch (e) {
    const info = errorInfo(e);
    if (reasonClass(info.reason) !== "final") return undefined;
    const o: Outcome = { kind: "declined", reason: info.reason, txnId: info.metadata.transaction_id ?? "" };
    sent.answers.push(o);
    return o;
  }
}

/** One customer's flows: who pays, from which account, to which. */
export interface Flow {
  readonly payer: string;
  readonly from: string;
  readonly to: string;
}

/** Cross-bank and same-bank flows between the test seed's customers. */
export const SEED_FLOWS: readonly Flow[] = [
  { payer: "alice", from: "bank-a/1001", to: "bank-b/2002" },
  { payer: "alice", from: "bank-a/1001", to: "bank-a/1002" },
  { payer: "bob", from: "bank-b/2001", to: "bank-a/1001" },
  { payer: "bob", from: "bank-a/1002", to: "bank-b/2002" },
];

export function newSent(flow: Flow, prefix: string, amountMinor: bigint): Sent {
  return {
    payer: flow.payer,
    keyPrefix: prefix,
    req: {
      idempotencyKey: `${prefix}-${randomUUID()}`,
      fromAccountId: flow.from,
      toAccountId: flow.to,
      amountMinor,
      currency: "USD",
      memo: prefix,
    },
    answers: [],
    errors: [],
  };
}

/** Every account's posted balance at its bank (asked directly, not through a gateway). */
export async function bankBalances(
  stack: Stack,
  accounts: readonly string[],
): Promise<Map<string, { balance: bigint; held: bigint }>> {
  const out = new Map<string, { balance: bigint; held: bigint }>();
  for (const id of accounts) {
    const a = (await stack.bankClient(LedgerService, id.slice(0, id.indexOf("/"))).getAccount({ accountId: id }))
      .account!;
    out.set(id, { balance: a.balanceMinor, held: a.heldMinor });
  }
  return out;
}

/** The txn ids of every journal entry of `accountId` after `afterSequence`. */
export async function entryTxnIds(stack: Stack, accountId: string): Promise<string[]> {
  const bank = stack.bankClient(LedgerService, accountId.slice(0, accountId.indexOf("/")));
  const out: string[] = [];
  let after = 0n;
  for (let pages = 0; pages < 1_000; pages++) {
    let n = 0;
    for await (const m of bank.listEntries({ accountId, afterSequence: after, limit: 1000 })) {
      n++;
      after = m.entry!.sequence;
      if (m.entry!.txnId !== "") out.push(m.entry!.txnId);
    }
    if (n < 1000) return out;
  }
  throw new Error(`more than a million entries on ${accountId}`);
}

/** Accounts the flows touch. */
export const accountsOf = (sent: readonly Sent[]): string[] =>
  [...new Set(sent.flatMap((s) => [s.req.fromAccountId, s.req.toAccountId]))].sort();

/** Re-sends every key, a few at a time, to a random replica: each must get a final answer. */
async function resendEvery(
  sent: readonly Sent[],
  pays: (payer: string) => Client<typeof PaymentService>,
  redis?: RedisServer,
): Promise<void> {
  const queue = [...sent];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const answer = await sendTransfer(pays(s.payer), s, RESEND_DEADLINE_MS);
        // The seed's usernames are its user ids, and the fast path's key is idem:<caller>:<key>.
        const cached =
          answer || !redis
            ? ""
            : `; Redis holds ${(await redis.get(`idem:${s.payer}:${s.req.idempotencyKey}`)) ?? "nothing"}`;
        assert.ok(
          answer,
          `key ${s.req.idempotencyKey} has a final answer on re-send (errors: ${s.errors.slice(-5).join(", ")}${cached})`,
        );
      }
    }),
  );
}

/** Every key's answers agree; the balances the committed ones add up to, and who committed them. */
function tallyAnswers(sent: readonly Sent[], before: ReadonlyMap<string, { balance: bigint; held: bigint }>) {
  const expected = new Map<string, bigint>([...before].map(([id, b]) => [id, b.balance]));
  const committedIds = new Set<string>();
  const byReplica: Record<string, number> = {};
  let declined = 0;
  for (const s of sent) {
    const first = s.answers[0]!;
    for (const a of s.answers)
      assert.deepEqual(
        a,
        first,
        `every answer to key ${s.req.idempotencyKey} is the same: ${JSON.stringify(s.answers, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))}`,
      );
    if (first.kind === "declined") {
      declined++;
      continue;
    }
    committedIds.add(first.txnId);
    byReplica[replicaOf(first.txnId)] = (byReplica[replicaOf(first.txnId)] ?? 0) + 1;
    expected.set(s.req.fromAccountId, expected.get(s.req.fromAccountId)! - s.req.amountMinor);
    expected.set(s.req.toAccountId, expected.get(s.req.toAccountId)! + s.req.amountMinor);
  }
  return { expected, committedIds, byReplica, declined };
}

/** The shared store: one owner per key, at most one commit, and it is the acknowledged txn. Returns every txn id of these keys. */
async function assertStoreOnce(pg: PostgresServer, sent: readonly Sent[]): Promise<Set<string>> {
  const keys = new Map(sent.map((s) => [`${s.payer} ${s.req.idempotencyKey}`, s]));
  const prefixes = [...new Set(sent.map((s) => s.keyPrefix))];
  const rows = await pg.sql(
    `SELECT caller_user_id, idempotency_key, count(*) FILTER (WHERE owns_key), count(*) FILTER (WHERE status = 'COMMITTED'),
            coalesce(string_agg(txn_id, ',') FILTER (WHERE status = 'COMMITTED'), ''), count(*) FILTER (WHERE status = 'PENDING'), string_agg(txn_id, ',')
       FROM txns WHERE ${prefixes.map((p) => `starts_with(idempotency_key, '${p.replace(/'/g, "''")}-')`).join(" OR ")} GROUP BY 1, 2`,
  );
  const allTxnIds = new Set<string>();
  for (const [caller, key, owners, commits, committedTxn, pending, txnIds] of rows) {
    const s = keys.get(`${caller} ${key}`);
    assert.ok(s, `a txn for a key nobody sent: ${caller} ${key}`);
    assert.equal(owners, "1", `key ${key}: one txn owns it`);
    assert.equal(pending, "0", `key ${key}: nothing pending after the re-send`);
    const a = s.answers[0]!;
    assert.equal(commits, a.kind === "committed" ? "1" : "0", `key ${key}: committed once iff acknowledged committed`);
    if (a.kind === "committed")
      assert.equal(committedTxn, a.txnId, `key ${key}: the committed txn is the acknowledged one`);
    for (const id of txnIds!.split(",")) allTxnIds.add(id);
  }
  assert.equal(rows.length, sent.length, "every key made a txn (a transient abort hands its key to the retry's txn)");
  return allTxnIds;
}

/** The banks: each committed txn is one entry at each of its two accounts; no other txn of these keys posted anything. */
async function assertEntriesOnce(
  stack: Stack,
  sent: readonly Sent[],
  accounts: readonly string[],
  allTxnIds: ReadonlySet<string>,
): Promise<void> {
  const posted = new Map<string, number>();
  for (const id of accounts) {
    for (const txnId of await entryTxnIds(stack, id))
      if (allTxnIds.has(txnId)) posted.set(`${id} ${txnId}`, (posted.get(`${id} ${txnId}`) ?? 0) + 1);
  }
  let expectedEntries = 0;
  for (const s of sent) {
    const a = s.answers[0]!;
    if (a.kind !== "committed") continue;
    expectedEntries += 2;
    assert.equal(posted.get(`${s.req.fromAccountId} ${a.txnId}`), 1, `${a.txnId} debited ${s.req.fromAccountId} once`);
    assert.equal(posted.get(`${s.req.toAccountId} ${a.txnId}`), 1, `${a.txnId} credited ${s.req.toAccountId} once`);
  }
  assert.equal(
    [...posted.values()].reduce((x, y) => x + y, 0),
    expectedEntries,
    "no aborted or superseded txn of these keys posted an entry",
  );
}

/**
 * The exactly-once proof, after a run: re-send EVERY key to a random replica
 * (each answer final and agreeing with every answer the key got before); in
 * the shared store each key has one owning txn and at most one commit, the one
 * acknowledged; each committed txn is one entry at each of its accounts and no
 * other txn of these keys left one; balances moved by exactly what the
 * committed transfers add up to. `before` is the balances at the run's start.
 */
export async function assertExactlyOnce(
  stack: Stack,
  pg: PostgresServer,
  sent: readonly Sent[],
  before: ReadonlyMap<string, { balance: bigint; held: bigint }>,
  pays: (payer: string) => Client<typeof PaymentService>,
  redis?: RedisServer,
): Promise<{ committed: number; declined: number; byReplica: Record<string, number> }> {
  await resendEvery(sent, pays, redis);
  const { expected, committedIds, byReplica, declined } = tallyAnswers(sent, before);
  const allTxnIds = await assertStoreOnce(pg, sent);
  const accounts = [...before.keys()];
  await assertEntriesOnce(stack, sent, accounts, allTxnIds);

  const now = await bankBalances(stack, accounts);
  for (const id of accounts) {
    assert.equal(
      now.get(id)!.balance,
      expected.get(id),
      `${id}: the balance is what the acknowledged transfers add up to`,
    );
    assert.equal(now.get(id)!.held, before.get(id)!.held, `${id}: nothing left held`);
  }
  return { committed: committedIds.size, declined, byReplica };
}
