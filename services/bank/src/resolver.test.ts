import { test } from "node:test";
import assert from "node:assert/strict";
import { createResolver, type Decision, type ResolverLogger } from "./resolver.js";
import type { PreparedRef } from "./store/ledger-store.js";

const quiet: ResolverLogger = { info: () => {}, warn: () => {}, error: () => {} };

interface World {
  nowMs: number;
  prepared: Map<string, PreparedRef>;
  decisions: Map<string, Decision | Error>;
  asked: string[];
  applied: Array<[string, Decision]>;
}

function world(count: number, preparedAtMs = 0): World {
  const prepared = new Map<string, PreparedRef>();
  for (let i = 0; i < count; i++) {
    const txnId = `gateway-0:${String(i).padStart(36, "0")}`;
    prepared.set(txnId, { txnId, coordinator: "gateway-0", preparedAtMs: preparedAtMs + i });
  }
  return { nowMs: 0, prepared, decisions: new Map(), asked: [], applied: [] };
}

function resolverFor(w: World, extra: { askPerTickMax?: number; scanMax?: number } = {}) {
  return createResolver({
    preparedBefore: (cutoffMs, limit) =>
      [...w.prepared.values()].filter((p) => p.preparedAtMs < cutoffMs).slice(0, limit),
    ask: async (txnId) => {
      w.asked.push(txnId);
      const d = w.decisions.get(txnId) ?? new Error("coordinator unavailable");
      if (d instanceof Error) throw d;
      return d;
    },
    apply: (txnId, decision) => {
      w.applied.push([txnId, decision]);
      w.prepared.delete(txnId);
      return undefined;
    },
    logger: quiet,
    prepareTimeoutMs: 1_000,
    intervalMs: 100,
    backoffMaxMs: 1_000,
    clock: () => w.nowMs,
    ...extra,
  });
}

test("only txns prepared longer than the timeout are asked about, and the answer is applied", async () => {
  const w = world(2, 500);
  const [a, b] = [...w.prepared.keys()] as [string, string];
  w.decisions.set(a, "commit");
  w.decisions.set(b, "abort");
  const r = resolverFor(w);
  w.nowMs = 1_501; // a was prepared at 500, b at 501: only a is held longer than 1,000 ms
  assert.deepEqual(await r.tick(), { committed: 1, aborted: 0, failed: 0, waiting: 0 });
  w.nowMs = 1_502;
  assert.deepEqual(await r.tick(), { committed: 0, aborted: 1, failed: 0, waiting: 0 });
  assert.deepEqual(w.applied, [
    [a, "commit"],
    [b, "abort"],
  ]);
});

test("a failed ask backs off, doubling up to the maximum, and succeeds later", async () => {
  const w = world(1);
  const [id] = [...w.prepared.keys()] as [string];
  const r = resolverFor(w);
  w.nowMs = 2_000;
  const askTimes: number[] = [];
  // Walk time forward in 50 ms steps and record when the resolver actually asks.
  while (w.nowMs < 6_000) {
    const before = w.asked.length;
    await r.tick();
    if (w.asked.length > before) askTimes.push(w.nowMs);
    w.nowMs += 50;
  }
  const gaps = askTimes.slice(1).map((t, i) => t - askTimes[i]!);
  assert.deepEqual(gaps.slice(0, 5), [200, 400, 800, 1_000, 1_000]);
  assert.equal(r.backingOff, 1);
  w.decisions.set(id, "abort");
  w.nowMs += 1_000;
  assert.deepEqual(await r.tick(), { committed: 0, aborted: 1, failed: 0, waiting: 0 });
  assert.equal(r.backingOff, 0);
});

test("each tick asks at most askPerTickMax txns; the rest wait for the next tick", async () => {
  const w = world(10);
  for (const id of w.prepared.keys()) w.decisions.set(id, "commit");
  const r = resolverFor(w, { askPerTickMax: 4 });
  w.nowMs = 5_000;
  assert.equal((await r.tick()).committed, 4);
  assert.equal((await r.tick()).committed, 4);
  assert.equal((await r.tick()).committed, 2);
  assert.equal(w.prepared.size, 0);
});

test("txns backing off do not starve the others", async () => {
  const w = world(6);
  const ids = [...w.prepared.keys()];
  for (const id of ids.slice(3)) w.decisions.set(id, "commit"); // the 3 oldest keep failing
  const r = resolverFor(w, { askPerTickMax: 3 });
  w.nowMs = 5_000;
  assert.deepEqual(await r.tick(), { committed: 0, aborted: 0, failed: 3, waiting: 0 });
  assert.deepEqual(await r.tick(), { committed: 3, aborted: 0, failed: 0, waiting: 3 });
});

test("a resolved txn leaves the back-off table; concurrent ticks share one run", async () => {
  const w = world(2);
  const r = resolverFor(w);
  w.nowMs = 5_000;
  const [t1, t2] = [r.tick(), r.tick()];
  assert.equal(t1, t2);
  await t1;
  assert.equal(w.asked.length, 2);
  assert.equal(r.backingOff, 2);
  // Resolved elsewhere (the coordinator's own Commit arrived): pruned on the next scan.
  w.prepared.clear();
  await r.tick();
  assert.equal(r.backingOff, 0);
});
