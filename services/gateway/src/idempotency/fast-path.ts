// The idempotency fast path (DESIGN.md §4): a decorator around the
// coordinator's transfer that answers repeats from a shared cache (Redis) so
// they never reach the durable log or a bank.
//
// The cache is never the guard. Every request the cache does not answer goes
// through the coordinator, whose log holds the unique (caller, key) index: if
// Redis was flushed, lost its data or is down, the log still claims the key
// once and answers repeats from its stored outcome. So a wrong or missing
// cache entry can cost a round trip or a retryable "in use", never a second
// movement of money.
//
// A request's story: check it (a request that fails validation is never
// stored, so the client may fix it and retry with the same key) -> claim the
// key in the cache as in flight (SET NX) -> a repeat finds the claim: done
// with the same fingerprint = the stored outcome; in flight = retry later;
// another fingerprint = key reused -> otherwise the coordinator runs it
// (log claim, 2PC) -> the final outcome is stored for IDEMPOTENCY_TTL; a
// transient abort deletes the claim, as the log lets the key try again.
//
// An in-flight claim whose holder died (or whose outcome could not be stored)
// is checked against the log. With one shared log (PostgreSQL) any replica
// may do it; with a log per replica (SQLite) only the claim's own replica,
// whose log alone knows what became of it.
import { randomUUID } from "node:crypto";
import { reasonClass } from "@paygate/vocab";
import type { Coordinator, EventLogger, TransferOutcome } from "../domain/coordinator.js";
import { fail, TRANSIENT_ABORT_REASONS } from "../domain/model.js";
import type { Directory } from "../domain/ports.js";
import { checkTransfer, type TransferRequest } from "../domain/transfer-rules.js";
import type { IdempotencyCache } from "./cache.js";
import { cacheKey, decodeRecord, encodeRecord, type DoneRecord, type InFlightRecord } from "./record.js";

/** @paygate/telemetry's GatewayMetrics satisfies this; the log path counts its own results in the coordinator. */
export interface FastPathMetrics {
  readonly idempotency: { inc(labels: { result: "hit" | "conflict" | "in_flight" }): void };
  readonly idempotencyRedisErrors: { inc(): void };
}

export interface FastPathOptions {
  readonly inner: Coordinator;
  readonly cache: IdempotencyCache;
  readonly directory: Directory;
  /**
   * This process's replica name. Its own log is the only one that can say
   * what became of its claims, so only this replica ever clears a stale one.
   */
  readonly replica: string;
  /** Unique per process start. */
  readonly bootId?: string;
  /**
   * How long a key is remembered (IDEMPOTENCY_TTL), finished or in flight.
   * An in-flight claim does not lapse sooner: if its replica died after
   * committing, another replica's log knows nothing of it, and letting that
   * replica run the key again would move the money twice.
   */
  readonly ttlMs: number;
  readonly logger: EventLogger;
  readonly metrics?: FastPathMetrics;
  /** A cache failure is logged at most once per interval (each one is counted). */
  readonly warnIntervalMs?: number;
  readonly nowMs?: () => number;
  /**
   * Every replica shares one durable log (PostgreSQL): an in-flight claim of
   * any replica may be checked against it, because the log knows every key.
   */
  readonly sharedLog?: boolean;
}

const WARN_INTERVAL_MS_DEFAULT = 5_000;
const MSG_REUSED = "this idempotency key was used for a different request";
const MSG_IN_USE = "this request is still in progress; retry with the same key";

/**
 * Outcomes that are the key's last word: the same request always gets them
 * again. Only a commit or a final decline; anything that may pass later (a
 * transient abort, the store unreachable, a key still in use) must never be
 * remembered, or the key would be stuck on it for IDEMPOTENCY_TTL.
 */
export function isFinal(out: TransferOutcome): boolean {
  if (out.txnId === undefined) return false; // rejected before any claim
  if (out.result.ok) return true;
  const reason = out.result.reason;
  // Reused describes another request's claim; a transient abort lets the key try again.
  return reasonClass(reason) === "final" && reason !== "idempotency_key_reused" && !TRANSIENT_ABORT_REASONS.has(reason);
}

export function withIdempotencyFastPath(o: FastPathOptions): Coordinator {
  const { inner, cache, logger } = o;
  const owner = `${o.replica}/${o.bootId ?? randomUUID()}`;
  // Only intervals (the warning throttle): monotonic.
  const nowMs = o.nowMs ?? (() => performance.now());
  const warnIntervalMs = o.warnIntervalMs ?? WARN_INTERVAL_MS_DEFAULT;
  let lastWarnMs = -Infinity;
  let suppressed = 0;
  // Keys this process is working on right now: any other in-flight claim of
  // this replica is stale (an earlier run died, or storing the outcome failed).
  const running = new Map<string, number>();

  function cacheFailed(op: string, e: unknown): void {
    o.metrics?.idempotencyRedisErrors.inc();
    const t = nowMs();
    if (t - lastWarnMs < warnIntervalMs) {
      suppressed++;
      return;
    }
    logger.warn(
      { op, err: e instanceof Error ? e.message : String(e), suppressed },
      "idempotency cache failed; the durable log answers instead",
    );
    lastWarnMs = t;
    suppressed = 0;
  }

  /** After the outcome: store it if it is final, else free our claim. Never throws. */
  async function settle(key: string, claimRaw: string, fingerprint: string, out: TransferOutcome): Promise<void> {
    try {
      if (isFinal(out) && out.txnId !== undefined) {
        const done: DoneRecord = { state: "done", fingerprint, txnId: out.txnId, result: out.result };
        await cache.put(key, encodeRecord(done), o.ttlMs);
      } else {
        await cache.release(key, claimRaw);
      }
    } catch (e) {
      cacheFailed(isFinal(out) ? "put" : "release", e);
    }
  }

  /** The log decides; we still record what it said, in case our claim landed after all. */
  async function viaLog(
    callerUserId: string,
    req: TransferRequest,
    key: string,
    claimRaw: string,
    fingerprint: string,
  ): Promise<TransferOutcome> {
    let out: TransferOutcome;
    try {
      out = await inner.transfer(callerUserId, req);
    } catch (e) {
      void settle(key, claimRaw, fingerprint, {
        result: fail("internal", "failed"),
        txnId: undefined,
        replayed: false,
      });
      throw e;
    }
    // Behind the reply: the log already holds the outcome, so a repeat that
    // arrives before this lands is answered from the log (or finds our claim
    // and asks the log), never differently.
    void settle(key, claimRaw, fingerprint, out);
    return out;
  }

  async function transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome> {
    const checked = await checkTransfer(req, callerUserId, o.directory);
    // Invalid: the coordinator rejects it exactly the same way, and nothing is stored anywhere.
    if (!checked.ok) return inner.transfer(callerUserId, req);
    const key = cacheKey(callerUserId, req.idempotencyKey);
    // Counted from before the claim to after the outcome is stored, so no
    // request ever sees its sibling's live claim as stale.
    running.set(key, (running.get(key) ?? 0) + 1);
    try {
      return await decide(callerUserId, req, key, checked.value.fingerprint);
    } finally {
      const left = (running.get(key) ?? 1) - 1;
      if (left > 0) running.set(key, left);
      else running.delete(key);
    }
  }

  async function decide(
    callerUserId: string,
    req: TransferRequest,
    key: string,
    fingerprint: string,
  ): Promise<TransferOutcome> {
    const claim: InFlightRecord = { state: "in_flight", fingerprint, owner, token: randomUUID() };
    const claimRaw = encodeRecord(claim);

    let existingRaw: string | undefined;
    try {
      existingRaw = await cache.claim(key, claimRaw, o.ttlMs);
    } catch (e) {
      cacheFailed("claim", e);
      return viaLog(callerUserId, req, key, claimRaw, fingerprint);
    }
    if (existingRaw === undefined) return viaLog(callerUserId, req, key, claimRaw, fingerprint);

    const existing = decodeRecord(existingRaw);
    if (!existing) {
      cacheFailed("decode", new Error(`unreadable record under ${key}`));
      return viaLog(callerUserId, req, key, claimRaw, fingerprint);
    }
    const stale =
      existing.state === "in_flight" &&
      running.get(key) === 1 &&
      (o.sharedLog === true || existing.owner.startsWith(`${o.replica}/`));
    if (stale) {
      // A claim no request of this process holds: an earlier run died, storing
      // the outcome failed, or (shared log) another replica holds it or died.
      // The log knows what happened, including whether that request got in,
      // and answers "in use" itself while its txn is still PENDING.
      let took = false;
      try {
        took = await cache.swap(key, existingRaw, claimRaw, o.ttlMs);
      } catch (e) {
        cacheFailed("swap", e);
      }
      if (took)
        logger.info(
          { idempotencyKey: req.idempotencyKey, staleOwner: existing.owner },
          "took over a stale in-flight claim of this replica",
        );
      return viaLog(callerUserId, req, key, claimRaw, fingerprint);
    }
    if (existing.fingerprint !== fingerprint) {
      o.metrics?.idempotency.inc({ result: "conflict" });
      const txnId = existing.state === "done" ? existing.txnId : undefined;
      return {
        result: fail("idempotency_key_reused", MSG_REUSED, txnId ? { transaction_id: txnId } : undefined),
        txnId,
        replayed: true,
      };
    }
    if (existing.state === "done") {
      o.metrics?.idempotency.inc({ result: "hit" });
      return { result: existing.result, txnId: existing.txnId, replayed: true };
    }
    o.metrics?.idempotency.inc({ result: "in_flight" });
    return { result: fail("idempotency_key_in_use", MSG_IN_USE), txnId: undefined, replayed: true };
  }

  return { ...inner, transfer };
}
