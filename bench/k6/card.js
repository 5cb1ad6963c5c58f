// Card payments: a merchant authorizes card payments and settles them in
// batches of SETTLE_BATCH (each VU settles its own authorizations). setup()
// issues a test card as the admin on CARD_ACCOUNT.
//   k6 run bench/k6/card.js            (defaults: `make up`: admin issues a card on bank-a/1001, shop authorizes)
import grpc from "k6/net/grpc";
import { check, fail } from "k6";
import { Counter } from "k6/metrics";
import { client, connect, env, login, options as makeOptions, uniqueKey } from "./lib.js";

export const options = makeOptions();
const [adminUser, adminPassword] = env("ADMIN", "admin:admin-demo-2026").split(":");
const [merchantUser, merchantPassword] = env("MERCHANT", "shop:shop-demo-2026").split(":");
const CARD_ACCOUNT = env("CARD_ACCOUNT", "bank-a/1001");
const MERCHANT_ACCOUNT = env("MERCHANT_ACCOUNT", "bank-b/2002");
const SETTLE_BATCH = Number(env("SETTLE_BATCH", "50"));
const captured = new Counter("card_items_captured");
const pendingCodes = [];

export function setup() {
  const admin = login(adminUser, adminPassword);
  const res = client.invoke(
    "paygate.gateway.v1.AdminService/IssueCard",
    { accountId: CARD_ACCOUNT, cardholderName: "K6 Bench", expMonth: 12, expYear: new Date().getUTCFullYear() + 3 },
    { metadata: { authorization: `Bearer ${admin}` } },
  );
  if (res.status !== grpc.StatusOK) fail(`IssueCard: ${JSON.stringify(res.error)}`);
  const c = res.message;
  return { token: login(merchantUser, merchantPassword), card: { number: c.number, expMonth: c.expMonth, expYear: c.expYear, cvc: c.cvc, cardholderName: "K6 Bench" } };
}

function settle(token) {
  const items = pendingCodes.splice(0).map((authCode) => ({ authCode, amountMinor: env("AMOUNT_MINOR", "1") }));
  const res = client.invoke("paygate.gateway.v1.CardService/SettleBatch", { idempotencyKey: uniqueKey("k6-settle"), items }, { metadata: { authorization: `Bearer ${token}` }, timeout: "120s" });
  check(res, { "batch settled": (r) => r.status === grpc.StatusOK });
  if (res.status === grpc.StatusOK) {
    const n = res.message.results.filter((r) => r.status === "SETTLE_ITEM_STATUS_CAPTURED").length;
    captured.add(n);
    check(n, { "every item captured": (x) => x === items.length });
  }
}

export default function (data) {
  connect();
  const res = client.invoke(
    "paygate.gateway.v1.CardService/Authorize",
    { idempotencyKey: uniqueKey("k6-auth"), card: data.card, amountMinor: env("AMOUNT_MINOR", "1"), currency: env("CURRENCY", "USD"), merchantReference: `k6-${__VU}-${__ITER}`, merchantAccountId: MERCHANT_ACCOUNT },
    { metadata: { authorization: `Bearer ${data.token}` }, timeout: "30s" },
  );
  const ok = check(res, { "authorization approved": (r) => r.status === grpc.StatusOK && !!r.message.authorization.authCode });
  if (ok) pendingCodes.push(res.message.authorization.authCode);
  if (pendingCodes.length >= SETTLE_BATCH) settle(data.token);
}
