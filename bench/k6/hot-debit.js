// Hot debit: one payer account, many payees. Every transfer holds funds on
// the same account; the payer's available balance must never go negative and
// declines may only be insufficient_funds (FailedPrecondition).
//   k6 run bench/k6/hot-debit.js       (defaults: `make up`, alice bank-a/1001 -> bank-b/2001, bank-b/2002)
import grpc from "k6/net/grpc";
import { check } from "k6";
import { balanceOf, committed, connect, env, list, loginPayers, options as makeOptions, parsePayers, pick, transfer, uniqueKey } from "./lib.js";

export const options = makeOptions();
const [payer] = parsePayers(env("PAYERS", "alice:alice-demo-2026:bank-a/1001"));
const payees = list(env("TO_ACCOUNTS", "bank-b/2001,bank-b/2002"));

export function setup() {
  const [p] = loginPayers([payer]);
  return { payer: p };
}

export default function (data) {
  connect();
  const res = transfer(data.payer.token, data.payer.accounts[0], pick(payees), uniqueKey("k6-hot-debit"));
  check(res, { "committed or cleanly declined for funds": (r) => committed(r) || r.status === grpc.StatusFailedPrecondition });
}

export function teardown(data) {
  const balance = balanceOf(data.payer.token, data.payer.accounts[0]);
  check(balance, { "payer balance is not negative": (b) => b >= 0n });
}
