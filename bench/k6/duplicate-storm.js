// Duplicate-key storm: KEYS idempotency keys, each sent DUPLICATES times by
// concurrent VUs (a retry storm). Each key's money must move exactly once:
// teardown checks that the payer's balance fell by KEYS x AMOUNT_MINOR.
// Requests that find their key in flight (ABORTED, idempotency_key_in_use)
// retry with the same key, as a client should.
//   k6 run bench/k6/duplicate-storm.js (defaults: `make up`, alice bank-a/1001 -> bob bank-b/2001)
import grpc from "k6/net/grpc";
import exec from "k6/execution";
import { check, fail, sleep } from "k6";
import { AMOUNT_MINOR, balanceOf, committed, connect, env, list, loginPayers, options as makeOptions, parsePayers, transfer } from "./lib.js";

const KEYS = Number(env("KEYS", "50"));
const DUPLICATES = Number(env("DUPLICATES", "16"));
const IN_USE_RETRIES_MAX = 500;
// Every request of one key is sent; a count-bound executor makes the expected total exact.
export const options = makeOptions({
  scenarios: { storm: { executor: "shared-iterations", vus: Number(env("VUS", "16")), iterations: KEYS * DUPLICATES, maxDuration: env("DURATION", "120s") } },
});
const [payer] = parsePayers(env("PAYERS", "alice:alice-demo-2026:bank-a/1001"));
const [payee] = list(env("TO_ACCOUNTS", "bank-b/2001"));

export function setup() {
  const [p] = loginPayers([payer]);
  return { payer: p, prefix: `k6-storm-${Date.now()}`, before: String(balanceOf(p.token, p.accounts[0])) };
}

export default function (data) {
  connect();
  const key = `${data.prefix}-${Math.floor(exec.scenario.iterationInTest / DUPLICATES)}`;
  let res;
  for (let i = 0; i < IN_USE_RETRIES_MAX; i++) {
    res = transfer(data.payer.token, data.payer.accounts[0], payee, key);
    if (res.status !== grpc.StatusAborted) break;
    sleep(0.002 + Math.random() * 0.003);
  }
  check(res, { "duplicate answered with the committed transfer": committed });
}

export function teardown(data) {
  const moved = BigInt(data.before) - balanceOf(data.payer.token, data.payer.accounts[0]);
  const want = BigInt(KEYS) * BigInt(AMOUNT_MINOR);
  const ok = check(moved, { "money moved once per key": (m) => m === want });
  if (!ok) fail(`payer balance fell by ${moved}, expected ${want} (${KEYS} keys x ${AMOUNT_MINOR}): other traffic on this account, or money moved twice`);
}
