// One chaos run: start the stack, drive the workload, inject faults for the
// duration, check periodically, heal, let everything settle, re-send every
// key, check exactly. The seed fixes the workload's and the nemesis's choices
// (which fault, which target, how long, which replica each call goes to);
// wall-clock timing still varies, so a seed narrows a failure down rather
// than replaying it step for step (test/sim does that).
import { LedgerService } from "@paygate/proto/bank";
import { createRng } from "../sim/rng.js";
import { createCardChecks } from "./card-checks.js";
import { createCardWorkload, issueCards, type CardStats } from "./cards.js";
import { CARD_HOLDERS, Cluster, CUSTOMERS, MERCHANT, type StoreKind } from "./cluster.js";
import { createChecker, type CheckerFigures } from "./checker.js";
import { History } from "./history.js";
import { createListings, type ListingFigures } from "./listings.js";
import { createNemesis, type NemesisStats } from "./nemesis.js";
import type { LogSnapshot } from "./store-reader.js";
import { createWorkload, sleep, type WorkloadStats } from "./workload.js";

export interface ChaosOptions {
  readonly seed: number;
  readonly durationS: number;
  readonly banks: number;
  readonly workers: number;
  /** "sqlite": one gateway on its SQLite file; "postgres": `gateways` replicas sharing a private PostgreSQL. */
  readonly store: StoreKind;
  readonly gateways: number;
  readonly redis: boolean;
  /** Card traffic: checkout payments, settlement, voids and refunds, with the bureau and the checkout under faults. */
  readonly cards: boolean;
  /** Concurrent shoppers (with cards). */
  readonly shoppers: number;
  readonly checkEveryS: number;
  readonly log: (line: string) => void;
  /**
   * Control runs only: break the books behind the system's back before the
   * final check (a deposit straight at a bank, a COMMIT rewritten to ABORT in
   * the gateways' store, a captured authorization set back to approved),
   * which the checker must report.
   */
  readonly tamper?: boolean;
}

export interface ChaosReport {
  readonly seed: number;
  readonly options: { store: StoreKind; gateways: number; banks: number; redis: boolean; cards: boolean };
  readonly durationS: number;
  readonly wallS: number;
  readonly violations: readonly string[];
  readonly nemesis: NemesisStats;
  readonly workload: WorkloadStats;
  readonly cards: CardStats | undefined;
  readonly checker: CheckerFigures;
  readonly listings: ListingFigures;
  readonly keysWithoutAnswer: number;
  readonly cardsWithoutAnswer: number;
  readonly resent: { transfers: number; cards: number };
  readonly settlementDrainMs: number;
  /** From the services' logs: takeovers of expired replicas, orphan sweeps, fatal lines. */
  readonly logTallies: Record<string, number>;
}

const PREPARE_TIMEOUT_MS = 1500;
const RESOLVE_BACKOFF_MAX_MS = 2000;
const LEASE_MS = 2000;
const HEARTBEAT_INTERVAL_MS = 500;
/** After healing, in-doubt txns must be gone within the prepare timeout plus this resolution window. */
const RESOLUTION_WINDOW_MS = 45_000;
/**
 * After healing, the checkout must capture every approved order once its
 * retries are due (cards.ts drainSettlement); this bounds the wait. Its
 * capture retries back off from 30 s (doubling, up to an hour), so an order
 * whose capture failed three times during a 3-minute run waits up to ~2 min.
 */
const SETTLEMENT_DRAIN_CAP_MS = 30 * 60_000;

interface Running {
  readonly cluster: Cluster;
  readonly checker: ReturnType<typeof createChecker>;
  readonly nemesis: ReturnType<typeof createNemesis>;
  readonly workload: ReturnType<typeof createWorkload>;
  readonly cardWork: ReturnType<typeof createCardWorkload> | undefined;
}

/** The faults phase: a periodic check every checkEveryS until durationS is over, each followed by a progress line. */
async function runFaults(o: ChaosOptions, started: number, run: Running): Promise<void> {
  const { cluster, checker, nemesis, workload, cardWork } = run;
  const until = Date.now() + o.durationS * 1000;
  while (Date.now() < until) {
    await sleep(Math.min(o.checkEveryS * 1000, Math.max(0, until - Date.now())));
    await checker.periodic();
    cluster.trimLogs();
    const n = nemesis.stats;
    const c = cardWork?.stats;
    o.log(
      `+${Math.round((Date.now() - started) / 1000)}s crashes ${n.crashes} ${JSON.stringify(n.crashesBy)}, faults ${JSON.stringify(n.faults)}, transfers ${workload.stats.transfers}${c ? `, orders ${c.orders} (${c.posts} posts), refunds ${c.refunds}, voids ${c.voids}` : ""}, log ${checker.figures.committed} committed / ${checker.figures.aborted} aborted, violations ${checker.violations.length}`,
    );
  }
}

/** After healing: the checkout's settlement drained (bounded), then the refunds of orders captured only now; its ms. */
async function drainCards(o: ChaosOptions, cardWork: ReturnType<typeof createCardWorkload>): Promise<number> {
  o.log("waiting for the checkout's settlement to capture every approved order");
  // A control run needs one capture to undo, not a drained settlement (its checker must fail anyway).
  const drained = await cardWork.drainSettlement(SETTLEMENT_DRAIN_CAP_MS, o.log, o.tamper ? 1 : undefined);
  if (drained.left > 0)
    o.log(
      `settlement not drained after ${drained.ms} ms: ${drained.left} orders or batches left (the checker reports them)`,
    );
  // Refunds of orders captured only now.
  await cardWork.finish();
  return drained.ms;
}

/** The announcement of the run, then its cluster started. */
async function startCluster(
  o: ChaosOptions,
  rng: ReturnType<typeof createRng>,
  banks: string[],
  gateways: number,
): Promise<Cluster> {
  o.log(
    `chaos seed ${o.seed}: ${gateways} gateway replica(s) on ${o.store === "sqlite" ? "SQLite" : "a shared PostgreSQL"}, ${banks.length} banks${o.redis ? " + redis" : ""}${o.cards ? ` + cards (bureau, checkout, ${o.shoppers} shoppers)` : ""}, ${o.workers} clients, ${o.durationS} s of faults`,
  );
  return Cluster.start({
    banks,
    store: o.store,
    gateways,
    redis: o.redis,
    cards: o.cards,
    prepareTimeoutMs: PREPARE_TIMEOUT_MS,
    resolveBackoffMaxMs: RESOLVE_BACKOFF_MAX_MS,
    leaseMs: LEASE_MS,
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    rng: rng.fork(),
  });
}

/** After the final check: the histories, the services' ALARMs and the processes that died on their own. */
async function checkAfterRun(
  cluster: Cluster,
  checker: ReturnType<typeof createChecker>,
  nemesis: ReturnType<typeof createNemesis>,
  listings: ReturnType<typeof createListings>,
  finalLog: LogSnapshot | undefined,
  keys: ReturnType<typeof createWorkload>["keys"],
): Promise<void> {
  if (finalLog) await listings.check(finalLog, keys, checker.bad);
  else checker.bad("histories not checked: the final check could not read the gateways' store");
  await listings.close();
  cluster.scanLogs();
  // An ALARM is the services saying an invariant of theirs broke (e.g. a bank's hold disagrees with the authorization).
  for (const a of cluster.alarms) checker.bad(`a service raised an ALARM: ${a}`);
  if (nemesis.stats.unexpectedExits.length > 0) {
    for (const e of nemesis.stats.unexpectedExits)
      checker.bad(`a process died on its own (not killed by the nemesis): ${e}`);
  }
}

/** Healing: the traffic and the faults stop, then every key's last answer is waited for; how many got none. */
async function heal(
  o: ChaosOptions,
  run: Running,
  traffic: Promise<unknown>,
): Promise<{ keysWithoutAnswer: number; cardsWithoutAnswer: number }> {
  const { nemesis, workload, cardWork } = run;
  o.log("healing: faults stop, links heal, every process runs");
  workload.stop();
  cardWork?.stop();
  await nemesis.stop();
  await traffic;
  const keysWithoutAnswer = await workload.finish();
  const cardsWithoutAnswer = (await cardWork?.finish()) ?? 0;
  return { keysWithoutAnswer, cardsWithoutAnswer };
}

/** Every key sent once more to random replicas; what a card re-send changed is a violation. */
async function resendEveryKey(o: ChaosOptions, run: Running) {
  const { checker, workload, cardWork } = run;
  o.log("re-sending every key to random replicas");
  const resent = await workload.resendAll();
  const cardResent = await cardWork?.resendAll();
  for (const c of cardResent?.changed ?? []) checker.bad(`re-sent after the run: ${c}`);
  return { resent, cardResent };
}

/** How hard the nemesis hits: more at once with more replicas; a gateway frozen past its lease on PostgreSQL. */
function nemesisOptions(o: ChaosOptions, gateways: number): Parameters<typeof createNemesis>[3] {
  return {
    concurrentMax: gateways > 1 ? 4 : 3,
    intervalMs: [200, 1600],
    armedWindowMs: 6_000,
    gatewayFreezeMaxMs: o.store === "postgres" ? LEASE_MS + PREPARE_TIMEOUT_MS + 2500 : 4000,
  };
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const rng = createRng(o.seed);
  const history = new History();
  const banks = ["bank-a", "bank-b", "bank-c"].slice(0, Math.max(2, Math.min(3, o.banks)));
  const gateways = o.store === "sqlite" ? 1 : Math.max(1, o.gateways);
  const cluster = await startCluster(o, rng, banks, gateways);
  try {
    const tokens = new Map<string, string>();
    for (const u of CUSTOMERS) tokens.set(u, await cluster.login(u));
    const adminToken = await cluster.login("admin");
    const workload = createWorkload(cluster, rng.fork(), history, tokens);
    const cardRng = rng.fork();
    const cardWork = o.cards
      ? createCardWorkload(
          cluster,
          cardRng,
          history,
          await issueCards(cluster, adminToken),
          await cluster.login(MERCHANT.username, MERCHANT.password),
        )
      : undefined;
    // Histories: the transfer customers, and the card holders (whose refunds are no transfers: their history stays empty).
    const historyTokens = new Map(tokens);
    if (o.cards) for (const u of CARD_HOLDERS) historyTokens.set(u, await cluster.login(u));
    const listings = createListings(cluster, rng.fork(), historyTokens);
    const cardChecks = cardWork ? createCardChecks(cluster, cardWork) : undefined;
    let finalLog: LogSnapshot | undefined;
    const checker = createChecker(cluster, history, workload.keys, adminToken, {
      judge: cardChecks?.judge,
      async finalChecks(log, entries, balances, bad) {
        finalLog = log;
        await cardChecks?.finalChecks(log, entries, balances, bad);
      },
    });
    const nemesis = createNemesis(cluster, rng.fork(), history, nemesisOptions(o, gateways));

    await checker.periodic();
    listings.start([...historyTokens.keys()]);
    const traffic = Promise.all([workload.run(o.workers), cardWork?.run(o.shoppers)]);
    nemesis.start();
    await runFaults(o, started, { cluster, checker, nemesis, workload, cardWork });
    const { keysWithoutAnswer, cardsWithoutAnswer } = await heal(
      o,
      { cluster, checker, nemesis, workload, cardWork },
      traffic,
    );
    const settlementDrainMs = cardWork ? await drainCards(o, cardWork) : 0;
    const { resent, cardResent } = await resendEveryKey(o, { cluster, checker, nemesis, workload, cardWork });
    if (o.tamper) await tamper(cluster, o.log);
    await checker.final(PREPARE_TIMEOUT_MS + RESOLUTION_WINDOW_MS);
    await checkAfterRun(cluster, checker, nemesis, listings, finalLog, workload.keys);
    return {
      seed: o.seed,
      options: { store: o.store, gateways, banks: banks.length, redis: o.redis, cards: o.cards },
      durationS: o.durationS,
      wallS: Math.round((Date.now() - started) / 1000),
      violations: checker.violations,
      nemesis: nemesis.stats,
      workload: workload.stats,
      cards: cardWork?.stats,
      checker: checker.figures,
      listings: listings.figures,
      keysWithoutAnswer,
      cardsWithoutAnswer,
      resent: { transfers: resent.sent, cards: cardResent?.sent ?? 0 },
      settlementDrainMs,
      logTallies: { ...cluster.tallies },
    };
  } finally {
    await cluster.close();
  }
}

async function tamper(cluster: Cluster, log: (line: string) => void): Promise<void> {
  const account = cluster.accounts[1]!;
  await cluster
    .bankClient(LedgerService, account.bank, 5_000)
    .deposit({ depositId: "tamper-1", accountId: account.id, amountMinor: 1n, currency: account.currency });
  const snapshot = await cluster.reader.read();
  const committed = [...snapshot.txns.values()].find((t) => t.status === "COMMITTED");
  if (committed) {
    await cluster.reader.exec("UPDATE decisions SET decision = 'ABORT' WHERE txn_id = $1", [committed.txnId]);
    await cluster.reader.exec("UPDATE txns SET status = 'ABORTED', decline_reason = 'tampered' WHERE txn_id = $1", [
      committed.txnId,
    ]);
  }
  const captured = [...snapshot.auths.values()].find((a) => a.status === "CAPTURED" && a.refundedMinor === 0n);
  if (captured)
    await cluster.reader.exec(
      "UPDATE card_authorizations SET status = 'APPROVED', captured_minor = 0, capture_txn_id = '' WHERE auth_id = $1",
      [captured.authId],
    );
  log(
    `TAMPERED: deposited 1 at ${account.id} behind the gateway's back; rewrote ${committed?.txnId ?? "(no committed txn)"} to ABORT; set ${captured?.authCode ?? "(no captured authorization)"} back to APPROVED`,
  );
}

export function formatReport(r: ChaosReport): string {
  const n = r.nemesis;
  const c = r.cards;
  const lines = [
    `chaos seed ${r.seed} (${r.options.gateways} gateway(s) on ${r.options.store}, ${r.options.banks} banks${r.options.redis ? ", redis" : ""}${r.options.cards ? ", cards" : ""}): ${r.durationS} s of faults (${r.wallS} s wall) -> ${r.violations.length === 0 ? "NO VIOLATIONS" : `${r.violations.length} VIOLATION(S)`}`,
    `faults injected: ${Object.entries(n.faults)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}`,
    `crashes: ${n.crashes} ${JSON.stringify(n.crashesBy)} (SIGKILLs + deaths at fault points); fault points reached: ${JSON.stringify(n.faultPointDeaths)}; armed but not reached: ${n.faultPointMisses}; restarts retried: ${n.failedStarts}; unexpected exits: ${n.unexpectedExits.length}`,
    `service logs: ${JSON.stringify(r.logTallies)} (takeovers: a live replica aborting what an expired one left; orphan sweeps: a replica aborting its own claims whose request is gone)`,
    `workload: ${r.workload.transfers} transfer calls, ${r.workload.keys} idempotency keys (${r.workload.duplicateBursts} concurrent duplicate bursts), ${r.workload.acknowledged} acknowledged COMMITTED, ${r.workload.declined} declined, ${r.keysWithoutAnswer} left without a definitive answer; re-sent after the run: ${r.resent.transfers} transfer keys, ${r.resent.cards} card keys`,
    `answers: ${JSON.stringify(r.workload.answers)}`,
    ...(c
      ? [
          `cards: ${c.orders} orders (${c.posts} POST /make-payment), ${c.approved} approved, ${c.declined} declined as asked, ${r.cardsWithoutAnswer} left without a verdict; ${c.voids} voids (${c.voided} voided), ${c.refunds} refunds (${c.refundsCommitted} committed, ${c.refundsDeclined} declined); settlement drained ${Math.round(r.settlementDrainMs / 1000)} s after healing`,
          `checkout answers: ${JSON.stringify(c.answers)}`,
          `back office answers: ${JSON.stringify(c.backOffice)}`,
        ]
      : []),
    `checker: ${r.checker.checks} checks, ${r.checker.entriesRead} journal entries, log ${r.checker.txnsInLog} txns (${r.checker.committed} committed, ${r.checker.aborted} aborted, ${r.checker.pending} pending), abort reasons ${JSON.stringify(r.checker.abortReasons)}${r.options.cards ? `, card rounds ${JSON.stringify(r.checker.cardRounds)}` : ""}`,
    `checker: ${r.checker.acknowledgedChecked} acknowledged txns verified in the log and both ledgers; max money in flight ${r.checker.inFlightMaxMinor} minor; oldest PREPARED seen ${r.checker.preparedMaxAgeMs} ms; settled ${r.checker.settleMs} ms after healing; bank reads that failed mid-fault ${r.checker.banksUnreachableInChecks}, store reads ${r.checker.logUnreadableInChecks}`,
    `histories: ${r.listings.listed} txns listed page by page from random replicas (${r.listings.pagesRead} pages); ${r.listings.followers} followers delivered ${r.listings.delivered} txns over ${r.listings.reconnects} reconnects`,
  ];
  for (const v of r.violations) lines.push("", `VIOLATION (seed ${r.seed}): ${v}`);
  return lines.join("\n");
}
