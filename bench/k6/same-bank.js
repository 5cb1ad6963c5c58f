// Same-bank: one participant per transfer (still prepare/commit, one voter).
//   k6 run bench/k6/same-bank.js       (defaults: `make up`, bob bank-b/2001 -> shop bank-b/2002)
import { list, loginPayers, options as makeOptions, parsePayers, payOnce, env } from "./lib.js";

export const options = makeOptions();
const payers = parsePayers(env("PAYERS", "bob:bob-demo-2026:bank-b/2001"));
const payees = list(env("TO_ACCOUNTS", "bank-b/2002"));

export function setup() {
  return { payers: loginPayers(payers) };
}

export default function (data) {
  payOnce(data.payers, payees, "k6-same");
}
