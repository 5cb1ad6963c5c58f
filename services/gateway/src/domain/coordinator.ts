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
import { TXN_ID_PATTERN } from "@paygate/vocab";
import type { FaultPoint } from "@paygate/faults";
import type { Reason } from "@paygate/rpc";
import type { DecidedFeed } from "./decided-feed.js";
import { NO_METRICS, type CoordinatorMetrics } from "./metrics.js";
import { fail, ok, TRANSIENT_ABORT_REASONS, type AckTask, type Decided, type Decision, type DecisionRecord, type NewTxn, type Result, type TxnRecord } from "./model.js";
import { StoreUnavailableError, type Clock, type CoordinatorLog, type Directory, type IdempotencyClaims, type Leg, type Participants } from "./ports.js";
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
  /**
   * Several replicas share the log (PostgreSQL): any replica answers
   * GetDecision for any txn. Alone (SQLite), a txn of another replica's
   * prefix that this log never saw is refused rather than presumed aborted.
   */
  readonly sharedLog?: boolean;
  /**
   * Wait for every participant's acknowledgement before answering a transfer
   * (the simulator and a few tests want it). Default: answer once the
   * decision is durable and let the Commit/Abort go out behind the reply.
   */
  readonly replyAfterDelivery?: boolean;
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

export interface TakeoverReport {
  readonly abortedPending: number;
  readonly abortedRounds: number;
}

export interface Coordinator {
  transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome>;
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
  /** A fresh txn id of this replica, for runRound. */
  newTxnId(): string;
  /**
   * One two-phase-commit round over explicit legs (card holds, captures,
   * refunds): the same prepare / decide / deliver as a transfer, but the txn
   * is a registered round, not a transfer; the caller keeps its own record
   * and stores `txnId` there BEFORE calling, so an interrupted round can be settled.
   */
  runRound(txnId: string, kind: string, plan: readonly PreparePlan[]): Promise<DecisionRecord>;
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
  /** Txns and rounds this process is running now (not orphans). */
  isRunning(txnId: string): boolean;
}

export { TXN_ID_PATTERN } from "@paygate/vocab";
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
  // (txn, bank) pairs with a Commit/Abort on the wire, and the answer they will
  // get: the redrive loop, the transfer path and a retry's check share one send.
  const inflight = new Map<string, Promise<boolean>>();
  // Txns and rounds between their claim and their decision in this process:
  // the orphan sweep leaves them alone.
  const running = new Set<string>();

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

  /** Logs the decision (insert-if-absent; resolves once durable, sharing its fsync with concurrent ones). */
  async function decide(txnId: string, decision: Decision, reason: Reason | "", banks: readonly string[]): Promise<Decided> {
    const logged = metrics.phaseDuration.startTimer({ phase: "decision_log" });
    const d = await log.decide(decideInput(txnId, decision, reason, banks));
    logged();
    assert(d.decision.txnId === txnId, "the log answered for another txn");
    if (d.decision.decision !== decision) logger.warn({ transactionId: txnId, wanted: decision, logged: d.decision.decision }, "decision already logged; obeying it");
    feed.notify();
    return d;
  }

  function backoffMs(attempts: number): number {
    const exp = Math.min(Math.max(attempts - 1, 0), BACKOFF_EXPONENT_MAX);
    return Math.min(o.redriveBackoffMaxMs, o.redriveIntervalMs * 2 ** exp);
  }

  /** One Commit/Abort; true if the participant acknowledged it. A pair already on the wire is not sent twice: its answer is shared. */
  function send(task: AckTask): Promise<boolean> {
    const key = `${task.txnId} ${task.bank}`;
    const onWire = inflight.get(key);
    if (onWire) return onWire;
    const attempt = sendOnce(task).finally(() => inflight.delete(key));
    inflight.set(key, attempt);
    return attempt;
  }

  async function sendOnce(task: AckTask): Promise<boolean> {
    let delivery;
    try {
      delivery = task.decision === "COMMIT" ? await participants.commit(task.bank, task.txnId, o.commitTimeoutMs) : await participants.abort(task.bank, task.txnId, o.commitTimeoutMs);
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
    const fields = { transactionId: task.txnId, bank: task.bank, decision: task.decision, reason: delivery.reason, attempts };
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
    const acked = await Promise.all(banks.map((bank) => send({ txnId: d.txnId, bank, decision: d.decision, attempts: 0 })));
    return acked.every(Boolean);
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

  /** Votes, then the decision. Shared by transfers and rounds. */
  async function prepareAndDecide(txnId: string, plan: readonly PreparePlan[]): Promise<Decided> {
    const banks = plan.map((p) => p.bank);
    const voted = metrics.phaseDuration.startTimer({ phase: "prepare" });
    const verdict = await collectVotes(txnId, plan);
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

  async function run(txn: TxnRecord): Promise<Result<TxnRecord>> {
    const decided = await prepareAndDecide(txn.txnId, preparePlan(txn));
    const d = decided.decision;
    faults.hit(d.decision === "COMMIT" ? "gateway.after_commit_logged" : "gateway.after_abort_logged");
    // The decision is durable: the answer no longer depends on the banks
    // hearing it now. Commit/Abort go out after the reply (the redrive loop
    // and recovery resend whatever is not acknowledged), so the caller waits
    // for one prepare round and two fsyncs, not a second round trip.
    const delivering = deliver(d, banksOf(txn));
    const delivered = metrics.phaseDuration.startTimer({ phase: "commit" });
    void delivering.then(delivered);
    if (o.replyAfterDelivery) await delivering;
    // The decision's write settled the txn (status, sequence) and hands it back.
    const final = decided.txn;
    assert(final !== undefined && final.txnId === txn.txnId, "deciding a transfer returns it");
    assert(final.status === (d.decision === "COMMIT" ? "COMMITTED" : "ABORTED"), "txn status follows its logged decision");
    metrics.transfers.inc(final.status === "COMMITTED" ? { outcome: "committed" } : { outcome: "aborted", reason: final.declineReason || "internal" });
    return d.decision === "COMMIT" ? ok(final) : declined(final);
  }

  function declined(txn: TxnRecord): Result<TxnRecord> {
    assert(txn.status === "ABORTED", "only aborted txns decline");
    const reason = (txn.declineReason || "internal") as Reason;
    return fail(reason, `transfer declined: ${reason}`, { transaction_id: txn.txnId });
  }

  type ClaimStep = { readonly done: TransferOutcome } | { readonly txn: TxnRecord; readonly replayed: boolean };

  /** Claims the key, or answers from the txn that owns it. */
  async function claimKey(callerUserId: string, checked: CheckedTransfer): Promise<ClaimStep> {
    let claim = await claims.claim(newTxn(checked, callerUserId));
    let replayed = false;
    for (let attempt = 1; !claim.claimed; attempt++) {
      replayed = true;
      const owner = claim.owner;
      const meta = { transaction_id: owner.txnId };
      const answer = (result: Result<TxnRecord>): ClaimStep => ({ done: { result, txnId: owner.txnId, replayed } });
      if (owner.fingerprint !== checked.fingerprint) {
        metrics.idempotency.inc({ result: "conflict" });
        return answer(fail("idempotency_key_reused", "this idempotency key was used for a different request", meta));
      }
      if (owner.status === "COMMITTED") {
        metrics.idempotency.inc({ result: "hit" });
        return answer(ok(owner));
      }
      if (owner.status === "PENDING") {
        metrics.idempotency.inc({ result: "in_flight" });
        return answer(fail("idempotency_key_in_use", "this request is still in progress; retry with the same key", meta));
      }
      // ABORTED. Nothing moved and ABORT is durably decided, so a transient
      // cause lets the same key try again as a new txn; a business reason is final.
      if (!TRANSIENT_ABORT_REASONS.has(owner.declineReason) || attempt >= CLAIM_ATTEMPTS_MAX) {
        metrics.idempotency.inc({ result: "hit" });
        return answer(declined(owner));
      }
      // The retry must not meet the first attempt's own hold (a NO for
      // insufficient_funds would be final for this key): its Abort first.
      if (!(await abortDelivered(owner.txnId))) {
        metrics.idempotency.inc({ result: "in_flight" });
        return answer(fail("participant_unavailable", "the previous attempt is still being released at a bank; retry with the same key", meta));
      }
      claim = await claims.reclaim(owner.txnId, newTxn(checked, callerUserId));
    }
    return { txn: claim.txn, replayed };
  }

  async function transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome> {
    const checked = await checkTransfer(req, callerUserId, directory);
    if (!checked.ok) return { result: checked, txnId: undefined, replayed: false };
    let step: ClaimStep;
    const claimed = metrics.phaseDuration.startTimer({ phase: "claim" });
    try {
      step = await claimKey(callerUserId, checked.value);
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // Whether the claim landed is unknown: a repeat finds out (and the orphan sweep aborts a claim nobody runs).
      return { result: fail("store_unavailable", "the gateway's store is unavailable; nothing was sent to a bank; retry with the same key"), txnId: undefined, replayed: false };
    }
    if ("done" in step) return step.done;
    claimed(); // timed for the transfers that run, like the other phases
    // A fresh txn runs (also after a transient abort released the key): nothing was replayed.
    metrics.idempotency.inc({ result: "miss" });
    const txn = step.txn;
    assert(txn.status === "PENDING", "a fresh claim is PENDING");
    running.add(txn.txnId);
    try {
      return { result: await run(txn), txnId: txn.txnId, replayed: step.replayed };
    } catch (e) {
      if (!(e instanceof StoreUnavailableError)) throw e;
      // The decision may or may not be durable: nothing is sent until it is
      // known. The banks ask GetDecision after their prepare timeout.
      logger.warn({ transactionId: txn.txnId, err: e.message }, "store unavailable while deciding; the banks will ask for the decision");
      return { result: fail("store_unavailable", "the gateway's store is unavailable; retry with the same key", { transaction_id: txn.txnId }), txnId: txn.txnId, replayed: step.replayed };
    } finally {
      running.delete(txn.txnId);
    }
  }

  /** Who takes part in a txn: a transfer's banks, a round's, or (an unknown txn presumed aborted before) the acks'. */
  async function participantsOf(txnId: string): Promise<readonly string[] | undefined> {
    const txn = await log.findTxn(txnId);
    if (txn) return banksOf(txn);
    return (await log.findRound(txnId))?.banks;
  }

  async function getDecision(txnId: string, askingBank: string): Promise<Result<Decision>> {
    const m = TXN_ID_PATTERN.exec(txnId);
    if (!m) return fail("invalid_txn_id", "txn_id must look like \"<replica>:<uuid>\"", { field: "txn_id" });
    const banks = await participantsOf(txnId);
    // Any bank's certificate could otherwise force a presumed abort on any txn in flight.
    if (banks && !banks.includes(askingBank)) return fail("not_participant", `bank ${askingBank} takes no part in ${txnId}`, { field: "txn_id" });
    const logged = await log.findDecision(txnId);
    if (logged) return ok(logged.decision);
    // Every txn and round is registered before its first Prepare leaves, so
    // an unknown id was never prepared anywhere legitimately. Alone, another
    // replica's txn is not ours to presume about.
    if (!banks && !o.sharedLog && m[1] !== o.replica) return fail("invalid_txn_id", `txn ${txnId} is coordinated by ${m[1]}, not ${o.replica}`, { field: "txn_id" });
    const d = (await decide(txnId, "ABORT", "participant_timeout", banks ?? [askingBank])).decision;
    if (d.decision === "ABORT") logger.info({ transactionId: txnId, bank: askingBank }, "presumed abort for a bank that asked before the decision");
    return ok(d.decision);
  }

  async function redriveOnce(): Promise<number> {
    // Claimed for twice the attempt's timeout: another replica resends them only if this one dies meanwhile.
    const due = await log.dueAcks(clock.nowMs(), redriveBatchMax, 2 * o.commitTimeoutMs);
    for (const t of due) {
      // send() skips a pair already on the wire; that is not an attempt.
      if (!inflight.has(`${t.txnId} ${t.bank}`)) metrics.redriveAttempts.inc({ decision: t.decision === "COMMIT" ? "commit" : "abort" });
    }
    await Promise.all(due.map(send));
    return due.length;
  }

  async function abortUndecided(replica: string, createdBeforeMs: number): Promise<TakeoverReport> {
    let abortedPending = 0;
    let abortedRounds = 0;
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const pending = (await log.pendingUndecided(redriveBatchMax, { replica, createdBeforeMs })).filter((t) => !running.has(t.txnId));
      if (pending.length === 0) break;
      // No COMMIT was ever logged for these, so no bank can have been told to commit.
      await Promise.all(pending.map((txn) => decide(txn.txnId, "ABORT", "coordinator_restarted", banksOf(txn))));
      // Each transfer ended here, not in run(): count it once, where it was decided.
      for (let i = 0; i < pending.length; i++) metrics.transfers.inc({ outcome: "aborted", reason: "coordinator_restarted" });
      abortedPending += pending.length;
    }
    for (let page = 0; page < RECOVERY_PAGES_MAX; page++) {
      const rounds = (await log.undecidedRounds(redriveBatchMax, replica, createdBeforeMs)).filter((r) => !running.has(r.txnId));
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
    if (abortedPending > 0 || abortedRounds > 0 || redriven > 0) logger.info({ abortedPending, abortedRounds, redriven }, "coordinator recovery");
    return { abortedPending: abortedPending + abortedRounds, redriven, backlog: redriven >= redriveBatchMax };
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

  async function runRound(txnId: string, kind: string, plan: readonly PreparePlan[]): Promise<DecisionRecord> {
    assert(TXN_ID_PATTERN.test(txnId), "a round has a txn id");
    assert(plan.length > 0, "a round has participants");
    const banks = plan.map((p) => p.bank);
    assert(new Set(banks).size === banks.length, "one prepare per bank");
    running.add(txnId);
    try {
      // Durable before any Prepare: any replica then knows who may ask about it.
      await log.registerRound({ txnId, kind, banks, createdAtMs: clock.nowMs() });
      const { decision: d } = await prepareAndDecide(txnId, plan);
      faults.hit(d.decision === "COMMIT" ? "gateway.after_commit_logged" : "gateway.after_abort_logged");
      await deliver(d, banks);
      return d;
    } finally {
      running.delete(txnId);
    }
  }

  async function settleRound(txnId: string, banks: readonly string[]): Promise<DecisionRecord> {
    return (await log.findDecision(txnId)) ?? (await decide(txnId, "ABORT", "coordinator_restarted", banks)).decision;
  }

  async function abortDelivered(txnId: string): Promise<boolean> {
    const d = await log.findDecision(txnId);
    if (d?.decision !== "ABORT") return false;
    const unacked = await log.unackedBanks(txnId);
    if (unacked.length === 0) return true;
    return deliver(d, unacked);
  }

  return {
    transfer,
    getDecision,
    recover,
    abortUndecided,
    redriveOnce,
    startRedrive,
    newTxnId,
    runRound,
    settleRound,
    abortDelivered,
    decisionOf: (txnId) => log.findDecision(txnId),
    isRunning: (txnId) => running.has(txnId),
  };
}
