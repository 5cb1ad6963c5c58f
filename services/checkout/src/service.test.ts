// The checkout as shoppers and the merchant use it — real HTTP, the real
// store, the real gateway client over mTLS — against a fake gateway
// CardService (test-only) whose answers are scripted by card number.
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { FAKE_CARDS, FAKE_MERCHANT, FakeCardGateway, testCerts, tlsFilesFor } from "@paygate/testkit";
import { createCheckoutApp, type CheckoutApp } from "./app.js";
import { loadConfig } from "./config.js";
import { DECLINE_CODES, describeDecline } from "./domain/declines.js";

const logLines: string[] = [];
const logger = pino(
  { level: "info", base: { service: "checkout" } },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  }),
);

let n = 0;
const newKey = () => `test-attempt-${process.pid}-${++n}-${Date.now()}`;
const card = (number: string = FAKE_CARDS.approved, extra: Record<string, string> = {}) => ({
  cardholderName: "Alice Customer",
  cardNumber: number,
  expiry: "04/40",
  cvc: "737",
  ...extra,
});

describe("checkout against a fake gateway", () => {
  let fake: FakeCardGateway;
  let app: CheckoutApp;
  let base = "";
  let dir = "";

  before(async () => {
    const certs = testCerts();
    fake = await FakeCardGateway.start({ certs });
    dir = mkdtempSync(join(tmpdir(), "checkout-svc-"));
    const tls = tlsFilesFor(certs, "checkout");
    const config = loadConfig({
      CHECKOUT_PORT: "0",
      CHECKOUT_DATA_DIR: dir,
      GATEWAY_URL: fake.url,
      TLS_CA_FILE: tls.caFile,
      TLS_CERT_FILE: tls.certFile,
      TLS_KEY_FILE: tls.keyFile,
      CHECKOUT_MERCHANT_USERNAME: FAKE_MERCHANT.username,
      CHECKOUT_MERCHANT_PASSWORD: FAKE_MERCHANT.password,
      CHECKOUT_MERCHANT_ACCOUNT: FAKE_MERCHANT.accountId,
      SETTLEMENT_INTERVAL_MS: "0",
    });
    app = createCheckoutApp(config, logger);
    base = `http://127.0.0.1:${await app.listen()}`;
  });

  after(async () => {
    await app?.close(100);
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
    // Not one log line of the whole run carries a full card number or a CVC.
    assert.ok(logLines.length > 20);
    for (const line of logLines) {
      for (const number of Object.values(FAKE_CARDS))
        assert.ok(!line.includes(number), `card number in a log line: ${line}`);
      assert.ok(!/"cvc"\s*:\s*"\d/.test(line) && !line.includes('"737"'), `CVC in a log line: ${line}`);
    }
  });

  beforeEach(() => {
    fake.outage = undefined;
  });

  // The back office (/merchant, POST /settle) takes the merchant's own login, as HTTP Basic.
  const merchantAuth = () => ({
    authorization: `Basic ${Buffer.from(`${FAKE_MERCHANT.username}:${FAKE_MERCHANT.password}`).toString("base64")}`,
  });
  const backOffice = (path: string) => (path === "/settle" || path.startsWith("/merchant") ? merchantAuth() : {});
  const postJson = (path: string, body: unknown) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...backOffice(path) },
      body: JSON.stringify(body),
    });
  const postForm = (path: string, body: Record<string, string>) =>
    fetch(`${base}${path}`, {
      method: "POST",
      headers: backOffice(path),
      body: new URLSearchParams(body),
      redirect: "manual",
    });

  test("GET /payment.html: the form, a fresh attempt key each time, labels, a live error region, no outside assets", async () => {
    const res = await fetch(`${base}/payment.html`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/html/);
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /form-action 'self'/);
    const html = await res.text();
    const key = /name="idempotencyKey" value="([^"]+)"/.exec(html)?.[1];
    assert.ok(key);
    const again = await (await fetch(`${base}/payment.html`)).text();
    assert.notEqual(/name="idempotencyKey" value="([^"]+)"/.exec(again)?.[1], key);
    for (const id of ["cardholderName", "cardNumber", "expiry", "cvc"]) {
      assert.match(html, new RegExp(`<label for="${id}">`));
      assert.match(html, new RegExp(`id="${id}"[^>]*aria-describedby="[^"]*${id}-error`));
    }
    assert.match(html, /role="alert" aria-live="assertive"/);
    assert.match(html, /autocomplete="cc-number"/);
    assert.match(html, /\$23\.99/);
    assert.doesNotMatch(html, /\b(src|href)="(https?:)?\/\//, "no external assets");
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    assert.ok(nonce && html.includes(`<script nonce="${nonce}">`) && html.includes(`<style nonce="${nonce}">`));
  });

  test("approve (form post): the success page with the auth code; the amount is the cart's, not the browser's", async () => {
    const key = newKey();
    const res = await postForm("/make-payment", {
      idempotencyKey: key,
      ...card("4242 4242 4242 4242"),
      amountMinor: "1",
    });
    assert.equal(res.status, 200);
    const html = await res.text();
    const code = /id="auth-code">([A-Z0-9]{6})</.exec(html)?.[1];
    assert.ok(code, html);
    assert.match(html, /Payment approved/);
    assert.match(html, /•••• 4242/);
    const auth = fake.authorizations.get(code);
    assert.equal(auth?.amountMinor, 2399n);
    const call = fake.authorizeCalls.find((c) => c.idempotencyKey === key);
    assert.deepEqual(
      [call?.merchantAccountId, call?.card?.expMonth, call?.card?.expYear, call?.currency],
      [FAKE_MERCHANT.accountId, 4, 2040, "USD"],
    );
  });

  test("approve (JSON): JSON back, expiry also as expMonth/expYear", async () => {
    const res = await postJson("/make-payment", {
      idempotencyKey: newKey(),
      cardholderName: "Bob",
      cardNumber: FAKE_CARDS.approved,
      expMonth: 12,
      expYear: 2039,
      cvc: "737",
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as {
      status: string;
      authCode: string;
      order: { amountMinor: string; cardLast4: string };
    };
    assert.equal(body.status, "approved");
    assert.match(body.authCode, /^[A-Z0-9]{6}$/);
    assert.deepEqual([body.order.amountMinor, body.order.cardLast4], ["2399", "4242"]);
  });

  test("each decline code reaches the shopper as its human message (JSON and HTML)", async () => {
    for (const reason of DECLINE_CODES) {
      const number = FAKE_CARDS[reason];
      const json = await postJson("/make-payment", { idempotencyKey: newKey(), ...card(number) });
      assert.equal(json.status, 402, reason);
      const body = (await json.json()) as { status: string; reason: string; message: string };
      assert.deepEqual([body.status, body.reason, body.message], ["declined", reason, describeDecline(reason).message]);
      const page = await postForm("/make-payment", { idempotencyKey: newKey(), ...card(number) });
      assert.equal(page.status, 402);
      const html = await page.text();
      assert.ok(html.includes(`data-reason="${reason}"`), reason);
      assert.ok(html.includes(describeDecline(reason).message.replace(/'/g, "&#39;")), `${reason} message in the page`);
    }
  });

  test("server-side validation: clear field errors, the form again with the same key, nothing sent", async () => {
    const before = fake.authorizeCalls.length;
    const key = newKey();
    const res = await postForm("/make-payment", {
      idempotencyKey: key,
      cardholderName: "",
      cardNumber: "4242 4242 4242 4241",
      expiry: "01/20",
      cvc: "1",
    });
    assert.equal(res.status, 422);
    const html = await res.text();
    assert.match(html, /There are 4 problems/);
    assert.match(html, /id="cardNumber-error">This card number is not valid/);
    assert.match(html, /id="cardNumber"[^>]*aria-invalid="true"[^>]*value="4242 4242 4242 4241"/);
    assert.ok(html.includes(`name="idempotencyKey" value="${key}"`));
    assert.doesNotMatch(html, /id="cvc"[^>]*value="1"/, "the CVC is never echoed back");
    const json = await postJson("/make-payment", {
      idempotencyKey: key,
      cardholderName: "A B",
      cardNumber: "42",
      expiry: "13/30",
      cvc: "12345",
    });
    assert.equal(json.status, 422);
    assert.deepEqual(Object.keys(((await json.json()) as { errors: object }).errors).sort(), [
      "cardNumber",
      "cvc",
      "expiry",
    ]);
    assert.equal((await postJson("/make-payment", { ...card() })).status, 422, "no key: no payment");
    assert.equal(fake.authorizeCalls.length, before);
  });

  test("double submit: two posts of one attempt in flight together authorize once; a later reload re-post shows the same code", async () => {
    const key = newKey();
    const release = fake.holdAuthorizations();
    const first = postForm("/make-payment", { idempotencyKey: key, ...card() });
    const second = postForm("/make-payment", { idempotencyKey: key, ...card() });
    // Bounded wait for the first call to reach the fake (the second queues in the checkout).
    for (let i = 0; i < 400 && fake.heldCount === 0; i++) await new Promise((r) => setTimeout(r, 10));
    release();
    const pages = await Promise.all([first, second].map(async (p) => (await p).text()));
    const codes = pages.map((h) => /id="auth-code">([A-Z0-9]{6})</.exec(h)?.[1]);
    assert.ok(codes[0]);
    assert.equal(codes[1], codes[0]);
    assert.match(pages[1]!, /already paid/);
    const reload = await (await postForm("/make-payment", { idempotencyKey: key, ...card() })).text();
    assert.equal(/id="auth-code">([A-Z0-9]{6})</.exec(reload)?.[1], codes[0]);
    assert.equal(fake.authorizeCalls.filter((c) => c.idempotencyKey === key).length, 1);
  });

  test("no verdict (gateway unreachable): 503 and a resubmission resends the same key; other details are refused meanwhile", async () => {
    const key = newKey();
    fake.outage = new ConnectError("connection reset", Code.Unavailable);
    const down = await postJson("/make-payment", { idempotencyKey: key, ...card() });
    assert.equal(down.status, 503);
    assert.equal(((await down.json()) as { reason: string }).reason, "gateway_unreachable");
    fake.outage = undefined;
    const other = await postJson("/make-payment", {
      idempotencyKey: key,
      ...card(FAKE_CARDS.approved, { cardholderName: "Someone Else" }),
    });
    assert.equal(other.status, 409);
    const ok = await postJson("/make-payment", { idempotencyKey: key, ...card() });
    assert.equal(ok.status, 200);
    assert.equal(fake.authorizeCalls.filter((c) => c.idempotencyKey === key).length, 2);
  });

  test("bureau_unavailable is not a decline: the shopper is told to try again", async () => {
    const res = await postForm("/make-payment", { idempotencyKey: newKey(), ...card(FAKE_CARDS.bureau_unavailable) });
    assert.equal(res.status, 503);
    assert.match(await res.text(), /submit the same details again/);
  });

  test("an expired merchant session is renewed once, transparently", async () => {
    const logins = fake.logins.length;
    fake.expireSessions();
    const res = await postJson("/make-payment", { idempotencyKey: newKey(), ...card() });
    assert.equal(res.status, 200);
    assert.equal(fake.logins.length, logins + 1);
  });

  test("settle: POST /settle sends every approved, unsettled authorization as one batch; /merchant shows per-item results", async () => {
    // A voided authorization fails its item only.
    const voidedKey = newKey();
    const voided = (await (await postJson("/make-payment", { idempotencyKey: voidedKey, ...card() })).json()) as {
      authCode: string;
    };
    fake.void(voided.authCode);
    const approvedCodes = [...fake.authorizations.values()]
      .filter((a) => a.status === "approved")
      .map((a) => a.authCode);
    const callsBefore = fake.settleCalls.length;
    const res = await postJson("/settle", {});
    assert.equal(res.status, 200);
    const run = (await res.json()) as { batches: Array<{ state: string; itemCount: number }> };
    assert.equal(fake.settleCalls.length, callsBefore + 1);
    const sent = fake.settleCalls.at(-1)!;
    assert.deepEqual(sent.items.map((i) => i.authCode).sort(), [...approvedCodes, voided.authCode].sort());
    assert.deepEqual(
      run.batches.map((b) => [b.state, b.itemCount]),
      [["done", approvedCodes.length + 1]],
    );

    const merchant = (await (await fetch(`${base}/merchant?format=json`, { headers: merchantAuth() })).json()) as {
      orders: Array<{ authCode: string | null; settleState: string; settleReason: string | null }>;
      settlements: Array<{ items: Array<{ authCode: string; status: string; reason: string | null }> }>;
    };
    const v = merchant.orders.find((o) => o.authCode === voided.authCode);
    assert.deepEqual([v?.settleState, v?.settleReason], ["failed", "authorization_voided"]);
    for (const code of approvedCodes)
      assert.equal(merchant.orders.find((o) => o.authCode === code)?.settleState, "captured");
    assert.equal(merchant.settlements[0]?.items.find((i) => i.authCode === voided.authCode)?.status, "failed");

    // Nothing left: the next run sends nothing. A form post redirects to the merchant page.
    const form = await postForm("/settle", {});
    assert.equal(form.status, 303);
    assert.equal(form.headers.get("location"), "/merchant");
    assert.equal(fake.settleCalls.length, callsBefore + 1);
    const page = await (await fetch(`${base}/merchant`, { headers: merchantAuth() })).text();
    assert.match(page, /Settle now/);
    assert.ok(page.includes(voided.authCode));
  });

  test("the back office needs the merchant's login: 401 without it or with a wrong one, 403 for a cross-site post; nothing settles", async () => {
    await postJson("/make-payment", { idempotencyKey: newKey(), ...card() });
    const callsBefore = fake.settleCalls.length;
    const basic = (user: string, password: string) => ({
      authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
    });
    const refused = [
      await fetch(`${base}/merchant`),
      await fetch(`${base}/merchant?format=json`, { headers: basic(FAKE_MERCHANT.username, "wrong") }),
      await fetch(`${base}/merchant`, { headers: basic("someone-else", FAKE_MERCHANT.password) }),
      await fetch(`${base}/merchant`, { headers: { authorization: "Bearer abc" } }),
      await fetch(`${base}/settle`, { method: "POST", redirect: "manual" }),
      await fetch(`${base}/settle`, {
        method: "POST",
        headers: basic(FAKE_MERCHANT.username, `${FAKE_MERCHANT.password}x`),
        redirect: "manual",
      }),
    ];
    for (const r of refused) {
      assert.equal(r.status, 401);
      assert.match(r.headers.get("www-authenticate") ?? "", /^Basic realm=/);
      assert.doesNotMatch(await r.text(), /authCode|Settle now/);
    }
    const crossSiteHeaders: Record<string, string>[] = [
      { origin: "https://evil.example" },
      { origin: "null" },
      { "sec-fetch-site": "cross-site", origin: base },
      { "sec-fetch-site": "same-site" },
    ];
    for (const headers of crossSiteHeaders) {
      const crossSite = await fetch(`${base}/settle`, {
        method: "POST",
        headers: { ...merchantAuth(), ...headers },
        redirect: "manual",
      });
      assert.equal(crossSite.status, 403, JSON.stringify(headers));
    }
    assert.equal(fake.settleCalls.length, callsBefore, "no refused request settled anything");
    // The shop's own page posting back (same origin) is fine.
    const own = await fetch(`${base}/settle`, {
      method: "POST",
      headers: { ...merchantAuth(), origin: base },
      redirect: "manual",
    });
    assert.equal(own.status, 303);
    assert.equal(fake.settleCalls.length, callsBefore + 1);
    // A browser on the shop's own page under no-referrer: Origin null, Sec-Fetch-Site same-origin.
    const ownPage = await fetch(`${base}/settle`, {
      method: "POST",
      headers: { ...merchantAuth(), origin: "null", "sec-fetch-site": "same-origin" },
      redirect: "manual",
    });
    assert.equal(ownPage.status, 303);
  });

  test("HTTP edges: unknown path 404, wrong method 405, oversized body 413, other content types 415", async () => {
    assert.equal((await fetch(`${base}/nope`)).status, 404);
    assert.equal((await fetch(`${base}/make-payment`)).status, 405);
    assert.equal(
      (await postJson("/make-payment", { idempotencyKey: newKey(), cardholderName: "x".repeat(40_000) })).status,
      413,
    );
    assert.equal(
      (await fetch(`${base}/make-payment`, { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" }))
        .status,
      415,
    );
    assert.equal(
      (
        await fetch(`${base}/make-payment`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{",
        })
      ).status,
      400,
    );
  });
});
