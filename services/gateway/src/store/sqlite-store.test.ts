// The store contract on the embedded SQLite adapter, plus what only SQLite has.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storeContract, newTxn } from "./contract.js";
import { createSqliteStore, type SqliteStore } from "./sqlite-store.js";

function tempFile(): { file: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "gateway-store-"));
  return { file: join(dir, "nested", "gateway.db"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

storeContract("sqlite", async () => {
  const { file, remove } = tempFile();
  let store: SqliteStore = createSqliteStore(file);
  return {
    get store() {
      return store;
    },
    async reopen() {
      await store.close();
      store = createSqliteStore(file);
      return store;
    },
    async close() {
      await store.close();
      remove();
    },
  };
});

test("sqlite: the file is WAL with synchronous=FULL, foreign keys on, INTEGERs read as bigint", async (t) => {
  const { file, remove } = tempFile();
  const s = createSqliteStore(file);
  t.after(async () => {
    await s.close();
    remove();
  });
  assert.equal(s.db.pragma("journal_mode", { simple: true }), "wal");
  assert.equal(s.db.pragma("synchronous", { simple: true }), 2n);
  assert.equal(s.db.pragma("foreign_keys", { simple: true }), 1n);
  assert.equal(s.shared, false);
});

test("sqlite: a disk that fills up fails the writes that do not fit, and only those; what was acknowledged is on disk", async (t) => {
  const { file, remove } = tempFile();
  const s = createSqliteStore(file);
  t.after(async () => {
    await s.close().catch(() => {});
    remove();
  });
  s.db.pragma(`max_page_count = ${Number(s.db.pragma("page_count", { simple: true })) + 2}`);
  // Long memos fill pages fast; the claims queued in one turn share one transaction.
  const txns = Array.from({ length: 40 }, (_, i) =>
    newTxn({ idempotencyKey: `full-${i}`, memo: "m".repeat(i % 7 === 6 ? 3_000 : 10) }),
  );
  const outcomes = await Promise.allSettled(txns.map((txn) => s.log.claim(txn)));
  const failed = outcomes.filter((o) => o.status === "rejected");
  assert.ok(failed.length > 0, "the disk did fill up");
  for (const [i, o] of outcomes.entries()) {
    const stored = await s.log.findTxn(txns[i]!.txnId);
    assert.equal(
      o.status === "fulfilled",
      stored !== undefined,
      `claim ${i}: ${o.status}, ${stored ? "stored" : "not stored"}`,
    );
  }
});
