// What a replica does in the background besides redriving (DESIGN.md §3b):
// renew its lease; take over the transactions of a replica whose lease ran
// out (presumed abort for what it left undecided, its card rounds settled;
// the shared redrive then tells the banks); and abort its own claims that no
// request runs any more (a write whose outcome was lost with the store).
// Nothing waits for a lost pod to come back.
import { AssertionError } from "@paygate/money";
import type { Cards } from "./cards.js";
import type { Coordinator, EventLogger } from "./coordinator.js";
import type { Clock, ReplicaLeases } from "./ports.js";

export interface ReplicaDutiesOptions {
  readonly replica: string;
  readonly bootId: string;
  readonly leases: ReplicaLeases;
  readonly coordinator: Coordinator;
  readonly cards: Pick<Cards, "recover" | "settleOrphans">;
  readonly clock: Clock;
  readonly logger: EventLogger;
  /** Other replicas share the store: heartbeat and take over. Alone, only the orphan sweep runs. */
  readonly shared: boolean;
  readonly leaseMs: number;
  readonly heartbeatIntervalMs: number;
  readonly prepareTimeoutMs: number;
  /** Takeovers per tick. */
  readonly takeoversMax?: number;
  /** For intervals (default performance.now); tests pass their own. */
  readonly monotonicMs?: () => number;
}

export interface ReplicaDuties {
  /** One heartbeat now (start-up: before serving, so a restarted replica is not taken over). */
  heartbeat(): Promise<void>;
  /** One pass: take over expired replicas, sweep own orphans. Returns the replicas taken over. */
  tick(): Promise<string[]>;
  start(): () => Promise<void>;
}

const TAKEOVERS_PER_TICK_MAX = 4;

export function createReplicaDuties(o: ReplicaDutiesOptions): ReplicaDuties {
  const takeoversMax = o.takeoversMax ?? TAKEOVERS_PER_TICK_MAX;
  const monotonicMs = o.monotonicMs ?? (() => performance.now());
  // Since when this replica's own heartbeats have gone through without a break.
  // After an outage of the store that every replica shared, every lease has run
  // out; a replica that took the others over at once would abort their live
  // transactions. It waits one lease first: the live ones have renewed by then.
  let healthySinceMs: number | undefined;
  async function heartbeat(): Promise<void> {
    try {
      await o.leases.heartbeat(o.replica, o.bootId, o.leaseMs);
    } catch (e) {
      healthySinceMs = undefined;
      throw e;
    }
    healthySinceMs ??= monotonicMs();
  }
  const mayTakeOver = () => healthySinceMs !== undefined && monotonicMs() - healthySinceMs >= o.leaseMs;

  async function takeOver(dead: string): Promise<void> {
    const startedMs = o.clock.nowMs();
    // Everything it created, whatever its age: it will never decide any of it.
    const aborted = await o.coordinator.abortUndecided(dead, Number.MAX_SAFE_INTEGER);
    const cards = await o.cards.recover(dead);
    await o.leases.takenOver(dead, o.replica);
    o.logger.warn(
      { deadReplica: dead, ...aborted, ...cards, tookMs: o.clock.nowMs() - startedMs },
      "took over the transactions of a replica whose lease ran out",
    );
  }

  async function tick(): Promise<string[]> {
    const taken: string[] = [];
    if (o.shared && mayTakeOver()) {
      // Past the lease and a prepare timeout: whatever it had on the wire has timed out too.
      for (const dead of await o.leases.claimExpired(o.replica, o.prepareTimeoutMs, takeoversMax)) {
        await takeOver(dead);
        taken.push(dead);
      }
    }
    // Our own claims older than two prepare timeouts that no request runs: their writes' outcome was lost.
    const orphans = await o.coordinator.abortUndecided(o.replica, o.clock.nowMs() - 2 * o.prepareTimeoutMs);
    if (orphans.abortedPending + orphans.abortedRounds > 0)
      o.logger.warn({ ...orphans }, "aborted this replica's undecided transactions that no request runs any more");
    // ...and the card records those rounds belonged to (a capture lock would otherwise stay taken).
    await o.cards.settleOrphans(o.replica);
    return taken;
  }

  function start(): () => Promise<void> {
    let stopped = false;
    const loops: { timer: NodeJS.Timeout | undefined; running: Promise<unknown> }[] = [];
    const loop = (intervalMs: number, fn: () => Promise<unknown>, what: string) => {
      const state: { timer: NodeJS.Timeout | undefined; running: Promise<unknown> } = {
        timer: undefined,
        running: Promise.resolve(),
      };
      loops.push(state);
      const step = () => {
        state.running = fn()
          .catch((e: unknown) => {
            if (e instanceof AssertionError) throw e;
            o.logger.error({ err: e instanceof Error ? e.message : String(e) }, `${what} failed`);
          })
          .finally(() => {
            if (!stopped) state.timer = setTimeout(step, intervalMs);
          });
      };
      state.timer = setTimeout(step, intervalMs);
    };
    if (o.shared) loop(o.heartbeatIntervalMs, heartbeat, "lease heartbeat");
    loop(o.shared ? o.heartbeatIntervalMs : o.prepareTimeoutMs, tick, "replica takeover and orphan sweep");
    return async () => {
      stopped = true;
      for (const l of loops) clearTimeout(l.timer);
      await Promise.all(loops.map((l) => l.running));
    };
  }

  return { heartbeat, tick, start };
}
