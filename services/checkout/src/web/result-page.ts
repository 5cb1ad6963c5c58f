// What the shopper sees after POST /make-payment: approved with the
// authorization code, or why not and what to do next.
import type { Order } from "../domain/ports.js";
import { describeDecline } from "../domain/declines.js";
import { RESULT_BEHAVIOUR } from "./client-script.js";
import { esc, money, page } from "./html.js";

function facts(rows: ReadonlyArray<[string, string, string?]>): string {
  return `<dl class="facts">${rows.map(([k, v, cls]) => `<dt>${esc(k)}</dt><dd${cls ? ` class="${cls}"` : ""}>${v}</dd>`).join("")}</dl>`;
}

const shopAgain = `<a class="button" href="/payment.html">Back to the shop</a>`;

export function approvedPage(order: Order, duplicate: boolean, nonce: string): string {
  const body = `<div class="result panel" data-outcome="approved">
  <div class="badge ok" aria-hidden="true">✓</div>
  <h1>Payment approved</h1>
  <p>Thank you, ${esc(order.cardholderName)}. Your order is confirmed.</p>
  ${duplicate ? `<p class="alert ok-note" id="duplicate-note">This order was already paid. You have not been charged again.</p>` : ""}
  ${facts([
    ["Authorization code", `<span class="code" id="auth-code">${esc(order.authCode ?? "")}</span>`],
    ["Order", esc(order.orderId)],
    ["Amount", `<span id="amount">${esc(money(order.amountMinor, order.currency))}</span>`],
    ["Card", `•••• ${esc(order.cardLast4)}`],
  ])}
  <div class="actions">${shopAgain}</div>
</div>`;
  return page({ title: "Payment approved", nonce, body });
}

export function declinedPage(order: Order, reason: string, nonce: string): string {
  const view = describeDecline(reason);
  const back =
    view.next === "fix_details"
      ? `<a class="button" href="/payment.html" data-back>Check your card details</a>`
      : `<a class="button" href="/payment.html" data-back>Try another card</a>`;
  const body = `<div class="result panel" data-outcome="declined" data-reason="${esc(reason)}">
  <div class="badge bad" aria-hidden="true">!</div>
  <h1 id="result-title">${esc(view.title)}</h1>
  <p id="decline-message">${esc(view.message)}</p>
  ${facts([
    ["Order", esc(order.orderId)],
    ["Amount", esc(money(order.amountMinor, order.currency))],
    ["Card", `•••• ${esc(order.cardLast4)}`],
    ["Decline code", `<code>${esc(reason)}</code>`],
  ])}
  <div class="actions">${back}</div>
</div>`;
  return page({ title: view.title, nonce, body, script: RESULT_BEHAVIOUR });
}

export function problemPage(options: {
  title: string;
  message: string;
  nonce: string;
  outcome: string;
  reason?: string;
  backToForm: boolean;
}): string {
  const action = options.backToForm
    ? `<a class="button" href="/payment.html" data-back>Back to the payment form</a>`
    : `<a class="button" href="/payment.html">Start a new order</a>`;
  const body = `<div class="result panel" data-outcome="${esc(options.outcome)}"${options.reason ? ` data-reason="${esc(options.reason)}"` : ""}>
  <div class="badge bad" aria-hidden="true">!</div>
  <h1 id="result-title">${esc(options.title)}</h1>
  <p id="decline-message">${esc(options.message)}</p>
  <div class="actions">${action}</div>
</div>`;
  return page({ title: options.title, nonce: options.nonce, body, script: RESULT_BEHAVIOUR });
}

export function notFoundPage(nonce: string): string {
  return page({
    title: "Not found",
    nonce,
    body: `<div class="result panel"><h1>Page not found</h1><div class="actions">${shopAgain}</div></div>`,
  });
}
