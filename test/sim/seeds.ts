// Runs many seeds and formats a failure: the seed, the violations and the
// minimal history (the lines that mention the txns involved, plus every
// crash, fault and partition), with the command that replays it.
import { runSimulation, type Broken, type SimResult } from "./world.js";

export interface SeedsReport {
  readonly from: number;
  readonly seedsRun: number;
  readonly wallMs: number;
  readonly steps: number;
  readonly virtualMs: number;
  readonly transfers: number;
  readonly committed: number;
  readonly aborted: number;
  readonly getDecisions: number;
  readonly messages: number;
  readonly dropped: number;
  readonly duplicated: number;
  readonly crashes: Record<string, number>;
  readonly faultPointCrashes: number;
  readonly diskErrors: number;
  readonly partitions: number;
  readonly freezes: number;
  readonly failure: SimResult | undefined;
}

export async function runSeeds(o: { from: number; count: number; broken?: Broken; stopOnFailure: boolean }): Promise<SeedsReport> {
  const started = performance.now();
  const sum = { steps: 0, virtualMs: 0, transfers: 0, committed: 0, aborted: 0, getDecisions: 0, messages: 0, dropped: 0, duplicated: 0, faultPointCrashes: 0, diskErrors: 0, partitions: 0, freezes: 0 };
  const crashes: Record<string, number> = {};
  let failure: SimResult | undefined;
  let seedsRun = 0;
  for (let seed = o.from; seed < o.from + o.count; seed++) {
    const r = await runSimulation({ seed, ...(o.broken ? { broken: o.broken } : {}) });
    seedsRun++;
    for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += r.stats[k];
    for (const [n, c] of Object.entries(r.stats.crashes)) crashes[n] = (crashes[n] ?? 0) + c;
    if (r.violations.length > 0) {
      failure ??= r;
      if (o.stopOnFailure) break;
    }
  }
  return { from: o.from, seedsRun, wallMs: Math.round(performance.now() - started), ...sum, crashes, failure };
}

const HISTORY_LINES_MAX = 120;

export function formatFailure(r: SimResult, broken?: Broken): string {
  const ids = new Set<string>();
  for (const v of r.violations) for (const m of v.matchAll(/gw:[0-9a-f]{8}/g)) ids.add(m[0]);
  const structural = /CRASH|START|FAULT|PARTITION|FREEZE|HEAL|DISK|BROKEN|VIOLATION/;
  let lines = r.history.filter((l) => structural.test(l) || [...ids].some((id) => l.includes(id)));
  if (ids.size === 0) lines = r.history.slice(-HISTORY_LINES_MAX);
  if (lines.length > HISTORY_LINES_MAX) lines = [...lines.slice(0, 20), `... ${lines.length - HISTORY_LINES_MAX} lines ...`, ...lines.slice(-(HISTORY_LINES_MAX - 20))];
  return [
    `SIMULATION VIOLATION at seed ${r.seed}`,
    ...r.violations.map((v) => `  ${v}`),
    `replay: node --import tsx test/sim/run.ts --seed ${r.seed} --history${broken ? ` --broken ${broken}` : ""}`,
    "minimal history:",
    ...lines.map((l) => `  ${l}`),
  ].join("\n");
}
