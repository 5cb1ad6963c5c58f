import { test } from "node:test";
import assert from "node:assert/strict";
import {
  hashLinkCode,
  issueLinkCode,
  LINK_FAILED_MESSAGE,
  seedHolders,
  unlink,
  verifyLink,
  type AccountLink,
  type LinkTx,
} from "./links.js";
import { createSeededLedger } from "../../test-support/seeded-ledger.js";

const BANK = "bank-a";
const NOW = 1_700_000_000_000;

function setup() {
  const l = createSeededLedger(
    BANK,
    [
      { id: "bank-a/1004", owner: "", currency: "USD", openingMinor: 20_000n },
      { id: "bank-a/1001", owner: "alice", currency: "USD", openingMinor: 0n },
      { id: "bank-a/1005", owner: "", currency: "USD", openingMinor: 0n },
    ],
    NOW,
  );
  l.transactLinks((tx) =>
    seedHolders(
      tx,
      BANK,
      [
        { id: "bank-a/1004", holder: "Dana Newcomer", linkCode: "DANA-2026-LINK" },
        { id: "bank-a/1001", holder: "Alice Customer" },
        { id: "bank-b/2004", holder: "Not Ours", linkCode: "XXXX-XXXX-XXXX" },
      ],
      NOW,
    ),
  );
  const m = {
    run: <T>(fn: (tx: LinkTx) => T): T => l.transactLinks(fn),
    link: (id: string): AccountLink | undefined => l.transactLinks((tx) => tx.link(id)),
    owner: (id: string): string | undefined => l.transactLinks((tx) => tx.account(id)?.ownerUserId),
  };
  const verify = (
    over: Partial<{ accountId: string; holderName: string; linkCode: string; userId: string }> = {},
    attemptsMax = 5,
  ) =>
    m.run((tx) =>
      verifyLink(
        tx,
        BANK,
        { accountId: "bank-a/1004", holderName: "Dana Newcomer", linkCode: "DANA-2026-LINK", userId: "dana", ...over },
        NOW,
        attemptsMax,
      ),
    );
  return { m, verify };
}

const reasonOf = (r: { ok: boolean; reason?: string }) => (r.ok ? "ok" : r.reason);

test("seed: holders of this bank's accounts, codes kept only as a salted hash", () => {
  const { m } = setup();
  assert.equal(m.link("bank-b/2004"), undefined, "another bank's holder");
  const row = m.link("bank-a/1004")!;
  assert.match(row.codeHash, /^sha256\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
  assert.ok(!row.codeHash.includes("DANA"));
  assert.notEqual(hashLinkCode("bank-a/1004", "DANA2026LINK"), hashLinkCode("bank-a/1004", "DANA2026LINK"), "salted");
  assert.equal(m.link("bank-a/1001")!.codeHash, "", "an owned account has no code");
});

test("the right name and code link the account to the user and use the code up; a repeat by the same user answers the same", () => {
  const { m, verify } = setup();
  const r = verify({ holderName: "  dana   NEWCOMER ", linkCode: "dana 2026 link" });
  assert.ok(r.ok);
  assert.deepEqual([r.value.account.ownerUserId, r.value.changed], ["dana", true]);
  assert.equal(m.owner("bank-a/1004"), "dana");
  const again = verify();
  assert.ok(again.ok);
  assert.equal(again.value.changed, false, "a lost answer is retried, nothing changes");
  assert.equal(m.link("bank-a/1004")?.failures, 0);
  // The code works once: anyone else with it is refused, and counted.
  assert.equal(reasonOf(verify({ userId: "erin" })), "link_failed");
  assert.equal(m.owner("bank-a/1004"), "dana");
  assert.equal(m.link("bank-a/1004")?.failures, 1);
});

test("a wrong code, a wrong name, an unknown account, someone's account, another bank's holder: one answer, each counted", () => {
  const { m, verify } = setup();
  const answers = [
    verify({ linkCode: "DANA-2026-LINX" }),
    verify({ holderName: "Dana Oldtimer" }),
    verify({ accountId: "bank-a/9999" }),
    verify({ accountId: "bank-a/1001", holderName: "Alice Customer" }),
    verify({ accountId: "bank-a/1005" }), // exists, no holder, no code
  ];
  for (const a of answers) assert.deepEqual(a, { ok: false, reason: "link_failed", message: LINK_FAILED_MESSAGE });
  assert.equal(m.link("bank-a/1004")?.failures, 2);
  assert.equal(m.link("bank-a/9999")?.failures, 1, "unknown ids are counted too");
  assert.equal(m.owner("bank-a/1004"), "");
  // Malformed input is refused before anything is read or counted.
  assert.equal(reasonOf(verify({ linkCode: "nope" })), "invalid_argument");
  assert.equal(reasonOf(verify({ holderName: "" })), "invalid_argument");
  assert.equal(reasonOf(verify({ userId: "Not A User" })), "invalid_argument");
  assert.equal(reasonOf(verify({ accountId: "bank-b/2004" })), "invalid_account_id");
  assert.equal(m.link("bank-a/1004")?.failures, 2);
});

test("failures lock the account at the maximum (the attempt that reaches it says so), for unknown ids alike; a new code unlocks", () => {
  const { m, verify } = setup();
  assert.equal(reasonOf(verify({ linkCode: "WRONG-CODE-1" }, 3)), "link_failed");
  assert.equal(reasonOf(verify({ linkCode: "WRONG-CODE-2" }, 3)), "link_failed");
  assert.equal(reasonOf(verify({ linkCode: "WRONG-CODE-3" }, 3)), "link_locked");
  assert.equal(reasonOf(verify({}, 3)), "link_locked", "even the right code, once locked");
  for (let i = 0; i < 3; i++) verify({ accountId: "bank-a/9999" }, 3);
  assert.equal(
    reasonOf(verify({ accountId: "bank-a/9999" }, 3)),
    "link_locked",
    "an unknown account locks the same way",
  );
  const issued = m.run((tx) =>
    issueLinkCode(tx, BANK, { accountId: "bank-a/1004", holderName: "" }, NOW, () => "K7QF9XMB3TRW"),
  );
  assert.deepEqual(issued, { ok: true, value: { linkCode: "K7QF-9XMB-3TRW", holderName: "Dana Newcomer" } });
  assert.equal(reasonOf(verify({}, 3)), "link_failed", "the old code is replaced");
  assert.equal(reasonOf(verify({ linkCode: "k7qf-9xmb-3trw" }, 3)), "ok");
});

test("issuing a code: only for an open account that belongs to nobody, with a holder name", () => {
  const { m } = setup();
  const issue = (accountId: string, holderName = "") =>
    reasonOf(m.run((tx) => issueLinkCode(tx, BANK, { accountId, holderName }, NOW)));
  assert.equal(issue("bank-a/1001"), "already_linked");
  assert.equal(issue("bank-a/9999"), "account_not_found");
  assert.equal(issue("bank-a/1005"), "invalid_argument", "no holder name recorded");
  assert.equal(issue("bank-a/1005", "Frank Fresh"), "ok");
  assert.equal(m.link("bank-a/1005")?.holderName, "Frank Fresh");
  assert.equal(issue("bank-a/1005", "bad\x1b[2J"), "invalid_argument");
  assert.equal(issue("bank-b/2001"), "invalid_account_id");
});

test("unlink: the account belongs to nobody again, its old code is void; idempotent", () => {
  const { m, verify } = setup();
  assert.ok(verify().ok);
  const u = m.run((tx) => unlink(tx, BANK, "bank-a/1004", NOW));
  assert.ok(u.ok);
  assert.equal(u.value.previousOwnerUserId, "dana");
  assert.equal(m.owner("bank-a/1004"), "");
  assert.equal(reasonOf(verify()), "link_failed", "the code that linked it cannot take it back");
  const again = m.run((tx) => unlink(tx, BANK, "bank-a/1004", NOW));
  assert.ok(again.ok);
  assert.equal(again.value.previousOwnerUserId, "");
  assert.equal(reasonOf(m.run((tx) => unlink(tx, BANK, "bank-a/9999", NOW))), "account_not_found");
});
