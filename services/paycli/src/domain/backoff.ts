// Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff
// And Jitter"): delay = random(0, min(cap, base * 2^attempt)). Full jitter
// spreads the retries of many clients that lost the gateway at the same moment,
// so they do not all come back in one thundering herd when it returns.
import { assert } from "@paygate/money";

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
}

/** Uniform in [0, 1), like Math.random. Injected so tests can seed it. */
export type Random = () => number;

/**
 * The upper bound of the delay before retry number `attempt + 1`, where
 * `attempt` counts the failures so far minus one (0 after the first failure).
 */
export function backoffCeilingMs(attempt: number, policy: BackoffPolicy): number {
  assert(Number.isSafeInteger(attempt), `attempt must be a non-negative integer, got ${attempt}`);
  assert(attempt >= 0, `attempt must not be negative, got ${attempt}`);
  assert(policy.baseMs >= 0, "backoff base and cap must be non-negative");
  assert(policy.capMs >= 0, `backoff cap must not be negative, got ${policy.capMs}`);
  // 2^attempt overflows to Infinity long after it passes any sane cap; stop early.
  if (attempt >= 52) return policy.capMs;
  return Math.min(policy.capMs, policy.baseMs * 2 ** attempt);
}

/** A delay drawn uniformly from [0, ceiling], both ends included. */
export function fullJitterDelayMs(attempt: number, policy: BackoffPolicy, random: Random): number {
  const ceiling = backoffCeilingMs(attempt, policy);
  const r = random();
  assert(r >= 0, `random() must return a value in [0, 1), got ${r}`);
  assert(r < 1, `random() must return a value below 1, got ${r}`);
  return Math.min(ceiling, Math.floor(r * (ceiling + 1)));
}

/** mulberry32: a small seeded generator, good enough to spread retries and to replay a test. */
export function createSeededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
