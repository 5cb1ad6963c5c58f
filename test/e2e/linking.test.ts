// Customers sign up and link the accounts they hold at banks (DESIGN.md §11),
// over real processes and mTLS: a new customer registers, logs in, links an
// account with the bank's code, pays and is paid; the bank's count of failed
// attempts locks an account and survives its restart; two users racing for
// one account get it once; a kill -9 of the bank or the gateway in the middle
// of linking leaves the account the caller's or nobody's, never someone
// else's, and the caller's retry finishes it. No log line carries a code.
// (What a stranger learns from a wrong code is in test/security/matrix.test.ts.)
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, type Client } from "@connectrpc/connect";
import { LedgerService } from "@paygate/proto/bank";
import { AdminService, AuthService, PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import { rejectsWith, Stack, testSeed, type ServiceProcess } from "@paygate/testkit";
import { normalizeLinkCode } from "@paygate/vocab";

/** Unlinked accounts of this file, besides testSeed's (bank-a/1004, bank-b/2004 Dana; bank-a/1005 Erin). */
const EXTRA = [
  { accountId: "bank-a/1006", holder: "Lena Locked", linkCode: "LENA-LOCK-CODE" },
  { accountId: "bank-a/1007", holder: "Cora Crash", linkCode: "CORA-CRSH-BANK" },
  { accountId: "bank-a/1008", holder: "Gus Crash", linkCode: "GUSS-CRSH-GWAY" },
  { accountId: "bank-b/2005", holder: "Rita Crash", linkCode: "RITA-CRSH-RCRD" },
];
const SEED = [
  testSeed(),
  ...EXTRA.map(
    (e) =>
      `  - { id: ${e.accountId}, holder: ${e.holder}, link_code: ${e.linkCode}, currency: USD, opening_minor: 7000 }`,
  ),
].join("\n");
const CODES = ["DANA-TEST-LINK-A", "DANA-TEST-LINK-B", "ERIN-TEST-LINK-A", ...EXTRA.map((e) => e.linkCode)];
const LINK_ATTEMPTS_MAX = 3;

describe("sign-up and linking", () => {
  let stack: Stack;
  let adminToken: string;
  const issued: string[] = [];

  before(async () => {
    stack = await Stack.start({
      seed: SEED,
      bankEnv: { LINK_ATTEMPTS_MAX: String(LINK_ATTEMPTS_MAX) },
      gatewayEnv: { REGISTER_RATE_MAX: "20", LINK_RATE_MAX: "100" },
    });
    adminToken = await stack.login("admin");
  });
  after(async () => stack?.close());

  /** A new customer, signed up through Register and logged in. */
  async function customer(
    prefix: string,
  ): Promise<{ userId: string; token: string; pay: Client<typeof PaymentService> }> {
    const username = `${prefix}-${randomUUID().slice(0, 6)}`;
    const password = `${username}-passphrase`;
    const res = await stack.client(AuthService).register({ username, password, displayName: prefix });
    const token = await stack.login(username, password);
    return { userId: res.user!.userId, token, pay: stack.client(PaymentService, token) };
  }
  const payments = (token: string) => stack.client(PaymentService, token);
  const bankOwner = async (accountId: string) =>
    (await stack.bankClient(LedgerService, accountId.slice(0, accountId.indexOf("/"))).getAccount({ accountId }))
      .account!.ownerUserId;
  const mine = async (token: string) => (await payments(token).getBalance({})).accounts.map((a) => a.accountId).sort();

  test("a customer signs up, logs in, links an account at each bank with the bank's codes, pays Bob and is paid, money conserved", async () => {
    const auth = stack.client(AuthService);
    const username = `dana-${randomUUID().slice(0, 6)}`;
    const password = "dana-likes-long-passphrases";
    const user = (await auth.register({ username, password, displayName: "Dana Newcomer" })).user!;
    assert.deepEqual([user.username, user.displayName, user.roles.length], [username, "Dana Newcomer", 1]);
    await rejectsWith(auth.register({ username, password, displayName: "" }), Code.AlreadyExists, "username_taken");
    await rejectsWith(
      auth.register({ username: `x-${randomUUID().slice(0, 6)}`, password: "password123", displayName: "" }),
      Code.InvalidArgument,
      "common_password",
    );
    const token = await stack.login(username, password);
    const dana = payments(token);
    assert.deepEqual((await dana.getBalance({})).accounts, [], "a new customer has no accounts");

    const linked = (
      await dana.linkBankAccount({
        accountId: "bank-a/1004",
        holderName: "dana newcomer",
        linkCode: "dana-test-link-a",
      })
    ).account!;
    assert.deepEqual(
      [linked.accountId, linked.ownerUserId, linked.balanceMinor],
      ["bank-a/1004", user.userId, 20_000n],
    );
    await dana.linkBankAccount({ accountId: "bank-b/2004", holderName: "Dana Newcomer", linkCode: "DANA TEST LINK B" });
    assert.deepEqual(await mine(token), ["bank-a/1004", "bank-b/2004"]);
    assert.equal(await bankOwner("bank-a/1004"), user.userId, "the bank knows its new owner");
    // Linking again answers the same (a lost reply is retried by the client).
    assert.equal(
      (
        await dana.linkBankAccount({
          accountId: "bank-a/1004",
          holderName: "Dana Newcomer",
          linkCode: "DANA-TEST-LINK-A",
        })
      ).account?.accountId,
      "bank-a/1004",
    );

    const bob = payments(await stack.login("bob"));
    const bobBefore = (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!.balanceMinor;
    const paid = await dana.transfer({
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-a/1004",
      toAccountId: "bank-b/2001",
      amountMinor: 1_250n,
      currency: "USD",
      memo: "hi Bob",
    });
    assert.equal(paid.transaction?.status, TransactionStatus.COMMITTED);
    const back = await bob.transfer({
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-b/2001",
      toAccountId: "bank-b/2004",
      amountMinor: 500n,
      currency: "USD",
      memo: "thanks",
    });
    assert.equal(back.transaction?.status, TransactionStatus.COMMITTED);
    await stack.assertConserved();
    const balances = new Map((await dana.getBalance({})).accounts.map((a) => [a.accountId, a.balanceMinor]));
    assert.deepEqual(Object.fromEntries(balances), { "bank-a/1004": 18_750n, "bank-b/2004": 5_500n });
    assert.equal(
      (await bob.getBalance({ accountId: "bank-b/2001" })).accounts[0]!.balanceMinor,
      bobBefore + 1_250n - 500n,
    );
    // Nobody else may move it: the bank checks the owner of every debit.
    await rejectsWith(
      bob.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1004",
        toAccountId: "bank-b/2001",
        amountMinor: 1n,
        currency: "USD",
      }),
      Code.PermissionDenied,
      "not_account_owner",
    );
  });

  test("sign-up is rate-limited per client: past REGISTER_RATE_MAX attempts (valid or not) rate_limited, with when to retry; other clients go on", async () => {
    const intruder = stack.client(AuthService, undefined, "intruder");
    for (let i = 0; i < 20; i++)
      await rejectsWith(
        intruder.register({ username: "Not Valid", password: "", displayName: "" }),
        Code.InvalidArgument,
        "invalid_username",
      );
    const limited = await rejectsWith(
      intruder.register({ username: `ok-${randomUUID().slice(0, 6)}`, password: "a-fine-passphrase", displayName: "" }),
      Code.ResourceExhausted,
      "rate_limited",
    );
    assert.ok(Number(limited.metadata.retry_after_ms) > 0);
    await customer("other-client");
  });

  test("failed attempts lock an account at the bank's maximum, also across a bank restart; a new code from the admin unlocks it", async () => {
    const lena = await customer("lena");
    const attempt = (linkCode: string) =>
      lena.pay.linkBankAccount({ accountId: "bank-a/1006", holderName: "Lena Locked", linkCode });
    for (let i = 1; i < LINK_ATTEMPTS_MAX; i++)
      await rejectsWith(attempt(`WRONG-CODE-${i}`), Code.FailedPrecondition, "link_failed");
    await stack.bank("bank-a").restart();
    // The failures before the restart counted: this one reaches the maximum.
    await rejectsWith(attempt("WRONG-CODE-9"), Code.ResourceExhausted, "link_locked");
    await stack.bank("bank-a").restart();
    await rejectsWith(attempt("LENA-LOCK-CODE"), Code.ResourceExhausted, "link_locked");
    assert.equal(await bankOwner("bank-a/1006"), "", "still nobody's");
    const admin = stack.client(AdminService, adminToken);
    const fresh = await admin.issueLinkCode({ accountId: "bank-a/1006", holderName: "" });
    issued.push(fresh.linkCode);
    assert.match(fresh.linkCode, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    assert.equal(fresh.holderName, "Lena Locked");
    await rejectsWith(attempt("LENA-LOCK-CODE"), Code.FailedPrecondition, "link_failed");
    assert.equal((await attempt(fresh.linkCode)).account?.ownerUserId, lena.userId);
    // A code for an account someone holds is refused: unlink first.
    await rejectsWith(
      admin.issueLinkCode({ accountId: "bank-a/1006", holderName: "" }),
      Code.AlreadyExists,
      "already_linked",
    );
  });

  test("two users link one account at the same moment: exactly one gets it, everywhere", async () => {
    const [x, y] = await Promise.all([customer("racer"), customer("racer")]);
    const req = { accountId: "bank-a/1005", holderName: "Erin Newcomer", linkCode: "ERIN-TEST-LINK-A" };
    const answers = await Promise.allSettled([x.pay.linkBankAccount(req), y.pay.linkBankAccount(req)]);
    const won = answers.flatMap((a, i) => (a.status === "fulfilled" ? [[x, y][i]!] : []));
    assert.equal(
      won.length,
      1,
      JSON.stringify(answers.map((a) => (a.status === "fulfilled" ? "ok" : errorInfo(a.reason).reason))),
    );
    const lost = answers.find((a) => a.status === "rejected");
    assert.equal(lost?.status === "rejected" && errorInfo(lost.reason).reason, "link_failed");
    const winner = won[0]!;
    const loser = winner === x ? y : x;
    assert.equal(await bankOwner("bank-a/1005"), winner.userId);
    assert.deepEqual(await mine(winner.token), ["bank-a/1005"]);
    assert.deepEqual(await mine(loser.token), []);
  });

  /** The account's state after a crash: whose it is at the bank, and in the caller's and a stranger's GetBalance. */
  async function whoseAfterCrash(
    accountId: string,
    caller: { userId: string; token: string },
    stranger: { token: string },
  ): Promise<void> {
    const owner = await bankOwner(accountId);
    assert.ok(owner === caller.userId || owner === "", `the bank gives ${accountId} to ${JSON.stringify(owner)}`);
    const callerSees = (await mine(caller.token)).includes(accountId);
    assert.ok(!callerSees || owner === caller.userId, "the directory never has it when the bank does not");
    assert.deepEqual(await mine(stranger.token), [], "never anyone else's");
  }

  async function crashMidLink(o: {
    process: () => ServiceProcess;
    point: string;
    account: (typeof EXTRA)[number];
  }): Promise<void> {
    const caller = await customer("crash");
    const stranger = await customer("stranger");
    const req = { accountId: o.account.accountId, holderName: o.account.holder, linkCode: o.account.linkCode };
    await o.process().restart({ PAYGATE_FAULTPOINTS: o.point });
    await assert.rejects(caller.pay.linkBankAccount(req), "the process died before answering");
    await o.process().waitForExit();
    assert.equal(o.process().lastExit?.signal, "SIGKILL");
    await o.process().start();
    await whoseAfterCrash(o.account.accountId, caller, stranger);
    // Nobody else can take it with the code meanwhile; the caller's retry finishes the link.
    await rejectsWith(stranger.pay.linkBankAccount(req), Code.FailedPrecondition, "link_failed");
    assert.equal((await caller.pay.linkBankAccount(req)).account?.ownerUserId, caller.userId);
    assert.equal(await bankOwner(o.account.accountId), caller.userId);
    assert.deepEqual(await mine(caller.token), [o.account.accountId]);
    await stack.assertConserved();
  }

  test("kill -9 of the bank after it linked the account, before it answered: the caller's or nobody's; the retry finishes it", async () => {
    await crashMidLink({ process: () => stack.bank("bank-a"), point: "bank.after_link_verified", account: EXTRA[1]! });
  });

  test("kill -9 of the gateway after the bank said yes, before the directory has it: the caller's or nobody's; the retry finishes it", async () => {
    await crashMidLink({ process: () => stack.gateway, point: "gateway.after_link_verified", account: EXTRA[2]! });
  });

  test("kill -9 of the gateway after the directory has it, before answering: the caller's; the retry answers the same", async () => {
    await crashMidLink({ process: () => stack.gateway, point: "gateway.after_link_recorded", account: EXTRA[3]! });
  });

  test("unlinking (admin): the account is nobody's at the bank and in the directory; its old owner can neither see nor move it; a new code links it again", async () => {
    const admin = stack.client(AdminService, adminToken);
    const owner = await customer("unlink-me");
    const fresh = await admin.issueLinkCode({ accountId: "bank-b/2003", holderName: "" }).then(
      () => assert.fail("bank-b/2003 belongs to shop: no code for it"),
      (e: unknown) => errorInfo(e).reason,
    );
    assert.equal(fresh, "already_linked");
    // An account of the seed's, unlinked from its owner and given to a new one.
    const gone = await admin.unlinkBankAccount({ accountId: "bank-a/1002" });
    assert.equal(gone.previousOwnerUserId, "bob");
    assert.equal(await bankOwner("bank-a/1002"), "");
    const bob = payments(await stack.login("bob"));
    await rejectsWith(bob.getBalance({ accountId: "bank-a/1002" }), Code.NotFound, "account_not_found");
    await rejectsWith(
      bob.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1002",
        toAccountId: "bank-b/2001",
        amountMinor: 1n,
        currency: "USD",
      }),
      Code.NotFound,
      "account_not_found",
    );
    assert.equal((await admin.unlinkBankAccount({ accountId: "bank-a/1002" })).previousOwnerUserId, "", "idempotent");
    const code = await admin.issueLinkCode({ accountId: "bank-a/1002", holderName: "Bob Customer" });
    issued.push(code.linkCode);
    assert.equal(
      (
        await owner.pay.linkBankAccount({
          accountId: "bank-a/1002",
          holderName: "bob customer",
          linkCode: code.linkCode,
        })
      ).account?.ownerUserId,
      owner.userId,
    );
    assert.deepEqual(await mine(owner.token), ["bank-a/1002"]);
    await stack.assertConserved();
  });

  test("no log line of the gateway or a bank carries a link code, and every link is logged with its steps", () => {
    const forms = [...CODES, ...issued].flatMap((c) => [c, normalizeLinkCode(c) ?? c, c.toLowerCase()]);
    for (const p of [stack.gateway, ...stack.banks.values()]) {
      const text = JSON.stringify(p.lines) + p.rawStderr.join("");
      for (const f of forms) assert.ok(!text.includes(f), `${p.name} logged ${f}`);
    }
    const links = stack.gateway.find((l) => l.method === "paygate.gateway.v1.PaymentService/LinkBankAccount");
    assert.ok(
      links.some(
        (l) => l.code === "ok" && l.linkSteps === "bank_verified,directory_recorded" && l.accountId === "bank-a/1004",
      ),
    );
    assert.ok(links.some((l) => l.reason === "link_locked" && l.accountId === "bank-a/1006"));
    assert.ok(
      stack.bank("bank-a").find((l) => l.method === "paygate.bank.v1.LinkService/VerifyLink" && l.linked === true)
        .length > 0,
    );
  });
});
