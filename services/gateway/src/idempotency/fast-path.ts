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
// is cleared only by its own replica, which asks its log; every other replica
// answers "in use" until then. Each replica has its own log, so a claim that
// simply expired could let a second replica run a key the first had already
// committed.
import { randomUUID } from "node:crypto";
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
}

const WARN_INTERVAL_MS_DEFAULT = 5_000;
const MSG_REUSED = "this idempotency key was used for a different request";
const MSG_IN_USE = "this request is still in progress; retry with the same key";

/** Outcomes that are the key's last word: the same request always gets them again. */
export function isFinal(out: TransferOutcome): boolean {
  if (out.txnId === undefined) return false; // rejected before any claim
  if (out.result.ok) return true;
  const reason = out.result.reason;
  // In use / reused describe another request's claim, and a transient abort lets the key try again.
  return reason !== "idempotency_key_in_use" && reason !== "idempotency_key_reused" && !TRANSIENT_ABORT_REASONS.has(reason) && reason !== "internal";
}

export function withIdempotencyFastPath(o: FastPathOptions): Coordinator {
  const { inner, cache, logger } = o;
  const owner = `${o.replica}/${o.bootId ?? randomUUID()}`;
  const nowMs = o.nowMs ?? Date.now;
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
    logger.warn({ op, err: e instanceof Error ? e.message : String(e), suppressed }, "idempotency cache failed; the durable log answers instead");
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
  async function viaLog(callerUserId: string, req: TransferRequest, key: string, claimRaw: string, fingerprint: string): Promise<TransferOutcome> {
    let out: TransferOutcome;
    try {
      out = await inner.transfer(callerUserId, req);
    } catch (e) {
      await settle(key, claimRaw, fingerprint, { result: fail("internal", "failed"), txnId: undefined, replayed: false });
      throw e;
    }
    await settle(key, claimRaw, fingerprint, out);
    return out;
  }

  async function transfer(callerUserId: string, req: TransferRequest): Promise<TransferOutcome> {
    const checked = checkTransfer(req, callerUserId, o.directory);
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

  async function decide(callerUserId: string, req: TransferRequest, key: string, fingerprint: string): Promise<TransferOutcome> {
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
    if (existing.state === "in_flight" && existing.owner.startsWith(`${o.replica}/`) && running.get(key) === 1) {
      // Our own claim, but no other request of this process holds it: an
      // earlier run died, or storing the outcome failed. Our log knows what
      // happened (including whether that request, whatever it was, got in).
      let took = false;
      try {
        took = await cache.swap(key, existingRaw, claimRaw, o.ttlMs);
      } catch (e) {
        cacheFailed("swap", e);
      }
      if (took) logger.info({ idempotencyKey: req.idempotencyKey, staleOwner: existing.owner }, "took over a stale in-flight claim of this replica");
      return viaLog(callerUserId, req, key, claimRaw, fingerprint);
    }
    if (existing.fingerprint !== fingerprint) {
      o.metrics?.idempotency.inc({ result: "conflict" });
      const txnId = existing.state === "done" ? existing.txnId : undefined;
      return { result: fail("idempotency_key_reused", MSG_REUSED, txnId ? { transaction_id: txnId } : undefined), txnId, replayed: true };
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
