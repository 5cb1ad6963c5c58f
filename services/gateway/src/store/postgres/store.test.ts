// The store contract on PostgreSQL (a private cluster started for this file:
// its own data dir and free port, never the machine's server), with both
// drivers, plus what only a shared store has: concurrent migrations, a failed
// or interrupted group commit, an unreachable server, LISTEN/NOTIFY.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PostgresServer } from "@paygate/testkit";
import { StoreUnavailableError } from "../../domain/ports.js";
import { eventually, newTxn, storeContract } from "../contract.js";
import type { SqlDriver } from "./driver.js";
import { createPgGroupCommit } from "./group-commit.js";
import { createPostgresStore, type PostgresStore } from "./store.js";

let server: PostgresServer;
let dbs = 0;
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

before(async () => {
  server = await PostgresServer.start();
});
after(async () => {
  await server.close();
});

async function freshDatabase(): Promise<string> {
  const name = `contract_${++dbs}`;
  await server.sql(`CREATE DATABASE ${name}`);
  return server.url.replace(/\/[^/]+$/, `/${name}`);
}

const open = (url: string, driver: "pg" | "postgres" = "pg", statementTimeoutMs = 2_000) =>
  createPostgresStore({
    url,
    passwordFile: "",
    poolMax: 4,
    driver,
    statementTimeoutMs,
    replica: "gateway-0",
    logger: quiet,
    probeIntervalMs: 100,
  });

test("postgres: three replicas starting at once run each migration once", async () => {
  const url = await freshDatabase();
  const stores = await Promise.all([open(url), open(url), open(url)]);
  try {
    const rows = await stores[0]!.driver.query<{ version: number }>(
      "SELECT version FROM schema_migrations ORDER BY version",
    );
    assert.deepEqual(
      rows.map((r) => Number(r.version)),
      [1, 2, 3, 4],
    );
    assert.equal(stores[0]!.shared, true);
  } finally {
    for (const s of stores) await s.close();
  }
});

test("postgres: a write that fails inside a group-committed batch fails alone; its neighbours commit", async () => {
  const store = await open(await freshDatabase());
  try {
    await store.seedOnce({ users: [], accounts: [] }, 1);
    // amount_minor > 0 is a CHECK: this claim makes paygate_apply's transaction fail as a whole.
    const good = Array.from({ length: 5 }, (_, i) => newTxn({ idempotencyKey: `good-${i}` }));
    const bad = newTxn({ idempotencyKey: "bad", amountMinor: 0n });
    const outcomes = await Promise.allSettled(
      [...good.slice(0, 2), bad, ...good.slice(2)].map((t) => store.log.claim(t)),
    );
    assert.equal(outcomes.filter((o) => o.status === "rejected").length, 1);
    assert.equal(outcomes[2]!.status, "rejected");
    for (const t of good) assert.equal((await store.log.findTxn(t.txnId))?.status, "PENDING");
    assert.equal(await store.log.findTxn(bad.txnId), undefined);
  } finally {
    await store.close();
  }
});

test("postgres: killed mid-stream (kill -9 of the postmaster): every acknowledged write is there after the restart, none is acknowledged without being there", async () => {
  const url = await freshDatabase();
  // Crash recovery replays the WAL since the last checkpoint: without one here it
  // would replay every earlier test's databases too (tens of seconds on a slow disk).
  // The writes under test all come after it, so they are still only in the WAL.
  await server.sql("CHECKPOINT");
  const store = await open(url, "pg", 1_500);
  try {
    const txns = Array.from({ length: 300 }, (_, i) => newTxn({ idempotencyKey: `kill-${i}` }));
    const outcomes: Promise<PromiseSettledResult<unknown>>[] = [];
    for (const [i, t] of txns.entries()) {
      outcomes.push(
        store.log.claim(t).then(
          (value) => ({ status: "fulfilled", value }) as const,
          (reason: unknown) => ({ status: "rejected", reason }) as const,
        ),
      );
      if (i === 150) await server.kill9();
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    await server.start();
    const settled = await Promise.all(outcomes);
    let acknowledged = 0;
    for (const [i, o] of settled.entries()) {
      if (o.status === "fulfilled") {
        acknowledged++;
        assert.notEqual(await store.log.findTxn(txns[i]!.txnId), undefined, `claim ${i} was acknowledged`);
      } else {
        assert.ok(o.reason instanceof StoreUnavailableError, `claim ${i} failed with ${String(o.reason)}`);
      }
    }
    assert.ok(acknowledged > 0);
    // And the replica goes on by itself.
    await eventually(
      async () => assert.equal((await store.log.claim(newTxn({ idempotencyKey: "after" }))).claimed, true),
      10_000,
    );
    assert.equal(store.healthy(), true);
  } finally {
    await store.close();
  }
});

test("postgres: unreachable means StoreUnavailableError and healthy() false; it recovers by itself when the server returns", async () => {
  const url = await freshDatabase();
  const store = await open(url, "pg", 800);
  try {
    await server.stop();
    await assert.rejects(store.log.findTxn("gateway-0:x"), StoreUnavailableError);
    await assert.rejects(store.log.claim(newTxn()), StoreUnavailableError);
    assert.equal(store.healthy(), false);
    await server.start();
    await eventually(async () => assert.equal(store.healthy(), true), 10_000);
    assert.equal((await store.log.claim(newTxn())).claimed, true);
  } finally {
    if (!server.running) await server.start();
    await store.close();
  }
});

test("postgres: a decision logged by one replica wakes another replica's followers (LISTEN/NOTIFY)", async () => {
  const url = await freshDatabase();
  const a = await open(url);
  const b = await open(url, "postgres");
  try {
    let woken = 0;
    b.onDecided(() => woken++);
    const before = woken;
    const t = newTxn();
    await a.log.claim(t);
    await a.log.decide({
      txnId: t.txnId,
      decision: "COMMIT",
      reason: "",
      participants: ["bank-a"],
      nowMs: 1,
      firstResendAtMs: 2,
    });
    await eventually(async () => assert.ok(woken > before, "b heard of a's decision"));
  } finally {
    await a.close();
    await b.close();
  }
});

test("group commit retries a serialization failure or deadlock instead of surfacing it", async () => {
  let calls = 0;
  const driver = {
    name: "pg",
    async query(_text: string, params?: readonly unknown[]) {
      calls++;
      if (calls <= 2)
        throw Object.assign(new Error(calls === 1 ? "could not serialize access" : "deadlock detected"), {
          code: calls === 1 ? "40001" : "40P01",
        });
      const ops = JSON.parse(String(params?.[0])) as unknown[];
      return [{ r: ops.map((_o, i) => ({ i })) }];
    },
  } as unknown as SqlDriver;
  const group = createPgGroupCommit(driver, { retryDeadlineMs: 1_000 });
  const results = await Promise.all([
    group.apply({ op: "ack", txnId: "t", bank: "a", nowMs: 1 }),
    group.apply({ op: "ack", txnId: "t", bank: "b", nowMs: 1 }),
  ]);
  assert.deepEqual(results, [{ i: 0 }, { i: 1 }]);
  assert.equal(calls, 3);
});

// The contract suites last: they leave ~80 databases behind, and a kill -9 test after them
// waits for crash recovery to fsync every one of their files (tens of seconds on a slow disk).
for (const driver of ["pg", "postgres"] as const) {
  storeContract(`postgres (${driver})`, async () => {
    const url = await freshDatabase();
    let store: PostgresStore = await open(url, driver);
    const others: PostgresStore[] = [];
    return {
      get store() {
        return store;
      },
      async reopen() {
        await store.close();
        store = await open(url, driver);
        return store;
      },
      async another() {
        const s = await open(url, driver);
        others.push(s);
        return s;
      },
      async close() {
        for (const s of [store, ...others]) await s.close();
      },
    };
  });
}
