// Three gateway replicas on one private PostgreSQL and one private Redis
// (DESIGN.md §3b, issue 12), as real processes over mTLS: anything done
// through one replica is seen by all. A user created on one logs in and pays
// on another; a customer who signs up on one links a bank account on another
// and every replica sees it, and an unlink on one leaves no replica's cached
// directory entry able to move the account's money; a card issued and authorized on one is settled, voided and
// refunded on others; a session revoked on one is refused by all, and login
// failures on different replicas add up; a follower on one replica gets what
// the others decide, in one order; and with every call (retries included) to
// a random replica and Redis flushed and restarted mid-run, no key moves
// money twice. Steps that must cross replicas use pinned clients; everything
// else goes to a random replica per call, as through a Service without
// session affinity.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  AdminService,
  AuthorizationStatus,
  AuthService,
  CardService,
  PaymentService,
  Role,
  SettleItemStatus,
  TransactionStatus,
  type IssueCardResponse,
} from "@paygate/proto/gateway";
import { errorReason } from "@paygate/rpc";
import { authorizeRequest, rejectsWith, type GatewayTarget } from "@paygate/testkit";
import {
  assertExactlyOnce,
  bankBalances,
  newSent,
  replicaOf,
  SEED_FLOWS,
  sendTransfer,
  startReplicas,
  until,
  type Replicas,
  type Sent,
} from "./replicas-support.js";

const REPLICAS = [0, 1, 2] as const;

describe("three gateway replicas on one PostgreSQL: any replica serves any request", () => {
  let r: Replicas;
  let adminToken: string;
  /** Per (target, user): one client each. */
  const clients = new Map<string, unknown>();
  const tokens = new Map<string, string>();

  before(async () => {
    r = await startReplicas({ bureau: true, gatewayEnv: { LOGIN_FAILURES_MAX: "5" } });
    adminToken = await r.stack.login("admin");
  });
  after(async () => r?.close());

  async function token(user: string): Promise<string> {
    let t = tokens.get(user);
    if (!t) tokens.set(user, (t = await r.stack.login(user)));
    return t;
  }
  function client<S extends typeof PaymentService | typeof CardService | typeof AdminService>(
    target: GatewayTarget,
    service: S,
    tok: string,
  ): Client<S> {
    const key = `${String(target)} ${service.typeName} ${tok}`;
    let c = clients.get(key) as Client<S> | undefined;
    if (!c) clients.set(key, (c = r.stack.gatewayClient(target, service, tok)));
    return c;
  }
  const admin = (target: GatewayTarget = "any") => client(target, AdminService, adminToken);
  const pay = async (user: string, target: GatewayTarget = "any") => client(target, PaymentService, await token(user));
  const shop = async (target: GatewayTarget = "any") => client(target, CardService, await token("shop"));

  test("the replicas started at once on one fresh database: one schema, one seed, three leases", async () => {
    assert.deepEqual(
      r.stack.gateways.map((g) => g.find("listening").at(-1)?.replica),
      ["gateway-0", "gateway-1", "gateway-2"],
    );
    assert.deepEqual(
      r.stack.gateways.map((g) => g.find("listening").at(-1)?.store),
      ["postgres", "postgres", "postgres"],
    );
    const seeds = r.stack.gateways.filter((g) => g.find("seed loaded").length > 0).length;
    assert.equal(seeds, 1, "exactly one replica loaded the seed");
    const leases = await r.pg.sql("SELECT replica FROM replica_leases ORDER BY replica");
    assert.deepEqual(
      leases.map((row) => row[0]),
      ["gateway-0", "gateway-1", "gateway-2"],
    );
    assert.deepEqual(await r.pg.sql("SELECT count(*) FROM users WHERE username = 'alice'"), [["1"]]);
  });

  test("a user created on one replica logs in and pays on another, and a third sees it all", async () => {
    for (const [made, used, seen] of [
      [0, 1, 2],
      [1, 2, 0],
      [2, 0, 1],
    ] as const) {
      const username = `u${made}${used}-${randomUUID().slice(0, 8)}`;
      const password = `${username}-pass-2026`;
      const user = (await admin(made).createUser({ username, password, roles: [Role.CUSTOMER], displayName: username }))
        .user!;
      const account = (await admin(made).openAccount({ ownerUserId: user.userId, bank: "bank-a", currency: "USD" }))
        .account!;
      const depositKey = randomUUID();
      const deposited = (
        await admin(made).deposit({
          idempotencyKey: depositKey,
          accountId: account.accountId,
          amountMinor: 10_000n,
          currency: "USD",
        })
      ).account!;
      assert.equal(deposited.balanceMinor, 10_000n);
      // The same deposit key on another replica deposits nothing more.
      assert.equal(
        (
          await admin(seen).deposit({
            idempotencyKey: depositKey,
            accountId: account.accountId,
            amountMinor: 10_000n,
            currency: "USD",
          })
        ).account!.balanceMinor,
        10_000n,
      );
      // A username is unique across replicas.
      await rejectsWith(
        admin(used).createUser({ username, password, roles: [Role.CUSTOMER], displayName: "" }),
        Code.AlreadyExists,
        "username_taken",
      );

      const login = await r.stack.gatewayClient(used, AuthService).login({ username, password });
      const mine = r.stack.gatewayClient(used, PaymentService, login.sessionToken);
      assert.deepEqual(
        (await mine.getBalance({})).accounts.map((a) => [a.accountId, a.balanceMinor]),
        [[account.accountId, 10_000n]],
      );
      const res = await mine.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: account.accountId,
        toAccountId: "bank-b/2002",
        amountMinor: 2_500n,
        currency: "USD",
        memo: "cross-replica",
      });
      const txn = res.transaction!;
      assert.equal(txn.status, TransactionStatus.COMMITTED);
      assert.equal(replicaOf(txn.transactionId), `gateway-${used}`, "the replica that was asked coordinated it");

      const third = r.stack.gatewayClient(seen, PaymentService, login.sessionToken);
      const got = (await third.getTransaction({ transactionId: txn.transactionId })).transaction!;
      assert.deepEqual(
        [got.status, got.sequence, got.amountMinor],
        [TransactionStatus.COMMITTED, txn.sequence, 2_500n],
      );
      assert.deepEqual(
        (await third.getBalance({ accountId: account.accountId })).accounts.map((a) => a.balanceMinor),
        [7_500n],
      );
      const history = [];
      for await (const m of third.listTransactions({})) history.push(m.transaction!.transactionId);
      assert.deepEqual(history, [txn.transactionId]);
    }
    await r.stack.assertConserved();
  });

  test("sign-up on one replica, a link on another: every replica sees it; an unlink on one leaves the others' cached entries unable to move money", async () => {
    const signUp = async (target: GatewayTarget, prefix: string) => {
      const username = `${prefix}-${randomUUID().slice(0, 6)}`;
      const password = `${username}-passphrase`;
      const user = (
        await r.stack.gatewayClient(target, AuthService).register({ username, password, displayName: prefix })
      ).user!;
      return {
        userId: user.userId,
        token: (await r.stack.gatewayClient(target === 0 ? 1 : 0, AuthService).login({ username, password }))
          .sessionToken,
      };
    };
    const dana = await signUp(0, "dana");
    const dana1004 = { accountId: "bank-a/1004", holderName: "Dana Newcomer", linkCode: "DANA-TEST-LINK-A" };
    await r.stack.gatewayClient(1, PaymentService, dana.token).linkBankAccount(dana1004);
    for (const i of REPLICAS)
      assert.deepEqual(
        (await r.stack.gatewayClient(i, PaymentService, dana.token).getBalance({})).accounts.map((a) => a.accountId),
        ["bank-a/1004"],
        `replica ${i} sees the link`,
      );
    // Replicas 0 and 2 pay from it (and keep its directory entry cached).
    for (const i of [0, 2]) {
      const paid = await r.stack.gatewayClient(i, PaymentService, dana.token).transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1004",
        toAccountId: "bank-b/2001",
        amountMinor: 100n,
        currency: "USD",
      });
      assert.equal(paid.transaction?.status, TransactionStatus.COMMITTED);
    }
    const before = (await bankBalances(r.stack, ["bank-a/1004"])).get("bank-a/1004")!.balance;

    assert.equal((await admin(1).unlinkBankAccount({ accountId: "bank-a/1004" })).previousOwnerUserId, dana.userId);
    // At once, before any replica may have heard of it: nothing moves, nothing shows.
    for (const i of [0, 2]) {
      const moved = await r.stack
        .gatewayClient(i, PaymentService, dana.token)
        .transfer({
          idempotencyKey: randomUUID(),
          fromAccountId: "bank-a/1004",
          toAccountId: "bank-b/2001",
          amountMinor: 100n,
          currency: "USD",
        })
        .then(
          (res) => res.transaction?.status,
          (e: unknown) => errorReason(e),
        );
      assert.ok(moved === "account_not_found" || moved === "not_account_owner", `replica ${i}: ${String(moved)}`);
      const seen = await r.stack
        .gatewayClient(i, PaymentService, dana.token)
        .getBalance({ accountId: "bank-a/1004" })
        .then(() => "ok", errorReason);
      assert.ok(seen === "account_not_found" || seen === "not_account_owner", `replica ${i}: ${seen}`);
    }
    assert.equal(
      (await bankBalances(r.stack, ["bank-a/1004"])).get("bank-a/1004")!.balance,
      before,
      "the old owner moved nothing",
    );
    // And soon every replica has dropped the entry (LISTEN/NOTIFY).
    for (const i of REPLICAS)
      await until(
        `replica ${i} to forget bank-a/1004`,
        async () =>
          (await r.stack
            .gatewayClient(i, PaymentService, dana.token)
            .getBalance({ accountId: "bank-a/1004" })
            .then(() => "ok", errorReason)) === "account_not_found",
      );

    // A new code (replica 2), two newcomers racing for it on replicas 0 and 1: one gets it, every replica agrees.
    const { linkCode } = await admin(2).issueLinkCode({ accountId: "bank-a/1004", holderName: "" });
    const [x, y] = await Promise.all([signUp(2, "racer"), signUp(2, "racer")]);
    const raced = await Promise.all(
      [x, y].map((u, i) =>
        r.stack
          .gatewayClient(i, PaymentService, u.token)
          .linkBankAccount({ ...dana1004, linkCode })
          .then(() => "ok", errorReason),
      ),
    );
    assert.deepEqual([...raced].sort(), ["link_failed", "ok"]);
    const winner = raced[0] === "ok" ? x : y;
    for (const i of REPLICAS) {
      assert.deepEqual(
        (await r.stack.gatewayClient(i, PaymentService, winner.token).getBalance({})).accounts.map((a) => a.accountId),
        ["bank-a/1004"],
        `replica ${i}`,
      );
      await rejectsWith(
        r.stack.gatewayClient(i, PaymentService, dana.token).getBalance({ accountId: "bank-a/1004" }),
        Code.PermissionDenied,
        "not_account_owner",
      );
    }
    await r.stack.assertConserved();
  });

  test("a card issued on one replica is authorized on another, then settled, voided and refunded on others", async () => {
    const secrets: IssueCardResponse[] = [];
    const issued = await admin(0).issueCard({
      accountId: "bank-a/1001",
      cardholderName: "Test Holder",
      number: "",
      cvc: "",
      expMonth: 0,
      expYear: 0,
    });
    secrets.push(issued);
    const authorizeReq = (amountMinor: bigint) => authorizeRequest(issued, amountMinor);

    const aliceBefore = (await bankBalances(r.stack, ["bank-a/1001"])).get("bank-a/1001")!;
    const shopBefore = (await bankBalances(r.stack, ["bank-b/2003"])).get("bank-b/2003")!;

    // Authorized on 1; the merchant's retry of the key on 2 gets the same authorization.
    const req = authorizeReq(6_000n);
    const auth = (await (await shop(1)).authorize(req)).authorization!;
    assert.equal(auth.status, AuthorizationStatus.APPROVED);
    assert.equal(
      (await (await shop(2)).authorize(req)).authorization!.authCode,
      auth.authCode,
      "one authorization per key across replicas",
    );
    await rejectsWith(
      (await shop(0)).authorize({ ...req, amountMinor: 6_001n }),
      Code.InvalidArgument,
      "idempotency_key_reused",
    );
    for (const i of REPLICAS)
      assert.equal(
        (await (await shop(i)).getAuthorization({ authCode: auth.authCode })).authorization!.status,
        AuthorizationStatus.APPROVED,
      );
    assert.equal(
      (await bankBalances(r.stack, ["bank-a/1001"])).get("bank-a/1001")!.held,
      aliceBefore.held + 6_000n,
      "held once",
    );

    // Settled (partly) on 2; the batch replays identically on 0.
    const batch = { idempotencyKey: randomUUID(), items: [{ authCode: auth.authCode, amountMinor: 5_000n }] };
    const settled = await (await shop(2)).settleBatch(batch);
    assert.deepEqual(
      settled.results.map((x) => [x.status, x.capturedMinor, x.reason]),
      [[SettleItemStatus.CAPTURED, 5_000n, ""]],
    );
    assert.deepEqual(
      await (await shop(0)).settleBatch(batch),
      settled,
      "the batch's replay on another replica is the same answer",
    );
    const again = await (await shop(1)).settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: auth.authCode, amountMinor: 1n }],
    });
    assert.deepEqual(
      again.results.map((x) => x.reason),
      ["already_captured"],
    );

    // A second authorization on 0, voided on 1; a capture of it on 2 fails.
    const second = (await (await shop(0)).authorize(authorizeReq(700n))).authorization!;
    assert.equal(
      (await (await shop(1)).void({ authCode: second.authCode })).authorization!.status,
      AuthorizationStatus.VOIDED,
    );
    // A repeated void (on yet another replica) is idempotent: the same authorization, nothing released twice.
    const heldAfterVoid = (await bankBalances(r.stack, ["bank-a/1001"])).get("bank-a/1001")!.held;
    assert.equal(
      (await (await shop(2)).void({ authCode: second.authCode })).authorization!.status,
      AuthorizationStatus.VOIDED,
    );
    assert.equal((await bankBalances(r.stack, ["bank-a/1001"])).get("bank-a/1001")!.held, heldAfterVoid);
    const late = await (await shop(2)).settleBatch({
      idempotencyKey: randomUUID(),
      items: [{ authCode: second.authCode, amountMinor: 700n }],
    });
    assert.deepEqual(
      late.results.map((x) => [x.status, x.reason]),
      [[SettleItemStatus.FAILED, "authorization_voided"]],
    );

    // Refunded on 0; the same refund key on 1 is the same refund; more than captured is refused on 2.
    const refundKey = randomUUID();
    const refund = await (await shop(0)).refund({
      idempotencyKey: refundKey,
      authCode: auth.authCode,
      amountMinor: 1_000n,
    });
    assert.equal(
      (await (await shop(1)).refund({ idempotencyKey: refundKey, authCode: auth.authCode, amountMinor: 1_000n }))
        .refundId,
      refund.refundId,
    );
    await rejectsWith(
      (await shop(2)).refund({ idempotencyKey: randomUUID(), authCode: auth.authCode, amountMinor: 4_001n }),
      Code.FailedPrecondition,
      "refund_exceeds_capture",
    );
    // Concurrent refunds on random replicas never exceed what is left (4000).
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, async () =>
        (await shop()).refund({ idempotencyKey: randomUUID(), authCode: auth.authCode, amountMinor: 1_000n }),
      ),
    );
    assert.equal(outcomes.filter((o) => o.status === "fulfilled").length, 4, "exactly the 4000 left is refunded");
    for (const o of outcomes)
      if (o.status === "rejected") assert.equal(errorReason(o.reason), "refund_exceeds_capture");

    for (const i of REPLICAS) {
      const got = (await (await shop(i)).getAuthorization({ authCode: auth.authCode })).authorization!;
      assert.deepEqual(
        [got.status, got.capturedMinor, got.refundedMinor],
        [AuthorizationStatus.CAPTURED, 5_000n, 5_000n],
        `replica ${i} sees the same authorization`,
      );
    }
    const aliceAfter = (await bankBalances(r.stack, ["bank-a/1001"])).get("bank-a/1001")!;
    const shopAfter = (await bankBalances(r.stack, ["bank-b/2003"])).get("bank-b/2003")!;
    assert.deepEqual(
      [aliceAfter.balance, aliceAfter.held],
      [aliceBefore.balance, aliceBefore.held],
      "captured 5000, refunded 5000, the rest released",
    );
    assert.equal(shopAfter.balance, shopBefore.balance);
    // No log line of any replica carries the number.
    for (const g of r.stack.gateways)
      for (const l of g.lines)
        for (const s of secrets) assert.ok(!JSON.stringify(l).includes(s.number), `${g.name} logged a card number`);
    await r.stack.assertConserved();
  });

  test("a session revoked on one replica is refused by all; login failures on different replicas add up per user and client", async () => {
    const username = `sess-${randomUUID().slice(0, 8)}`;
    const password = `${username}-pass-2026`;
    await admin().createUser({ username, password, roles: [Role.CUSTOMER], displayName: "" });
    const session = (await r.stack.gatewayClient(0, AuthService).login({ username, password })).sessionToken;
    for (const i of REPLICAS)
      assert.deepEqual(
        (await r.stack.gatewayClient(i, PaymentService, session).getBalance({})).accounts,
        [],
        `replica ${i} knows the session`,
      );
    await r.stack.gatewayClient(1, AuthService, session).logout({});
    for (const i of REPLICAS)
      await rejectsWith(
        r.stack.gatewayClient(i, PaymentService, session).getBalance({}),
        Code.Unauthenticated,
        "unauthenticated",
      );
    // Another session of the same user is untouched.
    const other = (await r.stack.gatewayClient(2, AuthService).login({ username, password })).sessionToken;
    assert.deepEqual((await r.stack.gatewayClient(0, PaymentService, other).getBalance({})).accounts, []);

    // LOGIN_FAILURES_MAX (5 here) wrong passwords from one client, spread over the replicas: the fifth locks.
    const victim = `lock-${randomUUID().slice(0, 8)}`;
    await admin().createUser({
      username: victim,
      password: `${victim}-pass-2026`,
      roles: [Role.CUSTOMER],
      displayName: "",
    });
    const answers: string[] = [];
    for (let k = 0; k < 5; k++) {
      answers.push(
        await r.stack
          .gatewayClient(k % 3, AuthService)
          .login({ username: victim, password: "wrong-password-2026" })
          .then(() => "ok", errorReason),
      );
    }
    assert.deepEqual(answers, [
      "invalid_credentials",
      "invalid_credentials",
      "invalid_credentials",
      "invalid_credentials",
      "login_locked",
    ]);
    for (const i of REPLICAS)
      await rejectsWith(
        r.stack.gatewayClient(i, AuthService).login({ username: victim, password: `${victim}-pass-2026` }),
        Code.ResourceExhausted,
        "login_locked",
      );
    // Per user and client: another client certificate still logs in.
    assert.ok(
      (
        await r.stack
          .gatewayClient("any", AuthService, undefined, "checkout")
          .login({ username: victim, password: `${victim}-pass-2026` })
      ).sessionToken,
    );

    // Concurrent wrong passwords on every replica all count: exactly four are told invalid_credentials.
    const racer = `race-${randomUUID().slice(0, 8)}`;
    await admin().createUser({
      username: racer,
      password: `${racer}-pass-2026`,
      roles: [Role.CUSTOMER],
      displayName: "",
    });
    const raced = await Promise.all(
      Array.from({ length: 9 }, (_, k) =>
        r.stack
          .gatewayClient(k % 3, AuthService)
          .login({ username: racer, password: "wrong-password-2026" })
          .then(() => "ok", errorReason),
      ),
    );
    assert.deepEqual(
      raced.filter((a) => a === "invalid_credentials").length,
      4,
      `the failure count is shared and atomic: ${raced.join(", ")}`,
    );
    assert.ok(
      raced.every((a) => a === "invalid_credentials" || a === "login_locked"),
      raced.join(", "),
    );
  });

  test("ListTransactions with follow on one replica receives what the other two decide, in one order, resumable by sequence", async () => {
    const username = `hist-${randomUUID().slice(0, 8)}`;
    const password = `${username}-pass-2026`;
    const payee = (await admin().createUser({ username, password, roles: [Role.CUSTOMER], displayName: "" })).user!;
    const account = (await admin().openAccount({ ownerUserId: payee.userId, bank: "bank-b", currency: "USD" }))
      .account!;
    const session = (await r.stack.gatewayClient(1, AuthService).login({ username, password })).sessionToken;
    const alice = await token("alice");
    const total = 24;
    const firstPart = 10;

    // The follower on replica 0; it stops itself after `firstPart` messages.
    const controller = new AbortController();
    const seen: { id: string; sequence: bigint }[] = [];
    const following = (async () => {
      try {
        for await (const m of r.stack
          .gatewayClient(0, PaymentService, session)
          .listTransactions({ follow: true }, { signal: controller.signal })) {
          seen.push({ id: m.transaction!.transactionId, sequence: m.transaction!.sequence });
          if (seen.length === firstPart) controller.abort();
        }
      } catch (e) {
        if (ConnectError.from(e).code !== Code.Canceled) throw e;
      }
    })();
    // Time for the stream to reach its wait, so what follows wakes it (nothing polls: only a NOTIFY from the deciding replica does).
    await new Promise((res) => setTimeout(res, 500));

    // Decided by replicas 1 and 2 only, two at a time.
    const decided: { id: string; sequence: bigint }[] = [];
    for (let k = 0; k < total; k += 2) {
      const made = await Promise.all(
        [1, 2].map((i) =>
          r.stack.gatewayClient(i, PaymentService, alice).transfer({
            idempotencyKey: randomUUID(),
            fromAccountId: "bank-a/1001",
            toAccountId: account.accountId,
            amountMinor: BigInt(k + i),
            currency: "USD",
            memo: `h${k + i}`,
          }),
        ),
      );
      for (const m of made) decided.push({ id: m.transaction!.transactionId, sequence: m.transaction!.sequence });
      if (k + 2 === firstPart)
        await until(`the follower to get ${firstPart} txns`, () => seen.length >= firstPart, 10_000, 20);
    }
    await following;
    assert.deepEqual(new Set(decided.map((d) => replicaOf(d.id))), new Set(["gateway-1", "gateway-2"]));
    const inOrder = [...decided].sort((a, b) => (a.sequence < b.sequence ? -1 : 1));
    assert.deepEqual(
      seen,
      inOrder.slice(0, firstPart),
      "the follower on replica 0 got the first part, in sequence order",
    );

    // Resumed on another replica after the last sequence seen: the rest, in order, nothing twice.
    const rest: { id: string; sequence: bigint }[] = [];
    const resume = new AbortController();
    try {
      for await (const m of r.stack
        .gatewayClient(2, PaymentService, session)
        .listTransactions({ afterSequence: seen.at(-1)!.sequence, follow: true }, { signal: resume.signal })) {
        rest.push({ id: m.transaction!.transactionId, sequence: m.transaction!.sequence });
        if (rest.length === total - firstPart) resume.abort();
      }
    } catch (e) {
      if (ConnectError.from(e).code !== Code.Canceled) throw e;
    }
    assert.deepEqual(rest, inOrder.slice(firstPart));
    // One order: every replica lists the same history.
    for (const i of REPLICAS) {
      const listed = [];
      for await (const m of r.stack.gatewayClient(i, PaymentService, session).listTransactions({}))
        listed.push({ id: m.transaction!.transactionId, sequence: m.transaction!.sequence });
      assert.deepEqual(listed, inOrder, `replica ${i} lists the same history in the same order`);
    }
    await r.stack.assertConserved();
  });

  test("exactly once across replicas: keys sent concurrently to random replicas, Redis flushed and restarted mid-run", async (t) => {
    const keysTotal = 240;
    const workers = 16;
    const sent: Sent[] = [];
    for (let k = 0; k < keysTotal; k++)
      sent.push(newSent(SEED_FLOWS[k % SEED_FLOWS.length]!, `xo-${k % 7}`, BigInt(1 + (k % 50))));
    await r.stack.assertConserved();
    const before = await bankBalances(r.stack, [
      ...new Set(sent.flatMap((s) => [s.req.fromAccountId, s.req.toAccountId])),
    ]);
    const pays = new Map<string, Client<typeof PaymentService>>();
    for (const u of ["alice", "bob"]) pays.set(u, await pay(u));

    let done = 0;
    const events: string[] = [];
    const nemesis = (async () => {
      await until("a third of the keys", () => done >= keysTotal / 3, 120_000, 10);
      await r.redis.flushAll();
      events.push(`FLUSHALL after ${done}`);
      await until("two thirds of the keys", () => done >= (2 * keysTotal) / 3, 120_000, 10);
      await r.redis.restart();
      events.push(`redis restarted after ${done}`);
    })();
    const queue = [...sent];
    await Promise.all(
      Array.from({ length: workers }, async () => {
        for (let s = queue.shift(); s; s = queue.shift()) {
          const client = pays.get(s.payer)!;
          // One in five is sent twice at once (a double click, a retrying proxy), each copy to its own random replica.
          const copies = Math.random() < 0.2 ? 2 : 1;
          await Promise.all(Array.from({ length: copies }, () => sendTransfer(client, s, 60_000)));
          done++;
        }
      }),
    );
    await nemesis;
    const unanswered = sent.filter((s) => s.answers.length === 0).length;
    const errors = sent.flatMap((s) => s.errors);
    const byReason: Record<string, number> = {};
    for (const e of errors) byReason[e] = (byReason[e] ?? 0) + 1;
    t.diagnostic(
      `${events.join("; ")}; ${unanswered} keys unanswered in the run; retried errors: ${JSON.stringify(byReason)}`,
    );
    assert.ok(!errors.includes("internal"), `no internal errors: ${JSON.stringify(byReason)}`);

    const report = await assertExactlyOnce(r.stack, r.pg, sent, before, (u) => pays.get(u)!, r.redis);
    t.diagnostic(
      `${report.committed} committed, ${report.declined} declined; coordinated by ${JSON.stringify(report.byReplica)}`,
    );
    assert.deepEqual(
      Object.keys(report.byReplica).sort(),
      ["gateway-0", "gateway-1", "gateway-2"],
      "every replica coordinated some",
    );
    assert.ok((await r.redis.keys("idem:*")).length > 0, "the fast path is in use again after the restart");
    await r.stack.assertConserved();
  });
});
