// The real thing: two banks and a gateway as processes (dist/*.js, mTLS,
// SQLite), known traffic through the public API, then a real Prometheus
// scraping the three ops ports with paygate's rule files loaded.
//
// 1. Every shipped query (dashboard panels and variables, recording rules)
//    returns data and every alert finds the series it reads. Card and
//    settlement queries have no traffic yet (no card service runs in this
//    stack): for those the query must parse and every metric family it reads
//    must be exposed (zero-initialised).
// 2. The numbers match the traffic: N transfers -> the counters say N, votes,
//    decisions and journal entries at each bank match the prepares sent.
// 3. Healthy traffic fires no alert; the ops ports answer /healthz and /readyz.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { rejectsWith, Stack } from "@paygate/testkit";
import { startPrometheus, type Prometheus } from "./prometheus.js";
import { alertProbes, allQueries, metricNames, ruleFiles, type ShippedQuery } from "./queries.js";

const TRANSFER = "paygate.gateway.v1.PaymentService/Transfer";
const PREPARE = "paygate.bank.v1.ParticipantService/Prepare";
/** Metric families only card authorization and settlement write; nothing in this stack does yet. */
const CARD_FAMILIES =
  /^paygate_(card_authorizations_total|settlement_batch_items|settlement_lag_seconds)(_bucket|_sum|_count)?$/;

interface Planned {
  readonly payer: "alice" | "bob";
  readonly from: string;
  readonly to: string;
  readonly amountMinor: bigint;
}

// Cross-bank both ways and same-bank: every bank debits and credits.
const COMMITTED: readonly Planned[] = [
  { payer: "alice", from: "bank-a/1001", to: "bank-b/2001", amountMinor: 1_000n },
  { payer: "alice", from: "bank-a/1001", to: "bank-b/2001", amountMinor: 2_500n },
  { payer: "alice", from: "bank-a/1001", to: "bank-b/2002", amountMinor: 700n },
  { payer: "alice", from: "bank-a/1001", to: "bank-a/1002", amountMinor: 300n },
  { payer: "alice", from: "bank-a/1001", to: "bank-a/1002", amountMinor: 45n },
  { payer: "bob", from: "bank-b/2001", to: "bank-a/1001", amountMinor: 1_234n },
  { payer: "bob", from: "bank-b/2001", to: "bank-b/2002", amountMinor: 99n },
];
// Same bank, so exactly one vote (NO) is cast: with two banks the other
// bank's Prepare races the abort and its vote would be timing-dependent.
const DECLINED: Planned = { payer: "bob", from: "bank-a/1002", to: "bank-a/1001", amountMinor: 10_000_000n };

const bankOf = (accountId: string) => accountId.slice(0, accountId.indexOf("/"));

let stack: Stack;
let prometheus: Prometheus;

before(async () => {
  stack = await Stack.start();
  // Scraping from before the traffic, so rates (and the SLO ratios) see it happen.
  const host = "127.0.0.1";
  prometheus = await startPrometheus({
    targets: [
      { job: "paygate-gateway", address: `${host}:${stack.gateway.metricsPort}` },
      ...[...stack.banks.values()].map((b) => ({ job: `paygate-${b.name}`, address: `${host}:${b.metricsPort}` })),
    ],
    ruleFiles: ruleFiles(),
  });
  const scraped = await prometheus.waitUntil(
    async () => (await prometheus.query('sum(up{job=~"paygate-.*"})'))[0]?.value === 3,
  );
  assert.ok(scraped, `Prometheus never scraped the three ops ports:\n${prometheus.log.join("\n")}`);
  const clients = {
    alice: stack.client(PaymentService, await stack.login("alice")),
    bob: stack.client(PaymentService, await stack.login("bob")),
  };
  const send = (p: Planned, key = randomUUID()) =>
    clients[p.payer].transfer({
      idempotencyKey: key,
      fromAccountId: p.from,
      toAccountId: p.to,
      amountMinor: p.amountMinor,
      currency: "USD",
    });
  const replayKey = randomUUID();
  for (const [i, p] of COMMITTED.entries()) {
    const res = await send(p, i === 0 ? replayKey : undefined);
    assert.equal(res.transaction?.status, TransactionStatus.COMMITTED, `transfer ${i}`);
    if (i === 0) {
      // RPC series appear on first use. Let one scrape see them before the rest
      // of the traffic, or rate() reads 0 (Prometheus has no earlier sample).
      // Every service's own scrape must see it (targets are scraped at different moments): the
      // first transfer is cross-bank, so the gateway and both banks served an RPC for it.
      const seen = await prometheus.waitUntil(
        async () =>
          (await prometheus.query("sum(paygate_transfers_total)"))[0]?.value === 1 &&
          (
            await prometheus.query(
              'count by (service) (paygate_rpc_server_requests_total{method=~"paygate.bank.v1.ParticipantService/.*"})',
            )
          ).length === 2,
      );
      assert.ok(seen, "Prometheus never saw the first transfer at the gateway and both banks");
    }
  }
  // The same request again is answered from the log: an idempotency hit, not a transfer.
  assert.equal((await send(COMMITTED[0]!, replayKey)).transaction?.status, TransactionStatus.COMMITTED);
  await rejectsWith(send(DECLINED), Code.FailedPrecondition, "insufficient_funds");
  // One reconcile, after every decision is acknowledged: sets paygate_reconcile_conserved.
  await stack.assertConserved();
  // Bounded wait until a scrape after the traffic has landed (the assertions below are on values, not time).
  const caughtUp = await prometheus.waitUntil(
    async () =>
      (await prometheus.query("sum(paygate_transfers_total)"))[0]?.value === COMMITTED.length + 1 &&
      (await prometheus.query("paygate_reconcile_conserved")).length === 1,
  );
  assert.ok(caughtUp, `Prometheus never saw the traffic:\n${prometheus.log.join("\n")}`);
});

after(async () => {
  await prometheus?.close();
  await stack?.close();
});

async function value(promql: string): Promise<number | undefined> {
  const r = await prometheus.query(promql);
  assert.ok(r.length <= 1, `${promql} returned ${r.length} series`);
  return r[0]?.value;
}

async function byLabel(promql: string, label: string): Promise<Record<string, number>> {
  return Object.fromEntries((await prometheus.query(promql)).map((s) => [s.metric[label] ?? "", s.value]));
}

test("the ops ports answer /healthz and /readyz, and /metrics names the service", async () => {
  for (const p of [stack.gateway, ...stack.banks.values()]) {
    const base = `http://127.0.0.1:${p.metricsPort}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200, p.name);
    assert.equal((await fetch(`${base}/readyz`)).status, 200, `${p.name} is ready after recovery`);
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, new RegExp(`^process_cpu_seconds_total\\{service="${p.name}"\\}`, "m"));
  }
});

test("every dashboard query, variable and recording rule returns data; every alert's series exist", async () => {
  const checks = allQueries({ rateInterval: "10s" }).flatMap((q) =>
    q.kind === "alert"
      ? alertProbes(q).map((promql) => ({ q, promql, cardOnly: false }))
      : [{ q, promql: q.promql, cardOnly: isCardOnly(q) }],
  );
  assert.ok(checks.length > 50, `only ${checks.length} checks: did the dashboards move?`);
  const problems = async () => {
    const out: string[] = [];
    for (const c of checks) {
      const result = await prometheus.query(c.promql); // throws on a PromQL error: every query must parse
      if (c.cardOnly) {
        for (const name of metricNames(c.promql)) {
          if ((await prometheus.query(`group({__name__="${name}"})`)).length === 0)
            out.push(`${c.q.file} ${c.q.where}: ${name} is not exposed`);
        }
      } else if (result.length === 0) out.push(`${c.q.file} ${c.q.where}: ${c.promql}`);
    }
    return out;
  };
  // Bounded wait for a few scrapes and rule evaluations; the assertion is on the final state.
  await prometheus.waitUntil(async () => (await problems()).length === 0, 60, 500);
  assert.deepEqual(await problems(), [], prometheus.log.join("\n"));
  const cardOnly = checks.filter((c) => c.cardOnly).map((c) => `${c.q.where}`);
  assert.ok(
    cardOnly.length > 0 && cardOnly.length < 10,
    `card-only queries (checked for parse + exposure only): ${cardOnly.join("; ")}`,
  );
});

function isCardOnly(q: ShippedQuery): boolean {
  const names = metricNames(q.promql);
  return names.length > 0 && names.every((n) => CARD_FAMILIES.test(n));
}

test(`${COMMITTED.length} committed transfers and 1 declined: the gateway's counters say exactly that`, async () => {
  assert.equal(await value('sum(paygate_transfers_total{outcome="committed"})'), COMMITTED.length);
  assert.deepEqual(await byLabel('sum by (reason) (paygate_transfers_total{outcome="aborted"})', "reason"), {
    insufficient_funds: 1,
  });
  // Every transfer that ran 2PC timed each phase once; the replay ran none.
  const runs = COMMITTED.length + 1;
  assert.deepEqual(await byLabel("sum by (phase) (paygate_2pc_phase_duration_seconds_count)", "phase"), {
    claim: runs,
    prepare: runs,
    decision_log: runs,
    commit: runs,
  });
  assert.deepEqual(await byLabel("sum by (result) (paygate_idempotency_total)", "result"), {
    miss: runs,
    hit: 1,
    conflict: 0,
    in_flight: 0,
  });
  assert.deepEqual(
    await byLabel(`sum by (code) (paygate_rpc_server_requests_total{service="gateway",method="${TRANSFER}"})`, "code"),
    {
      ok: COMMITTED.length + 1,
      failed_precondition: 1,
    },
  );
  assert.equal(await value("sum(paygate_2pc_unknown_txn_total)"), 0);
  assert.equal(await value("sum(paygate_2pc_in_doubt_transactions)"), 0);
  assert.equal(await value("max(paygate_2pc_prepare_timeout_seconds)"), 1.5, "the stack's PREPARE_TIMEOUT_MS");
  assert.equal(await value("min(paygate_reconcile_conserved)"), 1);
});

test("the banks' votes, decisions and journal entries match the prepares the transfers sent", async () => {
  const expected = {
    votes: new Map<string, number>(),
    entries: new Map<string, number>(),
    volume: new Map<string, number>(),
    prepares: new Map<string, number>(),
  };
  const add = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n);
  for (const t of COMMITTED) {
    for (const bank of new Set([bankOf(t.from), bankOf(t.to)])) {
      add(expected.votes, `${bank} yes `);
      add(expected.prepares, bank);
    }
    add(expected.entries, `${bankOf(t.from)} debit`);
    add(expected.entries, `${bankOf(t.to)} credit`);
    add(expected.volume, `${bankOf(t.from)} debit`, Number(t.amountMinor));
    add(expected.volume, `${bankOf(t.to)} credit`, Number(t.amountMinor));
  }
  add(expected.votes, `${bankOf(DECLINED.from)} no insufficient_funds`);
  add(expected.prepares, bankOf(DECLINED.from));

  const samples = async (promql: string, labels: string[]) =>
    new Map(
      (await prometheus.query(promql))
        .filter((s) => s.value !== 0)
        .map((s) => [labels.map((l) => s.metric[l] ?? "").join(" "), s.value]),
    );
  assert.deepEqual(
    await samples("sum by (bank, vote, reason) (paygate_bank_prepare_votes_total)", ["bank", "vote", "reason"]),
    expected.votes,
  );
  assert.deepEqual(
    await samples("sum by (bank, direction) (paygate_bank_ledger_entries_total)", ["bank", "direction"]),
    expected.entries,
  );
  assert.deepEqual(
    await samples("sum by (bank, direction) (paygate_bank_ledger_volume_minor_total)", ["bank", "direction"]),
    expected.volume,
  );
  // A commit is applied once per participant; the declined txn was ABORTED by its NO vote, so its Abort changed nothing.
  const commits = new Map(
    [...expected.prepares].map(([bank]) => [
      `${bank} commit`,
      COMMITTED.filter((t) => bankOf(t.from) === bank || bankOf(t.to) === bank).length,
    ]),
  );
  assert.deepEqual(
    await samples("sum by (bank, decision) (paygate_bank_decisions_total)", ["bank", "decision"]),
    commits,
  );
  // The banks answered every Prepare the gateway made (a NO vote is an ok answer), and both sides counted it.
  // The transfers are sequential, so each Prepare is one RPC: a Prepare, or a PrepareBatch of one when
  // the previous transfer's Commit rode along with it (DESIGN.md §3.3).
  const prepareRpc = `method=~"${PREPARE}|${PREPARE}Batch",code="ok"`;
  const served = await samples(`sum by (service) (paygate_rpc_server_requests_total{${prepareRpc}})`, ["service"]);
  const sent = await samples(`sum by (target) (paygate_rpc_client_requests_total{service="gateway",${prepareRpc}})`, [
    "target",
  ]);
  assert.deepEqual(served, expected.prepares);
  assert.deepEqual(sent, expected.prepares);
  // Each durable write was timed: at least a prepare and a commit per vote.
  for (const [bank, n] of expected.prepares) {
    const writes = await value(`sum(paygate_bank_fsync_duration_seconds_count{bank="${bank}"})`);
    assert.ok(writes !== undefined && writes >= n, `${bank}: ${writes} timed writes for ${n} prepares`);
  }
  // Nothing is held or prepared once every transfer is decided.
  assert.deepEqual(await samples("sum by (bank) (paygate_bank_held_minor)", ["bank"]), new Map());
  assert.deepEqual(await samples("sum by (bank) (paygate_bank_prepared_transactions)", ["bank"]), new Map());
  const sizes = await prometheus.query("paygate_bank_sqlite_bytes");
  assert.equal(sizes.length, 2);
  for (const s of sizes) assert.ok(s.value > 4096, `${s.metric.bank}: ${s.value} bytes`);
});

test("healthy traffic fires no alert (a business decline does not burn the error budget)", async () => {
  // Rules evaluate every second; wait (bounded) for an evaluation that covers the traffic.
  await prometheus.waitUntil(
    async () => (await prometheus.query("paygate:rpc_server_errors:ratio_rate5m >= 0")).length === 3,
  );
  assert.deepEqual(await byLabel("paygate:rpc_server_errors:ratio_rate5m", "service"), {
    gateway: 0,
    "bank-a": 0,
    "bank-b": 0,
  });
  const res = (await (await fetch(`${prometheus.url}/api/v1/alerts`)).json()) as {
    data: { alerts: { labels: { alertname: string }; state: string }[] };
  };
  assert.deepEqual(
    res.data.alerts.map((a) => `${a.labels.alertname} ${a.state}`),
    [],
  );
});
