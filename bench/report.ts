// The benchmark's output: one JSON document (everything measured) and a
// Markdown rendering of it, which also becomes bench/README.md's
// "Latest figures" section (or, for a --matrix run, "Latest matrix"), between
// two marker comments, so the rest of the README is never touched. A report
// holds one run per store configuration (store, replicas, driver); a plain
// `make bench` has one.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { breakdownMarkdown, type Breakdown } from "./breakdown.js";
import type { CellResult, DrainResult, SettleResult } from "./load-generator.js";
import type { MachineInfo } from "./lib/proc.js";
import { SCENARIO_TITLES, type Scenario } from "./scenarios.js";

export interface CellRecord extends CellResult {
  /** CPU seconds each process used during the cell (warm-up included). */
  readonly cpuSeconds: Record<string, number>;
  /** CPU milliseconds per successful operation, per process. */
  readonly cpuMsPerOp: Record<string, number>;
  /** okPerSecond ÷ the echo rate at the same concurrency. */
  readonly ratioToEcho?: number;
  /** Log lines at level error or fatal, per service, during the cell. */
  readonly errorLogLines: Record<string, number>;
  /** Cores kept busy by processes outside the benchmark during the cell (noise). */
  readonly otherCores: number;
  /** One durable SQLite commit on this disk just before the cell (I/O noise). */
  readonly fsyncBefore: { readonly p50Ms: number; readonly p90Ms: number };
  /** Set when the whole machine stopped (no timer tick) for this long during the cell: its figures are invalid. */
  readonly stalledMs?: number;
  /** Where the time of one operation went, from the services' /metrics over the measured window. */
  readonly breakdown?: Breakdown;
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface ProcessTotal {
  readonly name: string;
  readonly pid: number;
  readonly cpuSeconds: number;
  readonly peakRssMiB: number;
}

/** One store configuration of a run: what the gateway replicas keep their state in. */
export interface StoreConfig {
  /** e.g. "sqlite ×1", "postgres ×3 (pg)". */
  readonly label: string;
  readonly store: "sqlite" | "postgres";
  readonly gateways: number;
  /** DATABASE_DRIVER (postgres only). */
  readonly driver?: "pg" | "postgres";
  readonly scenarios: readonly Scenario[];
}

export interface Headline {
  readonly echoPeak?: { readonly perSecond: number; readonly concurrency: number };
  readonly crossBankPeak?: {
    readonly perSecond: number;
    readonly concurrency: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
  };
  readonly cardPeak?: { readonly perSecond: number; readonly concurrency: number; readonly p99Ms: number };
  /** Peak cross-bank transfers/s ÷ peak echo calls/s (echo measured once per report). */
  readonly ratio?: number;
  /** Peak hot-credit ÷ peak cross-bank. */
  readonly hotCreditVsUniform?: number;
}

/** Everything measured on one stack. */
export interface RunRecord {
  readonly config: StoreConfig;
  readonly startedAt: string;
  readonly redis: { readonly used: boolean; readonly why: string };
  readonly cells: readonly CellRecord[];
  readonly notRunnable: readonly { readonly scenario: Scenario; readonly why: string }[];
  readonly headline: Headline;
  readonly drain?: DrainResult & { readonly requests: number; readonly affordable: number };
  readonly settle?: SettleResult;
  readonly checks: readonly Check[];
  readonly processes: readonly ProcessTotal[];
  readonly conservation?: unknown;
  readonly profiles: readonly string[];
  /** Set when this configuration could not be run to the end (the others still ran). */
  readonly failed?: string;
}

export interface BenchReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly machine: MachineInfo;
  readonly loadAvgEnd: string;
  readonly options: Record<string, unknown>;
  /** True for --matrix: several store configurations, compared. */
  readonly matrix: boolean;
  /** Concurrencies whose breakdowns the Markdown prints (the JSON keeps every cell's). */
  readonly breakdownAt: readonly number[];
  readonly runs: readonly RunRecord[];
  readonly ok: boolean;
}

const fmt = (n: number | null | undefined, digits = 0) =>
  n === undefined || n === null || Number.isNaN(n)
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

function errorsText(e: Record<string, number>): string {
  const parts = Object.entries(e).sort((a, b) => b[1] - a[1]);
  return parts.length === 0 ? "0" : parts.map(([r, n]) => `${n} ${r}`).join(", ");
}

/** Other work took CPU or disk during the cell: its figures understate paygate. */
export const noisy = (c: CellRecord) =>
  c.stalledMs !== undefined || c.otherCores > NOISY_OTHER_CORES || c.fsyncBefore.p50Ms > NOISY_FSYNC_MS;
const NOISY_OTHER_CORES = 0.3;
const NOISY_FSYNC_MS = 1;

export function peakOf(cells: readonly CellRecord[], scenario: Scenario): CellRecord | undefined {
  return cells.filter((c) => c.scenario === scenario).sort((a, b) => b.okPerSecond - a.okPerSecond)[0];
}

/** Echo is measured once per report (its ceiling does not depend on the store): the best echo cell of any run. */
export function echoPeakOf(runs: readonly RunRecord[]): CellRecord | undefined {
  return peakOf(
    runs.flatMap((r) => r.cells),
    "echo",
  );
}

export function headlineOf(cells: readonly CellRecord[], echoPeak: CellRecord | undefined): Headline {
  const crossPeak = peakOf(cells, "cross-bank");
  const hotPeak = peakOf(cells, "hot-credit");
  const cardPeak = peakOf(cells, "card");
  return {
    ...(echoPeak ? { echoPeak: { perSecond: echoPeak.okPerSecond, concurrency: echoPeak.concurrency } } : {}),
    ...(crossPeak
      ? {
          crossBankPeak: {
            perSecond: crossPeak.okPerSecond,
            concurrency: crossPeak.concurrency,
            p50Ms: crossPeak.latency.p50Ms,
            p99Ms: crossPeak.latency.p99Ms,
          },
        }
      : {}),
    ...(cardPeak
      ? {
          cardPeak: {
            perSecond: cardPeak.okPerSecond,
            concurrency: cardPeak.concurrency,
            p99Ms: cardPeak.latency.p99Ms,
          },
        }
      : {}),
    ...(echoPeak && crossPeak ? { ratio: Math.round((crossPeak.okPerSecond / echoPeak.okPerSecond) * 100) / 100 } : {}),
    ...(hotPeak && crossPeak
      ? { hotCreditVsUniform: Math.round((hotPeak.okPerSecond / crossPeak.okPerSecond) * 100) / 100 }
      : {}),
  };
}

export function storeText(c: StoreConfig): string {
  if (c.store === "sqlite") return "durable SQLite (WAL, synchronous=FULL), one gateway";
  return `PostgreSQL (a private initdb cluster on this machine, fsync and synchronous_commit on; driver \`${c.driver ?? "pg"}\`), ${c.gateways} gateway replica${c.gateways > 1 ? "s, requests spread round-robin over them" : ""}`;
}

/** Processes that are the system under test (not the load generator, the echo server or the delay proxy). */
const NOT_SERVICES = new Set(["load-generator", "echo", "delay-proxy", "bench-orchestrator"]);

function headerText(r: BenchReport): string {
  const m = r.machine;
  const redis = r.runs.some((x) => x.redis.used);
  const stores = r.matrix
    ? "each configuration below on its own fresh stack"
    : r.runs[0]
      ? `${storeText(r.runs[0].config)}`
      : "";
  return (
    `Measured ${r.startedAt.slice(0, 16).replace("T", " ")} UTC with \`${r.command}\` on ${m.nproc} × ${m.cpuModel}, ${fmt(m.memTotalMiB)} MiB, Node ${m.node}. ` +
    `Load average at start ${m.loadAvg}, at end ${r.loadAvgEnd}` +
    (Number(m.loadAvg.split(" ")[0]) > m.nproc * 0.5
      ? " — **other work was running on this machine, so these figures are noisy**."
      : ".") +
    ` Load generator, services${redis ? ", Redis" : ""}${r.runs.some((x) => x.config.store === "postgres") ? ", PostgreSQL" : ""} and echo server share the same ${m.nproc} cores. ` +
    `Store: ${stores}; mTLS HTTP/2 everywhere; Redis: ${redis ? "yes" : `no (${r.runs[0]?.redis.why ?? ""})`}.`
  );
}

/** Breakdown tables of one run: cross-bank at the chosen concurrencies (card too when measured). */
function breakdownsOf(run: RunRecord, at: readonly number[], title: string): string[] {
  const out: string[] = [];
  for (const scenario of ["cross-bank", "card"] as const) {
    const bds = run.cells
      .filter((c) => c.scenario === scenario && c.breakdown && (at.length === 0 || at.includes(c.concurrency)))
      .map((c) => c.breakdown!);
    if (bds.length) out.push(breakdownMarkdown(`**Latency breakdown, ${SCENARIO_TITLES[scenario]}${title}**`, bds), "");
  }
  return out;
}

/** One run's tables: every cell, the notes, CPU per operation, processes, checks, profiles. */
function runBody(run: RunRecord, r: BenchReport): string[] {
  const out: string[] = [];
  if (run.failed) out.push(`- ⛔ This configuration did not run to the end: ${run.failed}`, "");
  out.push(
    "| scenario | concurrency | ok/s | p50 ms | p90 ms | p99 ms | failures in window | × echo | other load (cores) | fsync p50 ms |",
    "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
  );
  for (const c of run.cells) {
    out.push(
      `| ${SCENARIO_TITLES[c.scenario]} | ${c.concurrency} | ${fmt(c.okPerSecond)}${c.stalledMs ? " ⛔" : noisy(c) ? " ⚠" : ""} | ${fmt(c.latency.p50Ms, 1)} | ${fmt(c.latency.p90Ms, 1)} | ${fmt(c.latency.p99Ms, 1)} | ${errorsText(c.errors)} | ${c.ratioToEcho === undefined ? "" : fmt(c.ratioToEcho, 2)} | ${fmt(c.otherCores, 2)} | ${fmt(c.fsyncBefore.p50Ms, 2)} |`,
    );
  }
  for (const n of run.notRunnable)
    out.push(`| ${SCENARIO_TITLES[n.scenario]} | – | not yet runnable | | | | ${n.why} | | | |`);
  out.push(
    "",
    'Noise indicators: "other load" is the CPU (in cores) that processes outside this benchmark used during the cell; "fsync" is one durable SQLite commit (WAL, synchronous=FULL) on this disk just before the cell. Rows marked ⚠ (other load above 0.3 cores, or fsync above 1 ms against ~0.2–0.3 ms when quiet) were slowed by other work on the machine.',
  );
  out.push("");
  const storms = run.cells.filter((c) => c.storm);
  if (storms.length) {
    out.push(
      `Duplicate-key storm: each key is sent by ${storms[0]!.storm!.requestsPerKey} requests at once; ok/s counts answered requests (duplicates answered with the stored result included), ` +
        `retries on \`idempotency_key_in_use\` are inside the latency. Keys: ${storms.map((c) => `c=${c.concurrency}: ${c.storm!.keysCommitted}/${c.storm!.keys} committed, ${c.storm!.keysWithSeveralTxns} with more than one txn, ${c.totals.retries} retries`).join("; ")}.`,
      "",
    );
  }
  if (run.drain)
    out.push(
      `Hot-debit overdraft check: ${run.drain.requests} concurrent 1-unit transfers from an account holding ${run.drain.affordable}: ${run.drain.committed} committed, declined: ${errorsText(run.drain.errors)}.`,
      "",
    );
  if (run.settle) {
    const s = run.settle;
    out.push(
      `Card batch settle of ${fmt(s.offered)} authorizations, SettleBatch calls of up to ${fmt(Number(r.options["settle-batch-max"]))} items one after another: ` +
        `${fmt(s.captured)} captured in ${fmt(s.calls)} call(s), ${fmt(s.elapsedMs)} ms (**${fmt(s.itemsPerSecond)} items/s**)` +
        `${s.items < s.offered ? `; stopped at the ${fmt(s.budgetMs / 1000)} s budget (\`--settle-budget-s\`), the other ${fmt(s.offered - s.items)} stay authorized` : ""}; failed: ${errorsText(s.failed)}.`,
      "",
    );
  }

  // CPU per operation at each scenario's best concurrency: where the time goes.
  const names = [...new Set(run.cells.flatMap((c) => Object.keys(c.cpuMsPerOp)))];
  if (names.length) {
    out.push(
      "CPU milliseconds per successful operation, at each scenario's best concurrency (all processes share the cores, so the sum is the machine's cost of one operation):",
      "",
    );
    out.push(`| scenario | c | ${names.join(" | ")} |`, `|---|---:|${names.map(() => "---:").join("|")}|`);
    for (const s of [...new Set(run.cells.map((c) => c.scenario))]) {
      const p = peakOf(run.cells, s)!;
      out.push(`| ${s} | ${p.concurrency} | ${names.map((n) => fmt(p.cpuMsPerOp[n], 2)).join(" | ")} |`);
    }
    out.push("");
  }
  out.push(
    "| process | CPU s (whole run) | peak RSS MiB |",
    "|---|---:|---:|",
    ...run.processes.map((p) => `| ${p.name} | ${fmt(p.cpuSeconds, 1)} | ${fmt(p.peakRssMiB, 1)} |`),
    "",
  );
  if (run.processes.some((p) => p.name === "postgres"))
    out.push(
      "PostgreSQL's CPU is the whole private cluster (postmaster, every backend and auxiliary process, and those that exited: read from /proc); its RSS is not summed (shared memory would count once per process).",
      "",
    );
  out.push("Checks:", "", ...run.checks.map((c) => `- ${c.ok ? "✅" : "❌"} ${c.name}: ${c.detail}`), "");
  for (const p of run.profiles) out.push(p, "");
  return out;
}

function singleMarkdown(r: BenchReport): string {
  const run = r.runs[0]!;
  const h = run.headline;
  const out: string[] = [headerText(r), ""];
  if (h.echoPeak)
    out.push(
      `- **Echo ceiling** (a bare Connect unary call of the same Transfer message, same load generator, same mTLS HTTP/2 server code): **${fmt(h.echoPeak.perSecond)} calls/s** (c=${h.echoPeak.concurrency}).`,
    );
  if (h.crossBankPeak)
    out.push(
      `- **Cross-bank transfers**: **${fmt(h.crossBankPeak.perSecond)} transfers/s** (c=${h.crossBankPeak.concurrency}, p99 ${fmt(h.crossBankPeak.p99Ms, 1)} ms).`,
    );
  const noisyHeadline = ["echo", "cross-bank"].flatMap((s) =>
    run.cells.filter((c) => c.scenario === s && noisy(c)).map((c) => `${s} c=${c.concurrency}`),
  );
  if (noisyHeadline.length)
    out.push(
      `- ⚠ Measured while other work loaded the machine (${noisyHeadline.join(", ")}): treat the headline ratio as a lower bound and rerun on a quiet machine.`,
    );
  if (h.ratio !== undefined)
    out.push(`- **Ratio transfers/s ÷ echo/s = ${fmt(h.ratio, 2)}** (target ≥ 0.5, moonshot ≥ 0.8).`);
  if (h.hotCreditVsUniform !== undefined)
    out.push(`- Hot account ÷ uniform = ${fmt(h.hotCreditVsUniform, 2)} (target ≥ 0.8).`);
  out.push(...stallLines(r));
  const gw = run.processes.filter((p) => p.name === "gateway" || /^gateway-\d+$/.test(p.name));
  for (const g of gw)
    out.push(`- ${g.name === "gateway" ? "Gateway" : g.name} peak RSS ${fmt(g.peakRssMiB, 1)} MiB (target ≤ 256).`);
  out.push("");
  out.push(...runBody(run, r));
  out.push(...breakdownsOf(run, r.breakdownAt, ""));
  return out.join("\n");
}

function stallLines(r: BenchReport): string[] {
  const stalled = r.runs.flatMap((run) => run.cells.filter((c) => c.stalledMs).map((c) => ({ run, c })));
  if (!stalled.length) return [];
  return [
    `- ⛔ The machine stopped for ${stalled.map(({ run, c }) => `${fmt((c.stalledMs ?? 0) / 1000)} s during ${r.matrix ? `${run.config.label} ` : ""}${c.scenario} c=${c.concurrency}`).join(", ")} (no timer ticked: a paused VM): those rows are invalid, and so are the whole-run CPU totals below. The money checks still ran after it.`,
  ];
}

/** Gateway replicas first (in order), then the store, the banks, the rest. */
function processOrder(a: string, b: string): number {
  const rank = (n: string) =>
    n === "gateway" || /^gateway-\d+$/.test(n)
      ? 0
      : n === "postgres"
        ? 1
        : /^bank-/.test(n)
          ? 2
          : NOT_SERVICES.has(n)
            ? 4
            : 3;
  return rank(a) - rank(b) || a.localeCompare(b, "en", { numeric: true });
}

/** CPU per transfer of every process at the cross-bank peak: the input of a capacity projection. */
function cpuPerTransferLines(r: BenchReport): string[] {
  const out: string[] = [];
  const peaks = r.runs
    .map((run) => ({ run, p: peakOf(run.cells, "cross-bank") }))
    .filter((x): x is { run: RunRecord; p: CellRecord } => x.p !== undefined);
  const names = [
    ...new Set(peaks.flatMap(({ p }) => Object.keys(p.cpuMsPerOp).filter((n) => (p.cpuSeconds[n] ?? 0) > 0.005))),
  ].sort(processOrder);
  if (peaks.length) {
    out.push(
      'CPU milliseconds per committed cross-bank transfer, per process, at each configuration\'s peak (warm-up included). "services" sums the system under test (gateways, PostgreSQL, banks, Redis, bureau), not the load generator, echo or proxy; "per core" is 1000 ÷ that sum: the transfers/s one fully used core would carry at this cost, the figure to scale to a bigger node.',
      "",
    );
    out.push(
      `| configuration | c | ${names.join(" | ")} | services | per core /s |`,
      `|---|---:|${names.map(() => "---:").join("|")}|---:|---:|`,
    );
    for (const { run, p } of peaks) {
      const services = names.filter((n) => !NOT_SERVICES.has(n)).reduce((a, n) => a + (p.cpuMsPerOp[n] ?? 0), 0);
      out.push(
        `| ${run.config.label} | ${p.concurrency} | ${names.map((n) => (p.cpuMsPerOp[n] === undefined ? "" : fmt(p.cpuMsPerOp[n], 2))).join(" | ")} | ${fmt(services, 2)} | ${services > 0 ? fmt(1000 / services) : "–"} |`,
      );
    }
    out.push("");
  }
  return out;
}

/** Driver comparison: the same scenario, one replica, pg vs postgres. */
function driverComparisonLines(r: BenchReport): string[] {
  const out: string[] = [];
  const single = r.runs.filter((run) => run.config.store === "postgres" && run.config.gateways === 1);
  if (new Set(single.map((x) => x.config.driver)).size > 1) {
    out.push(
      "PostgreSQL driver comparison on the transfer path (cross-bank, one replica, same PG settings; `DATABASE_DRIVER`):",
      "",
    );
    out.push(
      "| driver | c | transfers/s | p50 ms | p90 ms | p99 ms | gateway CPU ms/transfer | postgres CPU ms/transfer |",
      "|---|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const run of single) {
      const peak = peakOf(run.cells, "cross-bank");
      for (const c of run.cells.filter((x) => x.scenario === "cross-bank")) {
        out.push(
          `| ${run.config.driver}${c === peak ? " (peak)" : ""} | ${c.concurrency} | ${fmt(c.okPerSecond)}${noisy(c) ? " ⚠" : ""} | ${fmt(c.latency.p50Ms, 1)} | ${fmt(c.latency.p90Ms, 1)} | ${fmt(c.latency.p99Ms, 1)} | ${fmt(c.cpuMsPerOp.gateway, 2)} | ${fmt(c.cpuMsPerOp.postgres, 2)} |`,
        );
      }
    }
    out.push("");
  }
  return out;
}

function matrixMarkdown(r: BenchReport): string {
  const out: string[] = [headerText(r), ""];
  const echo = echoPeakOf(r.runs);
  if (echo)
    out.push(
      `- **Echo ceiling** (measured once, in the first configuration; it does not depend on the store): **${fmt(echo.okPerSecond)} calls/s** (c=${echo.concurrency}).`,
    );
  out.push(...stallLines(r));
  const noisyRows = r.runs.flatMap((run) =>
    run.cells
      .filter((c) => c.scenario === "cross-bank" && noisy(c))
      .map((c) => `${run.config.label} c=${c.concurrency}`),
  );
  if (noisyRows.length)
    out.push(
      `- ⚠ Measured while other work loaded the machine (${noisyRows.join(", ")}): compare configurations with care and rerun on a quiet machine.`,
    );
  out.push("");

  out.push("Cross-bank transfers (and card authorize) per store configuration, at each one's best concurrency:", "");
  out.push(
    "| configuration | cross-bank peak/s | at c | p50 ms | p99 ms | × echo | card authorize peak/s | at c | card p99 ms | gateway peak RSS MiB (max over replicas) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const run of r.runs) {
    const h = run.headline;
    const x = h.crossBankPeak;
    const k = h.cardPeak;
    const rss = Math.max(
      ...run.processes.filter((p) => p.name === "gateway" || /^gateway-\d+$/.test(p.name)).map((p) => p.peakRssMiB),
    );
    out.push(
      `| ${run.config.label}${run.failed ? " ⛔" : ""} | ${x ? fmt(x.perSecond) : "–"} | ${x?.concurrency ?? ""} | ${x ? fmt(x.p50Ms, 1) : ""} | ${x ? fmt(x.p99Ms, 1) : ""} | ${h.ratio === undefined ? "" : fmt(h.ratio, 2)} | ${k ? fmt(k.perSecond) : "–"} | ${k?.concurrency ?? ""} | ${k ? fmt(k.p99Ms, 1) : ""} | ${Number.isFinite(rss) ? fmt(rss, 1) : "–"} |`,
    );
  }
  out.push("");

  out.push(...cpuPerTransferLines(r));
  out.push(...driverComparisonLines(r));

  for (const run of r.runs) out.push(...breakdownsOf(run, r.breakdownAt, `, ${run.config.label}`));

  for (const run of r.runs) {
    out.push(`#### ${run.config.label}: ${storeText(run.config)}`, "");
    out.push(...runBody(run, r));
  }
  return out.join("\n");
}

export function renderMarkdown(r: BenchReport): string {
  return r.matrix ? matrixMarkdown(r) : singleMarkdown(r);
}

/** The README sections a full run rewrites: a plain `make bench`, and `--matrix`. */
export const README_SECTIONS = {
  figures: { marker: "latest-figures", title: "Latest figures" },
  matrix: { marker: "latest-matrix", title: "Latest matrix (store × replicas)" },
} as const;

/** Replaces only the marked section (adding it, or the file, if missing). */
export function updateReadme(
  path: string,
  markdown: string,
  skeleton: string,
  section: keyof typeof README_SECTIONS = "figures",
): void {
  const { marker, title } = README_SECTIONS[section];
  const start = `<!-- ${marker}:start -->`;
  const end = `<!-- ${marker}:end -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  const current = existsSync(path) ? readFileSync(path, "utf8") : skeleton;
  const a = current.indexOf(start);
  const b = current.indexOf(end);
  const next =
    a >= 0 && b > a
      ? current.slice(0, a) + block + current.slice(b + end.length)
      : `${current.trimEnd()}\n\n## ${title}\n\n${block}\n`;
  writeFileSync(path, next);
}
