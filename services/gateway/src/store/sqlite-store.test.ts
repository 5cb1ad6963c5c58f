// The store contract on the embedded SQLite adapter, plus what only SQLite has.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { storeContract, newTxn } from "./contract.js";
import { openDb } from "./db.js";
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

test("sqlite: the per-day card spend totals (v6 triggers) always equal the scan of the authorizations they replace", async (t) => {
  const db = openDb(":memory:");
  t.after(() => db.close());
  const DAY = 86_400_000;
  const cards = ["card-1", "card-2"];
  for (const c of cards)
    db.prepare(
      `INSERT INTO cards VALUES (?, ?, '4242', 12, 2030, 'h', 'Holder', 'bank-a/1', 'bank-a', 'u', 'USD', 0)`,
    ).run(c, `hmac-${c}`);
  const insert = db.prepare(`INSERT INTO card_authorizations (auth_id, auth_code, merchant_user_id, idempotency_key,
      fingerprint, card_id, card_last4, card_account_id, card_bank, card_owner_user_id, merchant_account_id, merchant_bank,
      amount_minor, currency, merchant_reference, status, risk_approved, created_at, expires_at, updated_at)
    VALUES (@id, @id, 'shop', @id, 'f', @card, '4242', 'bank-a/1', 'bank-a', 'u', 'bank-b/9', 'bank-b',
      @amount, 'USD', '', @status, @risk, @at, @at, @at)`);
  const scan = db.prepare(`SELECT coalesce(sum(amount_minor), 0) AS total FROM card_authorizations
    WHERE card_id = ? AND created_at >= ? AND created_at < ?
      AND (status IN ('APPROVED', 'CAPTURED') OR (status = 'PENDING' AND risk_approved = 1))`);
  const totals = db.prepare("SELECT spent_minor FROM card_daily_spend WHERE card_id = ? AND day_start = ?");
  const statuses = ["PENDING", "DECLINED", "APPROVED", "CAPTURED", "VOIDED", "EXPIRED"];
  // A fixed pseudo-random walk: inserts, status and risk changes, deletes, over three days and two cards.
  let x = 0x9e3779b9; // xorshift32
  const rand = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const ids: string[] = [];
  let counted = 0;
  const ops = [0, 0, 0, 0];
  for (let step = 0; step < 600; step++) {
    const op = ids.length === 0 ? 0 : rand(4);
    ops[op]!++;
    if (op === 0) {
      const id = `a${step}`;
      ids.push(id);
      insert.run({
        id,
        card: cards[rand(2)],
        amount: 1 + rand(5_000),
        status: statuses[rand(statuses.length)],
        risk: rand(2),
        at: 5 * DAY + rand(3) * DAY + rand(DAY),
      });
    } else if (op === 1) {
      db.prepare("UPDATE card_authorizations SET status = ? WHERE auth_id = ?").run(
        statuses[rand(statuses.length)],
        ids[rand(ids.length)],
      );
    } else if (op === 2) {
      db.prepare("UPDATE card_authorizations SET risk_approved = 1 - risk_approved WHERE auth_id = ?").run(
        ids[rand(ids.length)],
      );
    } else {
      const [id] = ids.splice(rand(ids.length), 1);
      db.prepare("DELETE FROM card_authorizations WHERE auth_id = ?").run(id);
    }
    for (const card of cards)
      for (let d = 5; d < 8; d++) {
        const want = (scan.get(card, d * DAY, (d + 1) * DAY) as { total: bigint }).total;
        const have = (totals.get(card, d * DAY) as { spent_minor: bigint } | undefined)?.spent_minor ?? 0n;
        assert.equal(have, want, `step ${step}: ${card} day ${d}`);
        if (want > 0n) counted++;
      }
  }
  assert.ok(counted > 100, `the walk kept some spend on the books (${counted} non-zero checks)`);
  assert.ok(Math.min(...ops) > 60, `every kind of change was made often: ${ops.join(", ")}`);
});
