// In-doubt resolution (DESIGN.md §3 step 5): a txn held PREPARED longer than
// the prepare timeout has lost its coordinator's decision somewhere. Ask the
// coordinator (any gateway replica: coordinator-client.ts) and apply what it
// says. The coordinator answers ABORT for a txn it has no decision for
// (presumed abort) and records that, so asking is always safe. The replica the
// txn id's prefix names is only carried into log lines.
//
// Ticks never overlap; each asks at most askPerTickMax txns concurrently
// (async, so the event loop keeps serving); a txn whose ask failed waits a
// doubling back-off capped at backoffMaxMs. After a restart the PREPARED txns
// are still in the ledger, and the first tick runs at start.
import type { PreparedRef } from "./store/ledger-store.js";

export type Decision = "commit" | "abort";

export interface ResolverLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ResolverOptions {
  readonly preparedBefore: (cutoffMs: number, limit: number) => PreparedRef[];
  /** Asks the coordinator (`coordinator` = the txn id's prefix, for messages); rejects on any failure. */
  readonly ask: (txnId: string, coordinator: string) => Promise<Decision>;
  /** Applies the decision locally (Commit / Abort); returns the failure reason, if any. */
  readonly apply: (txnId: string, decision: Decision) => string | undefined;
  readonly logger: ResolverLogger;
  readonly prepareTimeoutMs: number;
  readonly intervalMs: number;
  readonly backoffMaxMs: number;
  /** Wall clock (epoch ms): compared with the persisted prepare times. */
  readonly clock?: () => number;
  /** For back-off intervals; defaults to a monotonic clock (or `clock`, when a test gives one). */
  readonly monotonicMs?: () => number;
  readonly askPerTickMax?: number;
  /** How many overdue txns one tick looks at (to skip those backing off). */
  readonly scanMax?: number;
}

export interface TickReport {
  readonly committed: number;
  readonly aborted: number;
  readonly failed: number;
  /** Overdue but still backing off after an earlier failure. */
  readonly waiting: number;
}

export interface Resolver {
  /** One scan-and-resolve pass (tests call it directly; start() schedules it). */
  tick(): Promise<TickReport>;
  start(): void;
  /** Stops scheduling and waits for a running tick to finish. */
  stop(): Promise<void>;
  /** Txns currently backing off (for tests and metrics). */
  readonly backingOff: number;
}

export const ASK_PER_TICK_MAX = 32;
export const SCAN_MAX = 1024;
const BACKOFF_EXPONENT_MAX = 20;

export function createResolver(options: ResolverOptions): Resolver {
  const clock = options.clock ?? Date.now;
  // Back-off is an interval: a wall clock stepped by NTP must not stretch or skip it.
  const monotonic = options.monotonicMs ?? options.clock ?? (() => performance.now());
  const askPerTickMax = options.askPerTickMax ?? ASK_PER_TICK_MAX;
  const scanMax = options.scanMax ?? SCAN_MAX;
  const { logger } = options;
  // txn id -> consecutive failures and when to try again. Bounded: pruned to
  // the overdue txns seen by a complete scan, and capped at scanMax entries.
  const backoff = new Map<string, { failures: number; retryAtMs: number }>();
  let running: Promise<TickReport> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = true;

  async function resolveOne(ref: PreparedRef): Promise<Decision | undefined> {
    let decision: Decision;
    try {
      decision = await options.ask(ref.txnId, ref.coordinator);
    } catch (e) {
      const prev = backoff.get(ref.txnId)?.failures ?? 0;
      const failures = prev + 1;
      const delayMs = Math.min(
        options.intervalMs * 2 ** Math.min(failures, BACKOFF_EXPONENT_MAX),
        options.backoffMaxMs,
      );
      if (backoff.size < scanMax || backoff.has(ref.txnId))
        backoff.set(ref.txnId, { failures, retryAtMs: monotonic() + delayMs });
      logger.warn(
        {
          txnId: ref.txnId,
          coordinator: ref.coordinator,
          failures,
          retryInMs: delayMs,
          err: e instanceof Error ? e.message : String(e),
        },
        "in-doubt txn: asking the coordinator failed",
      );
      return undefined;
    }
    backoff.delete(ref.txnId);
    const failure = options.apply(ref.txnId, decision);
    if (failure !== undefined) {
      // The coordinator contradicting this bank's log is a protocol violation.
      logger.error(
        { txnId: ref.txnId, decision, reason: failure },
        "in-doubt txn: the coordinator's decision could not be applied",
      );
      return undefined;
    }
    logger.info(
      { txnId: ref.txnId, coordinator: ref.coordinator, decision, preparedAgoMs: clock() - ref.preparedAtMs },
      "in-doubt txn resolved",
    );
    return decision;
  }

  async function runTick(): Promise<TickReport> {
    const now = clock();
    const overdue = options.preparedBefore(now - options.prepareTimeoutMs, scanMax);
    if (overdue.length < scanMax) {
      const seen = new Set(overdue.map((r) => r.txnId));
      for (const id of backoff.keys()) if (!seen.has(id)) backoff.delete(id);
    }
    const due: PreparedRef[] = [];
    let waiting = 0;
    const tick = monotonic();
    for (const ref of overdue) {
      const b = backoff.get(ref.txnId);
      if (b && b.retryAtMs > tick) waiting++;
      else if (due.length < askPerTickMax) due.push(ref);
    }
    const results = await Promise.all(due.map(resolveOne));
    return {
      committed: results.filter((d) => d === "commit").length,
      aborted: results.filter((d) => d === "abort").length,
      failed: results.filter((d) => d === undefined).length,
      waiting,
    };
  }

  function tick(): Promise<TickReport> {
    running ??= runTick().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      tick()
        .catch((e: unknown) =>
          logger.error({ err: e instanceof Error ? e.message : String(e) }, "in-doubt resolver tick failed"),
        )
        .finally(() => schedule(options.intervalMs));
    }, delayMs);
    timer.unref();
  }

  return {
    tick,
    start() {
      if (!stopped) return;
      stopped = false;
      schedule(0); // txns already overdue at start are asked promptly
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
    get backingOff() {
      return backoff.size;
    },
  };
}
