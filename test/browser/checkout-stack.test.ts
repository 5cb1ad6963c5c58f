// The shopper's and the merchant's side of a card payment in a real browser
// against the whole system: banks, gateway (CardService), credit bureau and
// checkout as real processes over mTLS. Cards are issued by the admin API;
// each decline is produced by the real rule that makes it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { AdminService, AuthorizationStatus, CardService, PaymentService, Role } from "@paygate/proto/gateway";
import { Stack, TEST_PASSWORD_SUFFIX, withLuhnDigit } from "@paygate/testkit";
import {
  attemptKeyOf,
  DESKTOP,
  fillCard,
  futureExpiry,
  launchChromium,
  pay,
  screenshot,
  type ShopperCard,
} from "./browser.js";

const CART_MINOR = 2399n;
const MERCHANT_ACCOUNT = "bank-b/2003";
/** The checkout's back office takes the shop's own login (HTTP Basic). */
const MERCHANT_LOGIN = { username: "shop", password: `shop${TEST_PASSWORD_SUFFIX}` };
const merchantAuth = {
  authorization: `Basic ${Buffer.from(`${MERCHANT_LOGIN.username}:${MERCHANT_LOGIN.password}`).toString("base64")}`,
};

interface Issued extends ShopperCard {
  readonly accountId: string;
}

describe("checkout in Chromium against the real stack", () => {
  let stack: Stack;
  let browser: Browser;
  let context: BrowserContext;
  const exp = futureExpiry();
  // The daily limit counts per card: each scenario that must be approved has its own card.
  const cards: Record<"alice" | "carol" | "dave" | "limit" | "double", Issued> = {} as never;
  const secrets: string[] = [];

  const admin = async () => stack.client(AdminService, await stack.login("admin"));
  const merchantCards = async () => stack.client(CardService, await stack.login("shop"));

  async function issue(accountId: string, name: string): Promise<Issued> {
    const r = await (await admin()).issueCard({
      accountId,
      cardholderName: name,
      expMonth: exp.month,
      expYear: exp.year,
    });
    secrets.push(r.number, r.cvc);
    return { accountId, name, number: r.number, expiry: exp.typed, cvc: r.cvc };
  }

  async function held(user: string, accountId: string): Promise<bigint> {
    const res = await stack.client(PaymentService, await stack.login(user)).getBalance({ accountId });
    return res.accounts[0]!.heldMinor;
  }

  async function openForm(): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${stack.checkoutUrl}/payment.html`);
    return page;
  }

  before(async () => {
    // One cart fits under the daily limit, two do not.
    stack = await Stack.start({
      bureau: true,
      checkout: true,
      gatewayEnv: { CARD_DAILY_SPEND_MAX_MINOR: String(CART_MINOR * 2n - 1n) },
    });
    const a = await admin();
    cards.alice = await issue("bank-a/1001", "Alice Customer");
    cards.limit = await issue("bank-a/1001", "Alice Customer");
    cards.double = await issue("bank-a/1001", "Alice Customer");
    cards.carol = await issue("bank-b/2002", "Carol Customer"); // an empty account
    // dave: a customer the credit bureau scores below the risk rule's minimum.
    const dave = await a.createUser({
      username: "dave",
      password: `dave${TEST_PASSWORD_SUFFIX}`,
      roles: [Role.CUSTOMER],
      displayName: "Dave",
    });
    const account = await a.openAccount({ ownerUserId: dave.user!.userId, bank: "bank-a", currency: "USD" });
    await a.deposit({
      idempotencyKey: "browser-dave-deposit",
      accountId: account.account!.accountId,
      amountMinor: 100_000n,
      currency: "USD",
    });
    cards.dave = await issue(account.account!.accountId, "Dave Lowscore");
    browser = await launchChromium();
    context = await browser.newContext(DESKTOP);
  });

  after(async () => {
    await browser?.close();
    if (stack) {
      // Every log line of every process: no full card number, no CVC.
      const processes = [...stack.banks.values(), stack.gateway, stack.bureau, stack.checkout].filter(
        (p) => p !== undefined,
      );
      await stack.close();
      let lines = 0;
      for (const p of processes) {
        for (const l of p.lines) {
          const text = JSON.stringify(l);
          lines++;
          for (const s of secrets.filter((x) => x.length > 4))
            assert.ok(!text.includes(s), `${p.name} logged a card number: ${text}`);
          for (const cvc of secrets.filter((x) => x.length <= 4))
            assert.ok(!text.includes(`"${cvc}"`), `${p.name} logged a CVC: ${text}`);
          assert.ok(!/"cvc"\s*:\s*"\d/.test(text), `${p.name} logged a cvc field: ${text}`);
        }
      }
      assert.ok(lines > 50, "the run logged");
    }
  });

  test("approved payment: an authorization hold at the issuing bank, the code on the page", async () => {
    const heldBefore = await held("alice", "bank-a/1001");
    const page = await openForm();
    await fillCard(page, cards.alice);
    await pay(page);
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    const code = (await page.locator("#auth-code").textContent()) ?? "";
    assert.match(code, /^[A-Z0-9]{6}$/);
    await screenshot(page, "stack-01-approved");
    const auth = (await (await merchantCards()).getAuthorization({ authCode: code })).authorization!;
    assert.deepEqual(
      [auth.status, auth.amountMinor, auth.merchantAccountId, auth.cardLast4],
      [AuthorizationStatus.APPROVED, CART_MINOR, MERCHANT_ACCOUNT, cards.alice.number.slice(-4)],
    );
    assert.equal(await held("alice", "bank-a/1001"), heldBefore + CART_MINOR);
    await page.close();
  });

  const declines: Array<{
    reason: string;
    title: string;
    card: () => ShopperCard;
    owner: () => [user: string, accountId: string];
  }> = [
    {
      reason: "card_not_found",
      title: "Card not recognised",
      card: () => ({
        ...cards.alice,
        number:
          withLuhnDigit("411111111111111") === cards.alice.number
            ? withLuhnDigit("422222222222222")
            : withLuhnDigit("411111111111111"),
      }),
      owner: () => ["alice", cards.alice.accountId],
    },
    {
      reason: "incorrect_cvc",
      title: "Security code incorrect",
      card: () => ({ ...cards.alice, cvc: cards.alice.cvc === "000" ? "001" : "000" }),
      owner: () => ["alice", cards.alice.accountId],
    },
    {
      reason: "insufficient_funds",
      title: "Insufficient funds",
      card: () => cards.carol,
      owner: () => ["carol", cards.carol.accountId],
    },
    {
      reason: "risk_declined",
      title: "Payment declined by the card issuer",
      card: () => cards.dave,
      owner: () => ["dave", cards.dave.accountId],
    },
  ];
  for (const d of declines) {
    test(`decline ${d.reason}: shown to the shopper, nothing held`, async () => {
      const [user, accountId] = d.owner();
      const heldBefore = await held(user, accountId);
      const page = await openForm();
      await fillCard(page, d.card());
      await pay(page);
      await page.getByRole("heading", { name: d.title }).waitFor();
      assert.equal(await page.locator("[data-outcome]").getAttribute("data-reason"), d.reason);
      await screenshot(page, `stack-02-declined-${d.reason}`);
      assert.equal(await held(user, accountId), heldBefore);
      await page.close();
    });
  }

  test("decline spend_limit_exceeded: the second cart on one card in a day", async () => {
    for (const expected of ["Payment approved", "Spending limit reached"]) {
      const page = await openForm();
      await fillCard(page, cards.limit);
      await pay(page);
      await page.getByRole("heading", { name: expected }).waitFor();
      if (expected !== "Payment approved") await screenshot(page, "stack-02-declined-spend_limit_exceeded");
      await page.close();
    }
  });

  test("expired_card and invalid_number: the page stops them before they leave the browser", async () => {
    const page = await openForm();
    await fillCard(page, { ...cards.alice, expiry: "0121" });
    await page.getByRole("button", { name: /^Pay / }).click();
    await page.locator("#expiry-error").getByText("This card has expired.").waitFor();
    await fillCard(page, {
      ...cards.alice,
      number: `${cards.alice.number.slice(0, -1)}${(Number(cards.alice.number.at(-1)) + 1) % 10}`,
    });
    await page.getByRole("button", { name: /^Pay / }).click();
    await page.locator("#cardNumber-error").getByText("This card number is not valid").waitFor();
    assert.match(page.url(), /payment\.html$/);
    await page.close();
  });

  test("double-submit authorizes once: two posts in flight together, a double-click, a reload that re-posts", async () => {
    const heldBefore = await held("alice", cards.double.accountId);
    const page = await openForm();
    await fillCard(page, cards.double);
    const key = await attemptKeyOf(page);
    const posts = () => stack.checkout!.find((l) => l.msg === "http" && l.path === "/make-payment").length;
    const postsBefore = posts();
    // Two posts of the same form, both in flight at once (what a double-click does without the page's script).
    const both = (await page.evaluate(`(() => {
      const form = document.getElementById("pay-form");
      const send = () => fetch("/make-payment", { method: "POST", body: new URLSearchParams(new FormData(form)), headers: { accept: "application/json" } }).then((r) => r.json());
      return Promise.all([send(), send()]);
    })()`)) as Array<{ status: string; authCode: string }>;
    assert.deepEqual(
      both.map((b) => b.status),
      ["approved", "approved"],
    );
    assert.equal(both[0]!.authCode, both[1]!.authCode);
    // The real button, double-clicked, then a reload of the result page (the browser posts the form again).
    await Promise.all([page.waitForURL("**/make-payment"), page.getByRole("button", { name: /^Pay / }).dblclick()]);
    await page.locator("#duplicate-note").waitFor();
    await page.reload();
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    assert.equal(await page.locator("#auth-code").textContent(), both[0]!.authCode);
    await screenshot(page, "stack-03-double-submit");
    // The attempt reached the checkout at least four times...
    for (let i = 0; i < 200 && posts() < postsBefore + 4; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(posts() >= postsBefore + 4, `expected 4 posts of the form, saw ${posts() - postsBefore}`);
    // ...and there is one authorization for it, one cart held at the bank.
    const merchant = (await (
      await fetch(`${stack.checkoutUrl}/merchant?format=json`, { headers: merchantAuth })
    ).json()) as { orders: Array<{ attemptKey: string; authCode: string | null }> };
    assert.deepEqual(
      merchant.orders.filter((o) => o.attemptKey === key).map((o) => o.authCode),
      [both[0]!.authCode],
    );
    assert.equal(await held("alice", cards.double.accountId), heldBefore + CART_MINOR);
    await page.close();
  });

  test("settle from the merchant page: the money arrives in the merchant's account, and money is conserved", async () => {
    const balance = async () =>
      (await stack.client(PaymentService, await stack.login("shop")).getBalance({ accountId: MERCHANT_ACCOUNT }))
        .accounts[0]!.balanceMinor;
    const before = await balance();
    const merchantContext = await browser.newContext({ ...DESKTOP, httpCredentials: MERCHANT_LOGIN });
    const page = await merchantContext.newPage();
    await page.goto(`${stack.checkoutUrl}/merchant`);
    await Promise.all([page.waitForURL("**/merchant"), page.getByRole("button", { name: "Settle now" }).click()]);
    const batch = page.locator("#settlements tbody tr[data-settlement]").first();
    await batch.waitFor().catch((e: unknown) => {
      throw new Error(
        `${String(e)}\ncheckout log: ${JSON.stringify(stack.checkout!.lines.filter((l) => l.msg === "http").slice(-4))}`,
      );
    });
    assert.match((await batch.textContent()) ?? "", /done/);
    await page.locator("#settlements details summary").first().click();
    await screenshot(page, "stack-04-merchant-settled");
    const merchant = (await (
      await fetch(`${stack.checkoutUrl}/merchant?format=json`, { headers: merchantAuth })
    ).json()) as {
      orders: Array<{ state: string; settleState: string; capturedMinor: string }>;
    };
    const approved = merchant.orders.filter((o) => o.state === "approved");
    assert.equal(approved.length, 3, "alice, the limit card's first cart, the double-submit");
    assert.ok(approved.every((o) => o.settleState === "captured"));
    assert.equal(await balance(), before + CART_MINOR * BigInt(approved.length));
    assert.equal(await held("alice", "bank-a/1001"), 0n);
    await stack.assertConserved();
    await merchantContext.close();
  });
});
