import assert from "node:assert/strict";
import { test } from "node:test";
import { computeBreakdown, type MetricsSnapshot } from "./breakdown.js";
import { histogramDelta, parsePromText } from "./lib/prom-text.js";

const TRANSFER = "paygate.gateway.v1.PaymentService/Transfer";
const PREPARE = "paygate.bank.v1.ParticipantService/Prepare";
const PREPARE_BATCH = "paygate.bank.v1.ParticipantService/PrepareBatch";

test("parsePromText reads prom-client's output: labels with escapes, comments, +Inf", () => {
  const text = [
    "# HELP paygate_rpc_server_duration_seconds Time.",
    "# TYPE paygate_rpc_server_duration_seconds histogram",
    `paygate_rpc_server_duration_seconds_bucket{le="+Inf",method="${TRANSFER}",code="ok",service="gateway"} 7`,
    `paygate_rpc_server_duration_seconds_sum{method="${TRANSFER}",code="ok",service="gateway"} 0.07`,
    `paygate_odd{note="a \\"quoted\\" }brace\\\\"} 3`,
    "paygate_gauge +Inf",
  ].join("\n");
  const all = parsePromText(text);
  assert.equal(all.length, 4);
  assert.equal(all[0]!.labels.le, "+Inf");
  assert.equal(all[0]!.value, 7);
  assert.equal(all[3]!.value, Number.POSITIVE_INFINITY);
  assert.equal(all[1]!.labels.method, TRANSFER);
  assert.equal(all[2]!.labels.note, 'a "quoted" }brace\\');
  assert.equal(parsePromText(text, ["paygate_rpc_"]).length, 2);
});

test("histogramDelta sums matching series over processes and subtracts the earlier scrape", () => {
  const at = (sum: number, count: number, method = TRANSFER) =>
    parsePromText(
      `x_sum{method="${method}",code="ok"} ${sum}\nx_count{method="${method}",code="ok"} ${count}\nx_sum{method="${method}",code="internal"} 1\nx_count{method="${method}",code="internal"} 1`,
    );
  const d = histogramDelta([at(1, 10), at(2, 20)], [at(1.5, 15), at(3, 30)], "x", { method: TRANSFER });
  assert.deepEqual(d, { count: 15, sum: 1.5 });
  assert.deepEqual(histogramDelta([at(1, 10)], [at(1, 10)], "x"), { count: 0, sum: 0 });
  // A restarted process (counters went down) reads as nothing observed, not as a negative mean.
  assert.deepEqual(histogramDelta([at(5, 50)], [at(1, 10)], "x"), { count: 0, sum: 0 });
});

function gatewayText(o: {
  transfers: number;
  serverS: number;
  claimS: number;
  prepareS: number;
  decisionS: number;
  rpcs: Record<string, [count: number, sumS: number]>;
}): string {
  const h = (name: string, labels: string, count: number, sum: number) =>
    `${name}_sum{${labels}} ${sum}\n${name}_count{${labels}} ${count}`;
  const phases = [
    h("paygate_2pc_phase_duration_seconds", 'phase="claim"', o.transfers, o.claimS),
    h("paygate_2pc_phase_duration_seconds", 'phase="prepare"', o.transfers, o.prepareS),
    h("paygate_2pc_phase_duration_seconds", 'phase="decision_log"', o.transfers, o.decisionS),
  ];
  const rpcs = Object.entries(o.rpcs).map(([k, [count, sum]]) => {
    const [target, method] = k.split(" ");
    return h("paygate_rpc_client_duration_seconds", `target="${target}",method="${method}",code="ok"`, count, sum);
  });
  return [
    h("paygate_rpc_server_duration_seconds", `method="${TRANSFER}",code="ok"`, o.transfers, o.serverS),
    ...phases,
    ...rpcs,
  ].join("\n");
}

function bankText(prepares: number, serverS: number, fsyncs: number, fsyncS: number): string {
  return [
    `paygate_rpc_server_duration_seconds_sum{method="${PREPARE_BATCH}",code="ok"} ${serverS}`,
    `paygate_rpc_server_duration_seconds_count{method="${PREPARE_BATCH}",code="ok"} ${prepares}`,
    `paygate_bank_fsync_duration_seconds_sum{bank="x"} ${fsyncS}`,
    `paygate_bank_fsync_duration_seconds_count{bank="x"} ${fsyncs}`,
  ].join("\n");
}

test("computeBreakdown: each part from Δsum/Δcount, the remainders as differences", () => {
  const zero: MetricsSnapshot = {
    gateways: [
      parsePromText(
        gatewayText({
          transfers: 0,
          serverS: 0,
          claimS: 0,
          prepareS: 0,
          decisionS: 0,
          rpcs: { [`bank-a ${PREPARE}`]: [0, 0], [`bank-b ${PREPARE}`]: [0, 0] },
        }),
      ),
    ],
    banks: new Map([
      ["bank-a", parsePromText(bankText(0, 0, 0, 0))],
      ["bank-b", parsePromText(bankText(0, 0, 0, 0))],
      ["bank-c", parsePromText(bankText(0, 0, 0, 0))],
    ]),
  };
  // 100 transfers: server 8 ms, claim 1, prepare 4, decision 1.5; bank-a's Prepare RPCs 3 ms client / 2 ms server (50 RPCs: 2 items each), bank-b 2.5 / 1.5.
  const after: MetricsSnapshot = {
    gateways: [
      parsePromText(
        gatewayText({
          transfers: 100,
          serverS: 0.8,
          claimS: 0.1,
          prepareS: 0.4,
          decisionS: 0.15,
          rpcs: {
            [`bank-a ${PREPARE}`]: [50, 0.15],
            [`bank-b ${PREPARE}`]: [100, 0.25],
            [`bank-a paygate.bank.v1.ParticipantService/CommitBatch`]: [10, 0.02],
          },
        }),
      ),
    ],
    banks: new Map([
      ["bank-a", parsePromText(bankText(50, 0.1, 80, 0.024))],
      ["bank-b", parsePromText(bankText(100, 0.15, 120, 0.036))],
      ["bank-c", parsePromText(bankText(0, 0, 5, 0.001))],
    ]),
  };
  const bd = computeBreakdown({
    scenario: "cross-bank",
    concurrency: 16,
    client: { count: 100, p50Ms: 9, p90Ms: 12, p99Ms: 20, maxMs: 30, meanMs: 10 },
    before: zero,
    after,
  });
  assert.ok(bd);
  const ms = Object.fromEntries(bd.rows.map((r) => [r.key, r.ms]));
  assert.equal(bd.ops, 100);
  assert.equal(ms.client, 10);
  assert.equal(ms.server, 8);
  assert.equal(ms.outside, 2);
  assert.equal(ms.claim, 1);
  assert.equal(ms.prepare, 4);
  assert.equal(ms.decision, 1.5);
  assert.equal(ms.rest, 1.5);
  assert.equal(ms["bank-a.client"], 3);
  assert.equal(ms["bank-a.server"], 2);
  assert.equal(ms["bank-a.wire"], 1);
  assert.equal(ms["bank-a.fsync"], 0.3);
  assert.equal(ms["bank-b.client"], 2.5);
  // Outside the RPCs: the prepare round minus the slowest bank's RPC.
  assert.equal(ms["prepare.wait"], 1);
  assert.equal(bd.rows.find((r) => r.key === "bank-a.client")!.perOp, 0.5);
  assert.equal(bd.rows.find((r) => r.key === "bank-a.fsync")!.perOp, 0.8);
  // bank-c took no part (no Prepare from the gateway): no rows for it.
  assert.ok(!bd.rows.some((r) => r.key.startsWith("bank-c")));
  assert.deepEqual(bd.otherRpcs, [
    { target: "bank-a", method: "ParticipantService/CommitBatch", perOp: 0.1, meanMs: 2, inHandler: false },
  ]);
  assert.deepEqual(bd.opsPerGateway, [100]);
});

test("computeBreakdown: a call the handler makes itself (credit report) is its own row, out of the rest", () => {
  const g = (n: number, serverS: number, bureau: [number, number]) =>
    parsePromText(
      gatewayText({
        transfers: n,
        serverS,
        claimS: 0,
        prepareS: 0,
        decisionS: 0,
        rpcs: { "credit-bureau paygate.bureau.v1.CreditBureauService/FetchCreditReport": bureau },
      }).replaceAll(TRANSFER, "paygate.gateway.v1.CardService/Authorize"),
    );
  const client = { count: 10, p50Ms: 6, p90Ms: 6, p99Ms: 6, maxMs: 6, meanMs: 6 };
  const bd = computeBreakdown({
    scenario: "card",
    concurrency: 1,
    client,
    before: { gateways: [g(0, 0, [0, 0]), g(0, 0, [0, 0])], banks: new Map() },
    after: { gateways: [g(6, 0.03, [6, 0.012]), g(4, 0.02, [4, 0.008])], banks: new Map() },
  });
  assert.ok(bd);
  const ms = Object.fromEntries(bd.rows.map((r) => [r.key, r.ms]));
  assert.equal(ms.server, 5);
  assert.equal(ms["rpc.credit-bureau.CreditBureauService/FetchCreditReport"], 2);
  assert.equal(ms.rest, 3);
  assert.deepEqual(bd.opsPerGateway, [6, 4]);
});

test("computeBreakdown: nothing served in the window, no breakdown; echo has none", () => {
  const empty: MetricsSnapshot = { gateways: [[]], banks: new Map() };
  const client = {
    count: 0,
    p50Ms: Number.NaN,
    p90Ms: Number.NaN,
    p99Ms: Number.NaN,
    maxMs: Number.NaN,
    meanMs: Number.NaN,
  };
  assert.equal(
    computeBreakdown({ scenario: "cross-bank", concurrency: 1, client, before: empty, after: empty }),
    undefined,
  );
  assert.equal(computeBreakdown({ scenario: "echo", concurrency: 1, client, before: empty, after: empty }), undefined);
});
