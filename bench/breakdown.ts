// Where the milliseconds of one transfer go, from what the services measured
// themselves during a cell's measured window: the change of their /metrics
// histograms (sum ÷ count = mean) between the window's opening and closing,
// next to the mean latency the load generator saw. Means, not percentiles,
// because means add up: every row is a part of the row above it, and what no
// metric covers is shown as the difference, so a new wait on the path shows
// up as a growing remainder instead of hiding.
//
// Caveats the report repeats: participant RPC means are per RPC, not per
// transfer (a PrepareBatch of 20 items counts once), and a bank's fsync mean
// covers every durable write it made in the window (prepares and commits).
import type { LatencySummary } from "./lib/stats.js";
import { histogramDelta, meanMs, type HistogramDelta, type Sample } from "./lib/prom-text.js";
import type { Scenario } from "./scenarios.js";

/** The metric families the breakdown reads; scrapes keep only these. */
export const BREAKDOWN_METRICS = [
  "paygate_rpc_server_duration_seconds",
  "paygate_rpc_client_duration_seconds",
  "paygate_2pc_phase_duration_seconds",
  "paygate_bank_fsync_duration_seconds",
] as const;

const [RPC_SERVER, RPC_CLIENT, PHASE, BANK_FSYNC] = BREAKDOWN_METRICS;
const PREPARE_METHODS = [
  "paygate.bank.v1.ParticipantService/Prepare",
  "paygate.bank.v1.ParticipantService/PrepareBatch",
];
/** Commit/Abort (and their batches) leave after the reply or from the redrive loop; every other outgoing call is made inside the handler. */
const AFTER_REPLY_SERVICE = "paygate.bank.v1.ParticipantService/";
/** The gateway method a scenario's requests call. */
export function serverMethodOf(scenario: Scenario): string | undefined {
  if (scenario === "echo") return undefined;
  return scenario === "card"
    ? "paygate.gateway.v1.CardService/Authorize"
    : "paygate.gateway.v1.PaymentService/Transfer";
}

/** /metrics of every gateway replica and every bank, read at one moment. */
export interface MetricsSnapshot {
  readonly gateways: readonly (readonly Sample[])[];
  readonly banks: ReadonlyMap<string, readonly Sample[]>;
}

export interface BankPrepare {
  readonly bank: string;
  /** The gateway's Prepare/PrepareBatch RPCs to this bank, client side (per RPC). */
  readonly clientMs: number;
  readonly rpcsPerOp: number;
  /** The bank's own handling of them (rpc_server_duration). */
  readonly serverMs: number;
  /** One durable write transaction at the bank (its fsync included), over all its writes in the window. */
  readonly fsyncMs: number;
  readonly fsyncsPerOp: number;
}

export interface OtherRpc {
  readonly target: string;
  readonly method: string;
  readonly perOp: number;
  readonly meanMs: number;
  /** Made inside the handler (a credit report, a ledger lookup), so on the path; else delivery after the reply. */
  readonly inHandler: boolean;
}

export interface Breakdown {
  readonly scenario: Scenario;
  readonly concurrency: number;
  readonly serverMethod: string;
  /** Requests the gateway(s) finished in the window (the denominator of every "per op"). */
  readonly ops: number;
  /** The same per gateway replica, in order: how evenly the load generator spread them. */
  readonly opsPerGateway: readonly number[];
  readonly clientMeanMs: number;
  readonly clientP50Ms: number;
  readonly serverMs: number;
  readonly phases: {
    readonly claimMs: number;
    readonly prepareMs: number;
    readonly decisionLogMs: number;
    readonly commitMs: number;
  };
  readonly banks: readonly BankPrepare[];
  /** Every other outgoing RPC of the gateway in the window (commit delivery, the credit bureau, ...). */
  readonly otherRpcs: readonly OtherRpc[];
  /** The table: each row's ms is a part of the nearest row above it with a smaller depth. */
  readonly rows: readonly BreakdownRow[];
}

export interface BreakdownRow {
  readonly key: string;
  readonly depth: number;
  readonly label: string;
  readonly ms: number;
  /** Calls (RPCs, fsyncs) per operation, where that is what the row counts. */
  readonly perOp?: number;
}

const round = (v: number, digits = 3) =>
  Number.isFinite(v) ? Math.round(v * 10 ** digits) / 10 ** digits : Number.NaN;

function labelSet(samples: readonly (readonly Sample[])[], name: string): { target: string; method: string }[] {
  const seen = new Map<string, { target: string; method: string }>();
  for (const s of samples.flat()) {
    if (s.name !== `${name}_count`) continue;
    const target = s.labels.target ?? "";
    const method = s.labels.method ?? "";
    seen.set(`${target} ${method}`, { target, method });
  }
  return [...seen.values()];
}

type Delta = (name: string, filter?: Record<string, string | readonly string[]>) => HistogramDelta;
type Phases = Breakdown["phases"];
interface BreakdownInput {
  scenario: Scenario;
  concurrency: number;
  client: LatencySummary;
  before: MetricsSnapshot;
  after: MetricsSnapshot;
}

/** Each bank the gateway sent Prepare to in the window: client side, server side, fsyncs. */
function bankPrepares(o: BreakdownInput, g: Delta, ops: number): BankPrepare[] {
  const banks: BankPrepare[] = [];
  for (const [bank, after] of o.after.banks) {
    const client = g(RPC_CLIENT, { target: bank, method: PREPARE_METHODS });
    if (client.count === 0) continue;
    const before = [o.before.banks.get(bank) ?? []];
    const srv = histogramDelta(before, [after], RPC_SERVER, { method: PREPARE_METHODS });
    const fsync = histogramDelta(before, [after], BANK_FSYNC);
    banks.push({
      bank,
      clientMs: meanMs(client),
      rpcsPerOp: client.count / ops,
      serverMs: meanMs(srv),
      fsyncMs: meanMs(fsync),
      fsyncsPerOp: fsync.count / ops,
    });
  }
  banks.sort((a, b) => a.bank.localeCompare(b.bank));

  return banks;
}

/** Every other outgoing RPC of the gateway in the window, most frequent first. */
function otherRpcsOf(o: BreakdownInput, g: Delta, ops: number): OtherRpc[] {
  const otherRpcs: OtherRpc[] = [];
  for (const { target, method } of labelSet(o.after.gateways, RPC_CLIENT)) {
    if (PREPARE_METHODS.includes(method)) continue;
    const d = g(RPC_CLIENT, { target, method });
    if (d.count > 0)
      otherRpcs.push({
        target,
        method: method.replace(/^paygate\.\w+\.v1\./, ""),
        perOp: d.count / ops,
        meanMs: meanMs(d),
        inHandler: !method.startsWith(AFTER_REPLY_SERVICE),
      });
  }
  otherRpcs.sort((a, b) => b.perOp - a.perOp);

  return otherRpcs;
}

/** The table's rows, in order: each row's ms is a part of the nearest row above it with a smaller depth. */
function breakdownRows(
  serverMethod: string,
  client: LatencySummary,
  serverMs: number,
  phases: Phases,
  banks: readonly BankPrepare[],
  otherRpcs: readonly OtherRpc[],
): BreakdownRow[] {
  const rows: BreakdownRow[] = [];
  const row = (key: string, depth: number, label: string, ms: number, perOp?: number) =>
    rows.push({ key, depth, label, ms: round(ms), ...(perOp !== undefined ? { perOp: round(perOp, 2) } : {}) });
  const short = serverMethod.replace(/^.*\//, "");
  row("client", 0, "client-observed (load generator)", client.meanMs);
  row(
    "outside",
    1,
    `outside the gateway's ${short} metric: client↔gateway transport, TLS/HTTP/2, Connect framing, body parse, outer interceptors`,
    client.meanMs - serverMs,
  );
  row("server", 1, `gateway server time (rpc_server_duration ${short})`, serverMs);
  const known = (v: number) => (Number.isFinite(v) ? v : 0);
  row("claim", 2, "claim (durable idempotency claim)", phases.claimMs);
  row("prepare", 2, "prepare round (first Prepare sent → all votes in)", phases.prepareMs);
  for (const b of banks) {
    row(`${b.bank}.client`, 3, `${b.bank}: Prepare RPC, gateway client side (per RPC)`, b.clientMs, b.rpcsPerOp);
    row(`${b.bank}.server`, 4, `${b.bank} server time for Prepare`, b.serverMs);
    row(
      `${b.bank}.fsync`,
      5,
      `${b.bank} durable write incl. fsync (mean over all its writes)`,
      b.fsyncMs,
      b.fsyncsPerOp,
    );
    row(`${b.bank}.wire`, 4, "wire + Connect client/server around it (client − server)", b.clientMs - b.serverMs);
  }
  if (banks.length > 0) {
    const slowest = Math.max(...banks.map((b) => b.clientMs).filter(Number.isFinite));
    row(
      "prepare.wait",
      3,
      "outside the RPCs: batch queue, vote handling (prepare − slowest bank's RPC)",
      phases.prepareMs - slowest,
    );
  }
  row("decision", 2, "decision_log (durable decision write)", phases.decisionLogMs);
  // Calls the handler makes itself (the credit report of a card authorization, a ledger lookup): their share per operation.
  let inHandlerMs = 0;
  for (const r of otherRpcs.filter((x) => x.inHandler)) {
    const share = r.perOp * r.meanMs;
    inHandlerMs += known(share);
    row(
      `rpc.${r.target}.${r.method}`,
      2,
      `${r.target} ${r.method}, gateway client side (calls × mean)`,
      share,
      r.perOp,
    );
  }
  row(
    "rest",
    2,
    "rest of the handler: validation, directory, idempotency fast path, access, reply",
    serverMs - known(phases.claimMs) - known(phases.prepareMs) - known(phases.decisionLogMs) - inHandlerMs,
  );
  row("commit", 0, "after the reply (not in the total): commit delivery, all acks", phases.commitMs);

  return rows;
}

export function computeBreakdown(o: BreakdownInput): Breakdown | undefined {
  const serverMethod = serverMethodOf(o.scenario);
  if (serverMethod === undefined) return undefined;
  const g: Delta = (name, filter = {}) => histogramDelta(o.before.gateways, o.after.gateways, name, filter);
  const server = g(RPC_SERVER, { method: serverMethod });
  if (server.count === 0) return undefined;
  const ops = server.count;
  const phase = (p: string) => meanMs(g(PHASE, { phase: p }));
  const phases = {
    claimMs: phase("claim"),
    prepareMs: phase("prepare"),
    decisionLogMs: phase("decision_log"),
    commitMs: phase("commit"),
  };
  const banks = bankPrepares(o, g, ops);
  const otherRpcs = otherRpcsOf(o, g, ops);
  const serverMs = meanMs(server);
  const rows = breakdownRows(serverMethod, o.client, serverMs, phases, banks, otherRpcs);

  return {
    scenario: o.scenario,
    concurrency: o.concurrency,
    serverMethod,
    ops,
    opsPerGateway: o.before.gateways.map(
      (b, i) => histogramDelta([b], [o.after.gateways[i] ?? []], RPC_SERVER, { method: serverMethod }).count,
    ),
    clientMeanMs: o.client.meanMs,
    clientP50Ms: o.client.p50Ms,
    serverMs: round(serverMs),
    phases: {
      claimMs: round(phases.claimMs),
      prepareMs: round(phases.prepareMs),
      decisionLogMs: round(phases.decisionLogMs),
      commitMs: round(phases.commitMs),
    },
    banks: banks.map((b) => ({
      ...b,
      clientMs: round(b.clientMs),
      serverMs: round(b.serverMs),
      fsyncMs: round(b.fsyncMs),
      rpcsPerOp: round(b.rpcsPerOp, 3),
      fsyncsPerOp: round(b.fsyncsPerOp, 3),
    })),
    otherRpcs: otherRpcs.map((r) => ({ ...r, perOp: round(r.perOp, 3), meanMs: round(r.meanMs) })),
    rows,
  };
}

const fmtMs = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : "–");

/**
 * One Markdown table: a row per part of the path, a column per concurrency
 * (the breakdowns of one scenario in one configuration).
 */
export function breakdownMarkdown(title: string, bds: readonly Breakdown[]): string {
  if (bds.length === 0) return "";
  const keys: BreakdownRow[] = [];
  for (const b of bds) for (const r of b.rows) if (!keys.some((k) => k.key === r.key)) keys.push(r);
  const out = [
    `${title} — mean ms per ${bds[0]!.scenario === "card" ? "authorization" : "transfer"} over the measured window (from the services' /metrics: Δsum ÷ Δcount); each indented row is part of the row above it:`,
    "",
    `| where the time goes | ${bds.map((b) => `c=${b.concurrency}`).join(" | ")} |`,
    `|---|${bds.map(() => "---:").join("|")}|`,
  ];
  for (const k of keys) {
    const cells = bds.map((b) => {
      const r = b.rows.find((x) => x.key === k.key);
      if (!r) return "";
      const share =
        k.depth > 0 && k.key !== "commit" && b.clientMeanMs > 0 && Number.isFinite(r.ms)
          ? ` (${Math.round((r.ms / b.clientMeanMs) * 100)}%)`
          : "";
      return `${fmtMs(r.ms)}${share}${r.perOp !== undefined ? ` ×${r.perOp}` : ""}`;
    });
    out.push(`| ${"· ".repeat(k.depth)}${k.label} | ${cells.join(" | ")} |`);
  }
  out.push(`| client p50 (for skew) | ${bds.map((b) => fmtMs(b.clientP50Ms)).join(" | ")} |`);
  out.push(
    `| operations in the window (server count${bds[0]!.opsPerGateway.length > 1 ? "; per replica" : ""}) | ${bds.map((b) => `${b.ops}${b.opsPerGateway.length > 1 ? ` (${b.opsPerGateway.join(" / ")})` : ""}`).join(" | ")} |`,
  );
  const other = new Map<string, string[]>();
  for (const [i, b] of bds.entries()) {
    for (const r of b.otherRpcs.filter((x) => !x.inHandler)) {
      const key = `${r.target} ${r.method}`;
      if (!other.has(key))
        other.set(
          key,
          bds.map(() => ""),
        );
      other.get(key)![i] = `${fmtMs(r.meanMs)} ×${r.perOp}`;
    }
  }
  for (const [key, cells] of other)
    out.push(`| after the reply or from the redrive loop (per call): ${key} | ${cells.join(" | ")} |`);
  out.push(
    "",
    "“×n” is calls per operation (RPCs per transfer: below 1 when PrepareBatch carries several; fsyncs per transfer at that bank, prepares and commits together). " +
      "Participant RPC and fsync means are per call, not per transfer. Percentages are of the client-observed mean.",
  );
  return out.join("\n");
}
