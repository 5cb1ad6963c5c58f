// Every shipped query against a real Prometheus, fed by a synthetic gateway
// and bank that record through @paygate/telemetry and serve /metrics from the
// real ops server. Panels, variables and recording rules must return data;
// alerts must find every series they read. The stack test repeats this with
// real services and real traffic.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  createBankMetrics,
  createGatewayMetrics,
  createMetrics,
  startOpsServer,
  type OpsServer,
} from "@paygate/telemetry";
import { startPrometheus, type Prometheus } from "./prometheus.js";
import { alertProbes, allQueries, ruleFiles } from "./queries.js";

const quiet = { info: () => {}, error: () => {} };
const TRANSFER = "paygate.gateway.v1.PaymentService/Transfer";
const PREPARE = "paygate.bank.v1.ParticipantService/Prepare";
const COMMITTED = 7;
const ABORTED = 2;

let prometheus: Prometheus;
const ops: OpsServer[] = [];
let ticker: NodeJS.Timeout;

before(async () => {
  const gw = createMetrics("gateway");
  const g = createGatewayMetrics(gw.registry, {
    prepareTimeoutMs: 1000,
    banks: ["bank-a"],
    inDoubt: () => ({ count: 1, oldestAgeSeconds: 0.2 }),
  });
  const bank = createMetrics("bank-a");
  const b = createBankMetrics(bank.registry, "bank-a", {
    sqliteBytes: () => 65536,
    heldMinor: () => [["EUR", 1200n]],
    preparedTransactions: () => 1,
  });

  // Known totals, recorded once: the counters must say exactly this.
  for (let i = 0; i < COMMITTED; i += 1) g.transfers.inc({ outcome: "committed" });
  g.transfers.inc({ outcome: "aborted", reason: "insufficient_funds" });
  g.transfers.inc({ outcome: "aborted", reason: "participant_timeout" });
  g.reconcileConserved.set(true);

  // A steady trickle for everything rate() reads. Stops in after().
  const tick = () => {
    gw.rpcServerRequests.inc({ method: TRANSFER, code: "ok" });
    gw.rpcServerDuration.observe({ method: TRANSFER, code: "ok" }, 0.004);
    gw.rpcServerRequests.inc({ method: TRANSFER, code: "failed_precondition" });
    gw.rpcClientRequests.inc({ target: "bank-a", method: PREPARE, code: "ok" });
    gw.rpcClientDuration.observe({ target: "bank-a", method: PREPARE, code: "ok" }, 0.002);
    bank.rpcServerRequests.inc({ method: PREPARE, code: "ok" });
    bank.rpcServerDuration.observe({ method: PREPARE, code: "ok" }, 0.001);
    for (const phase of ["prepare", "decision_log", "commit"] as const) g.phaseDuration.observe({ phase }, 0.001);
    g.idempotency.inc({ result: "miss" });
    g.redriveAttempts.inc({ decision: "commit" });
    g.cardAuthorizations.inc({ outcome: "approved" });
    g.cardAuthorizations.inc({ outcome: "declined", code: "risk_declined" });
    g.settlementBatchItems.observe(12);
    g.settlementLagSeconds.observe(3600);
    b.prepareVotes.inc({ vote: "yes" });
    b.prepareVotes.inc({ vote: "no", reason: "insufficient_funds" });
    b.decisions.inc({ decision: "commit" });
    b.ledger.post({ direction: "debit", currency: "EUR" }, 1500n);
    b.fsyncDuration.observe(0.0004);
  };
  tick();
  ticker = setInterval(tick, 250);

  const host = "127.0.0.1";
  ops.push(await startOpsServer({ host, port: 0, registry: gw.registry, isReady: () => true, logger: quiet }));
  ops.push(await startOpsServer({ host, port: 0, registry: bank.registry, isReady: () => true, logger: quiet }));
  prometheus = await startPrometheus({
    targets: [
      { job: "paygate-gateway", address: `${host}:${ops[0]!.port}` },
      { job: "paygate-bank-a", address: `${host}:${ops[1]!.port}` },
    ],
    ruleFiles: ruleFiles(),
  });
});

after(async () => {
  clearInterval(ticker);
  await prometheus?.close();
  for (const o of ops) await o.close();
});

test("every dashboard query, variable and recording rule returns data; every alert's series exist", async () => {
  const queries = allQueries({ rateInterval: "10s" });
  const checks = queries.flatMap((q) =>
    q.kind === "alert" ? alertProbes(q).map((p) => ({ q, promql: p })) : [{ q, promql: q.promql }],
  );
  const empty = async () => {
    const out: string[] = [];
    for (const c of checks)
      if ((await prometheus.query(c.promql)).length === 0) out.push(`${c.q.file} ${c.q.where}: ${c.promql}`);
    return out;
  };
  // Bounded wait for a few scrapes and rule evaluations; the assertion is on the final state, not on time.
  await prometheus.waitUntil(async () => (await empty()).length === 0, 60, 500);
  assert.deepEqual(await empty(), [], prometheus.log.join("\n"));
});

test("counters say what was recorded: 7 committed, 2 aborted by reason", async () => {
  const sum = async (q: string) => (await prometheus.query(q))[0]?.value;
  assert.equal(await sum('sum(paygate_transfers_total{outcome="committed"})'), COMMITTED);
  assert.equal(await sum('sum(paygate_transfers_total{outcome="aborted"})'), ABORTED);
  const byReason = await prometheus.query('sum by (reason) (paygate_transfers_total{outcome="aborted"})');
  assert.deepEqual(Object.fromEntries(byReason.map((s) => [s.metric.reason, s.value])), {
    insufficient_funds: 1,
    participant_timeout: 1,
  });
  assert.deepEqual(
    (await prometheus.query('up{job=~"paygate-.*"}')).map((s) => s.value),
    [1, 1],
  );
});

test("no alert fires on healthy synthetic traffic (business declines do not burn the error budget)", async () => {
  await prometheus.waitUntil(
    async () => (await prometheus.query("paygate:rpc_server_errors:ratio_rate5m")).length >= 2,
  );
  const ratio = await prometheus.query('paygate:rpc_server_errors:ratio_rate5m{service="gateway"}');
  assert.equal(ratio[0]?.value, 0, "failed_precondition is not a fault");
  const res = (await (await fetch(`${prometheus.url}/api/v1/alerts`)).json()) as {
    data: { alerts: { labels: { alertname: string }; state: string }[] };
  };
  assert.deepEqual(
    res.data.alerts.map((a) => `${a.labels.alertname} ${a.state}`),
    [],
  );
});
