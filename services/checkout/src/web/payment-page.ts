// GET /payment.html: the cart and the card form. Also re-rendered by
// POST /make-payment when the server finds mistakes (values kept, CVC not).
import { lineTotalMinor, type Cart } from "../domain/cart.js";
import type { Field, FieldErrors } from "../domain/card.js";
import { CLIENT_BEHAVIOUR, CLIENT_VALIDATORS } from "./client-script.js";
import { esc, money, page } from "./html.js";

export interface PaymentFormState {
  readonly attemptKey: string;
  readonly values?: Partial<Record<"cardholderName" | "cardNumber" | "expiry", string>>;
  readonly errors?: FieldErrors;
}

const FIELD_ORDER: readonly Field[] = ["idempotencyKey", "cardholderName", "cardNumber", "expiry", "cvc"];

export function cartSummary(cart: Cart, totalMinor: bigint): string {
  const rows = cart.lines
    .map(
      (l) =>
        `<tr><td>${esc(l.name)}<br><span class="qty">Qty ${l.quantity} × ${esc(money(l.unitMinor, cart.currency))}</span></td><td class="num">${esc(money(lineTotalMinor(l), cart.currency))}</td></tr>`,
    )
    .join("\n");
  return `<aside class="summary panel" aria-labelledby="summary-title">
  <h2 id="summary-title">Order summary</h2>
  <table>
    <thead class="vh"><tr><th scope="col">Item</th><th scope="col" class="num">Price</th></tr></thead>
    <tbody>
${rows}
      <tr><td>Shipping</td><td class="num">${esc(money(cart.shippingMinor, cart.currency))}</td></tr>
    </tbody>
    <tfoot><tr><th scope="row">Total</th><td class="num" id="order-total">${esc(money(totalMinor, cart.currency))}</td></tr></tfoot>
  </table>
</aside>`;
}

function errorSummary(errors: FieldErrors): string {
  const present = FIELD_ORDER.filter((f) => errors[f]);
  if (present.length === 0) return "";
  const head =
    present.length === 1
      ? "There is a problem with your card details:"
      : `There are ${present.length} problems with your card details:`;
  const target = (f: Field) => (f === "idempotencyKey" ? "/payment.html" : `#${f}`);
  return `<strong>${esc(head)}</strong><ul>${present.map((f) => `<li><a href="${target(f)}">${esc(errors[f])}</a></li>`).join("")}</ul>`;
}

interface InputSpec {
  readonly name: "cardholderName" | "cardNumber" | "expiry" | "cvc";
  readonly label: string;
  readonly hint?: string;
  readonly attrs: string;
}

function input(spec: InputSpec, state: PaymentFormState): string {
  const error = state.errors?.[spec.name] ?? "";
  const value = spec.name === "cvc" ? "" : (state.values?.[spec.name] ?? "");
  const described = [spec.hint ? `${spec.name}-hint` : "", `${spec.name}-error`].filter(Boolean).join(" ");
  return `<div class="field">
        <label for="${spec.name}">${esc(spec.label)}</label>
        ${spec.hint ? `<span class="hint" id="${spec.name}-hint">${esc(spec.hint)}</span>` : ""}
        <input type="text" id="${spec.name}" name="${spec.name}" ${spec.attrs} required aria-describedby="${described}"${error ? ' aria-invalid="true"' : ""} value="${esc(value)}">
        <p class="error" id="${spec.name}-error">${esc(error)}</p>
      </div>`;
}

export function paymentPage(options: {
  cart: Cart;
  totalMinor: bigint;
  nonce: string;
  state: PaymentFormState;
}): string {
  const { cart, totalMinor, state } = options;
  const amount = money(totalMinor, cart.currency);
  const body = `<h1>Checkout</h1>
<div class="layout">
${cartSummary(cart, totalMinor)}
<section class="panel" aria-labelledby="pay-title">
  <h2 id="pay-title">Pay by card</h2>
  <div id="form-errors" class="alert bad" role="alert" aria-live="assertive" tabindex="-1">${errorSummary(state.errors ?? {})}</div>
  <form id="pay-form" method="post" action="/make-payment" novalidate>
    <input type="hidden" name="idempotencyKey" value="${esc(state.attemptKey)}">
    ${input({ name: "cardholderName", label: "Name on card", attrs: 'autocomplete="cc-name" autocapitalize="words" spellcheck="false" maxlength="100"' }, state)}
    ${input({ name: "cardNumber", label: "Card number", hint: "The long number on the front of your card", attrs: 'class="mono" inputmode="numeric" autocomplete="cc-number" maxlength="23" placeholder="1234 5678 9012 3456"' }, state)}
    <div class="row">
      ${input({ name: "expiry", label: "Expiry date", hint: "MM/YY", attrs: 'class="mono" inputmode="numeric" autocomplete="cc-exp" maxlength="7" placeholder="MM/YY"' }, state)}
      ${input({ name: "cvc", label: "Security code", hint: "3 digits on the back", attrs: 'class="mono" inputmode="numeric" autocomplete="cc-csc" maxlength="4"' }, state)}
    </div>
    <button type="submit" id="pay-button">Pay ${esc(amount)}</button>
    <p id="form-status" class="fine" role="status" aria-live="polite"></p>
    <p class="fine">Your card details go straight to the payment gateway over a secure connection. This shop keeps only the last 4 digits.</p>
  </form>
</section>
</div>`;
  return page({ title: "Checkout", nonce: options.nonce, body, script: `${CLIENT_VALIDATORS}\n${CLIENT_BEHAVIOUR}` });
}
