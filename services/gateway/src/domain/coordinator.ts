// The two-phase-commit coordinator (DESIGN.md §3, presumed abort).
//
// A transfer's story: check the request, claim its idempotency key by
// inserting the txn PENDING, ask every participant bank to prepare in
// parallel, durably log the decision (COMMIT only if every vote is YES), then
// tell the banks. The decision record is insert-if-absent, shared with
// GetDecision: whichever writes first wins and the other obeys. Banks that do
// not acknowledge are re-told by the redrive loop until they do.
import { randomUUID } from "node:crypto";
import { assert, AssertionError } from "@paygate/money";
import type { FaultPoint } from "@paygate/faults";
import type { Reason } from "@paygate/rpc";
import type { DecidedFeed } from "./decided-feed.js";
import { NO_METRICS, type CoordinatorMetrics } from "./metrics.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type AckTask, type Decision, type DecisionRecord, type NewTxn, type Result, type TxnRecord } from "./model.js";
import type { Clock, CoordinatorLog, Directory, IdempotencyClaims, Leg, Participants } from "./ports.js";
import { checkTransfer, type CheckedTransfer, type TransferRequest } from "./transfer-rules.js";

/** The subset of pino the domain uses. */
export interface EventLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

export interface CoordinatorOptions {
  readonly replica: string;
  readonly log: CoordinatorLog;
  /** Defaults to the log itself; a Redis fast path wraps it later. */
  readonly claims?: IdempotencyClaims;
  readonly directory: Directory;
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
}

export interface TransferOutcome {
  readonly result: Result<TxnRecord>;
  /** The txn this request ended up with (undefined if rejected before claiming). */
  readonly txnId: string | undefined;
  /** The idempotency key had been seen before. */
  readonly replayed: boolean;
}

export interface RecoveryReport {
  readonly abortedPending: number;
  readonly redriven: number;
  /** Recovery resent a full batch: more decisions wait (start the redrive loop at once). */
  readonly backlog: boolean;
}

export interface Coordinator {
  transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome>;
  /** For a bank holding a prepared txn; a txn without a decision is durably aborted first. */
  getDecision(txnId: string, askingBank: string): Result<Decision>;
  /** Start-up: presumed abort for PENDING txns, then resend every unacknowledged decision. */
  recover(): Promise<RecoveryReport>;
  /** One bounded batch of resends; returns how many were attempted. */
  redriveOnce(): Promise<number>;
  /**
   * Runs redriveOnce every interval until the returned stop() is awaited; at
   * once while a tick finds a full batch due (a backlog after a restart).
   */
  startRedrive(options?: { readonly backlog?: boolean }): () => Promise<void>;
  /** A fresh txn id of this replica, for runRound. */
  newTxnId(): string;
  /**
   * One two-phase-commit round over explicit legs (card holds, captures,
   * refunds): the same prepare / decide / deliver as a transfer, but the txn
   * lives only in the decision log; the caller keeps its own record and stores
   * `txnId` there BEFORE calling, so an interrupted round can be settled.
   */
  runRound(txnId: string, plan: readonly PreparePlan[]): Promise<DecisionRecord>;
  /**
   * For a round this process may have died in: its logged decision, or ABORT
   * durably logged now (presumed abort; the redrive loop tells `banks`).
   */
  settleRound(txnId: string, banks: readonly string[]): DecisionRecord;
}

export const TXN_ID_PATTERN = /^([a-z][a-z0-9-]{0,62}):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Resends per tick; they leave as CommitBatch / AbortBatch RPCs of up to 1024 per bank. */
const REDRIVE_BATCH_MAX_DEFAULT = 1024;
/** A concurrent retry can move the key between our reads; give up (transiently) after this many. */
const CLAIM_ATTEMPTS_MAX = 3;
/** Pages of PENDING txns recovery aborts before giving up (each page is a batch). */
const RECOVERY_PAGES_MAX = 100_000;
const BACKOFF_EXPONENT_MAX = 30;

export interface PreparePlan {
  readonly bank: string;
  readonly legs: readonly Leg[];
}

type Verdict = { readonly commit: true; readonly yes: ReadonlySet<string> } | { readonly commit: false; readonly reason: Reason; readonly bank: string };

export function banksOf(txn: Pick<TxnRecord, "fromBank" | "toBank">): string[] {
  return txn.fromBank === txn.toBank ? [txn.fromBank] : [txn.fromBank, txn.toBank];
}

/** One Prepare per bank: a same-bank transfer is one voter with both legs. */
export function preparePlan(txn: TxnRecord): PreparePlan[] {
  const debit: Leg = { accountId: txn.fromAccountId, direction: "DEBIT", amountMinor: txn.amountMinor, currency: txn.currency, ownerUserId: txn.callerUserId };
  const credit: Leg = { accountId: txn.toAccountId, direction: "CREDIT", amountMinor: txn.amountMinor, currency: txn.currency, ownerUserId: "" };
  if (txn.fromBank === txn.toBank) return [{ bank: txn.fromBank, legs: [debit, credit] }];
  return [
    { bank: txn.fromBank, legs: [debit] },
    { bank: txn.toBank, legs: [credit] },
  ];
}

export function createCoordinator(o: CoordinatorOptions): Coordinator {
  const { log, directory, participants, clock, faults, feed, logger } = o;
  const claims = o.claims ?? log;
  const newTxnId = o.newTxnId ?? (() => `${o.replica}:${randomUUID()}`);
  const redriveBatchMax = o.redriveBatchMax ?? REDRIVE_BATCH_MAX_DEFAULT;
  const metrics = o.metrics ?? NO_METRICS;
  // (txn, bank) pairs with a Commit/Abort on the wire, so the redrive loop and
  // the transfer path never send the same message twice at once.
  const inflight = new Set<string>();

  function newTxn(t: CheckedTransfer, callerUserId: string): NewTxn {
    return {
      txnId: newTxnId(),
      callerUserId,
      idempotencyKey: t.idempotencyKey,
      fingerprint: t.fingerprint,
      fromAccountId: t.fromAccountId,
      toAccountId: t.toAccountId,
      fromBank: t.from.bank,
      toBank: t.to.bank,
      amountMinor: t.amountMinor,
      currency: t.currency,
      memo: t.memo,
      createdAtMs: clock.nowMs(),
    };
  }

  function decideInput(txnId: string, decision: Decision, reason: Reason | "", banks: readonly string[]) {
    const nowMs = clock.nowMs();
    // The caller sends the first Commit/Abort itself; the loop takes over after that attempt's timeout.
    return { txnId, decision, reason, participants: banks, nowMs, firstResendAtMs: nowMs + o.commitTimeoutMs };
  }

  function decided(d: DecisionRecord, txnId: string, decision: Decision): DecisionRecord {
    assert(d.txnId === txnId, "the log answered for another txn");
    if (d.decision !== decision) logger.warn({ transactionId: txnId, wanted: decision, logged: d.decision }, "decision already logged; obeying it");
    feed.notify();
    return d;
  }

  /** Logs the decision now, alone (recovery, GetDecision, settling a round). */
  function decide(txnId: string, decision: Decision, reason: Reason | "", banks: readonly string[]): DecisionRecord {
    const logged = metrics.phaseDuration.startTimer({ phase: "decision_log" });
    const d = log.decide(decideInput(txnId, decision, reason, banks));
    logged();
    return decided(d, txnId, decision);
  }

  /** The hot path: resolves once durable, sharing its fsync with concurrent decisions. */
  async function decideDurably(txnId: string, decision: Decision, reason: Reason | "", banks: readonly string[]): Promise<DecisionRecord> {
    const logged = metrics.phaseDuration.startTimer({ phase: "decision_log" });
    const d = await log.decideDurably(decideInput(txnId, decision, reason, banks));
    logged();
    return decided(d, txnId, decision);
  }

  function backoffMs(attempts: number): number {
    const exp = Math.min(Math.max(attempts - 1, 0), BACKOFF_EXPONENT_MAX);
    return Math.min(o.redriveBackoffMaxMs, o.redriveIntervalMs * 2 ** exp);
  }

  async function send(task: AckTask): Promise<void> {
    const key = `${task.txnId} ${task.bank}`;
    if (inflight.has(key)) return;
    inflight.add(key);
    try {
      let delivery;
      try {
        delivery = task.decision === "COMMIT" ? await participants.commit(task.bank, task.txnId, o.commitTimeoutMs) : await participants.abort(task.bank, task.txnId, o.commitTimeoutMs);
      } catch (e) {
        delivery = { ok: false as const, reason: `participant_unavailable: ${String(e)}`, transient: true };
      }
      const nowMs = clock.nowMs();
      if (delivery.ok) {
        log.ack(task.txnId, task.bank, nowMs);
        return;
      }
      const attempts = task.attempts + 1;
      log.deferAck(task.txnId, task.bank, attempts, nowMs + backoffMs(attempts), delivery.reason);
      const fields = { transactionId: task.txnId, bank: task.bank, decision: task.decision, reason: delivery.reason, attempts };
      if (delivery.transient) logger.warn(fields, "participant did not acknowledge the decision; will resend");
      // The bank answered and contradicts the log (e.g. Commit -> unknown_txn):
      // money may be out of step. Keep resending and shout every time.
      else {
        if (task.decision === "COMMIT" && delivery.reason === "unknown_txn") metrics.unknownTxn.inc({ bank: task.bank });
        logger.error({ ...fields, alarm: true }, "ALARM: participant rejected the logged decision");
      }
    } finally {
      inflight.delete(key);
    }
  }

  function deliver(d: DecisionRecord, banks: readonly string[]): Promise<void[]> {
    return Promise.all(banks.map((bank) => send({ txnId: d.txnId, bank, decision: d.decision, attempts: 0 })));
  }

  /** Prepares in parallel; the first NO, error or the deadline decides ABORT without waiting for the rest. */
  async function collectVotes(txnId: string, plan: readonly PreparePlan[]): Promise<Verdict> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), o.prepareTimeoutMs);
    let answered = 0;
    try {
      return await new Promise<Verdict>((resolve) => {
        const yes = new Set<string>();
        controller.signal.addEventListener("abort", () => resolve({ commit: false, reason: "participant_timeout", bank: "" }), { once: true });
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
      // Stragglers after a NO: their Prepare is moot, the Abort below releases any hold.
      // (Aborting costs a DOMException with a stack: only when someone is still waiting.)
      if (answered < plan.length) controller.abort();
    }
  }

  async function run(txn: TxnRecord): Promise<Result<TxnRecord>> {
    const plan = preparePlan(txn);
    const banks = plan.map((p) => p.bank);
    const voted = metrics.phaseDuration.startTimer({ phase: "prepare" });
    const verdict = await collectVotes(txn.txnId, plan);
    voted();
    let d: DecisionRecord;
    if (verdict.commit) {
      faults.hit("gateway.after_votes_before_decision");
      assert(banks.every((b) => verdict.yes.has(b)) && verdict.yes.size === banks.length, "COMMIT only after every participant voted YES");
      d = await decideDurably(txn.txnId, "COMMIT", "", banks);
    } else {
      d = await decideDurably(txn.txnId, "ABORT", verdict.reason, banks);
    }
    faults.hit(d.decision === "COMMIT" ? "gateway.after_commit_logged" : "gateway.after_abort_logged");
    const delivered = metrics.phaseDuration.startTimer({ phase: "commit" });
    await deliver(d, banks);
    delivered();
    const final = log.findTxn(txn.txnId);
    assert(final !== undefined && final.status === (d.decision === "COMMIT" ? "COMMITTED" : "ABORTED"), "txn status follows its logged decision");
    metrics.transfers.inc(final.status === "COMMITTED" ? { outcome: "committed" } : { outcome: "aborted", reason: final.declineReason || "internal" });
    return d.decision === "COMMIT" ? ok(final) : declined(final);
  }

  function declined(txn: TxnRecord): Result<TxnRecord> {
    assert(txn.status === "ABORTED", "only aborted txns decline");
    const reason = (txn.declineReason || "internal") as Reason;
    return fail(reason, `transfer declined: ${reason}`, { transaction_id: txn.txnId });
  }

  async function transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome> {
    const checked = checkTransfer(req, callerUserId, directory);
    if (!checked.ok) return { result: checked, txnId: undefined, replayed: false };
    let claim = await claims.claim(newTxn(checked.value, callerUserId));
    let replayed = false;
    for (let attempt = 1; !claim.claimed; attempt++) {
      replayed = true;
      const owner = claim.owner;
      const meta = { transaction_id: owner.txnId };
      if (owner.fingerprint !== checked.value.fingerprint) {
        metrics.idempotency.inc({ result: "conflict" });
        return { result: fail("idempotency_key_reused", "this idempotency key was used for a different request", meta), txnId: owner.txnId, replayed };
      }
      if (owner.status === "COMMITTED") {
        metrics.idempotency.inc({ result: "hit" });
        return { result: ok(owner), txnId: owner.txnId, replayed };
      }
      if (owner.status === "PENDING") {
        metrics.idempotency.inc({ result: "in_flight" });
        return { result: fail("idempotency_key_in_use", "this request is still in progress; retry with the same key", meta), txnId: owner.txnId, replayed };
      }
      // ABORTED. Nothing moved and ABORT is durably decided, so a transient
      // cause lets the same key try again as a new txn; a business reason is final.
      if (!TRANSIENT_ABORT_REASONS.has(owner.declineReason) || attempt >= CLAIM_ATTEMPTS_MAX) {
        metrics.idempotency.inc({ result: "hit" });
        return { result: declined(owner), txnId: owner.txnId, replayed };
      }
      claim = await claims.reclaim(owner.txnId, newTxn(checked.value, callerUserId));
    }
    // A fresh txn runs (also after a transient abort released the key): nothing was replayed.
    metrics.idempotency.inc({ result: "miss" });
    const txn = claim.txn;
    assert(txn.status === "PENDING", "a fresh claim is PENDING");
    return { result: await run(txn), txnId: txn.txnId, replayed };
  }

  function getDecision(txnId: string, askingBank: string): Result<Decision> {
    const m = TXN_ID_PATTERN.exec(txnId);
    if (!m) return fail("invalid_txn_id", "txn_id must look like \"<replica>:<uuid>\"", { field: "txn_id" });
    const logged = log.findDecision(txnId);
    if (logged) return ok(logged.decision);
    const txn = log.findTxn(txnId);
    // Presuming abort for another coordinator's txn could contradict its COMMIT.
    if (!txn && m[1] !== o.replica) return fail("invalid_txn_id", `txn ${txnId} is coordinated by ${m[1]}, not ${o.replica}`, { field: "txn_id" });
    const d = decide(txnId, "ABORT", "participant_timeout", txn ? banksOf(txn) : [askingBank]);
    if (d.decision === "ABORT") logger.info({ transactionId: txnId, bank: askingBank }, "presumed abort for a bank that asked before the decision");
    return ok(d.decision);
  }

  async function redriveOnce(): Promise<number> {
    const due = log.dueAcks(clock.nowMs(), redriveBatchMax);
    for (const t of due) {
      // send() skips a pair already on the wire; that is not an attempt.
      if (!inflight.has(`${t.txnId} ${t.bank}`)) metrics.redriveAttempts.inc({ decision: t.decision === "COMMIT" ? "commit" : "abort" });
    }
    await Promise.all(due.map(send));
    return due.length;
  }

  async function recover(): Promise<RecoveryReport> {
    let abortedPending = 0;
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const pending = log.pendingUndecided(redriveBatchMax);
      if (pending.length === 0) break;
      for (const txn of pending) {
        // The process died between claiming and deciding: no COMMIT was ever
        // logged, so no bank can have been told to commit.
        decide(txn.txnId, "ABORT", "coordinator_restarted", banksOf(txn));
        // Its transfer ended here, not in run(): count it once, where it was decided.
        metrics.transfers.inc({ outcome: "aborted", reason: "coordinator_restarted" });
        abortedPending++;
      }
    }
    assert(log.pendingUndecided(1).length === 0, "recovery leaves no PENDING txn without a decision");
    log.rescheduleUnacked(clock.nowMs());
    const redriven = await redriveOnce();
    if (abortedPending > 0 || redriven > 0) logger.info({ abortedPending, redriven }, "coordinator recovery");
    return { abortedPending, redriven, backlog: redriven >= redriveBatchMax };
  }

  function startRedrive(options: { readonly backlog?: boolean } = {}): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<unknown> = Promise.resolve();
    const tick = () => {
      let full = false;
      running = redriveOnce()
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
      await running;
    };
  }

  async function runRound(txnId: string, plan: readonly PreparePlan[]): Promise<DecisionRecord> {
    assert(TXN_ID_PATTERN.test(txnId) && plan.length > 0, "a round has a txn id and participants");
    assert(log.findTxn(txnId) === undefined, "a round is not a transfer");
    const banks = plan.map((p) => p.bank);
    assert(new Set(banks).size === banks.length, "one prepare per bank");
    const verdict = await collectVotes(txnId, plan);
    if (verdict.commit) faults.hit("gateway.after_votes_before_decision");
    const d = verdict.commit ? await decideDurably(txnId, "COMMIT", "", banks) : await decideDurably(txnId, "ABORT", verdict.reason, banks);
    faults.hit(d.decision === "COMMIT" ? "gateway.after_commit_logged" : "gateway.after_abort_logged");
    await deliver(d, banks);
    return d;
  }

  function settleRound(txnId: string, banks: readonly string[]): DecisionRecord {
    return log.findDecision(txnId) ?? decide(txnId, "ABORT", "coordinator_restarted", banks);
  }

  return { transfer, getDecision, recover, redriveOnce, startRedrive, newTxnId, runRound, settleRound };
}
