import { test } from "node:test";
import assert from "node:assert/strict";
import { AMOUNT_MINOR_MAX, checkPositiveAmount, formatMoney, parseCurrency, parseMajorAmount } from "./index.js";

test("amounts must be positive and bounded", () => {
  assert.equal(checkPositiveAmount(0n), "invalid_amount");
  assert.equal(checkPositiveAmount(-1n), "invalid_amount");
  assert.equal(checkPositiveAmount(AMOUNT_MINOR_MAX + 1n), "invalid_amount");
  assert.equal(checkPositiveAmount(1n), undefined);
  assert.equal(checkPositiveAmount(AMOUNT_MINOR_MAX), undefined);
});

test("currencies are three upper-case letters", () => {
  assert.equal(parseCurrency("USD"), "USD");
  for (const bad of ["usd", "US", "USDD", "", "U$D"]) assert.equal(parseCurrency(bad), undefined, bad);
});

test("people's amounts parse to exact minor units", () => {
  assert.equal(parseMajorAmount("12"), 1200n);
  assert.equal(parseMajorAmount("12.5"), 1250n);
  assert.equal(parseMajorAmount("0.01"), 1n);
  assert.equal(parseMajorAmount("1000000.99"), 100000099n);
  for (const bad of ["", "-1", "1e3", "1.234", "abc", "1,000", ".5"])
    assert.equal(parseMajorAmount(bad), undefined, bad);
});

test("formatting groups thousands and keeps cents", () => {
  assert.equal(formatMoney(123456789n, "USD"), "1,234,567.89 USD");
  assert.equal(formatMoney(-5n, "EUR"), "-0.05 EUR");
});
