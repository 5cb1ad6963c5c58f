// The checkout's SQLite file across versions: an older file is migrated in
// place when a newer build opens it, and keeps its rows.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openCheckoutStore } from "./checkout-store.js";

const NOW = Date.UTC(2026, 0, 15, 12);
/** What v3 (webhooks) added, taken away again. */
const V3_UNDO =
  "DROP TABLE webhook_secrets; DROP TABLE webhook_events; ALTER TABLE orders DROP COLUMN refunded_minor; ALTER TABLE orders DROP COLUMN auth_status";
/** What v2 (capture retry backoff) added. */
const V2_UNDO = "ALTER TABLE orders DROP COLUMN settle_not_before_ms; ALTER TABLE orders DROP COLUMN capture_retries";

/**
 * A data dir whose checkout.db holds one approved order (attempt key
 * `attemptKey`, auth code `authCode`) in the file format of `version`: made
 * by this build, then turned back with `undo`. Opened by this build again.
 */
function storeFromVersion(
  t: TestContext,
  version: number,
  undo: readonly string[],
  attemptKey: string,
  authCode: string,
) {
  const dir = mkdtempSync(join(tmpdir(), "checkout-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const first = openCheckoutStore({ dataDir: dir });
  first.claimOrder({
    attemptKey,
    orderId: `order-${authCode}`,
    fingerprint: "fp",
    amountMinor: 500n,
    currency: "USD",
    cardLast4: "4242",
    cardholderName: "A",
    nowMs: NOW,
  });
  first.recordApproved(attemptKey, authCode, "4242", NOW);
  first.close();
  const db = new Database(join(dir, "checkout.db"));
  for (const sql of undo) db.exec(sql);
  db.pragma(`user_version = ${version}`);
  db.close();
  const store = openCheckoutStore({ dataDir: dir });
  t.after(() => store.close());
  return store;
}

test("a v1 file (before the capture retry backoff) is migrated: its orders are due at once", (t) => {
  const store = storeFromVersion(t, 1, [V3_UNDO, V2_UNDO], "attempt-0000000000000001", "C00001");
  const o = store.getOrder("attempt-0000000000000001");
  assert.deepEqual(
    [o?.state, o?.settleState, o?.captureRetries, o?.settleNotBeforeMs],
    ["approved", "unsettled", 0, 0],
  );
  assert.ok(store.createSettlement("stl-1", "settle-stl-1", 10, NOW), "the migrated order is settled as before");
});

test("a v2 file (before webhooks) is migrated: its orders have heard nothing yet, and the inbox and secrets start empty", (t) => {
  const store = storeFromVersion(t, 2, [V3_UNDO], "attempt-0000000000000002", "C00002");
  const o = store.getOrder("attempt-0000000000000002");
  assert.deepEqual([o?.state, o?.authStatus, o?.refundedMinor], ["approved", null, 0n]);
  assert.deepEqual(store.webhookSecrets(NOW), []);
  const event = { eventId: "evt_" + "0".repeat(24), type: "refund.succeeded", objectId: "C00002", createdAtMs: NOW };
  assert.deepEqual(
    store.applyWebhookEvent(event, [{ authCode: "C00002", authStatus: "CAPTURED", refundedMinor: 300n }], NOW),
    { duplicate: false, ordersChanged: 1 },
  );
  assert.equal(store.getOrder("attempt-0000000000000002")?.refundedMinor, 300n);
});
