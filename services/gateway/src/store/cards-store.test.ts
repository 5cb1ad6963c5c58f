// The card store's own guards, independent of the rules that should never hit
// them: one card per number, one authorization per (merchant, key) and per
// code, refunds never above the captured amount; and the card-data key file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuthRecord, CardRecord } from "../domain/cards-ports.js";
import { createSqliteCardStore } from "./cards-store.js";
import { CARD_SECRET_FILE, loadOrCreateCardSecret } from "./cards-secret.js";
import { openDb } from "./db.js";

const NOW = 1_768_478_400_000;
const card: CardRecord = {
  cardId: "card_1",
  panHmac: "h1",
  last4: "4242",
  expMonth: 12,
  expYear: 2030,
  cvcHash: "c",
  cardholderName: "A",
  accountId: "bank-a/1001",
  bank: "bank-a",
  ownerUserId: "alice",
  currency: "USD",
  createdAtMs: NOW,
};
const auth: AuthRecord = {
  authId: "auth_1",
  authCode: "ABC123",
  merchantUserId: "shop",
  idempotencyKey: "k1",
  fingerprint: "f",
  cardId: "card_1",
  cardLast4: "4242",
  cardAccountId: "bank-a/1001",
  cardBank: "bank-a",
  cardOwnerUserId: "alice",
  merchantAccountId: "bank-b/2003",
  merchantBank: "bank-b",
  amountMinor: 1_000n,
  currency: "USD",
  merchantReference: "",
  status: "PENDING",
  declineReason: "",
  riskScore: 0,
  riskApproved: false,
  riskRule: "",
  holdTxnId: "",
  opTxnId: "",
  opKind: "",
  opAmountMinor: 0n,
  opBatchId: "",
  opItemIndex: -1,
  capturedMinor: 0n,
  captureTxnId: "",
  captureBatchId: "",
  captureItemIndex: -1,
  refundedMinor: 0n,
  refundReservedMinor: 0n,
  createdAtMs: NOW,
  expiresAtMs: NOW + 1_000,
  updatedAtMs: NOW,
};

test("unique numbers, keys and codes; compare-and-set updates; refunds capped by the table itself", () => {
  const store = createSqliteCardStore(openDb(":memory:"));
  assert.equal(store.insertCard(card), true);
  assert.equal(store.insertCard({ ...card, cardId: "card_2" }), false, "same number");
  assert.equal(store.insertAuth(auth), true);
  assert.equal(store.insertAuth({ ...auth, authId: "auth_2", authCode: "ABC124" }), false, "same (merchant, key)");
  assert.equal(store.insertAuth({ ...auth, authId: "auth_3", idempotencyKey: "k3" }), false, "same code");
  assert.equal(store.insertAuth({ ...auth, authId: "auth_4", authCode: "ABC125", merchantUserId: "shop2" }), true, "keys are per merchant");

  assert.equal(store.updateAuth("auth_1", { status: "APPROVED" }, { status: "CAPTURED" }, NOW), false, "expectation not met: nothing written");
  assert.equal(store.updateAuth("auth_1", { status: "PENDING" }, { status: "APPROVED", riskApproved: true }, NOW), true);
  assert.equal(store.updateAuth("auth_1", { status: "APPROVED", opTxnId: "" }, { status: "CAPTURED", capturedMinor: 600n }, NOW + 1), true);
  const a = store.authById("auth_1")!;
  assert.deepEqual([a.status, a.capturedMinor, a.riskApproved, a.updatedAtMs], ["CAPTURED", 600n, true, NOW + 1]);

  store.adjustRefunds("auth_1", 0n, 600n, NOW);
  assert.throws(() => store.adjustRefunds("auth_1", 0n, 1n, NOW), /CHECK constraint/);
  store.adjustRefunds("auth_1", 600n, -600n, NOW);
  assert.throws(() => store.adjustRefunds("auth_1", 1n, 0n, NOW), /CHECK constraint/);
  assert.deepEqual([store.authById("auth_1")!.refundedMinor, store.authById("auth_1")!.refundReservedMinor], [600n, 0n]);
  assert.throws(() => store.updateAuth("auth_4", {}, { capturedMinor: 1_001n }, NOW), /CHECK constraint/, "capture above the authorization");
});

test("expiry takes only APPROVED authorizations past expires_at with no operation in flight", () => {
  const store = createSqliteCardStore(openDb(":memory:"));
  store.insertCard(card);
  for (const [i, status, op] of [[1, "APPROVED", ""], [2, "APPROVED", "gateway-0:x"], [3, "CAPTURED", ""], [4, "PENDING", ""]] as const) {
    store.insertAuth({ ...auth, authId: `auth_${i}`, authCode: `CODE0${i}`, idempotencyKey: `k${i}`, status, opTxnId: op, opKind: op ? "capture" : "" });
  }
  assert.deepEqual(store.expireDue(NOW + 999, 10), []);
  assert.deepEqual(store.expireDue(NOW + 1_000, 10).map((a) => a.authId), ["auth_1"]);
  assert.equal(store.authById("auth_1")?.status, "EXPIRED");
  assert.equal(store.authById("auth_2")?.status, "APPROVED");
});

test("the card-data key is made once and kept", () => {
  const dir = mkdtempSync(join(tmpdir(), "card-secret-"));
  try {
    const a = loadOrCreateCardSecret(dir);
    const b = loadOrCreateCardSecret(dir);
    assert.equal(a.length, 32);
    assert.deepEqual(a, b);
    assert.equal(statSync(join(dir, CARD_SECRET_FILE)).mode & 0o777, 0o600);
    assert.equal(readFileSync(join(dir, CARD_SECRET_FILE), "utf8").trim(), a.toString("hex"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
