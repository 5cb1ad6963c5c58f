import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSeed, SeedError } from "./index.js";

const good = `
banks: [bank-a, bank-b]
users:
  - { id: alice, username: alice, password: pw, roles: [customer] }
accounts:
  - { id: bank-a/1001, owner: alice, currency: USD, opening_minor: 5000 }
`;

test("a valid seed parses with bigint opening balances", () => {
  const s = parseSeed(good);
  assert.deepEqual(s.banks, ["bank-a", "bank-b"]);
  assert.equal(s.accounts[0]?.openingMinor, 5000n);
  assert.equal(s.accounts[0]?.bank, "bank-a");
});

test("every problem is listed", () => {
  const bad = `
banks: [bank-a]
users:
  - { id: Alice, roles: [king] }
accounts:
  - { id: bank-z/1, owner: nobody, currency: usd, opening_minor: -5 }
  - { id: nonsense, owner: nobody, currency: USD }
`;
  assert.throws(
    () => parseSeed(bad),
    (e: unknown) => {
      assert.ok(e instanceof SeedError);
      for (const frag of [
        "users[0].id",
        "users[0].roles",
        "password",
        "bank bank-z",
        "accounts[0].owner",
        "accounts[0].currency",
        "opening_minor",
        "accounts[1].id",
      ]) {
        assert.ok(e.message.includes(frag), `missing ${frag} in ${e.message}`);
      }
      return true;
    },
  );
});

test("an account may belong to nobody yet: a holder name, and the link code the bank gave them", () => {
  const s = parseSeed(`
banks: [bank-a]
users:
  - { id: alice, username: alice, password: pw, roles: [customer] }
accounts:
  - { id: bank-a/1001, owner: alice, holder: Alice Customer, currency: USD }
  - { id: bank-a/1004, holder: Dana Newcomer, link_code: DANA-2026-LINK, currency: USD, opening_minor: 20000 }
`);
  assert.deepEqual(
    s.accounts.map((a) => [a.id, a.owner, a.holder, a.linkCode]),
    [
      ["bank-a/1001", "alice", "Alice Customer", undefined],
      ["bank-a/1004", "", "Dana Newcomer", "DANA-2026-LINK"],
    ],
  );
  const bad = `
banks: [bank-a]
users:
  - { id: alice, username: alice, password: pw, roles: [customer] }
accounts:
  - { id: bank-a/1001, currency: USD }
  - { id: bank-a/1002, owner: alice, holder: Alice, link_code: ABCD-EFGH-JKLM, currency: USD }
  - { id: bank-a/1003, link_code: ABCD-EFGH-JKLM, currency: USD, holder: "" }
  - { id: bank-a/1004, holder: Dana, link_code: "no!", currency: USD }
`;
  assert.throws(
    () => parseSeed(bad),
    (e: unknown) => {
      assert.ok(e instanceof SeedError);
      for (const frag of [
        "accounts[0]: an owner",
        "accounts[1].link_code: only for an account without an owner",
        "accounts[2].link_code: needs the holder",
        "accounts[3].link_code: 8 to 32",
      ]) {
        assert.ok(e.message.includes(frag), `missing ${frag} in ${e.message}`);
      }
      return true;
    },
  );
});
