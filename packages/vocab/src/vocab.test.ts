import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ACCOUNT_ID_PATTERN,
  bankOfAccountId,
  checkHolderNameShape,
  checkIdempotencyKeyShape,
  checkMemoShape,
  DEPOSIT_ID_PATTERN,
  depositIdOf,
  escapeControlCharacters,
  fail,
  findControlCharacter,
  formatLinkCode,
  IDEMPOTENCY_KEY_LENGTH_MAX,
  isAccountId,
  isRetryableReason,
  isTxnId,
  LEG_DIRECTIONS,
  ledgerDirectionOf,
  LINK_CODE_ALPHABET,
  normalizeHolderName,
  normalizeLinkCode,
  ok,
  reasonClass,
  retryableReasons,
  type Result,
} from "./index.js";

test("account ids: the gateway's rule, with the bank as group 1", () => {
  for (const ok of ["bank-a/1001", "b/1", "bank-b/999999999999"]) assert.ok(isAccountId(ok), ok);
  for (const bad of [
    "BANK-B/2001",
    "bank-b/",
    "bank-b/1x",
    "1bank/1",
    "bank-b/1234567890123",
    " bank-b/1",
    "bank_b/1",
    "a".repeat(32) + "/1",
  ])
    assert.ok(!isAccountId(bad), bad);
  assert.equal(bankOfAccountId("bank-b/2001"), "bank-b");
  assert.equal(ACCOUNT_ID_PATTERN.exec("bank-b/2001")?.[2], "2001");
  assert.equal(bankOfAccountId("BANK-B/2001"), undefined);
});

test("txn ids: a replica name and a lowercase UUID", () => {
  assert.ok(isTxnId("gateway-0:1b4e28ba-2fa1-4d2b-883f-0016d3cca427"));
  for (const bad of [
    "gateway-0:" + "0".repeat(36),
    "0gw:1b4e28ba-2fa1-4d2b-883f-0016d3cca427",
    "gateway-0:1B4E28BA-2fa1-4d2b-883f-0016d3cca427",
    "gateway-0:1b4e28ba2fa14d2b883f0016d3cca427----",
  ]) {
    assert.ok(!isTxnId(bad), bad);
  }
});

test("idempotency keys: one rule; what the clients send passes; deposit ids built from any valid key pass the bank's rule", () => {
  for (const ok of [
    crypto.randomUUID(),
    "settle-stl-" + crypto.randomUUID(),
    "A".repeat(64) + "-r12",
    "_".repeat(16),
    "k",
    "a:b.c_d-e",
  ])
    assert.equal(checkIdempotencyKeyShape(ok), undefined, ok);
  for (const bad of ["", "has space", "k".repeat(IDEMPOTENCY_KEY_LENGTH_MAX + 1), "tab\tkey", "ключ", "a/b"])
    assert.match(checkIdempotencyKeyShape(bad) ?? "", /idempotency_key/, bad);
  assert.equal(checkIdempotencyKeyShape("k".repeat(IDEMPOTENCY_KEY_LENGTH_MAX)), undefined);
  // The longest valid key and the edge characters, behind the gateway's prefix.
  for (const key of [
    "k".repeat(IDEMPOTENCY_KEY_LENGTH_MAX),
    "-",
    ".",
    ":",
    "_",
    "-".repeat(IDEMPOTENCY_KEY_LENGTH_MAX),
  ]) {
    assert.ok(DEPOSIT_ID_PATTERN.test(depositIdOf("admin", key)), key);
  }
});

test("control characters: C0, DEL, C1 (CSI 0x9b) and bidi overrides/isolates are found; ordinary text is not", () => {
  assert.equal(findControlCharacter("lunch at Café Ünal, 12€ 🍜 مطعم"), -1);
  for (const c of [
    "\x00",
    "\t",
    "\n",
    "\x1b",
    "\x7f",
    "\x80",
    "\x9b",
    "\x9f",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
  ]) {
    assert.equal(findControlCharacter(`ab${c}cd`), 2, JSON.stringify(c));
  }
  for (const c of ["\xa0", "\u2029", "\u200f", "\u206a"]) assert.equal(findControlCharacter(c), -1, JSON.stringify(c));
  assert.equal(escapeControlCharacters("pay\x1b[2Jnow\x9b31m\u202eevil"), "pay\\x1b[2Jnow\\x9b31m\\u202eevil");
  assert.equal(escapeControlCharacters("plain"), "plain");
  assert.equal(findControlCharacter(escapeControlCharacters("\x1b\x9b\u2067\n")), -1);
  assert.equal(escapeControlCharacters("a\nb\x1bc", "c", "\n"), "a\nb\\x1bc", "kept characters stay");
  // The JSON style is still JSON, with the same value.
  const json = escapeControlCharacters(JSON.stringify({ memo: "x\x9b\u202e\x7f" }), "json");
  assert.equal(json, '{"memo":"x\\u009b\\u202e\\u007f"}');
  assert.deepEqual(JSON.parse(json), { memo: "x\x9b\u202e\x7f" });
});

test("memos: too long or unprintable, each with its reason", () => {
  assert.equal(checkMemoShape("🍜".repeat(140)), undefined, "140 characters, not 140 UTF-16 units");
  assert.equal(checkMemoShape("x".repeat(141))?.reason, "memo_too_long");
  assert.deepEqual(checkMemoShape("hi\x1b[31m"), {
    reason: "invalid_memo",
    message: "memo must not contain control characters (U+001B at position 2)",
  });
  assert.equal(checkMemoShape("ref\u202e", "merchant_reference")?.message.startsWith("merchant_reference"), true);
});

test("reason classes: the transient ones are retryable; business failures are final; internal is unknown", () => {
  const mustRetry = [
    "idempotency_key_in_use",
    "participant_unavailable",
    "participant_timeout",
    "shutting_down",
    "coordinator_restarted",
    "store_unavailable",
    "bureau_unavailable",
    "hold_in_use",
  ];
  assert.deepEqual([...retryableReasons].sort(), [...mustRetry].sort());
  for (const r of mustRetry) assert.ok(isRetryableReason(r), r);
  for (const r of [
    "authorization_expired",
    "authorization_voided",
    "amount_exceeds_authorization",
    "already_captured",
    "authorization_not_found",
    "invalid_amount",
    "insufficient_funds",
    "balance_limit_exceeded",
  ]) {
    assert.equal(reasonClass(r), "final", r);
  }
  assert.equal(reasonClass("internal"), "unknown");
  assert.equal(reasonClass("a_reason_from_a_newer_peer"), "unknown");
  assert.ok(!isRetryableReason("a_reason_from_a_newer_peer"));
});

test("link codes: grouping and case do not matter; what cannot be a code is refused before any work", () => {
  assert.equal(normalizeLinkCode("k7qf-9xmb-3trw"), "K7QF9XMB3TRW");
  assert.equal(normalizeLinkCode(" K7QF 9XMB 3TRW "), "K7QF9XMB3TRW");
  assert.equal(formatLinkCode("K7QF9XMB3TRW"), "K7QF-9XMB-3TRW");
  for (const bad of ["", "SHORT", "K7QF_9XMB_3TRW", "K7QF-9XMB-3TRW!", "ÄÖÜ12345", "A".repeat(33), "-".repeat(65)])
    assert.equal(normalizeLinkCode(bad), undefined, bad);
  for (const c of LINK_CODE_ALPHABET) assert.ok(!"01ILOU".includes(c), c);
  assert.equal(new Set(LINK_CODE_ALPHABET).size, LINK_CODE_ALPHABET.length);
});

test("holder names: printable and bounded; compared without regard to case, spacing or Unicode form", () => {
  assert.equal(checkHolderNameShape("Dana Newcomer"), undefined);
  for (const bad of ["", "   ", "x".repeat(101), "Dana\x1b[2J", "Dana\u202eremocweN"])
    assert.ok(checkHolderNameShape(bad), JSON.stringify(bad));
  assert.equal(normalizeHolderName("  DANA   newcomer "), normalizeHolderName("Dana Newcomer"));
  assert.equal(normalizeHolderName("Zoe\u0301 Ｎｅｗ"), normalizeHolderName("Zoé New"));
  assert.notEqual(normalizeHolderName("Dana Newcomer"), normalizeHolderName("Dan Newcomer"));
});

test("ok and fail: one shape for every service; metadata only when given; a narrower reason union fits", () => {
  assert.deepEqual(ok(7), { ok: true, value: 7 });
  assert.deepEqual(fail("insufficient_funds", "not enough"), {
    ok: false,
    reason: "insufficient_funds",
    message: "not enough",
  });
  assert.ok(!("metadata" in fail("internal", "x")), "no metadata key without metadata");
  assert.deepEqual(fail("txn_aborted", "aborted", { transaction_id: "gw:1" }).metadata, { transaction_id: "gw:1" });
  // The bank's operations narrow R (e.g. a commit's two reasons); the gateway's take the whole vocabulary.
  const commit = (known: boolean): Result<number, "unknown_txn" | "txn_aborted"> =>
    known ? ok(1) : fail("unknown_txn", "never prepared");
  const wide: Result<number> = commit(false);
  assert.equal(wide.ok ? undefined : wide.reason, "unknown_txn");
  // @ts-expect-error a reason outside the vocabulary does not compile
  fail("no_such_reason", "typo");
});

test("leg directions: each gateway (wire) name has one ledger name, all distinct", () => {
  assert.deepEqual(Object.keys(LEG_DIRECTIONS), ["DEBIT", "CREDIT", "AUTH_HOLD", "CAPTURE", "RELEASE"]);
  for (const [wire, ledger] of Object.entries(LEG_DIRECTIONS)) assert.equal(ledger, wire.toLowerCase());
  assert.equal(ledgerDirectionOf("AUTH_HOLD"), "auth_hold");
  assert.equal(new Set(Object.values(LEG_DIRECTIONS)).size, 5);
});
