// Cross-bank transfers to a bank behind extra latency. k6 cannot slow a bank
// down by itself: put bench/delay-proxy.ts between the gateway and one bank
// (see bench/README.md) and point TO_ACCOUNTS at that bank. The figures show
// what a slow participant does to everybody else's latency.
//   k6 run bench/k6/slow-bank.js       (defaults: `make up`, alice bank-a/1001 -> bob bank-b/2001)
import { list, loginPayers, options as makeOptions, parsePayers, payOnce, env } from "./lib.js";

export const options = makeOptions();
const payers = parsePayers(env("PAYERS", "alice:alice-demo-2026:bank-a/1001"));
const payees = list(env("TO_ACCOUNTS", "bank-b/2001"));

export function setup() {
  return { payers: loginPayers(payers) };
}

export default function (data) {
  payOnce(data.payers, payees, "k6-slow");
}
