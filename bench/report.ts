// The benchmark's output: one JSON document (everything measured) and a
// Markdown rendering of it, which also becomes bench/README.md's
// "Latest figures" section (between two marker comments, so the rest of the
// README is never touched).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
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

export interface BenchReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly command: string;
  readonly machine: MachineInfo;
  readonly loadAvgEnd: string;
  readonly options: Record<string, unknown>;
  readonly redis: { readonly used: boolean; readonly why: string };
  readonly cells: readonly CellRecord[];
  readonly notRunnable: readonly { readonly scenario: Scenario; readonly why: string }[];
  readonly headline: {
    readonly echoPeak?: { readonly perSecond: number; readonly concurrency: number };
    readonly crossBankPeak?: { readonly perSecond: number; readonly concurrency: number; readonly p99Ms: number };
    /** Peak cross-bank transfers/s ÷ peak echo calls/s. */
    readonly ratio?: number;
    /** Peak hot-credit ÷ peak cross-bank. */
    readonly hotCreditVsUniform?: number;
  };
  readonly drain?: DrainResult & { readonly requests: number; readonly affordable: number };
  readonly settle?: SettleResult;
  readonly checks: readonly Check[];
  readonly processes: readonly ProcessTotal[];
  readonly conservation?: unknown;
  readonly profiles: readonly string[];
  readonly ok: boolean;
}

const fmt = (n: number | null | undefined, digits = 0) => (n === undefined || n === null || Number.isNaN(n) ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function errorsText(e: Record<string, number>): string {
  const parts = Object.entries(e).sort((a, b) => b[1] - a[1]);
  return parts.length === 0 ? "0" : parts.map(([r, n]) => `${n} ${r}`).join(", ");
}

/** Other work took CPU or disk during the cell: its figures understate paygate. */
export const noisy = (c: CellRecord) => c.stalledMs !== undefined || c.otherCores > NOISY_OTHER_CORES || c.fsyncBefore.p50Ms > NOISY_FSYNC_MS;
const NOISY_OTHER_CORES = 0.3;
const NOISY_FSYNC_MS = 1;

export function peakOf(cells: readonly CellRecord[], scenario: Scenario): CellRecord | undefined {
  return cells.filter((c) => c.scenario === scenario).sort((a, b) => b.okPerSecond - a.okPerSecond)[0];
}

export function renderMarkdown(r: BenchReport): string {
  const m = r.machine;
  const h = r.headline;
  const out: string[] = [];
  out.push(
    `Measured ${r.startedAt.slice(0, 16).replace("T", " ")} UTC with \`${r.command}\` on ${m.nproc} × ${m.cpuModel}, ${fmt(m.memTotalMiB)} MiB, Node ${m.node}. ` +
      `Load average at start ${m.loadAvg}, at end ${r.loadAvgEnd}` +
      (Number(m.loadAvg.split(" ")[0]) > m.nproc * 0.5 ? " — **other work was running on this machine, so these figures are noisy**." : ".") +
      ` Load generator, services${r.redis.used ? ", Redis" : ""} and echo server share the same ${m.nproc} cores. Durable SQLite (WAL, synchronous=FULL), mTLS HTTP/2 everywhere; Redis: ${r.redis.used ? "yes" : `no (${r.redis.why})`}.`,
    "",
  );
  if (h.echoPeak) out.push(`- **Echo ceiling** (a bare Connect unary call of the same Transfer message, same load generator, same mTLS HTTP/2 server code): **${fmt(h.echoPeak.perSecond)} calls/s** (c=${h.echoPeak.concurrency}).`);
  if (h.crossBankPeak) out.push(`- **Cross-bank transfers**: **${fmt(h.crossBankPeak.perSecond)} transfers/s** (c=${h.crossBankPeak.concurrency}, p99 ${fmt(h.crossBankPeak.p99Ms, 1)} ms).`);
  const noisyHeadline = ["echo", "cross-bank"].flatMap((s) => r.cells.filter((c) => c.scenario === s && noisy(c)).map((c) => `${s} c=${c.concurrency}`));
  if (noisyHeadline.length) out.push(`- ⚠ Measured while other work loaded the machine (${noisyHeadline.join(", ")}): treat the headline ratio as a lower bound and rerun on a quiet machine.`);
  if (h.ratio !== undefined) out.push(`- **Ratio transfers/s ÷ echo/s = ${fmt(h.ratio, 2)}** (target ≥ 0.5, moonshot ≥ 0.8).`);
  if (h.hotCreditVsUniform !== undefined) out.push(`- Hot account ÷ uniform = ${fmt(h.hotCreditVsUniform, 2)} (target ≥ 0.8).`);
  const stalled = r.cells.filter((c) => c.stalledMs);
  if (stalled.length) {
    out.push(
      `- ⛔ The machine stopped for ${stalled.map((c) => `${fmt((c.stalledMs ?? 0) / 1000)} s during ${c.scenario} c=${c.concurrency}`).join(", ")} (no timer ticked: a paused VM): those rows are invalid, and so are the whole-run CPU totals below. The money checks still ran after it.`,
    );
  }
  const gw = r.processes.find((p) => p.name === "gateway");
  if (gw) out.push(`- Gateway peak RSS ${fmt(gw.peakRssMiB, 1)} MiB (target ≤ 256).`);
  out.push("");
  out.push("| scenario | concurrency | ok/s | p50 ms | p90 ms | p99 ms | failures in window | × echo | other load (cores) | fsync p50 ms |", "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|");
  for (const c of r.cells) {
    out.push(`| ${SCENARIO_TITLES[c.scenario]} | ${c.concurrency} | ${fmt(c.okPerSecond)}${c.stalledMs ? " ⛔" : noisy(c) ? " ⚠" : ""} | ${fmt(c.latency.p50Ms, 1)} | ${fmt(c.latency.p90Ms, 1)} | ${fmt(c.latency.p99Ms, 1)} | ${errorsText(c.errors)} | ${c.ratioToEcho === undefined ? "" : fmt(c.ratioToEcho, 2)} | ${fmt(c.otherCores, 2)} | ${fmt(c.fsyncBefore.p50Ms, 2)} |`);
  }
  for (const n of r.notRunnable) out.push(`| ${SCENARIO_TITLES[n.scenario]} | – | not yet runnable | | | | ${n.why} | | | |`);
  out.push(
    "",
    "Noise indicators: \"other load\" is the CPU (in cores) that processes outside this benchmark used during the cell; \"fsync\" is one durable SQLite commit (WAL, synchronous=FULL) on this disk just before the cell. Rows marked ⚠ (other load above 0.3 cores, or fsync above 1 ms against ~0.2–0.3 ms when quiet) were slowed by other work on the machine.",
  );
  out.push("");
  const storms = r.cells.filter((c) => c.storm);
  if (storms.length) {
    out.push(
      `Duplicate-key storm: each key is sent by ${storms[0]!.storm!.requestsPerKey} requests at once; ok/s counts answered requests (duplicates answered with the stored result included), ` +
        `retries on \`idempotency_key_in_use\` are inside the latency. Keys: ${storms.map((c) => `c=${c.concurrency}: ${c.storm!.keysCommitted}/${c.storm!.keys} committed, ${c.storm!.keysWithSeveralTxns} with more than one txn, ${c.totals.retries} retries`).join("; ")}.`,
      "",
    );
  }
  if (r.drain) out.push(`Hot-debit overdraft check: ${r.drain.requests} concurrent 1-unit transfers from an account holding ${r.drain.affordable}: ${r.drain.committed} committed, declined: ${errorsText(r.drain.errors)}.`, "");
  if (r.settle) {
    const s = r.settle;
    out.push(
      `Card batch settle of ${fmt(s.offered)} authorizations, SettleBatch calls of up to ${fmt(Number(r.options["settle-batch-max"]))} items one after another: ` +
        `${fmt(s.captured)} captured in ${fmt(s.calls)} call(s), ${fmt(s.elapsedMs)} ms (**${fmt(s.itemsPerSecond)} items/s**)` +
        `${s.items < s.offered ? `; stopped at the ${fmt(s.budgetMs / 1000)} s budget (\`--settle-budget-s\`), the other ${fmt(s.offered - s.items)} stay authorized` : ""}; failed: ${errorsText(s.failed)}.`,
      "",
    );
  }

  // CPU per operation at each scenario's best concurrency: where the time goes.
  const names = [...new Set(r.cells.flatMap((c) => Object.keys(c.cpuMsPerOp)))];
  if (names.length) {
    out.push("CPU milliseconds per successful operation, at each scenario's best concurrency (all processes share the cores, so the sum is the machine's cost of one operation):", "");
    out.push(`| scenario | c | ${names.join(" | ")} |`, `|---|---:|${names.map(() => "---:").join("|")}|`);
    for (const s of [...new Set(r.cells.map((c) => c.scenario))]) {
      const p = peakOf(r.cells, s)!;
      out.push(`| ${s} | ${p.concurrency} | ${names.map((n) => fmt(p.cpuMsPerOp[n], 2)).join(" | ")} |`);
    }
    out.push("");
  }
  out.push("| process | CPU s (whole run) | peak RSS MiB |", "|---|---:|---:|", ...r.processes.map((p) => `| ${p.name} | ${fmt(p.cpuSeconds, 1)} | ${fmt(p.peakRssMiB, 1)} |`), "");
  out.push("Checks:", "", ...r.checks.map((c) => `- ${c.ok ? "✅" : "❌"} ${c.name}: ${c.detail}`), "");
  for (const p of r.profiles) out.push(p, "");
  return out.join("\n");
}

export const README_START = "<!-- latest-figures:start -->";
export const README_END = "<!-- latest-figures:end -->";

/** Replaces only the marked section (adding it, or the file, if missing). */
export function updateReadme(path: string, markdown: string, skeleton: string): void {
  const block = `${README_START}\n${markdown.trim()}\n${README_END}`;
  const current = existsSync(path) ? readFileSync(path, "utf8") : skeleton;
  const a = current.indexOf(README_START);
  const b = current.indexOf(README_END);
  const next = a >= 0 && b > a ? current.slice(0, a) + block + current.slice(b + README_END.length) : `${current.trimEnd()}\n\n## Latest figures\n\n${block}\n`;
  writeFileSync(path, next);
}
