import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { SIGNATURE_ENTRIES_MAX, signatureHeader, signatureV1, verifySignature } from "./index.js";

const secret = "whsec_" + "A".repeat(43);
const other = "whsec_" + "B".repeat(43);
const body = JSON.stringify({
  id: "evt_0123456789abcdef01234567",
  type: "authorization.approved",
  object_id: "A1B2C3",
  data: {},
});
const t = 1_760_000_000;

test("the header is t, then one v1 per secret: hex HMAC-SHA256 over '<t>.<body>' with the secret as UTF-8 key", () => {
  const header = signatureHeader([secret, other], body, t);
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  assert.equal(header, `t=${t},v1=${expected},v1=${signatureV1(other, body, t)}`);
  assert.match(header, /^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
  assert.throws(() => signatureHeader([], body, t));
  assert.throws(() => signatureHeader([secret], body, 1.5));
});

test("a signed body verifies, with its timestamp; within the tolerance either way", () => {
  const header = signatureHeader([secret], body, t);
  assert.deepEqual(verifySignature(header, body, [secret], t), { ok: true, t });
  assert.deepEqual(verifySignature(header, body, [secret], t + 300), { ok: true, t });
  assert.deepEqual(verifySignature(header, body, [secret], t - 300), { ok: true, t });
  assert.deepEqual(verifySignature(header, body, [secret], t + 10, 10), { ok: true, t });
});

test("a tampered body is a mismatch, down to one byte and to trailing whitespace", () => {
  const header = signatureHeader([secret], body, t);
  assert.deepEqual(verifySignature(header, body.replace("A1B2C3", "A1B2C4"), [secret], t), {
    ok: false,
    reason: "signature_mismatch",
  });
  assert.deepEqual(verifySignature(header, body + "\n", [secret], t), { ok: false, reason: "signature_mismatch" });
});

test("a wrong secret is a mismatch; so is a re-dated header (t is signed)", () => {
  const header = signatureHeader([secret], body, t);
  assert.deepEqual(verifySignature(header, body, [other], t), { ok: false, reason: "signature_mismatch" });
  assert.deepEqual(verifySignature(header, body, [], t), { ok: false, reason: "signature_mismatch" });
  const redated = header.replace(`t=${t}`, `t=${t + 1}`);
  assert.deepEqual(verifySignature(redated, body, [secret], t), { ok: false, reason: "signature_mismatch" });
});

test("old and future timestamps are refused before any signature is looked at", () => {
  const header = signatureHeader([secret], body, t);
  assert.deepEqual(verifySignature(header, body, [secret], t + 301), {
    ok: false,
    reason: "timestamp_out_of_tolerance",
  });
  assert.deepEqual(verifySignature(header, body, [secret], t - 301), {
    ok: false,
    reason: "timestamp_out_of_tolerance",
  });
  assert.deepEqual(verifySignature(header, body, [secret], t + 11, 10), {
    ok: false,
    reason: "timestamp_out_of_tolerance",
  });
  // Out of tolerance wins even over a wrong secret: the receiver learns nothing about the secret from an old replay.
  assert.deepEqual(verifySignature(header, body, [other], t + 1000), {
    ok: false,
    reason: "timestamp_out_of_tolerance",
  });
});

test("two secrets during an overlap: a receiver holding either one verifies; a header with either v1 verifies against both", () => {
  const both = signatureHeader([other, secret], body, t);
  assert.equal(verifySignature(both, body, [secret], t).ok, true);
  assert.equal(verifySignature(both, body, [other], t).ok, true);
  assert.equal(verifySignature(both, body, [secret, other], t).ok, true);
  const newOnly = signatureHeader([other], body, t);
  assert.equal(verifySignature(newOnly, body, [secret, other], t).ok, true);
  assert.deepEqual(verifySignature(newOnly, body, [secret], t), { ok: false, reason: "signature_mismatch" });
});

test("a missing or empty header is missing_signature", () => {
  assert.deepEqual(verifySignature(undefined, body, [secret], t), { ok: false, reason: "missing_signature" });
  assert.deepEqual(verifySignature("", body, [secret], t), { ok: false, reason: "missing_signature" });
  assert.deepEqual(verifySignature("   ", body, [secret], t), { ok: false, reason: "missing_signature" });
});

test("malformed headers are refused with their reason", () => {
  const v1 = signatureV1(secret, body, t);
  const malformed = [
    `v1=${v1}`, // no t
    `t=${t}`, // no v1
    `t=${t},t=${t},v1=${v1}`, // two t
    `t=-5,v1=${v1}`,
    `t=1e9,v1=${v1}`,
    `t=,v1=${v1}`,
    `t=${t},v1=${v1.slice(1)}`, // short
    `t=${t},v1=${v1}00`, // long
    `t=${t},v1=${"z".repeat(64)}`, // not hex
    `t=${t};v1=${v1}`,
    `t=${t},=${v1}`,
    `t=${t},v1=${v1},garbage`,
    `t=${t},V 1=${v1}`,
    `t=${t},` + Array.from({ length: SIGNATURE_ENTRIES_MAX + 1 }, () => `v1=${v1}`).join(","),
    `t=${t},v1=${v1},x=` + "a".repeat(5000),
  ];
  for (const header of malformed) {
    assert.deepEqual(
      verifySignature(header, body, [secret], t),
      { ok: false, reason: "malformed_signature" },
      header.slice(0, 120),
    );
  }
});

test("entries of another scheme are skipped; spaces around entries and uppercase hex are tolerated", () => {
  const v1 = signatureV1(secret, body, t);
  assert.equal(verifySignature(`t=${t},v0=abc,v1=${v1}`, body, [secret], t).ok, true);
  assert.equal(verifySignature(` t=${t} , v1=${v1.toUpperCase()} `, body, [secret], t).ok, true);
  assert.equal(verifySignature(`t=${t},v1=${"0".repeat(64)},v1=${v1}`, body, [secret], t).ok, true);
});
