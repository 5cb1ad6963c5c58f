import { test } from "node:test";
import assert from "node:assert/strict";
import { binOfBank, generatePan, isPlausiblePan, luhnCheckDigit, luhnValid, normalizePan } from "./luhn.js";

test("known test numbers pass Luhn; one changed digit or a swap of neighbours fails", () => {
  for (const pan of [
    "4242424242424242",
    "4000056655665556",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
    "79927398713",
  ]) {
    assert.ok(luhnValid(pan), pan);
    const last = Number(pan.at(-1));
    assert.ok(!luhnValid(pan.slice(0, -1) + String((last + 1) % 10)), `${pan} with another check digit`);
  }
  assert.ok(!luhnValid("4242424242424241"));
  assert.ok(!luhnValid("4242424242424224"), "adjacent swap");
  assert.equal(luhnCheckDigit("7992739871"), 3);
});

test("only digits of a card's length are plausible", () => {
  assert.ok(isPlausiblePan("4242424242424242"));
  assert.ok(!isPlausiblePan("42424242424"), "too short");
  assert.ok(!isPlausiblePan("4".repeat(19) + "0"), "too long");
  assert.ok(!isPlausiblePan("4242 4242 4242 4242"), "spaces are stripped by normalizePan first");
  assert.ok(!isPlausiblePan(""));
  assert.ok(!isPlausiblePan("424242424242424a"));
  assert.equal(normalizePan(" 4242-4242 4242 4242 "), "4242424242424242");
});

test("generated numbers carry the BIN, have 16 digits and pass Luhn", () => {
  let i = 0;
  const digits = [3, 1, 4, 1, 5, 9, 2, 6, 5];
  const pan = generatePan("400123", () => digits[i++ % digits.length]!);
  assert.equal(pan.length, 16);
  assert.ok(pan.startsWith("400123314159265"));
  assert.ok(luhnValid(pan));
  for (let n = 0; n < 200; n++)
    assert.ok(isPlausiblePan(generatePan(binOfBank("bank-a"), () => Math.floor(Math.random() * 10))));
  assert.throws(() => generatePan("4001", () => 10));
});

test("each bank has its own fixed BIN", () => {
  assert.equal(binOfBank("bank-a"), binOfBank("bank-a"));
  assert.notEqual(binOfBank("bank-a"), binOfBank("bank-b"));
  assert.match(binOfBank("bank-a"), /^4\d{5}$/);
});
