// One chaos run: start the stack, drive the workload, inject faults for the
// duration, check periodically, heal, let everything settle, check exactly.
// The seed fixes the workload's and the nemesis's choices (which fault, which
// target, how long); wall-clock timing still varies, so a seed narrows a
// failure down rather than replaying it step for step (test/sim does that).
import Database from "better-sqlite3";
import { LedgerService } from "@paygate/proto/bank";
import { createRng } from "../sim/rng.js";
import { Cluster, CUSTOMERS } from "./cluster.js";
import { createChecker, type CheckerFigures } from "./checker.js";
import { History } from "./history.js";
import { createNemesis, type NemesisStats } from "./nemesis.js";
import { createWorkload, sleep, type WorkloadStats } from "./workload.js";

export interface ChaosOptions {
  readonly seed: number;
  readonly durationS: number;
  readonly banks: number;
  readonly workers: number;
  readonly redis: boolean;
  readonly checkEveryS: number;
  readonly log: (line: string) => void;
  /**
   * Control runs only: break the books behind the system's back before the
   * final check (a deposit straight at a bank, a COMMIT rewritten to ABORT in
   * the gateway's log), which the checker must report.
   */
  readonly tamper?: boolean;
}

export interface ChaosReport {
  readonly seed: number;
  readonly durationS: number;
  readonly wallS: number;
  readonly violations: readonly string[];
  readonly nemesis: NemesisStats;
  readonly workload: WorkloadStats;
  readonly checker: CheckerFigures;
  readonly keysWithoutAnswer: number;
}

const PREPARE_TIMEOUT_MS = 1500;
const RESOLVE_BACKOFF_MAX_MS = 2000;
/** After healing, in-doubt txns must be gone within the prepare timeout plus this resolution window. */
const RESOLUTION_WINDOW_MS = 45_000;

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const rng = createRng(o.seed);
  const history = new History();
  const banks = ["bank-a", "bank-b", "bank-c"].slice(0, Math.max(2, Math.min(3, o.banks)));
  o.log(`chaos seed ${o.seed}: ${banks.length} banks${o.redis ? " + redis" : ""}, ${o.workers} clients, ${o.durationS} s of faults`);
  const cluster = await Cluster.start({ banks, redis: o.redis, prepareTimeoutMs: PREPARE_TIMEOUT_MS, resolveBackoffMaxMs: RESOLVE_BACKOFF_MAX_MS });
  try {
    const tokens = new Map<string, string>();
    for (const u of CUSTOMERS) tokens.set(u, await cluster.login(u));
    const workload = createWorkload(cluster, rng.fork(), history, tokens);
    const checker = createChecker(cluster, history, workload.keys);
    const nemesis = createNemesis(cluster, rng.fork(), history, { concurrentMax: 3, intervalMs: [200, 1600], armedWindowMs: 6_000 });

    await checker.periodic();
    const traffic = workload.run(o.workers);
    nemesis.start();
    const until = Date.now() + o.durationS * 1000;
    while (Date.now() < until) {
      await sleep(Math.min(o.checkEveryS * 1000, Math.max(0, until - Date.now())));
      await checker.periodic();
      cluster.trimLogs();
      const n = nemesis.stats;
      o.log(
        `+${Math.round((Date.now() - started) / 1000)}s crashes ${n.crashes}, faults ${JSON.stringify(n.faults)}, transfers ${workload.stats.transfers}, log ${checker.figures.committed} committed / ${checker.figures.aborted} aborted, violations ${checker.violations.length}`,
      );
    }
    o.log("healing: faults stop, links heal, every process runs");
    workload.stop();
    await nemesis.stop();
    await traffic;
    const keysWithoutAnswer = await workload.finish();
    if (o.tamper) await tamper(cluster, o.log);
    await checker.final(PREPARE_TIMEOUT_MS + RESOLUTION_WINDOW_MS);
    if (nemesis.stats.unexpectedExits.length > 0) {
      for (const e of nemesis.stats.unexpectedExits) checker.violations.push(`a process died on its own (not killed by the nemesis): ${e}`);
    }
    return {
      seed: o.seed,
      durationS: o.durationS,
      wallS: Math.round((Date.now() - started) / 1000),
      violations: checker.violations,
      nemesis: nemesis.stats,
      workload: workload.stats,
      checker: checker.figures,
      keysWithoutAnswer,
    };
  } finally {
    await cluster.close();
  }
}

async function tamper(cluster: Cluster, log: (line: string) => void): Promise<void> {
  const account = cluster.accounts[1]!;
  await cluster.bankClient(LedgerService, account.bank, 5_000).deposit({ depositId: "tamper-1", accountId: account.id, amountMinor: 1n, currency: account.currency });
  const db = new Database(cluster.gatewayDbFile);
  try {
    const row = db.prepare("SELECT txn_id FROM txns WHERE status = 'COMMITTED' LIMIT 1").get() as { txn_id: string } | undefined;
    if (row) {
      db.prepare("UPDATE decisions SET decision = 'ABORT' WHERE txn_id = ?").run(row.txn_id);
      db.prepare("UPDATE txns SET status = 'ABORTED', decline_reason = 'tampered' WHERE txn_id = ?").run(row.txn_id);
    }
    log(`TAMPERED: deposited 1 at ${account.id} behind the gateway's back; rewrote ${row?.txn_id ?? "(no committed txn)"} to ABORT`);
  } finally {
    db.close();
  }
}

export function formatReport(r: ChaosReport): string {
  const n = r.nemesis;
  const lines = [
    `chaos seed ${r.seed}: ${r.durationS} s of faults (${r.wallS} s wall) -> ${r.violations.length === 0 ? "NO VIOLATIONS" : `${r.violations.length} VIOLATION(S)`}`,
    `faults injected: ${Object.entries(n.faults).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(" ")}`,
    `crashes: ${n.crashes} (SIGKILLs + deaths at fault points); fault points reached: ${JSON.stringify(n.faultPointDeaths)}; armed but not reached: ${n.faultPointMisses}; unexpected exits: ${n.unexpectedExits.length}`,
    `workload: ${r.workload.transfers} transfer calls, ${r.workload.keys} idempotency keys (${r.workload.duplicateBursts} concurrent duplicate bursts), ${r.workload.acknowledged} acknowledged COMMITTED, ${r.workload.declined} declined, ${r.keysWithoutAnswer} left without a definitive answer`,
    `answers: ${JSON.stringify(r.workload.answers)}`,
    `checker: ${r.checker.checks} checks, ${r.checker.entriesRead} journal entries, log ${r.checker.txnsInLog} txns (${r.checker.committed} committed, ${r.checker.aborted} aborted, ${r.checker.pending} pending), abort reasons ${JSON.stringify(r.checker.abortReasons)}`,
    `checker: ${r.checker.acknowledgedChecked} acknowledged txns verified in the log and both ledgers; max money in flight ${r.checker.inFlightMaxMinor} minor; oldest PREPARED seen ${r.checker.preparedMaxAgeMs} ms; settled ${r.checker.settleMs} ms after healing; bank reads that failed mid-fault ${r.checker.banksUnreachableInChecks}`,
  ];
  for (const v of r.violations) lines.push("", `VIOLATION (seed ${r.seed}): ${v}`);
  return lines.join("\n");
}
