// Card payments over the real stack: banks, gateway and credit bureau as
// processes, mTLS everywhere. Every decline code, partial capture (the rest
// released), settlement into the merchant's account, void, expiry, concurrent
// refunds, batch replays, gateway crashes mid-round, money conserved after
// each; and no log line of any process (nor the gateway's database) holds a
// full card number or a CVC.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Code, type Client } from "@connectrpc/connect";
import { HoldState, LedgerService } from "@paygate/proto/bank";
import {
  AdminService,
  AuthorizationStatus,
  CardService,
  PaymentService,
  SettleItemStatus,
  type IssueCardResponse,
} from "@paygate/proto/gateway";
import { authorizeRequest, rejectsWith, Stack, type ServiceProcess } from "@paygate/testkit";

/** Every number and CVC handed out in this file: none may show up in a log line. */
const secrets: { number: string; cvc: string }[] = [];

interface Ctx {
  stack: Stack;
  admin: Client<typeof AdminService>;
  shop: Client<typeof CardService>;
  payments: (user: string) => Promise<Client<typeof PaymentService>>;
}

async function context(stack: Stack): Promise<Ctx> {
  // One client per user: each one watches its certificate files.
  const clients = new Map<string, Client<typeof PaymentService>>();
  return {
    stack,
    admin: stack.client(AdminService, await stack.login("admin")),
    shop: stack.client(CardService, await stack.login("shop")),
    async payments(user) {
      let client = clients.get(user);
      if (!client) clients.set(user, (client = stack.client(PaymentService, await stack.login(user))));
      return client;
    },
  };
}

async function issue(
  c: Ctx,
  accountId: string,
  over: Partial<{ number: string; cvc: string; expMonth: number; expYear: number }> = {},
): Promise<IssueCardResponse> {
  const card = await c.admin.issueCard({
    accountId,
    cardholderName: "Test Holder",
    number: "",
    cvc: "",
    expMonth: 0,
    expYear: 0,
    ...over,
  });
  secrets.push({ number: card.number, cvc: card.cvc });
  return card;
}

const authorizeReq = authorizeRequest;

async function account(c: Ctx, user: string, accountId: string) {
  const res = await (await c.payments(user)).getBalance({ accountId });
  return res.accounts[0]!;
}

describe("card payments", () => {
  let c: Ctx;
  let alice: IssueCardResponse;

  before(async () => {
    const stack = await Stack.start({ bureau: true, gatewayEnv: { CARD_DAILY_SPEND_MAX_MINOR: "60000" } });
    c = await context(stack);
    alice = await issue(c, "bank-a/1001");
  });
  after(async () => c?.stack.close());

  test("issuing: the number passes Luhn and comes back once; an unknown account or a bad test number is refused", async () => {
    assert.match(alice.number, /^4\d{15}$/);
    assert.equal(alice.last4, alice.number.slice(-4));
    assert.match(alice.cvc, /^\d{3}$/);
    await rejectsWith(
      c.admin.issueCard({ accountId: "bank-a/9999", cardholderName: "", number: "", cvc: "", expMonth: 0, expYear: 0 }),
      Code.NotFound,
      "account_not_found",
    );
    await rejectsWith(
      c.admin.issueCard({
        accountId: "bank-a/1001",
        cardholderName: "",
        number: "4242424242424241",
        cvc: "",
        expMonth: 0,
        expYear: 0,
      }),
      Code.InvalidArgument,
      "invalid_number",
    );
    // Only an admin issues; only a merchant authorizes.
    await rejectsWith(
      (await c.payments("alice")).getBalance({ accountId: "bank-b/2003" }),
      Code.PermissionDenied,
      "not_account_owner",
    );
    const asAlice = c.stack.client(CardService, await c.stack.login("alice"));
    await rejectsWith(asAlice.authorize(authorizeReq(alice, 100n)), Code.PermissionDenied, "permission_denied");
    await rejectsWith(
      c.stack
        .client(AdminService, await c.stack.login("shop"))
        .issueCard({ accountId: "bank-a/1001", cardholderName: "", number: "", cvc: "", expMonth: 0, expYear: 0 }),
      Code.PermissionDenied,
      "permission_denied",
    );
  });

  test("every decline code, each with nothing held", async () => {
    const before = await account(c, "alice", "bank-a/1001");
    const wrongDigit = alice.number.slice(0, -1) + String((Number(alice.number.at(-1)) + 1) % 10);
    await rejectsWith(
      c.shop.authorize(authorizeReq({ ...alice, number: wrongDigit }, 100n)),
      Code.InvalidArgument,
      "invalid_number",
    );
    const expired = await issue(c, "bank-a/1001", { expMonth: 1, expYear: 2021 });
    await rejectsWith(c.shop.authorize(authorizeReq(expired, 100n)), Code.FailedPrecondition, "expired_card");
    await rejectsWith(
      c.shop.authorize(authorizeReq({ ...alice, cvc: alice.cvc === "999" ? "998" : "999" }, 100n)),
      Code.FailedPrecondition,
      "incorrect_cvc",
    );
    await rejectsWith(
      c.shop.authorize(authorizeReq({ ...alice, number: "4000056655665556" }, 100n)),
      Code.NotFound,
      "card_not_found",
    );
    // carol's account is empty: the issuing bank votes NO.
    const carol = await issue(c, "bank-b/2002");
    await rejectsWith(c.shop.authorize(authorizeReq(carol, 100n)), Code.FailedPrecondition, "insufficient_funds");
    // bob's score (690) is below what large amounts need (700).
    const bob = await issue(c, "bank-a/1002");
    const info = await rejectsWith(
      c.shop.authorize(authorizeReq(bob, 50_000n)),
      Code.FailedPrecondition,
      "risk_declined",
    );
    assert.equal(info.metadata.risk_rule, "amount>=50000:score<700");
    // The daily limit (60000 here) per card.
    const first = await c.shop.authorize(authorizeReq(alice, 40_000n));
    await rejectsWith(c.shop.authorize(authorizeReq(alice, 30_000n)), Code.FailedPrecondition, "spend_limit_exceeded");
    await c.shop.void({ authCode: first.authorization!.authCode });
    // A merchant account that is not the caller's.
    await rejectsWith(
      c.shop.authorize(authorizeReq(alice, 100n, { merchantAccountId: "bank-a/1001" })),
      Code.PermissionDenied,
      "not_account_owner",
    );

    const after = await account(c, "alice", "bank-a/1001");
    assert.deepEqual([after.balanceMinor, after.heldMinor], [before.balanceMinor, before.heldMinor]);
    await c.stack.assertConserved();
  });

  test("a decline is the key's stored outcome; an approval replays with the same code", async () => {
    const bob = await issue(c, "bank-a/1002");
    const declinedReq = authorizeReq(bob, 50_000n);
    await rejectsWith(c.shop.authorize(declinedReq), Code.FailedPrecondition, "risk_declined");
    await rejectsWith(c.shop.authorize(declinedReq), Code.FailedPrecondition, "risk_declined");
    const req = authorizeReq(alice, 700n);
    const a = await c.shop.authorize(req);
    const b = await c.shop.authorize(req);
    assert.equal(b.authorization!.authCode, a.authorization!.authCode);
    await rejectsWith(c.shop.authorize({ ...req, amountMinor: 701n }), Code.InvalidArgument, "idempotency_key_reused");
    const held = await account(c, "alice", "bank-a/1001");
    await c.shop.void({ authCode: a.authorization!.authCode });
    assert.equal(
      (await account(c, "alice", "bank-a/1001")).heldMinor,
      held.heldMinor - 700n,
      "held once, released once",
    );
    await c.stack.assertConserved();
  });

  test("approve, then a partial capture: the rest is released and the captured money arrives in the merchant's account", async () => {
    const before = await account(c, "alice", "bank-a/1001");
    const shopBefore = await account(c, "shop", "bank-b/2003");
    const res = await c.shop.authorize(authorizeReq(alice, 10_000n));
    const auth = res.authorization!;
    assert.equal(auth.status, AuthorizationStatus.APPROVED);
    assert.match(auth.authCode, /^[A-Z0-9]{6}$/);
    assert.equal(auth.cardLast4, alice.last4);
    assert.deepEqual([auth.risk?.score, auth.risk?.approved, auth.risk?.rule], [780, true, "score>=600"]);
    const held = await account(c, "alice", "bank-a/1001");
    assert.deepEqual([held.balanceMinor, held.availableMinor], [before.balanceMinor, before.availableMinor - 10_000n]);

    const batch = await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth.authCode, amountMinor: 6_000n }],
    });
    assert.deepEqual(
      batch.results.map((r) => [r.status, r.capturedMinor, r.reason]),
      [[SettleItemStatus.CAPTURED, 6_000n, ""]],
    );
    assert.match(batch.results[0]!.transactionId, /^gateway-0:/);
    const after = await account(c, "alice", "bank-a/1001");
    assert.deepEqual(
      [after.balanceMinor, after.heldMinor, after.availableMinor],
      [before.balanceMinor - 6_000n, before.heldMinor, before.availableMinor - 6_000n],
    );
    assert.equal((await account(c, "shop", "bank-b/2003")).balanceMinor, shopBefore.balanceMinor + 6_000n);
    const got = (await c.shop.getAuthorization({ authCode: auth.authCode })).authorization!;
    assert.deepEqual([got.status, got.capturedMinor], [AuthorizationStatus.CAPTURED, 6_000n]);
    await c.stack.assertConserved();
  });

  test("void releases the hold; a voided authorization cannot be captured", async () => {
    const before = await account(c, "alice", "bank-a/1001");
    const auth = (await c.shop.authorize(authorizeReq(alice, 2_500n))).authorization!;
    assert.equal((await account(c, "alice", "bank-a/1001")).heldMinor, before.heldMinor + 2_500n);
    const voided = await c.shop.void({ authCode: auth.authCode });
    assert.equal(voided.authorization!.status, AuthorizationStatus.VOIDED);
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), before);
    const s = await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth.authCode, amountMinor: 1n }],
    });
    assert.deepEqual(
      s.results.map((r) => [r.status, r.reason]),
      [[SettleItemStatus.FAILED, "authorization_voided"]],
    );
    await rejectsWith(c.shop.getAuthorization({ authCode: "ZZZZZZ" }), Code.NotFound, "authorization_not_found");
    await c.stack.assertConserved();
  });

  test("a settlement batch replays byte for byte; items captured by an earlier batch report already_captured", async () => {
    const a = (await c.shop.authorize(authorizeReq(alice, 1_000n))).authorization!;
    const b = (await c.shop.authorize(authorizeReq(alice, 2_000n))).authorization!;
    const d = (await c.shop.authorize(authorizeReq(alice, 100n))).authorization!;
    const key = randomUUID();
    const items = [
      { authCode: a.authCode, amountMinor: 1_000n },
      { authCode: b.authCode, amountMinor: 1_500n },
      { authCode: "NOPE00", amountMinor: 5n },
      { authCode: b.authCode, amountMinor: 3_000n },
      { authCode: d.authCode, amountMinor: 101n },
    ];
    const first = await c.shop.settleBatch({ idempotencyKey: key, items });
    assert.deepEqual(
      first.results.map((r) => r.reason || "captured"),
      ["captured", "captured", "authorization_not_found", "already_captured", "amount_exceeds_authorization"],
    );
    await c.shop.void({ authCode: d.authCode });
    const shopAfter = await account(c, "shop", "bank-b/2003");
    const aliceAfter = await account(c, "alice", "bank-a/1001");
    const replay = await c.shop.settleBatch({ idempotencyKey: key, items });
    assert.deepEqual(replay, first);
    assert.deepEqual(await account(c, "shop", "bank-b/2003"), shopAfter, "a replay moves nothing");
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), aliceAfter);
    await rejectsWith(
      c.shop.settleBatch({ idempotencyKey: key, items: items.slice(1) }),
      Code.InvalidArgument,
      "idempotency_key_reused",
    );
    const again = await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: a.authCode, amountMinor: 1n }],
    });
    assert.deepEqual(
      again.results.map((r) => r.reason),
      ["already_captured"],
    );
    await c.stack.assertConserved();
  });

  test("concurrent refunds never exceed the captured amount", async () => {
    const auth = (await c.shop.authorize(authorizeReq(alice, 5_000n))).authorization!;
    await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth.authCode, amountMinor: 5_000n }],
    });
    await rejectsWith(
      c.shop.refund({
        idempotencyKey: randomUUID(),
        authCode: (await c.shop.authorize(authorizeReq(alice, 10n))).authorization!.authCode,
        amountMinor: 1n,
      }),
      Code.FailedPrecondition,
      "not_captured",
    );
    const aliceBefore = await account(c, "alice", "bank-a/1001");
    const shopBefore = await account(c, "shop", "bank-b/2003");
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, () =>
        c.shop.refund({ idempotencyKey: randomUUID(), authCode: auth.authCode, amountMinor: 1_000n }),
      ),
    );
    const okCount = outcomes.filter((o) => o.status === "fulfilled").length;
    assert.equal(okCount, 5, "exactly the captured 5000 is refunded");
    for (const o of outcomes)
      if (o.status === "rejected")
        await rejectsWith(Promise.reject(o.reason), Code.FailedPrecondition, "refund_exceeds_capture");
    assert.equal((await account(c, "alice", "bank-a/1001")).balanceMinor, aliceBefore.balanceMinor + 5_000n);
    assert.equal((await account(c, "shop", "bank-b/2003")).balanceMinor, shopBefore.balanceMinor - 5_000n);
    const got = (await c.shop.getAuthorization({ authCode: auth.authCode })).authorization!;
    assert.deepEqual([got.capturedMinor, got.refundedMinor], [5_000n, 5_000n]);
    // A replayed refund key answers with the same refund and moves nothing.
    const key = randomUUID();
    const auth2 = (await c.shop.authorize(authorizeReq(alice, 300n))).authorization!;
    await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth2.authCode, amountMinor: 300n }],
    });
    const r1 = await c.shop.refund({ idempotencyKey: key, authCode: auth2.authCode, amountMinor: 200n });
    const r2 = await c.shop.refund({ idempotencyKey: key, authCode: auth2.authCode, amountMinor: 200n });
    assert.equal(r2.refundId, r1.refundId);
    assert.equal((await c.shop.getAuthorization({ authCode: auth2.authCode })).authorization!.refundedMinor, 200n);
    await c.stack.assertConserved();
  });

  test("the credit bureau down: bureau_unavailable, nothing held; the same key succeeds once it is back", async () => {
    const bureau = c.stack.bureau!;
    const before = await account(c, "alice", "bank-a/1001");
    await bureau.stop();
    const req = authorizeReq(alice, 400n);
    await rejectsWith(c.shop.authorize(req), Code.Unavailable, "bureau_unavailable");
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), before);
    await bureau.start();
    const res = await c.shop.authorize(req);
    assert.equal(res.authorization!.status, AuthorizationStatus.APPROVED);
    await c.shop.void({ authCode: res.authorization!.authCode });
    await c.stack.assertConserved();
  });

  test("no log line of any process, and not the gateway's database, holds a full card number or a CVC", async () => {
    const procs: ServiceProcess[] = [c.stack.gateway, ...c.stack.banks.values(), c.stack.bureau!];
    assertNoCardData(procs);
    const dbDir = join(c.stack.dir, "gateway");
    for (const file of ["gateway.db", "gateway.db-wal"]) {
      const path = join(dbDir, file);
      if (!existsSync(path)) continue;
      const bytes = readFileSync(path).toString("latin1");
      for (const s of secrets) assert.ok(!bytes.includes(s.number), `${file} contains a full card number`);
    }
  });
});

describe("card authorization expiry", () => {
  let c: Ctx;
  before(async () => {
    const stack = await Stack.start({
      bureau: true,
      gatewayEnv: { AUTH_HOLD_TTL_MS: "2000", AUTH_EXPIRY_INTERVAL_MS: "200" },
      bankEnv: { HOLD_EXPIRY_INTERVAL_MS: "200" },
    });
    c = await context(stack);
  });
  after(async () => c?.stack.close());

  test("past its TTL an authorization expires, the bank releases the hold on its own, and a capture fails with authorization_expired", async () => {
    const card = await issue(c, "bank-a/1001");
    const before = await account(c, "alice", "bank-a/1001");
    const auth = (await c.shop.authorize(authorizeReq(card, 3_000n))).authorization!;
    assert.equal(auth.status, AuthorizationStatus.APPROVED);
    // Bounded waits on observable state (no timed assertions).
    let status: AuthorizationStatus = auth.status;
    for (let i = 0; i < 200 && status !== AuthorizationStatus.EXPIRED; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await c.shop.getAuthorization({ authCode: auth.authCode })).authorization!.status;
    }
    assert.equal(status, AuthorizationStatus.EXPIRED);
    let expiredLine: Record<string, unknown> | undefined;
    for (let i = 0; i < 200 && !expiredLine; i++) {
      expiredLine = c.stack.bank("bank-a").find("hold expired; released").at(-1) as Record<string, unknown> | undefined;
      if (!expiredLine) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(expiredLine, "the bank released the hold on its own");
    assert.equal(expiredLine.amountMinor, "3000");
    const hold = (await c.stack.bankClient(LedgerService, "bank-a").getHold({ holdId: String(expiredLine.holdId) }))
      .hold!;
    assert.deepEqual([hold.state, hold.accountId, hold.amountMinor], [HoldState.EXPIRED, "bank-a/1001", 3_000n]);
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), before, "available is back");

    const s = await c.shop.settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth.authCode, amountMinor: 3_000n }],
    });
    assert.deepEqual(
      s.results.map((r) => [r.status, r.reason]),
      [[SettleItemStatus.FAILED, "authorization_expired"]],
    );
    await rejectsWith(c.shop.void({ authCode: auth.authCode }), Code.FailedPrecondition, "authorization_expired");
    await c.stack.assertConserved();
    assertNoCardData([c.stack.gateway, ...c.stack.banks.values(), c.stack.bureau!]);
  });
});

describe("card payments across a gateway crash", () => {
  let c: Ctx;
  let card: IssueCardResponse;
  before(async () => {
    c = await context(await Stack.start({ bureau: true }));
    card = await issue(c, "bank-a/1001");
  });
  after(async () => c?.stack.close());

  /** The gateway dies (an armed fault point) inside `call`; it comes back without faults. */
  async function crashDuring(fault: string, call: () => Promise<unknown>): Promise<void> {
    await c.stack.gateway.restart({ PAYGATE_FAULTPOINTS: fault });
    await assert.rejects(call());
    await c.stack.gateway.waitForExit();
    assert.equal(c.stack.gateway.lastExit?.signal, "SIGKILL");
    await c.stack.gateway.start();
  }

  test("killed after the hold's COMMIT was logged: recovery approves it, the merchant's retry gets that authorization", async () => {
    const before = await account(c, "alice", "bank-a/1001");
    const req = authorizeReq(card, 1_500n);
    await crashDuring("gateway.after_commit_logged", () => c.shop.authorize(req));
    await c.stack.assertConserved();
    assert.equal(c.stack.gateway.find("card recovery done").at(-1)?.authorizations, 1);
    const retried = (await c.shop.authorize(req)).authorization!;
    assert.equal(retried.status, AuthorizationStatus.APPROVED);
    assert.equal((await account(c, "alice", "bank-a/1001")).heldMinor, before.heldMinor + 1_500n, "held once");
    await c.shop.void({ authCode: retried.authCode });
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), before);
    await c.stack.assertConserved();
  });

  test("killed after every YES but before a decision: presumed abort releases the hold; the same key then authorizes once", async () => {
    const before = await account(c, "alice", "bank-a/1001");
    const req = authorizeReq(card, 1_700n);
    await crashDuring("gateway.after_votes_before_decision", () => c.shop.authorize(req));
    // The bank asks the restarted coordinator about its prepared hold and is told ABORT.
    await c.stack.assertConserved();
    assert.deepEqual(await account(c, "alice", "bank-a/1001"), before, "nothing held");
    const retried = (await c.shop.authorize(req)).authorization!;
    assert.equal(retried.status, AuthorizationStatus.APPROVED);
    assert.equal((await c.shop.authorize(req)).authorization!.authCode, retried.authCode);
    await c.shop.void({ authCode: retried.authCode });
    await c.stack.assertConserved();
  });

  test("killed mid-settlement after a capture's COMMIT was logged: the batch's replay finishes it and reports the item captured, once", async () => {
    const auth = (await c.shop.authorize(authorizeReq(card, 2_000n))).authorization!;
    const before = await account(c, "alice", "bank-a/1001");
    const shopBefore = await account(c, "shop", "bank-b/2003");
    const batch = { idempotencyKey: randomUUID(), items: [{ authCode: auth.authCode, amountMinor: 1_200n }] };
    await crashDuring("gateway.after_commit_logged", () => c.shop.settleBatch(batch));
    await c.stack.assertConserved();
    const replay = await c.shop.settleBatch(batch);
    assert.deepEqual(
      replay.results.map((r) => [r.status, r.capturedMinor, r.reason]),
      [[SettleItemStatus.CAPTURED, 1_200n, ""]],
    );
    assert.deepEqual(await c.shop.settleBatch(batch), replay);
    const after = await account(c, "alice", "bank-a/1001");
    assert.deepEqual([after.balanceMinor, after.heldMinor], [before.balanceMinor - 1_200n, before.heldMinor - 2_000n]);
    assert.equal((await account(c, "shop", "bank-b/2003")).balanceMinor, shopBefore.balanceMinor + 1_200n);
    await c.stack.assertConserved();
    assertNoCardData([c.stack.gateway, ...c.stack.banks.values(), c.stack.bureau!]);
  });
});

const FORBIDDEN_KEYS = new Set(["number", "cvc", "pan", "cardNumber", "card_number"]);

/** Walks every log line of every process: no full number anywhere, no CVC as a value, no card-data field. */
function assertNoCardData(procs: readonly ServiceProcess[]): void {
  assert.ok(secrets.length > 0);
  let lines = 0;
  const walk = (v: unknown, where: string): void => {
    if (typeof v === "string") {
      for (const s of secrets) {
        assert.ok(!v.includes(s.number), `${where}: a full card number`);
        // A money amount (…Minor, logged as a string) may equal a random 3-digit CVC by chance.
        if (!/Minor$/.test(where)) assert.notEqual(v, s.cvc, `${where}: a CVC`);
      }
    } else if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${where}[${i}]`));
    } else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        assert.ok(!FORBIDDEN_KEYS.has(k), `${where}.${k}: a card data field`);
        walk(x, `${where}.${k}`);
      }
    }
  };
  for (const p of procs) {
    for (const line of p.lines) {
      lines++;
      const text = JSON.stringify(line);
      for (const s of secrets) assert.ok(!text.includes(s.number), `${p.name}: ${text}`);
      walk(line, p.name);
    }
    const stderr = p.rawStderr.join("");
    for (const s of secrets) assert.ok(!stderr.includes(s.number), `${p.name} stderr holds a card number`);
  }
  assert.ok(lines > 20, "the processes logged");
}
