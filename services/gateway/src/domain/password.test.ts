import { test } from "node:test";
import assert from "node:assert/strict";
import { hashPassword, isPasswordHash, parsePasswordHash, verifyPassword } from "./password.js";

const FAST = { N: 1024, r: 8, p: 1 };

test("scrypt hashes verify the right password only, in the documented format", async () => {
  const stored = await hashPassword("correct horse battery", FAST);
  assert.match(stored, /^scrypt\$1024\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
  assert.ok(await verifyPassword("correct horse battery", stored));
  assert.equal(await verifyPassword("correct horse batterY", stored), false);
  assert.equal(await verifyPassword("", stored), false);
  // Salted: the same password never hashes the same twice.
  assert.notEqual(await hashPassword("correct horse battery", FAST), stored);
});

test("malformed or hostile stored hashes never verify", async () => {
  const good = await hashPassword("pw-1234567890", FAST);
  const parts = good.split("$");
  const withN = (n: string) => [parts[0], n, ...parts.slice(2)].join("$");
  for (const bad of [
    "",
    "plain",
    "bcrypt$10$x",
    withN("1000"),
    withN(String(1 << 24)),
    good.replace(/\$[^$]+$/, "$short"),
  ]) {
    assert.equal(isPasswordHash(bad), false, bad);
    assert.equal(await verifyPassword("pw-1234567890", bad), false);
  }
  assert.deepEqual(parsePasswordHash(good)?.params, FAST);
});
