// GET /merchant: the shop's back office — authorizations, settlement batches
// and each batch item's result, with a "Settle now" button (POST /settle).
// "At the gateway" is what its webhooks last said (expired, voided, captured,
// refunded), so the page is right without waiting for a poll.
import type { Order, Settlement, SettlementItem } from "../domain/ports.js";
import { dateTime, esc, money, page } from "./html.js";

export interface MerchantView {
  readonly orders: readonly Order[];
  readonly settlements: ReadonlyArray<{ settlement: Settlement; items: readonly SettlementItem[] }>;
  readonly merchantAccountId: string;
  readonly settlementIntervalMs: number;
  readonly notice?: string;
}

const pill = (state: string) => `<span class="pill ${esc(state)}">${esc(state.replace("_", " "))}</span>`;

export function merchantPage(view: MerchantView, nonce: string): string {
  const orderRows = view.orders
    .map(
      (o) => `<tr data-order="${esc(o.orderId)}">
  <td>${esc(dateTime(o.createdAtMs))}</td><td>${esc(o.orderId)}</td><td>•••• ${esc(o.cardLast4)}</td>
  <td class="num">${esc(money(o.amountMinor, o.currency))}</td><td>${pill(o.state)}</td>
  <td class="code-cell">${esc(o.authCode ?? "")}</td><td>${esc(o.reason ?? "")}</td>
  <td>${o.state === "approved" ? pill(o.settleState) : ""}${o.settleReason ? ` <span class="note">${esc(o.settleReason)}</span>` : ""}</td>
  <td>${o.authStatus ? pill(o.authStatus.toLowerCase()) : ""}${o.refundedMinor > 0n ? ` <span class="note">refunded ${esc(money(o.refundedMinor, o.currency))}</span>` : ""}</td>
</tr>`,
    )
    .join("\n");
  const settlementBlocks = view.settlements
    .map(({ settlement: s, items }) => {
      const itemRows = items
        .map(
          (
            i,
          ) => `<tr><td>${esc(i.orderId)}</td><td>${esc(i.authCode)}</td><td class="num">${esc(money(i.amountMinor, s.currency))}</td>
  <td>${pill(i.status)}</td><td class="num">${esc(money(i.capturedMinor, s.currency))}</td><td>${esc(i.reason ?? "")}</td><td>${esc(i.transactionId ?? "")}</td></tr>`,
        )
        .join("\n");
      return `<tr data-settlement="${esc(s.settlementId)}"><td>${esc(dateTime(s.createdAtMs))}</td><td>${esc(s.settlementId)}</td><td>${pill(s.state)}</td>
  <td class="num">${s.itemCount}</td><td class="num">${esc(money(s.totalMinor, s.currency))}</td><td class="num">${esc(money(s.capturedMinor, s.currency))}</td>
  <td class="num">${s.attempts}</td><td>${esc(s.lastError ?? "")}</td></tr>
<tr><td colspan="8"><details><summary>${items.length} item${items.length === 1 ? "" : "s"}</summary>
<table class="data"><thead><tr><th scope="col">Order</th><th scope="col">Auth code</th><th scope="col">Authorized</th><th scope="col">Result</th><th scope="col">Captured</th><th scope="col">Reason</th><th scope="col">Transaction</th></tr></thead>
<tbody>${itemRows}</tbody></table></details></td></tr>`;
    })
    .join("\n");
  const every =
    view.settlementIntervalMs > 0 ? `every ${Math.round(view.settlementIntervalMs / 1000)} s` : "only on demand";
  const body = `<h1>Merchant: orders and settlements</h1>
<div class="toolbar">
  <p>Settles into <strong>${esc(view.merchantAccountId)}</strong>, ${esc(every)}.</p>
  <form method="post" action="/settle"><button type="submit" id="settle-now">Settle now</button></form>
</div>
${view.notice ? `<div class="alert" role="status">${esc(view.notice)}</div>` : ""}
<section class="panel wide" aria-labelledby="auth-title">
  <h2 id="auth-title">Authorizations</h2>
  <div class="scroll"><table class="data" id="orders">
    <thead><tr><th scope="col">Time</th><th scope="col">Order</th><th scope="col">Card</th><th scope="col">Amount</th><th scope="col">Authorization</th><th scope="col">Auth code</th><th scope="col">Reason</th><th scope="col">Settlement</th><th scope="col">At the gateway</th></tr></thead>
    <tbody>${orderRows || `<tr><td colspan="9">No orders yet.</td></tr>`}</tbody>
  </table></div>
</section>
<section class="panel wide" aria-labelledby="settle-title">
  <h2 id="settle-title">Settlement batches</h2>
  <div class="scroll"><table class="data" id="settlements">
    <thead><tr><th scope="col">Time</th><th scope="col">Batch</th><th scope="col">State</th><th scope="col">Items</th><th scope="col">Total</th><th scope="col">Captured</th><th scope="col">Attempts</th><th scope="col">Last error</th></tr></thead>
    <tbody>${settlementBlocks || `<tr><td colspan="8">No settlements yet.</td></tr>`}</tbody>
  </table></div>
</section>`;
  return page({ title: "Merchant", nonce, body, wide: true });
}
