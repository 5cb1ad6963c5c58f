// What the idempotency check costs, Redis fast path vs the embedded SQLite log.
// A micro-benchmark of the gateway's own modules, so it lives in the gateway
// (bench/ only drives whole processes through @paygate/testkit and dist/):
//   make bench-idempotency   (or: node --import tsx services/gateway/bench/idempotency-cost.ts [--n 5000] [--rpc-n 500] [--no-rpc])
//
// 1. In process, one call at a time, real stores (a redis-server the testkit
//    starts on a free port; a SQLite file with WAL + synchronous=FULL):
//    - repeat: a Transfer whose key is already finished, answered by
//      (a) the coordinator alone (validate + log lookup) and
//      (b) the Redis fast path wrapped around it (validate + SET NX GET + decode);
//    - claim: taking a fresh key, SQLite insert+fsync vs Redis SET NX.
// 2. Over the wire: N repeated Transfer RPCs to a real stack (mTLS, banks,
//    gateway process) with REDIS_URL set and unset.
// Prints one JSON line per figure (microseconds). Figures only: nothing is asserted.
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PaymentService } from "@paygate/proto/gateway";
import { RedisServer, Stack } from "@paygate/testkit";
import { createCoordinator, type Coordinator } from "../src/domain/coordinator.js";
import { createDecidedFeed } from "../src/domain/decided-feed.js";
import { createFakeBanks, createMemoryDirectory } from "../test-support/fakes.js";
import type { NewTxn } from "../src/domain/model.js";
import { systemClock } from "../src/domain/ports.js";
import type { TransferRequest } from "../src/domain/transfer-rules.js";
import { withIdempotencyFastPath } from "../src/idempotency/fast-path.js";
import { createRedisCache } from "../src/idempotency/redis-cache.js";
import { createSqliteCoordinatorLog } from "../src/store/coordinator-log.js";
import { openDb } from "../src/store/db.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "5000" },
    "rpc-n": { type: "string", default: "500" },
    "no-rpc": { type: "boolean", default: false },
  },
});
const n = Number(values.n);
const rpcN = Number(values["rpc-n"]);

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Runs fn `count` times sequentially after a warm-up; prints and returns p50/p99 in µs. */
async function measure(label: string, count: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  // A Redis command past its 200 ms timeout (a stalled, shared machine) is an error: counted, not fatal.
  let errors = 0;
  const call = (i: number) => fn(i).catch(() => void errors++);
  for (let i = 0; i < Math.min(200, count); i++) await call(-1 - i);
  errors = 0;
  const us: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint();
    await call(i);
    us.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  us.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  console.log(
    JSON.stringify({ label, n: count, errors, p50us: r(pct(us, 50)), p90us: r(pct(us, 90)), p99us: r(pct(us, 99)) }),
  );
}

const ACCOUNTS = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "bob", currency: "USD" },
];
const transferRequest = (key: string): TransferRequest => ({
  idempotencyKey: key,
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 100n,
  currency: "USD",
  memo: "bench",
});
const newTxn = (key: string): NewTxn => ({
  txnId: `gateway-0:${randomUUID()}`,
  callerUserId: "alice",
  idempotencyKey: key,
  fingerprint: "fp",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  fromBank: "bank-a",
  toBank: "bank-b",
  amountMinor: 100n,
  currency: "USD",
  memo: "",
  createdAtMs: Date.now(),
});

async function inProcess(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "idem-bench-"));
  const redis = await RedisServer.start();
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const cache = createRedisCache({ url: redis.url, logger: quiet });
  try {
    for (let i = 0; i < 100 && !cache.ready; i++) await new Promise((r) => setTimeout(r, 20));
    const db = openDb(join(dir, "gateway.db"));
    const log = createSqliteCoordinatorLog(db);
    const directory = createMemoryDirectory(ACCOUNTS);
    const coordinator: Coordinator = createCoordinator({
      replica: "gateway-0",
      log,
      directory,
      participants: createFakeBanks(),
      clock: systemClock,
      faults: { hit: () => {} },
      feed: createDecidedFeed(),
      logger: quiet,
      prepareTimeoutMs: 10_000,
      commitTimeoutMs: 5_000,
      redriveIntervalMs: 1_000,
      redriveBackoffMaxMs: 8_000,
    });
    const fast = withIdempotencyFastPath({
      inner: coordinator,
      cache,
      directory,
      replica: "gateway-0",
      ttlMs: 3_600_000,
      logger: quiet,
    });

    // Finished keys to repeat: committed through the fast path, so both the log and Redis know them.
    const keysMax = 1000;
    const done: string[] = [];
    for (let i = 0; i < keysMax; i++) {
      const key = randomUUID();
      const out = await fast.transfer("alice", transferRequest(key));
      if (!out.result.ok) throw new Error(`setup transfer failed: ${out.result.reason}`);
      done.push(key);
    }
    const pick = (i: number) => done[(i < 0 ? -i : i) % keysMax]!;
    await measure("repeat answered by the embedded log (coordinator.transfer, no Redis)", n, (i) =>
      coordinator.transfer("alice", transferRequest(pick(i))),
    );
    await measure("repeat answered by Redis (fast path: validate + SET NX GET + decode)", n, (i) =>
      fast.transfer("alice", transferRequest(pick(i))),
    );
    await measure("repeat, Redis round trip alone (cache.claim on a finished key)", n, (i) =>
      cache.claim(`idem:alice:${pick(i)}`, '{"v":1}', 60_000),
    );
    await measure("claim a fresh key: SQLite insert, fsync'd (log.claim)", n, () => log.claim(newTxn(randomUUID())));
    await measure("claim a fresh key: Redis SET NX PX GET (cache.claim)", n, () =>
      cache.claim(`idem:alice:${randomUUID()}`, '{"v":1}', 60_000),
    );
    db.close();
  } finally {
    await cache.close();
    await redis.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function overTheWire(withRedis: boolean): Promise<void> {
  const redis = withRedis ? await RedisServer.start() : undefined;
  const stack = await Stack.start({ prepareTimeoutMs: 10_000, ...(redis ? { redisUrl: redis.url } : {}) });
  try {
    for (let i = 0; i < 100 && redis && stack.gateway.find("idempotency cache connected").length === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    const alice = stack.client(PaymentService, await stack.login("alice"));
    const req = {
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 1n,
      currency: "USD",
      memo: "bench",
    };
    await alice.transfer(req);
    await measure(
      `repeated Transfer RPC, gateway ${withRedis ? "with REDIS_URL" : "without REDIS_URL (embedded log)"}`,
      rpcN,
      () => alice.transfer(req),
    );
    await stack.assertConserved();
  } finally {
    await stack.close();
    await redis?.close();
  }
}

console.log(JSON.stringify({ node: process.version, n, rpcN }));
await inProcess();
if (!values["no-rpc"]) {
  await overTheWire(false);
  await overTheWire(true);
}
