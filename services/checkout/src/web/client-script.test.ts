// The browser's checks run the same rules as the server's: the inline script
// is evaluated in a VM and compared with validateCard on the same inputs.
import { test } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { validateCard, luhnValid, type CardInput } from "../domain/card.js";
import { CLIENT_BEHAVIOUR, CLIENT_VALIDATORS, RESULT_BEHAVIOUR } from "./client-script.js";

interface ClientApi {
  luhnValid(digits: string): boolean;
  checkAll(values: Record<string, string>, nowMs: number): Record<string, string>;
}

const client = vm.runInNewContext(`${CLIENT_VALIDATORS}\n({ luhnValid: luhnValid, checkAll: checkAll })`) as ClientApi;
const NOW = Date.UTC(2026, 0, 15, 12);

test("client and server agree on Luhn", () => {
  for (let i = 0; i < 2000; i++) {
    const n = String(4_000_000_000_000_000n + BigInt(i) * 7_919n);
    assert.equal(client.luhnValid(n), luhnValid(n), n);
  }
});

test("client and server report the same problems with the same words", () => {
  const names = ["", " ", "A", "Al", "Alice Customer", "x".repeat(101), "Tab\tName", "Zero\u200bWidth"];
  const numbers = [
    "",
    "4242 4242 4242 4242",
    "4242424242424241",
    "4242-4242-4242-4242",
    "12345",
    "4242x4242",
    "4".repeat(20),
    "378282246310005",
  ];
  const expiries = ["", "04/29", "12/25", "01/26", "13/30", "0429", "4/2029", "12/99", "x"];
  const cvcs = ["", "123", "1234", "12", "12345", "abc", " 123 "];
  let compared = 0;
  for (const cardholderName of names)
    for (const cardNumber of numbers)
      for (const expiry of expiries)
        for (const cvc of cvcs) {
          const input: CardInput = { cardholderName, cardNumber, expiry, cvc };
          const server = validateCard(input, NOW);
          const fromClient = client.checkAll({ ...input }, NOW);
          const serverErrors = server.ok ? {} : server.errors;
          assert.deepEqual({ ...fromClient }, { ...serverErrors }, JSON.stringify(input));
          compared++;
        }
  assert.ok(compared > 1000);
});

test("the page scripts are valid JavaScript", () => {
  for (const src of [CLIENT_VALIDATORS + CLIENT_BEHAVIOUR, RESULT_BEHAVIOUR])
    assert.doesNotThrow(() => new vm.Script(src));
});
