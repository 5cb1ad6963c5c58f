// Cross-bank uniform: every transfer is a two-bank 2PC round.
//   k6 run bench/k6/cross-bank.js      (defaults: `make up`, alice bank-a/1001 -> bob bank-b/2001)
import { list, loginPayers, options as makeOptions, parsePayers, payOnce, env } from "./lib.js";

export const options = makeOptions();
const payers = parsePayers(env("PAYERS", "alice:alice-demo-2026:bank-a/1001"));
const payees = list(env("TO_ACCOUNTS", "bank-b/2001"));

export function setup() {
  return { payers: loginPayers(payers) };
}

export default function (data) {
  payOnce(data.payers, payees, "k6-cross");
}
