import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { cardDigits, expiryProblem, luhnValid, parseExpiry, validateCard } from "./card.js";
import { DECLINE_CODES, describeDecline } from "./declines.js";
import { cartTotalMinor, DEMO_CART } from "./cart.js";

const JAN_15_2026 = Date.UTC(2026, 0, 15, 12);

describe("card checks", () => {
  test("Luhn: known good numbers pass, one changed digit or a swap fails", () => {
    for (const good of [
      "4242424242424242",
      "4111111111111111",
      "5555555555554444",
      "378282246310005",
      "6011111111111117",
      "79927398713",
    ])
      assert.ok(luhnValid(good), good);
    for (const bad of [
      "4242424242424241",
      "4111111111111112",
      "79927398710",
      "2442424242424242",
      "",
      "4242a24242424242",
    ])
      assert.ok(!luhnValid(bad), bad);
  });

  test("card numbers: spaces and dashes are grouping, anything else is not", () => {
    assert.equal(cardDigits("4242 4242-4242 4242"), "4242424242424242");
    assert.equal(cardDigits("4242.4242"), undefined);
  });

  test("expiry: the accepted spellings, and the end-of-month rule in UTC", () => {
    assert.deepEqual(parseExpiry("04/29"), { month: 4, year: 2029 });
    assert.deepEqual(parseExpiry(" 4 / 2029 "), { month: 4, year: 2029 });
    assert.deepEqual(parseExpiry("0429"), { month: 4, year: 2029 });
    for (const bad of ["13/29", "00/29", "4/9", "04-29", "", "ab/cd", "04/029"])
      assert.equal(parseExpiry(bad), undefined, bad);
    assert.equal(expiryProblem(1, 2026, JAN_15_2026), undefined); // good through Jan 31
    assert.equal(expiryProblem(12, 2025, JAN_15_2026), "expired");
    assert.equal(expiryProblem(1, 2026, Date.UTC(2026, 1, 1, 0, 0, 0)), "expired"); // first moment of February
    assert.equal(expiryProblem(12, 2046, JAN_15_2026), undefined);
    assert.equal(expiryProblem(1, 2047, JAN_15_2026), "too_far");
  });

  test("validateCard: clean details come back normalised", () => {
    const r = validateCard(
      { cardholderName: "  Alice   Customer ", cardNumber: "4242 4242 4242 4242", expiry: "04/29", cvc: "123" },
      JAN_15_2026,
    );
    assert.deepEqual(r, {
      ok: true,
      card: { cardholderName: "Alice Customer", number: "4242424242424242", expMonth: 4, expYear: 2029, cvc: "123" },
    });
  });

  test("validateCard: every field's problem, in words, all at once", () => {
    const r = validateCard(
      { cardholderName: "", cardNumber: "4242 4242 4242 4241", expiry: "12/25", cvc: "12" },
      JAN_15_2026,
    );
    assert.ok(!r.ok);
    assert.deepEqual(Object.keys(r.errors), ["cardholderName", "cardNumber", "expiry", "cvc"]);
    assert.match(r.errors.cardNumber!, /not valid/);
    assert.match(r.errors.expiry!, /expired/);
    const more = validateCard(
      { cardholderName: "A\u0000B", cardNumber: "1234", expiry: "nope", cvc: "12a" },
      JAN_15_2026,
    );
    assert.ok(!more.ok);
    assert.match(more.errors.cardholderName!, /2 to 100/);
    assert.match(more.errors.cardNumber!, /12 to 19 digits/);
    assert.match(more.errors.expiry!, /MM\/YY/);
    assert.match(more.errors.cvc!, /3 digits/);
  });

  test("every decline code has its own human message; unknown reasons get a safe default", () => {
    const messages = new Set<string>();
    for (const code of DECLINE_CODES) {
      const v = describeDecline(code);
      assert.ok(!messages.has(v.message), `${code} shares a message`);
      messages.add(v.message);
      assert.doesNotMatch(v.message, /_/, `${code}: no codes in the shopper's text`);
    }
    assert.equal(describeDecline("bureau_unavailable").next, "try_later");
    assert.equal(describeDecline("gateway_unreachable").next, "try_later");
    assert.match(describeDecline("idempotency_key_in_use").message, /still being processed/);
    const fallback = describeDecline("something_new");
    assert.ok(!messages.has(fallback.message));
    assert.match(fallback.message, /not been charged/);
  });

  test("the demo cart's total is computed from its lines", () => {
    assert.equal(cartTotalMinor(DEMO_CART), 1200n + 2n * 350n + 499n);
  });
});
