// The two-phase-commit round engine (DESIGN.md §3, presumed abort): the only
// path money takes. A transfer, a card hold, a capture, a release and a refund
// are each one round: the txn is known to the store before any Prepare leaves
// (a claimed transfer or a registered round, §3.1), every participant bank is
// asked to prepare in parallel, the decision is logged durably (COMMIT only if
// every vote is YES, §3.2), then the banks are told (§3.3). The decision record
// is insert-if-absent, shared with GetDecision (§3.4): whichever writes first
// wins and the other obeys. Banks that do not acknowledge are re-told by the
// redrive loop until they do; start-up and takeover presume the abort of what
// was left undecided (§3.6, §3b.2).
import { randomUUID } from "node:crypto";
import type { FaultPoint } from "@paygate/faults";
import { assert, AssertionError } from "@paygate/money";
import { TXN_ID_PATTERN, type Reason } from "@paygate/vocab";
import type { DecidedFeed } from "../decided-feed.js";
import { NO_METRICS, type CoordinatorMetrics } from "../metrics.js";
import { fail, ok, type AckTask, type Decided, type Decision, type DecisionRecord, type Result } from "../model.js";
import type { Clock, CoordinatorLog, EventLogger, Participants } from "../ports.js";
import { banksOfPlan, type PreparePlan } from "./plan.js";
import { banksOf } from "./transfer.js";

export interface RoundEngineOptions {
  readonly replica: string;
  readonly log: CoordinatorLog;
  readonly participants: Participants;
  readonly clock: Clock;
  readonly faults: { hit(point: FaultPoint): void };
  readonly feed: DecidedFeed;
  readonly logger: EventLogger;
  readonly metrics?: CoordinatorMetrics;
  readonly prepareTimeoutMs: number;
  readonly commitTimeoutMs: number;
  readonly redriveIntervalMs: number;
  readonly redriveBackoffMaxMs: number;
  /** Resends per redrive tick. */
  readonly redriveBatchMax?: number;
  readonly newTxnId?: () => string;
  /**
   * Several replicas share the log (PostgreSQL): any replica answers
   * GetDecision for any txn. Alone (SQLite), a txn of another replica's
   * prefix that this log never saw is refused rather than presumed aborted.
   */
  readonly sharedLog?: boolean;
}

export interface RecoveryReport {
  readonly abortedPending: number;
  readonly redriven: number;
  /** Recovery resent a full batch: more decisions wait (start the redrive loop at once). */
  readonly backlog: boolean;
}

export interface TakeoverReport {
  readonly abortedPending: number;
  readonly abortedRounds: number;
}

/** A round whose decision is durable; its Commit/Abort are on their way. */
export interface DecidedRound {
  readonly decided: Decided;
  /** True once every participant acknowledged the decision now; the redrive loop resends otherwise. */
  readonly delivering: Promise<boolean>;
}

export interface RoundEngine {
  /** A fresh txn id of this replica. */
  newTxnId(): string;
  /**
   * Votes, the durable decision, and the first Commit/Abort sent (not awaited).
   * The txn must already be known to the store: a claimed transfer or a registered round.
   */
  decideAndDeliver(txnId: string, plan: readonly PreparePlan[]): Promise<DecidedRound>;
  /**
   * One round over explicit legs (card holds, captures, releases, refunds):
   * registered, decided and delivered. The caller keeps its own record and
   * stores `txnId` there BEFORE calling, so an interrupted round can be settled.
   */
  runRound(txnId: string, kind: string, plan: readonly PreparePlan[]): Promise<DecisionRecord>;
  /** Marks the txn as run by this process while fn runs: recovery and the orphan sweep leave it alone. */
  whileRunning<T>(txnId: string, fn: () => Promise<T>): Promise<T>;
  /** Txns and rounds this process is running now (not orphans). */
  isRunning(txnId: string): boolean;
  /**
   * For a round some process may have died in: its logged decision, or ABORT
   * durably logged now (presumed abort; the redrive loop tells `banks`).
   */
  settleRound(txnId: string, banks: readonly string[]): Promise<DecisionRecord>;
  /**
   * True once the txn is decided ABORT and every participant acknowledged
   * the Abort (resending it now to those that have not): its holds are gone,
   * so a retry under the same key cannot be refused by its own leftovers.
   */
  abortDelivered(txnId: string): Promise<boolean>;
  /** The logged decision, if any (never presumes one). */
  decisionOf(txnId: string): Promise<DecisionRecord | undefined>;
  /** For a bank holding a prepared txn; a txn without a decision is durably aborted first. Only a participant may ask. */
  getDecision(txnId: string, askingBank: string): Promise<Result<Decision>>;
  /** Start-up: presumed abort for this replica's PENDING txns and rounds, then resend every unacknowledged decision. */
  recover(): Promise<RecoveryReport>;
  /**
   * Presumed abort for every undecided txn and round of `replica` created
   * before `createdBeforeMs`: a dead replica's (its lease ran out), or this
   * replica's own that no request is running any more (a write whose outcome
   * was lost with the store). The redrive loop then tells the banks.
   */
  abortUndecided(replica: string, createdBeforeMs: number): Promise<TakeoverReport>;
  /** One bounded batch of resends; returns how many were attempted. */
  redriveOnce(): Promise<number>;
  /**
   * Runs redriveOnce every interval until the returned stop() is awaited; at
   * once while a tick finds a full batch due (a backlog after a restart).
   */
  startRedrive(options?: { readonly backlog?: boolean }): () => Promise<void>;
}

/** Resends per tick; they leave as CommitBatch / AbortBatch RPCs of up to 1024 per bank. */
const REDRIVE_BATCH_MAX_DEFAULT = 1024;
/** Pages of PENDING txns recovery aborts before giving up (each page is a batch). */
const RECOVERY_PAGES_MAX = 100_000;
const BACKOFF_EXPONENT_MAX = 30;

type Verdict =
  | { readonly commit: true; readonly yes: ReadonlySet<string> }
  | { readonly commit: false; readonly reason: Reason; readonly bank: string };

/** One Commit/Abort per (txn, bank) on the wire, resent with backoff until acknowledged (DESIGN.md §3.3). */
interface Delivery {
  send(task: AckTask): Promise<boolean>;
  deliver(d: DecisionRecord, banks: readonly string[]): Promise<boolean>;
  onWire(task: AckTask): boolean;
}

function createDelivery(o: RoundEngineOptions, metrics: CoordinatorMetrics): Delivery {
  const { log, participants, clock, logger } = o;
  // (txn, bank) pairs with a Commit/Abort on the wire, and the answer they will
  // get: the redrive loop, the transfer path and a retry's check share one send.
  const inflight = new Map<string, Promise<boolean>>();
  const keyOf = (task: AckTask) => `${task.txnId} ${task.bank}`;

  function backoffMs(attempts: number): number {
    const exp = Math.min(Math.max(attempts - 1, 0), BACKOFF_EXPONENT_MAX);
    return Math.min(o.redriveBackoffMaxMs, o.redriveIntervalMs * 2 ** exp);
  }

  /** One Commit/Abort; true if the participant acknowledged it. A pair already on the wire is not sent twice: its answer is shared. */
  function send(task: AckTask): Promise<boolean> {
    const key = keyOf(task);
    const onWire = inflight.get(key);
    if (onWire) return onWire;
    const attempt = sendOnce(task).finally(() => inflight.delete(key));
    inflight.set(key, attempt);
    return attempt;
  }

  async function sendOnce(task: AckTask): Promise<boolean> {
    let delivery;
    try {
      delivery =
        task.decision === "COMMIT"
          ? await participants.commit(task.bank, task.txnId, o.commitTimeoutMs)
          : await participants.abort(task.bank, task.txnId, o.commitTimeoutMs);
    } catch (e) {
      delivery = { ok: false as const, reason: `participant_unavailable: ${String(e)}`, transient: true };
    }
    const nowMs = clock.nowMs();
    if (delivery.ok) {
      log.ack(task.txnId, task.bank, nowMs);
      return true;
    }
    const attempts = task.attempts + 1;
    log.deferAck(task.txnId, task.bank, attempts, nowMs + backoffMs(attempts), delivery.reason);
    const fields = {
      transactionId: task.txnId,
      bank: task.bank,
      decision: task.decision,
      reason: delivery.reason,
      attempts,
    };
    if (delivery.transient) logger.warn(fields, "participant did not acknowledge the decision; will resend");
    // The bank answered and contradicts the log (e.g. Commit -> unknown_txn):
    // money may be out of step. Keep resending and shout every time.
    else {
      if (task.decision === "COMMIT" && delivery.reason === "unknown_txn") metrics.unknownTxn.inc({ bank: task.bank });
      logger.error({ ...fields, alarm: true }, "ALARM: participant rejected the logged decision");
    }
    return false;
  }

  async function deliver(d: DecisionRecord, banks: readonly string[]): Promise<boolean> {
    const acked = await Promise.all(
      banks.map((bank) => send({ txnId: d.txnId, bank, decision: d.decision, attempts: 0 })),
    );
    return acked.every(Boolean);
  }

  return { send, deliver, onWire: (task) => inflight.has(keyOf(task)) };
}

/** Prepares in parallel; the first NO, error or the deadline decides ABORT without waiting for the rest (DESIGN.md §3.1). */
async function collectVotes(
  participants: Participants,
  prepareTimeoutMs: number,
  txnId: string,
  plan: readonly PreparePlan[],
): Promise<Verdict> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), prepareTimeoutMs);
  let answered = 0;
  try {
    return await new Promise<Verdict>((resolve) => {
      const yes = new Set<string>();
      controller.signal.addEventListener(
        "abort",
        () => resolve({ commit: false, reason: "participant_timeout", bank: "" }),
        { once: true },
      );
      for (const p of plan) {
        participants.prepare(p.bank, txnId, p.legs, controller.signal).then(
          (v) => {
            answered++;
            if (v.vote === "NO") return resolve({ commit: false, reason: v.reason, bank: p.bank });
            yes.add(p.bank);
            if (yes.size === plan.length) resolve({ commit: true, yes });
          },
          () => {
            answered++;
            resolve({ commit: false, reason: "participant_unavailable", bank: p.bank });
          },
        );
      }
    });
  } finally {
    clearTimeout(timer);
    // Stragglers after a NO: their Prepare is moot, the Abort that follows releases any hold.
    // (Aborting costs a DOMException with a stack: only when someone is still waiting.)
    if (answered < plan.length) controller.abort();
  }
}

export function createRoundEngine(o: RoundEngineOptions): RoundEngine {
  const { log, clock, faults, feed, logger } = o;
  const newTxnId = o.newTxnId ?? (() => `${o.replica}:${randomUUID()}`);
  const redriveBatchMax = o.redriveBatchMax ?? REDRIVE_BATCH_MAX_DEFAULT;
  const metrics = o.metrics ?? NO_METRICS;
  const delivery = createDelivery(o, metrics);
  // Txns and rounds between their claim and their decision in this process:
  // the orphan sweep leaves them alone.
  const running = new Set<string>();

  /** Logs the decision (insert-if-absent; resolves once durable, sharing its fsync with concurrent ones). */
  async function decide(
    txnId: string,
    decision: Decision,
    reason: Reason | "",
    banks: readonly string[],
  ): Promise<Decided> {
    const logged = metrics.phaseDuration.startTimer({ phase: "decision_log" });
    const nowMs = clock.nowMs();
    // The caller sends the first Commit/Abort itself; the loop takes over after that attempt's timeout.
    const d = await log.decide({
      txnId,
      decision,
      reason,
      participants: banks,
      nowMs,
      firstResendAtMs: nowMs + o.commitTimeoutMs,
    });
    logged();
    assert(d.decision.txnId === txnId, "the log answered for another txn");
    if (d.decision.decision !== decision)
      logger.warn(
        { transactionId: txnId, wanted: decision, logged: d.decision.decision },
        "decision already logged; obeying it",
      );
    feed.notify();
    return d;
  }

  /** Votes, then the decision (DESIGN.md §3.2). */
  async function prepareAndDecide(txnId: string, plan: readonly PreparePlan[]): Promise<Decided> {
    const banks = banksOfPlan(plan);
    const voted = metrics.phaseDuration.startTimer({ phase: "prepare" });
    const verdict = await collectVotes(o.participants, o.prepareTimeoutMs, txnId, plan);
    voted();
    if (!verdict.commit) return decide(txnId, "ABORT", verdict.reason, banks);
    faults.hit("gateway.after_votes_before_decision");
    assert(verdict.yes.size === banks.length, "COMMIT only after every participant voted YES");
    assert(
      banks.every((b) => verdict.yes.has(b)),
      "every participant's YES is its own",
    );
    return decide(txnId, "COMMIT", "", banks);
  }

  async function decideAndDeliver(txnId: string, plan: readonly PreparePlan[]): Promise<DecidedRound> {
    const decided = await prepareAndDecide(txnId, plan);
    const d = decided.decision;
    faults.hit(d.decision === "COMMIT" ? "gateway.after_commit_logged" : "gateway.after_abort_logged");
    return { decided, delivering: delivery.deliver(d, banksOfPlan(plan)) };
  }

  async function whileRunning<T>(txnId: string, fn: () => Promise<T>): Promise<T> {
    running.add(txnId);
    try {
      return await fn();
    } finally {
      running.delete(txnId);
    }
  }

  async function runRound(txnId: string, kind: string, plan: readonly PreparePlan[]): Promise<DecisionRecord> {
    assert(TXN_ID_PATTERN.test(txnId), "a round has a txn id");
    assert(plan.length > 0, "a round has participants");
    const banks = banksOfPlan(plan);
    assert(new Set(banks).size === banks.length, "one prepare per bank");
    return whileRunning(txnId, async () => {
      // Durable before any Prepare: any replica then knows who may ask about it.
      await log.registerRound({ txnId, kind, banks, createdAtMs: clock.nowMs() });
      const { decided, delivering } = await decideAndDeliver(txnId, plan);
      await delivering;
      return decided.decision;
    });
  }

  async function settleRound(txnId: string, banks: readonly string[]): Promise<DecisionRecord> {
    return (await log.findDecision(txnId)) ?? (await decide(txnId, "ABORT", "coordinator_restarted", banks)).decision;
  }

  async function abortDelivered(txnId: string): Promise<boolean> {
    const d = await log.findDecision(txnId);
    if (d?.decision !== "ABORT") return false;
    const unacked = await log.unackedBanks(txnId);
    if (unacked.length === 0) return true;
    return delivery.deliver(d, unacked);
  }

  /** Who takes part in a txn: a transfer's banks, a round's, or (an unknown txn presumed aborted before) the acks'. */
  async function participantsOf(txnId: string): Promise<readonly string[] | undefined> {
    // A transfer is a txn of the log itself (claimed, not registered): its banks are its legs'.
    const txn = await log.findTxn(txnId);
    if (txn) return banksOf(txn);
    return (await log.findRound(txnId))?.banks;
  }

  async function getDecision(txnId: string, askingBank: string): Promise<Result<Decision>> {
    const m = TXN_ID_PATTERN.exec(txnId);
    if (!m) return fail("invalid_txn_id", 'txn_id must look like "<replica>:<uuid>"', { field: "txn_id" });
    const banks = await participantsOf(txnId);
    // Any bank's certificate could otherwise force a presumed abort on any txn in flight.
    if (banks && !banks.includes(askingBank))
      return fail("not_participant", `bank ${askingBank} takes no part in ${txnId}`, { field: "txn_id" });
    const logged = await log.findDecision(txnId);
    if (logged) return ok(logged.decision);
    // Every txn and round is registered before its first Prepare leaves, so
    // an unknown id was never prepared anywhere legitimately. Alone, another
    // replica's txn is not ours to presume about.
    if (!banks && !o.sharedLog && m[1] !== o.replica)
      return fail("invalid_txn_id", `txn ${txnId} is coordinated by ${m[1]}, not ${o.replica}`, { field: "txn_id" });
    const d = (await decide(txnId, "ABORT", "participant_timeout", banks ?? [askingBank])).decision;
    if (d.decision === "ABORT")
      logger.info(
        { transactionId: txnId, bank: askingBank },
        "presumed abort for a bank that asked before the decision",
      );
    return ok(d.decision);
  }

  async function redriveOnce(): Promise<number> {
    // Claimed for twice the attempt's timeout: another replica resends them only if this one dies meanwhile.
    const due = await log.dueAcks(clock.nowMs(), redriveBatchMax, 2 * o.commitTimeoutMs);
    for (const t of due) {
      // send() skips a pair already on the wire; that is not an attempt.
      if (!delivery.onWire(t)) metrics.redriveAttempts.inc({ decision: t.decision === "COMMIT" ? "commit" : "abort" });
    }
    await Promise.all(due.map(delivery.send));
    return due.length;
  }

  async function abortUndecided(replica: string, createdBeforeMs: number): Promise<TakeoverReport> {
    let abortedPending = 0;
    let abortedRounds = 0;
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const pending = (await log.pendingUndecided(redriveBatchMax, { replica, createdBeforeMs })).filter(
        (t) => !running.has(t.txnId),
      );
      if (pending.length === 0) break;
      // No COMMIT was ever logged for these, so no bank can have been told to commit.
      await Promise.all(pending.map((txn) => decide(txn.txnId, "ABORT", "coordinator_restarted", banksOf(txn))));
      // Each transfer ended here, not in its request: count it once, where it was decided.
      for (let i = 0; i < pending.length; i++)
        metrics.transfers.inc({ outcome: "aborted", reason: "coordinator_restarted" });
      abortedPending += pending.length;
    }
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const rounds = (await log.undecidedRounds(redriveBatchMax, replica, createdBeforeMs)).filter(
        (r) => !running.has(r.txnId),
      );
      if (rounds.length === 0) break;
      await Promise.all(rounds.map((r) => decide(r.txnId, "ABORT", "coordinator_restarted", r.banks)));
      abortedRounds += rounds.length;
    }
    return { abortedPending, abortedRounds };
  }

  async function recover(): Promise<RecoveryReport> {
    // Nothing of this process runs yet: everything of our prefix undecided is an earlier process's.
    const { abortedPending, abortedRounds } = await abortUndecided(o.replica, Number.MAX_SAFE_INTEGER);
    const left = await log.pendingUndecided(1, { replica: o.replica });
    assert(left.length === 0, "recovery leaves no PENDING txn without a decision");
    await log.rescheduleUnacked(clock.nowMs());
    const redriven = await redriveOnce();
    if (abortedPending > 0 || abortedRounds > 0 || redriven > 0)
      logger.info({ abortedPending, abortedRounds, redriven }, "coordinator recovery");
    return { abortedPending: abortedPending + abortedRounds, redriven, backlog: redriven >= redriveBatchMax };
  }

  function startRedrive(options: { readonly backlog?: boolean } = {}): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let ticking: Promise<unknown> = Promise.resolve();
    const tick = () => {
      let full = false;
      ticking = redriveOnce()
        .then((n) => {
          full = n >= redriveBatchMax;
        })
        .catch((e: unknown) => {
          // A broken invariant is a crash (the supervisor restarts, recovery takes over).
          if (e instanceof AssertionError) throw e;
          logger.error({ err: String(e) }, "redrive tick failed");
        })
        .finally(() => {
          // A full batch means more are due (a backlog after a restart or an outage): go on at once.
          if (!stopped) timer = setTimeout(tick, full ? 0 : o.redriveIntervalMs);
        });
    };
    timer = setTimeout(tick, options.backlog ? 0 : o.redriveIntervalMs);
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await ticking;
    };
  }

  return {
    newTxnId,
    decideAndDeliver,
    runRound,
    whileRunning,
    isRunning: (txnId) => running.has(txnId),
    settleRound,
    abortDelivered,
    decisionOf: (txnId) => log.findDecision(txnId),
    getDecision,
    recover,
    abortUndecided,
    redriveOnce,
    startRedrive,
  };
}
