// Runs many seeds and formats a failure: the seed, the violations and the
// minimal history (the lines that mention the txns involved, plus every
// crash, fault and partition), with the command that replays it.
import { runSimulation, type Broken, type SimResult, type SimStats } from "./world.js";

type Counters = Omit<SimStats, "crashes">;

export type SeedsReport = Counters & {
  readonly from: number;
  readonly seedsRun: number;
  readonly wallMs: number;
  readonly crashes: Record<string, number>;
  readonly failure: SimResult | undefined;
};

export async function runSeeds(o: {
  from: number;
  count: number;
  broken?: Broken;
  tolerate?: RegExp;
  stopOnFailure: boolean;
}): Promise<SeedsReport> {
  const started = performance.now();
  const sum: Record<string, number> = {};
  const crashes: Record<string, number> = {};
  let failure: SimResult | undefined;
  let seedsRun = 0;
  for (let seed = o.from; seed < o.from + o.count; seed++) {
    const r = await runSimulation({
      seed,
      ...(o.broken ? { broken: o.broken } : {}),
      ...(o.tolerate ? { tolerate: o.tolerate } : {}),
    });
    seedsRun++;
    for (const [k, v] of Object.entries(r.stats)) if (typeof v === "number") sum[k] = (sum[k] ?? 0) + v;
    for (const [n, c] of Object.entries(r.stats.crashes)) crashes[n] = (crashes[n] ?? 0) + c;
    if (r.violations.length > 0) {
      failure ??= r;
      if (o.stopOnFailure) break;
    }
  }
  return {
    from: o.from,
    seedsRun,
    wallMs: Math.round(performance.now() - started),
    ...(sum as Counters),
    crashes,
    failure,
  };
}

const HISTORY_LINES_MAX = 120;
/** Six capitals that are states, not auth codes. */
const STATE_WORDS = new Set(["COMMIT", "FAILED", "ACTIVE", "VOIDED"]);

export function formatFailure(r: SimResult, broken?: Broken): string {
  const ids = new Set<string>();
  // Txn ids (gw:xxxxxxxx) and card names (auth codes, batch, refund and authorization keys) the violations mention.
  for (const v of r.violations)
    for (const m of v.matchAll(/gw:[0-9a-f]{8}|\b[A-Z0-9]{6}\b|\b[abr]\d+\b/g))
      if (!STATE_WORDS.has(m[0])) ids.add(m[0]);
  const structural = /CRASH|START|FAULT|PARTITION|FREEZE|HEAL|DISK|STORE|BROKEN|VIOLATION/;
  const mentions = new RegExp(`\\b(${[...ids].join("|")})\\b`);
  let lines = r.history.filter((l) => structural.test(l) || (ids.size > 0 && mentions.test(l)));
  if (ids.size === 0) lines = r.history.slice(-HISTORY_LINES_MAX);
  if (lines.length > HISTORY_LINES_MAX)
    lines = [
      ...lines.slice(0, 20),
      `... ${lines.length - HISTORY_LINES_MAX} lines ...`,
      ...lines.slice(-(HISTORY_LINES_MAX - 20)),
    ];
  return [
    `SIMULATION VIOLATION at seed ${r.seed}`,
    ...r.violations.map((v) => `  ${v}`),
    `replay: node --import tsx test/sim/run.ts --seed ${r.seed} --history${broken ? ` --broken ${broken}` : ""}`,
    "minimal history:",
    ...lines.map((l) => `  ${l}`),
  ].join("\n");
}
