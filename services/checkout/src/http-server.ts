// The shop's HTTP side (plain HTTP: it is the merchant's web page; the hop to
// the gateway is the mTLS one). Form posts get HTML pages, JSON posts get
// JSON; both go through the same use cases.
//
//   GET  /payment.html   the cart and the card form, with a fresh attempt key
//   POST /make-payment   validate -> Authorize (once per attempt key) -> result
//   POST /settle         run the settlement job now              } the merchant's back office:
//   GET  /merchant       orders, settlement batches, per-item      } HTTP Basic with the merchant's
//                        results (?format=json)                    } own login (401 otherwise)
//   GET  /healthz
import http from "node:http";
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import type { Logger } from "@paygate/rpc";
import type { Cart } from "./domain/cart.js";
import type { CardInput, FieldErrors } from "./domain/card.js";
import type { Checkout, PayOutcome } from "./domain/checkout.js";
import { describeDecline } from "./domain/declines.js";
import type { CheckoutStore, Order, Settlement, SettlementItem } from "./domain/ports.js";
import type { SettlementJob, SettlementRun } from "./domain/settlement.js";
import { securityHeaders } from "./web/html.js";
import { merchantPage } from "./web/merchant-page.js";
import { paymentPage } from "./web/payment-page.js";
import { approvedPage, declinedPage, notFoundPage, problemPage } from "./web/result-page.js";

export interface CheckoutServerDeps {
  readonly checkout: Checkout;
  readonly settlement: SettlementJob;
  readonly store: CheckoutStore;
  readonly cart: Cart;
  readonly merchantAccountId: string;
  readonly settlementIntervalMs: number;
  /** Who may open /merchant and POST /settle (HTTP Basic): the merchant's own gateway login. */
  readonly backOffice: { readonly username: string; readonly password: string };
  readonly logger: Logger;
  readonly bodyMaxBytes?: number;
  /** Rows shown on /merchant. */
  readonly listMax?: number;
  readonly newAttemptKey?: () => string;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest();

/** Constant-time on the digests, so neither length nor content leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** The back office's credentials check: `Authorization: Basic base64(user:password)`. */
export function backOfficeAllowed(header: string | undefined, expected: CheckoutServerDeps["backOffice"]): boolean {
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(header ?? "");
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return false;
  // Both compared, always: a wrong username costs the same time as a wrong password.
  const userOk = sameSecret(decoded.slice(0, colon), expected.username);
  const passwordOk = sameSecret(decoded.slice(colon + 1), expected.password);
  return userOk && passwordOk;
}

/**
 * A browser's cross-site form post is refused. Browsers say where a request
 * comes from in Sec-Fetch-Site; without it, Origin must name this host. Our
 * own pages send `Referrer-Policy: no-referrer`, under which a browser's
 * same-origin post says `Origin: null`, so Sec-Fetch-Site is what decides for
 * them. A client that sends neither (curl, scripts) is not a browser.
 */
function sameOrigin(req: http.IncomingMessage): boolean {
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined) return site === "same-origin" || site === "none";
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return origin !== "null" && new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

class HttpProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Body =
  | { kind: "form"; fields: Record<string, string> }
  | { kind: "json"; fields: Record<string, unknown> }
  | { kind: "none" };

async function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Body> {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new HttpProblem(413, `request body over ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.length === 0 && type === "") return { kind: "none" };
  if (type === "application/x-www-form-urlencoded") {
    const fields: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(text)) if (!(k in fields)) fields[k] = v;
    return { kind: "form", fields };
  }
  if (type === "application/json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new HttpProblem(400, "the body is not valid JSON");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new HttpProblem(400, "the body must be a JSON object");
    return { kind: "json", fields: parsed as Record<string, unknown> };
  }
  if (text.length === 0) return { kind: "none" };
  throw new HttpProblem(415, "send application/x-www-form-urlencoded or application/json");
}

const str = (v: unknown): string => (typeof v === "string" ? v : typeof v === "number" ? String(v) : "");

/** JSON clients may send expiry as "MM/YY" or as expMonth + expYear. */
function cardInputOf(fields: Record<string, unknown>): CardInput {
  const expiry =
    str(fields.expiry) ||
    (fields.expMonth !== undefined && fields.expYear !== undefined
      ? `${str(fields.expMonth)}/${str(fields.expYear)}`
      : "");
  return {
    cardholderName: str(fields.cardholderName),
    cardNumber: str(fields.cardNumber),
    expiry,
    cvc: str(fields.cvc),
  };
}

function wantsJson(req: http.IncomingMessage, url: URL, body?: Body): boolean {
  if (body?.kind === "json") return true;
  if (url.searchParams.get("format") === "json") return true;
  const accept = req.headers.accept ?? "";
  return accept.includes("application/json") && !accept.includes("text/html");
}

export function orderJson(o: Order) {
  return {
    orderId: o.orderId,
    attemptKey: o.attemptKey,
    state: o.state,
    authCode: o.authCode,
    reason: o.reason,
    amountMinor: o.amountMinor.toString(),
    currency: o.currency,
    cardLast4: o.cardLast4,
    createdAt: new Date(o.createdAtMs).toISOString(),
    settleState: o.settleState,
    settlementId: o.settlementId,
    capturedMinor: o.capturedMinor.toString(),
    settleReason: o.settleReason,
    // What the gateway's webhooks last said (null until one did).
    authStatus: o.authStatus,
    refundedMinor: o.refundedMinor.toString(),
  };
}

export function settlementJson(s: Settlement, items: readonly SettlementItem[]) {
  return {
    settlementId: s.settlementId,
    idempotencyKey: s.idempotencyKey,
    state: s.state,
    itemCount: s.itemCount,
    totalMinor: s.totalMinor.toString(),
    capturedMinor: s.capturedMinor.toString(),
    currency: s.currency,
    attempts: s.attempts,
    lastError: s.lastError,
    gatewayBatchId: s.gatewayBatchId,
    createdAt: new Date(s.createdAtMs).toISOString(),
    finishedAt: s.finishedAtMs === null ? null : new Date(s.finishedAtMs).toISOString(),
    items: items.map((i) => ({
      orderId: i.orderId,
      authCode: i.authCode,
      amountMinor: i.amountMinor.toString(),
      status: i.status,
      reason: i.reason,
      capturedMinor: i.capturedMinor.toString(),
      transactionId: i.transactionId,
    })),
  };
}

function runJson(run: SettlementRun) {
  return {
    batches: run.batches.map((b) => ({
      settlementId: b.settlementId,
      state: b.state,
      itemCount: b.itemCount,
      capturedMinor: b.capturedMinor.toString(),
      lastError: b.lastError,
    })),
    openAfter: run.openAfter,
  };
}

interface Reply {
  readonly status: number;
  readonly json: unknown;
  readonly html: (nonce: string) => string;
  readonly facts: Record<string, unknown>;
}

function paymentReply(outcome: PayOutcome, deps: CheckoutServerDeps, attemptKey: string, card: CardInput): Reply {
  switch (outcome.kind) {
    case "invalid":
      return invalidReply(outcome, deps, attemptKey, card);
    case "approved":
      return approvedReply(outcome);
    case "declined":
      return declinedReply(outcome);
    case "unavailable":
      return unavailableReply(outcome);
    case "conflict":
      return conflictReply(outcome);
    case "too_many_retries":
      return tooManyRetriesReply(outcome);
    case "busy":
      return busyReply();
  }
}

/** The form again, with the customer's values and what is wrong with them. */
function invalidReply(
  outcome: Extract<PayOutcome, { kind: "invalid" }>,
  deps: CheckoutServerDeps,
  attemptKey: string,
  card: CardInput,
): Reply {
  const form = (errors: FieldErrors) => (nonce: string) =>
    paymentPage({
      cart: deps.cart,
      totalMinor: deps.checkout.amountMinor,
      nonce,
      state: {
        attemptKey,
        values: { cardholderName: card.cardholderName, cardNumber: card.cardNumber, expiry: card.expiry },
        errors,
      },
    });
  return {
    status: 422,
    json: { status: "invalid", errors: outcome.errors },
    html: form(outcome.errors),
    facts: { outcome: "invalid", fields: Object.keys(outcome.errors) },
  };
}

function approvedReply(outcome: Extract<PayOutcome, { kind: "approved" }>): Reply {
  const o = outcome.order;
  return {
    status: 200,
    json: { status: "approved", authCode: o.authCode, duplicate: outcome.duplicate, order: orderJson(o) },
    html: (nonce) => approvedPage(o, outcome.duplicate, nonce),
    facts: { outcome: "approved", orderId: o.orderId, authCode: o.authCode, duplicate: outcome.duplicate },
  };
}

function declinedReply(outcome: Extract<PayOutcome, { kind: "declined" }>): Reply {
  const o = outcome.order;
  const view = describeDecline(outcome.reason);
  return {
    status: 402,
    json: {
      status: "declined",
      reason: outcome.reason,
      title: view.title,
      message: view.message,
      duplicate: outcome.duplicate,
      order: orderJson(o),
    },
    html: (nonce) => declinedPage(o, outcome.reason, nonce),
    facts: { outcome: "declined", orderId: o.orderId, reason: outcome.reason, duplicate: outcome.duplicate },
  };
}

/** The gateway did not answer: the order's outcome is not known yet, the customer may resubmit. */
function unavailableReply(outcome: Extract<PayOutcome, { kind: "unavailable" }>): Reply {
  const view = describeDecline(outcome.reason);
  return {
    status: 503,
    json: {
      status: "unavailable",
      reason: outcome.reason,
      title: view.title,
      message: view.message,
      order: orderJson(outcome.order),
    },
    html: (nonce) =>
      problemPage({
        title: view.title,
        message: view.message,
        nonce,
        outcome: "unavailable",
        reason: outcome.reason,
        backToForm: true,
      }),
    facts: { outcome: "unavailable", orderId: outcome.order.orderId, reason: outcome.reason },
  };
}

function conflictReply(outcome: Extract<PayOutcome, { kind: "conflict" }>): Reply {
  const message =
    "We are still confirming your previous attempt for this order. To make sure you are not charged twice, submit exactly the same card details again, or start a new order in a few minutes.";
  return {
    status: 409,
    json: { status: "conflict", message, order: orderJson(outcome.order) },
    html: (nonce) =>
      problemPage({
        title: "Previous attempt not confirmed yet",
        message,
        nonce,
        outcome: "conflict",
        backToForm: true,
      }),
    facts: { outcome: "conflict", orderId: outcome.order.orderId },
  };
}

function tooManyRetriesReply(outcome: Extract<PayOutcome, { kind: "too_many_retries" }>): Reply {
  const message = "There have been too many attempts for this order. Start a new order to try again.";
  return {
    status: 429,
    json: { status: "too_many_retries", message, order: orderJson(outcome.order) },
    html: (nonce) =>
      problemPage({ title: "Too many attempts", message, nonce, outcome: "too_many_retries", backToForm: false }),
    facts: { outcome: "too_many_retries", orderId: outcome.order.orderId },
  };
}

function busyReply(): Reply {
  const message = "The shop is very busy right now. Wait a moment and submit again: you will not be charged twice.";
  return {
    status: 503,
    json: { status: "busy", message },
    html: (nonce) => problemPage({ title: "Please try again", message, nonce, outcome: "busy", backToForm: true }),
    facts: { outcome: "busy" },
  };
}

/** One request as the route handlers see it. */
interface Exchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly url: URL;
  readonly nonce: string;
  readonly facts: Record<string, unknown>;
}

export function createCheckoutServer(deps: CheckoutServerDeps): http.Server {
  const log = deps.logger;
  const bodyMaxBytes = deps.bodyMaxBytes ?? 16 * 1024;
  const listMax = deps.listMax ?? 200;
  const newAttemptKey = deps.newAttemptKey ?? randomUUID;

  function send(
    res: http.ServerResponse,
    status: number,
    type: "html" | "json" | "text",
    body: string,
    nonce: string,
    extra: Record<string, string> = {},
  ): void {
    const headers: Record<string, string> = {
      "content-type":
        type === "html"
          ? "text/html; charset=utf-8"
          : type === "json"
            ? "application/json; charset=utf-8"
            : "text/plain; charset=utf-8",
      "cache-control": "no-store",
      ...securityHeaders(nonce),
      ...extra,
    };
    res.writeHead(status, headers);
    res.end(body);
  }

  async function handle(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    facts: Record<string, unknown>,
  ): Promise<number> {
    const url = new URL(req.url ?? "/", "http://checkout.local");
    const nonce = randomBytes(16).toString("base64");
    const route = `${req.method} ${url.pathname}`;
    const x: Exchange = { req, res, url, nonce, facts };
    if (route === "POST /settle" || route === "GET /merchant") {
      const refused = backOfficeRefusal(x, route);
      if (refused !== undefined) return refused;
    }
    switch (route) {
      case "GET /":
        res.writeHead(302, { location: "/payment.html" }).end();
        return 302;
      case "GET /payment.html":
        return showPaymentForm(x);
      case "POST /make-payment":
        return makePayment(x);
      case "POST /settle":
        return settleNow(x);
      case "GET /merchant":
        return showMerchant(x);
      case "GET /healthz":
        send(res, 200, "text", "ok\n", nonce);
        return 200;
      default:
        return noRoute(x);
    }
  }

  /** The back office's status code when this request may not reach it (no login, or a cross-origin POST). */
  function backOfficeRefusal({ req, res, nonce, facts }: Exchange, route: string): number | undefined {
    if (!backOfficeAllowed(req.headers.authorization, deps.backOffice)) {
      facts.reason = "back_office_login_required";
      send(res, 401, "text", "The merchant's back office: sign in with the merchant's login.\n", nonce, {
        "www-authenticate": 'Basic realm="paygate merchant back office", charset="UTF-8"',
      });
      return 401;
    }
    if (route === "POST /settle" && !sameOrigin(req)) {
      facts.reason = "cross_origin_post";
      send(res, 403, "text", "Settlement can only be started from this shop's own merchant page.\n", nonce);
      return 403;
    }
    return undefined;
  }

  function showPaymentForm({ res, nonce }: Exchange): number {
    const html = paymentPage({
      cart: deps.cart,
      totalMinor: deps.checkout.amountMinor,
      nonce,
      state: { attemptKey: newAttemptKey() },
    });
    // Not "no-store": Back from the result page must restore this page with
    // its attempt key, so a resubmission is recognised, not a new order.
    send(res, 200, "html", html, nonce, { "cache-control": "private, no-cache" });
    return 200;
  }

  async function makePayment({ req, res, url, nonce, facts }: Exchange): Promise<number> {
    const body = await readBody(req, bodyMaxBytes);
    const fields: Record<string, unknown> = body.kind === "none" ? {} : body.fields;
    const attemptKey = str(fields.idempotencyKey);
    const card = cardInputOf(fields);
    const outcome = await deps.checkout.pay({ attemptKey, card });
    const reply = paymentReply(outcome, deps, attemptKey, card);
    Object.assign(facts, reply.facts);
    if (wantsJson(req, url, body)) send(res, reply.status, "json", JSON.stringify(reply.json), nonce);
    else send(res, reply.status, "html", reply.html(nonce), nonce);
    return reply.status;
  }

  async function settleNow({ req, res, url, nonce, facts }: Exchange): Promise<number> {
    const body = await readBody(req, bodyMaxBytes);
    const run = await deps.settlement.runOnce();
    facts.batches = run.batches.length;
    facts.openAfter = run.openAfter;
    if (wantsJson(req, url, body)) {
      send(res, 200, "json", JSON.stringify(runJson(run)), nonce);
      return 200;
    }
    // Post/redirect/get: a reload of the merchant page never re-runs settlement.
    res.writeHead(303, { location: "/merchant" }).end();
    return 303;
  }

  function showMerchant({ req, res, url, nonce }: Exchange): number {
    const orders = deps.store.listOrders(listMax);
    const settlements = deps.store
      .listSettlements(listMax)
      .map((s) => ({ settlement: s, items: deps.store.settlementItems(s.settlementId) }));
    if (wantsJson(req, url)) {
      send(
        res,
        200,
        "json",
        JSON.stringify({
          merchantAccountId: deps.merchantAccountId,
          orders: orders.map(orderJson),
          settlements: settlements.map((x) => settlementJson(x.settlement, x.items)),
        }),
        nonce,
      );
    } else {
      send(
        res,
        200,
        "html",
        merchantPage(
          {
            orders,
            settlements,
            merchantAccountId: deps.merchantAccountId,
            settlementIntervalMs: deps.settlementIntervalMs,
          },
          nonce,
        ),
        nonce,
      );
    }
    return 200;
  }

  /** A known path with the wrong method is 405 (with Allow); anything else is the 404 page. */
  function noRoute({ res, url, nonce }: Exchange): number {
    const known = ["/", "/payment.html", "/make-payment", "/settle", "/merchant", "/healthz"].includes(url.pathname);
    if (known) {
      send(res, 405, "text", "method not allowed\n", nonce, {
        allow: url.pathname === "/make-payment" || url.pathname === "/settle" ? "POST" : "GET",
      });
      return 405;
    }
    send(res, 404, "html", notFoundPage(nonce), nonce);
    return 404;
  }

  const server = http.createServer((req, res) => {
    const started = performance.now();
    const facts: Record<string, unknown> = {};
    const path = (req.url ?? "/").split("?")[0];
    handle(req, res, facts)
      .catch((e: unknown) => {
        const status = e instanceof HttpProblem ? e.status : 500;
        if (status === 500)
          log.error(
            { err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), path },
            "request failed",
          );
        if (!res.headersSent) {
          const json =
            (req.headers["content-type"] ?? "").includes("json") ||
            (req.headers.accept ?? "").includes("application/json");
          const message = e instanceof HttpProblem ? e.message : "internal error";
          if (json) send(res, status, "json", JSON.stringify({ status: "error", message }), "x");
          else send(res, status, "text", `${message}\n`, "x");
        } else res.destroy();
        return status;
      })
      .then((status) => {
        // One line per request; card data never reaches it (only last 4 via orders).
        log.info(
          {
            method: req.method,
            path,
            status,
            ...facts,
            durationMs: Math.round((performance.now() - started) * 10) / 10,
          },
          "http",
        );
      });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  return server;
}
