// The shopper's side of checkout in a real browser (Debian's Chromium) against
// the real checkout process and a fake gateway CardService (test-only,
// scripted by card number). test/browser/checkout-stack.test.ts does the same
// against the real gateway, banks and credit bureau.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import {
  checkoutProcess,
  FAKE_CARDS,
  FAKE_MERCHANT,
  FakeCardGateway,
  testCerts,
  type ServiceProcess,
} from "@paygate/testkit";
import {
  attemptKeyOf,
  DESKTOP,
  fillCard,
  focusedId,
  futureExpiry,
  horizontalOverflow,
  launchChromium,
  pay,
  PHONE,
  screenshot,
} from "./browser.js";

// The shopper's words for each decline, as checkout's domain/declines.ts has them.
const DECLINES: Record<string, { title: string; text: RegExp }> = {
  invalid_number: { title: "Card number not valid", text: /card number is not valid/ },
  expired_card: { title: "Card expired", text: /card has expired/ },
  incorrect_cvc: { title: "Security code incorrect", text: /security code \(CVC\) does not match/ },
  insufficient_funds: { title: "Insufficient funds", text: /not enough money available/ },
  risk_declined: { title: "Payment declined by the card issuer", text: /card issuer declined this payment/ },
  spend_limit_exceeded: { title: "Spending limit reached", text: /daily spending limit/ },
  card_not_found: { title: "Card not recognised", text: /could not find a card/ },
};

describe("checkout in Chromium (fake gateway)", () => {
  let fake: FakeCardGateway;
  let checkout: ServiceProcess;
  let url = "";
  let browser: Browser;
  let context: BrowserContext;
  let dir = "";
  const exp = futureExpiry();
  const alice = (number: string = FAKE_CARDS.approved) => ({
    name: "Alice Customer",
    number,
    expiry: exp.typed,
    cvc: "737",
  });

  before(async () => {
    const certs = testCerts();
    fake = await FakeCardGateway.start({ certs });
    dir = mkdtempSync(join(tmpdir(), "checkout-browser-"));
    const started = await checkoutProcess({ dir, certs, gatewayUrl: fake.url, merchant: FAKE_MERCHANT });
    checkout = started.process;
    url = started.url;
    await checkout.start();
    browser = await launchChromium();
    context = await browser.newContext(DESKTOP);
  });

  after(async () => {
    await browser?.close();
    await checkout?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function openForm(ctx: BrowserContext = context): Promise<Page> {
    const page = await ctx.newPage();
    await page.goto(`${url}/payment.html`);
    return page;
  }

  test("approved payment: the card is formatted as typed, the result shows the auth code", async () => {
    const page = await openForm();
    await screenshot(page, "01-payment-form");
    await fillCard(page, alice());
    assert.equal(await page.getByLabel("Card number").inputValue(), "4242 4242 4242 4242");
    assert.equal(await page.getByLabel("Expiry date").inputValue(), `${exp.typed.slice(0, 2)}/${exp.typed.slice(2)}`);
    await screenshot(page, "02-payment-form-filled");
    const key = await attemptKeyOf(page);
    await pay(page);
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    const code = (await page.locator("#auth-code").textContent()) ?? "";
    assert.match(code, /^[A-Z0-9]{6}$/);
    assert.equal(fake.authorizations.get(code)?.amountMinor, 2399n);
    const call = fake.authorizeCalls.find((c) => c.idempotencyKey === key);
    assert.deepEqual(
      [call?.card?.number, call?.card?.expMonth, call?.card?.expYear],
      ["4242424242424242", exp.month, exp.year],
    );
    await screenshot(page, "03-approved");
    await page.close();
  });

  test("client-side checks: nothing is sent until the card passes Luhn and the expiry is in the future", async () => {
    const page = await openForm();
    const calls = fake.authorizeCalls.length;
    await page.getByRole("button", { name: /^Pay / }).click();
    // Every field is flagged, the summary is announced, the first bad field has focus.
    const summary = page.getByRole("alert");
    await summary.getByText("There are 4 problems").waitFor();
    assert.equal(await page.getByLabel("Name on card").getAttribute("aria-invalid"), "true");
    assert.equal(await focusedId(page), "cardholderName");
    await fillCard(page, { ...alice("4242424242424241"), expiry: "0120" });
    await page.getByRole("button", { name: /^Pay / }).click();
    await page.locator("#cardNumber-error").getByText("This card number is not valid").waitFor();
    await page.locator("#expiry-error").getByText("This card has expired.").waitFor();
    assert.equal(await page.getByLabel("Card number").getAttribute("aria-invalid"), "true");
    assert.match(page.url(), /payment\.html$/);
    await screenshot(page, "04-client-side-errors");
    // Fixing a field clears its error as the shopper types.
    await page.getByLabel("Card number").fill("");
    await page.getByLabel("Card number").pressSequentially("4242424242424242");
    assert.equal(await page.locator("#cardNumber-error").textContent(), "");
    assert.equal(fake.authorizeCalls.length, calls);
    await page.close();
  });

  test("the form works by keyboard alone", async () => {
    const page = await openForm();
    await page.getByLabel("Name on card").focus();
    await page.keyboard.type("Kim Keyboard");
    await page.keyboard.press("Tab");
    await page.keyboard.type("4242424242424242");
    await page.keyboard.press("Tab");
    await page.keyboard.type(exp.typed);
    await page.keyboard.press("Tab");
    await page.keyboard.type("737");
    await page.keyboard.press("Tab");
    assert.equal(await focusedId(page), "pay-button");
    await Promise.all([page.waitForURL("**/make-payment"), page.keyboard.press("Enter")]);
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    await page.close();
  });

  for (const [reason, view] of Object.entries(DECLINES)) {
    test(`decline ${reason}: the shopper reads why and what to do`, async () => {
      const page = await openForm();
      await fillCard(page, alice(FAKE_CARDS[reason as keyof typeof FAKE_CARDS]));
      await pay(page);
      await page.getByRole("heading", { name: view.title }).waitFor();
      assert.match((await page.locator("#decline-message").textContent()) ?? "", view.text);
      assert.equal(await page.locator("[data-outcome]").getAttribute("data-reason"), reason);
      await screenshot(page, `05-declined-${reason}`);
      await page.close();
    });
  }

  test("double-submit authorizes once: a double-click without JavaScript, a reload that re-posts, Back and submit again", async () => {
    // Without JavaScript nothing disables the button: both clicks post the form.
    const noJs = await browser.newContext({ ...DESKTOP, javaScriptEnabled: false });
    const page = await openForm(noJs);
    await page.getByLabel("Name on card").fill("Dora Double");
    await page.getByLabel("Card number").fill("4242 4242 4242 4242");
    await page.getByLabel("Expiry date").fill(`${exp.typed.slice(0, 2)}/${exp.typed.slice(2)}`);
    await page.getByLabel("Security code").fill("737");
    const key = await attemptKeyOf(page);
    const posts = () => checkout.find((l) => l.msg === "http" && l.path === "/make-payment").length;
    const postsBefore = posts();
    await Promise.all([page.waitForURL("**/make-payment"), page.getByRole("button", { name: /^Pay / }).dblclick()]);
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    const code = await page.locator("#auth-code").textContent();
    // A reload of the result page posts the same form again.
    await page.reload();
    await page.getByRole("heading", { name: "Payment approved" }).waitFor();
    assert.equal(await page.locator("#auth-code").textContent(), code);
    await page.locator("#duplicate-note").waitFor();
    await screenshot(page, "06-double-submit-already-paid");
    // Back to the form (same hidden key) and pay again.
    await page.goBack();
    assert.equal(await attemptKeyOf(page), key);
    await Promise.all([page.waitForURL("**/make-payment"), page.getByRole("button", { name: /^Pay / }).click()]);
    assert.equal(await page.locator("#auth-code").textContent(), code);
    // The browser really did post the attempt several times; the gateway saw it once.
    for (let i = 0; i < 200 && posts() < postsBefore + 4; i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(posts() >= postsBefore + 3, `expected at least 3 posts of the form, saw ${posts() - postsBefore}`);
    assert.equal(fake.authorizeCalls.filter((c) => c.idempotencyKey === key).length, 1);
    assert.equal([...fake.authorizations.values()].filter((a) => a.authCode === code).length, 1);
    await noJs.close();
  });

  test("double-submit with JavaScript: the button locks after the first click; two posts in flight still authorize once", async () => {
    const page = await openForm();
    await fillCard(page, alice());
    const key = await attemptKeyOf(page);
    const release = fake.holdAuthorizations();
    // Two posts of the same form from the page, both in flight before the gateway answers.
    // A string, not a function: the test's TypeScript loader would wrap a function in helpers the page lacks.
    const both = page.evaluate(`(() => {
      const form = document.getElementById("pay-form");
      const send = () => fetch("/make-payment", { method: "POST", body: new URLSearchParams(new FormData(form)), headers: { accept: "application/json" } }).then((r) => r.json());
      return Promise.all([send(), send()]);
    })()`);
    for (let i = 0; i < 400 && fake.heldCount === 0; i++) await new Promise((r) => setTimeout(r, 10));
    release();
    type Answer = { status: string; authCode: string };
    const [a, b] = (await both) as [Answer, Answer];
    assert.deepEqual([a.status, b.status], ["approved", "approved"]);
    assert.equal(a.authCode, b.authCode);
    // And the real button: a double-click sends the form once, then shows the same approval.
    await Promise.all([page.waitForURL("**/make-payment"), page.getByRole("button", { name: /^Pay / }).dblclick()]);
    assert.equal(await page.locator("#auth-code").textContent(), a.authCode);
    assert.equal(fake.authorizeCalls.filter((c) => c.idempotencyKey === key).length, 1);
    await page.close();
  });

  test("responsive: the form fits a phone screen without sideways scrolling", async () => {
    const phone = await browser.newContext(PHONE);
    const page = await openForm(phone);
    const overflow = await horizontalOverflow(page);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than the screen`);
    const box = await page.getByRole("button", { name: /^Pay / }).boundingBox();
    assert.ok(box && box.height >= 44, "a thumb-sized pay button");
    await screenshot(page, "07-phone-form");
    await phone.close();
  });

  test("the merchant page lists the authorizations and settles them on demand", async () => {
    // Without the merchant's login the back office is a 401 challenge and shows nothing
    // (headless Chromium turns an unanswered challenge into a navigation error).
    const refused = await fetch(`${url}/merchant`);
    assert.equal(refused.status, 401);
    assert.doesNotMatch(await refused.text(), /Settle now/);
    // The merchant signs in with the shop's own login (HTTP Basic).
    const merchant = await browser.newContext({
      ...DESKTOP,
      httpCredentials: { username: FAKE_MERCHANT.username, password: FAKE_MERCHANT.password },
    });
    const page = await merchant.newPage();
    await page.goto(`${url}/merchant`);
    await screenshot(page, "08-merchant-before-settle");
    await Promise.all([page.waitForURL("**/merchant"), page.getByRole("button", { name: "Settle now" }).click()]);
    await page.locator("#settlements tbody tr[data-settlement]").first().waitFor();
    assert.match((await page.locator("#settlements tbody tr[data-settlement]").first().textContent()) ?? "", /done/);
    assert.equal(fake.settleCalls.length, 1);
    const captured = [...fake.authorizations.values()].filter((a) => a.status === "captured").length;
    assert.equal(captured, fake.settleCalls[0]!.items.length);
    await page.locator("#settlements details summary").first().click();
    await screenshot(page, "09-merchant-after-settle");
    await merchant.close();
    // The checkout's ops port counts its calls to the gateway.
    const scraped = await (await fetch(`http://127.0.0.1:${checkout.metricsPort}/metrics`)).text();
    assert.match(
      scraped,
      /paygate_rpc_client_requests_total\{[^}]*method="paygate\.gateway\.v1\.CardService\/SettleBatch"[^}]*\} 1/,
    );
  });
});
