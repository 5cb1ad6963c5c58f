// Group commit on PostgreSQL: the claims, decisions and acknowledgements
// queued in one event-loop turn go to paygate_apply() as ONE statement, i.e.
// one transaction and one WAL flush (synchronous_commit on), and each caller
// is answered only after that COMMIT, with its own op's result.
//
// A failed batch never leaves a caller's fate unknown:
// - serialization failures and deadlocks: the whole batch runs again (bounded);
// - an error in one op (say a constraint): the transaction rolled back as a
//   whole, so each op runs again alone and only the guilty caller sees it;
// - the connection broke or the server went away: the COMMIT may or may not
//   have happened. Every op is idempotent (a claim finds itself the key's
//   owner, a decision finds itself the winner), so each runs again alone,
//   retried until the database answers or the deadline passes; only then does
//   its caller get StoreUnavailableError.
import { setTimeout as sleep } from "node:timers/promises";
import { StoreUnavailableError } from "../../domain/ports.js";
import { isRetryableConflict, isUnavailable, type SqlDriver } from "./driver.js";

export type ApplyOp =
  | { readonly op: "claim"; readonly txn: object }
  | { readonly op: "reclaim"; readonly previousTxnId: string; readonly txn: object }
  | {
      readonly op: "round";
      readonly txnId: string;
      readonly kind: string;
      readonly banks: readonly string[];
      readonly createdAtMs: number;
    }
  | {
      readonly op: "decide";
      readonly txnId: string;
      readonly decision: string;
      readonly reason: string;
      readonly participants: readonly string[];
      readonly nowMs: number;
      readonly firstResendAtMs: number;
    }
  | { readonly op: "ack"; readonly txnId: string; readonly bank: string; readonly nowMs: number }
  | {
      readonly op: "defer";
      readonly txnId: string;
      readonly bank: string;
      readonly attempts: number;
      readonly nextAttemptAtMs: number;
      readonly error: string;
    };

export interface PgGroupCommit {
  apply(op: ApplyOp): Promise<unknown>;
  /** An op that may wait (an acknowledgement): it joins the next batch, or goes alone after lazyFlushMs. */
  applyLazy(op: ApplyOp): Promise<unknown>;
  /** Ops waiting or on the wire. */
  readonly pending: number;
  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void>;
}

export interface PgGroupCommitOptions {
  /** Most ops per statement. */
  readonly batchMax?: number;
  /** Batches on the wire at once (each on its own connection). */
  readonly inflightMax?: number;
  /** How long an op whose outcome is unknown keeps being retried. */
  readonly retryDeadlineMs: number;
  readonly onUnavailable?: (e: unknown) => void;
  /** How long a lazy op waits for company. */
  readonly lazyFlushMs?: number;
}

interface Queued {
  readonly op: ApplyOp;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

const BATCH_MAX_DEFAULT = 512;
const INFLIGHT_MAX_DEFAULT = 4;
const CONFLICT_RETRIES_MAX = 8;
const RETRY_DELAY_MS_MAX = 500;
const LAZY_FLUSH_MS_DEFAULT = 20;

const bigintJson = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

// One lock order for every replica's batches: fewer deadlocks between them.
const KIND_ORDER: Record<ApplyOp["op"], number> = { claim: 0, reclaim: 0, round: 1, decide: 2, ack: 3, defer: 3 };
function lockKey(op: ApplyOp): string {
  switch (op.op) {
    case "claim":
    case "reclaim": {
      const t = op.txn as { callerUserId: string; idempotencyKey: string };
      return `${t.callerUserId}\u0000${t.idempotencyKey}`;
    }
    case "ack":
    case "defer":
      return `${op.txnId}\u0000${op.bank}`;
    default:
      return op.txnId;
  }
}

function byLockOrder(a: Queued, b: Queued): number {
  const k = KIND_ORDER[a.op.op] - KIND_ORDER[b.op.op];
  if (k !== 0) return k;
  const ka = lockKey(a.op);
  const kb = lockKey(b.op);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export function createPgGroupCommit(driver: SqlDriver, o: PgGroupCommitOptions): PgGroupCommit {
  const batchMax = o.batchMax ?? BATCH_MAX_DEFAULT;
  const inflightMax = o.inflightMax ?? INFLIGHT_MAX_DEFAULT;
  let queue: Queued[] = [];
  let inflight = 0;
  let scheduled = false;
  let lazyTimer: NodeJS.Timeout | undefined;
  let drained: (() => void)[] = [];

  async function call(ops: readonly ApplyOp[]): Promise<unknown[]> {
    const rows = await driver.query<{ r: unknown }>("SELECT paygate_apply($1::text::jsonb) AS r", [
      JSON.stringify(ops, bigintJson),
    ]);
    const r = rows[0]?.r;
    const results = typeof r === "string" ? (JSON.parse(r) as unknown[]) : (r as unknown[]);
    if (!Array.isArray(results) || results.length !== ops.length)
      throw new Error(
        `paygate_apply answered ${Array.isArray(results) ? results.length : typeof results} results for ${ops.length} ops`,
      );
    return results;
  }

  const backoff = (attempt: number) => sleep(Math.min(RETRY_DELAY_MS_MAX, 5 * 2 ** attempt) * (0.5 + Math.random()));

  async function applyAlone(q: Queued): Promise<void> {
    const deadline = performance.now() + o.retryDeadlineMs; // monotonic: an interval, not a date
    for (let attempt = 0; ; attempt++) {
      try {
        q.resolve((await call([q.op]))[0]);
        return;
      } catch (e) {
        const again =
          (isRetryableConflict(e) && attempt < CONFLICT_RETRIES_MAX) ||
          (isUnavailable(e) && performance.now() < deadline);
        if (!again) {
          if (isUnavailable(e)) o.onUnavailable?.(e);
          q.reject(
            isUnavailable(e) && !(e instanceof StoreUnavailableError) ? new StoreUnavailableError(String(e)) : e,
          );
          return;
        }
        await backoff(attempt);
      }
    }
  }

  async function applyBatch(batch: Queued[]): Promise<void> {
    batch.sort(byLockOrder);
    for (let attempt = 0; attempt <= CONFLICT_RETRIES_MAX; attempt++) {
      try {
        const results = await call(batch.map((q) => q.op));
        batch.forEach((q, i) => q.resolve(results[i]));
        return;
      } catch (e) {
        if (isRetryableConflict(e) && attempt < CONFLICT_RETRIES_MAX) {
          await backoff(attempt);
          continue;
        }
        if (isUnavailable(e)) o.onUnavailable?.(e);
        break;
      }
    }
    // Rolled back as a whole, or its outcome is unknown: each op alone decides its own fate.
    await Promise.all(batch.map(applyAlone));
  }

  function schedule(): void {
    if (scheduled || inflight >= inflightMax || queue.length === 0) return;
    scheduled = true;
    setImmediate(send);
  }

  function send(): void {
    scheduled = false;
    clearTimeout(lazyTimer);
    lazyTimer = undefined;
    while (queue.length > 0 && inflight < inflightMax) {
      const batch = queue.slice(0, batchMax);
      queue = queue.slice(batch.length);
      inflight++;
      void applyBatch(batch).finally(() => {
        inflight--;
        if (queue.length > 0) schedule();
        else if (inflight === 0) {
          const waiting = drained;
          drained = [];
          for (const w of waiting) w();
        }
      });
    }
  }

  return {
    apply(op) {
      return new Promise((resolve, reject) => {
        queue.push({ op, resolve, reject });
        schedule();
      });
    },
    applyLazy(op) {
      return new Promise((resolve, reject) => {
        queue.push({ op, resolve, reject });
        if (!scheduled && lazyTimer === undefined) {
          lazyTimer = setTimeout(() => {
            lazyTimer = undefined;
            schedule();
          }, o.lazyFlushMs ?? LAZY_FLUSH_MS_DEFAULT);
          lazyTimer.unref();
        }
      });
    },
    get pending() {
      return queue.length + inflight;
    },
    drain() {
      if (queue.length > 0) schedule();
      if (queue.length === 0 && inflight === 0) return Promise.resolve();
      return new Promise((resolve) => drained.push(resolve));
    },
  };
}
