import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createGroupCommit } from "./group-commit.js";

function twoConnections(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), "group-commit-"));
  const file = join(dir, "g.db");
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
  // A second connection sees only what is committed.
  const reader = new Database(file, { readonly: true });
  t.after(() => {
    reader.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { db, reader };
}

test("writes queued in one tick commit in one transaction; each resolves only once committed", async (t) => {
  const { db, reader } = twoConnections(t);
  const group = createGroupCommit(db);
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  const count = () => (reader.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n;
  const seenByOthersDuringWrites: number[] = [];
  const seenByOthersAtResolve: number[] = [];
  const writes = ["a", "b", "c"].map((k) =>
    group
      .enqueue(() => {
        // Earlier writes of the batch are not committed yet: one transaction for all.
        seenByOthersDuringWrites.push(count());
        return insert.run(k).changes;
      })
      .then((changes) => {
        seenByOthersAtResolve.push(count());
        return changes;
      }),
  );
  assert.equal(group.queued, 3);
  assert.equal(count(), 0, "nothing is written before the flush");
  assert.deepEqual(await Promise.all(writes), [1, 1, 1]);
  assert.deepEqual(seenByOthersDuringWrites, [0, 0, 0]);
  assert.deepEqual(seenByOthersAtResolve, [3, 3, 3], "every caller resolves after its write is committed");
});

test("one failing write rolls back alone; the others commit; its caller gets the error", async (t) => {
  const { db, reader } = twoConnections(t);
  const group = createGroupCommit(db);
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  const ok1 = group.enqueue(() => insert.run("x"));
  const bad = group.enqueue(() => {
    insert.run("half-written");
    insert.run("x"); // duplicate key: this write throws after a first insert
  });
  const ok2 = group.enqueue(() => insert.run("y"));
  await ok1;
  await ok2;
  await assert.rejects(bad, /UNIQUE constraint failed/);
  const keys = (reader.prepare("SELECT k FROM t ORDER BY k").all() as { k: string }[]).map((r) => r.k);
  assert.deepEqual(keys, ["x", "y"], "the failed write's first insert was rolled back with it");
});

test("flush() runs the queue at once, for readers that must see queued writes", async (t) => {
  const { db } = twoConnections(t);
  const group = createGroupCommit(db);
  const done = group.enqueue(() => db.prepare("INSERT INTO t (k) VALUES ('now')").run());
  group.flush();
  assert.equal(group.queued, 0);
  assert.equal((db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n, 1);
  await done;
});

test("disk full mid-batch (SQLite rolls the whole transaction back): every caller learns its own fate, none a neighbour's", async (t) => {
  const { db, reader } = twoConnections(t);
  const group = createGroupCommit(db);
  const insert = db.prepare("INSERT INTO t (k) VALUES (?)");
  // Room for a few small rows, never for the big one: SQLITE_FULL, and SQLite
  // rolls back the transaction on its own, as it does for a real full disk.
  db.pragma(`max_page_count = ${Number(db.pragma("page_count", { simple: true })) + 3}`);
  const big = "x".repeat(20_000);
  const keys = ["a", "b", big, "c", "d"];
  const outcomes = await Promise.allSettled(keys.map((k) => group.enqueue(() => insert.run(k))));
  const on = new Set((reader.prepare("SELECT k FROM t").all() as { k: string }[]).map((r) => r.k));
  outcomes.forEach((o, i) => {
    const k = keys[i]!;
    // Resolved <=> on disk: before the fix, later writes autocommitted and then every caller was rejected.
    assert.equal(
      o.status === "fulfilled",
      on.has(k),
      `${k.slice(0, 5)}: ${o.status} but ${on.has(k) ? "on disk" : "not on disk"}`,
    );
  });
  assert.equal(outcomes[2]!.status, "rejected", "the write that does not fit fails");
  assert.deepEqual([...on].sort(), ["a", "b", "c", "d"], "the ones that fit are all there");
  assert.equal(db.inTransaction, false);
});
