// IdempotencyCache on Redis (>= 7.0 for SET NX GET) with ioredis.
//
// Tuned to fail fast rather than wait: the durable log can answer every
// request, so a slow or absent Redis must cost a payment at most one short
// timeout, never a queue of blocked requests. Hence no offline queue (a
// command while disconnected fails at once), no per-command retries, a short
// command timeout, and a reconnect loop with a small capped delay so the fast
// path comes back soon after Redis does.
import { Redis } from "ioredis";
import type { EventLogger } from "../domain/coordinator.js";
import type { IdempotencyCache } from "./cache.js";

export interface RedisCacheOptions {
  readonly url: string;
  readonly logger: EventLogger;
  /** Per command; past it the caller falls back to the log. */
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /** Cap of the reconnect backoff. */
  readonly reconnectDelayMaxMs?: number;
  readonly connectionName?: string;
}

export interface RedisCache extends IdempotencyCache {
  /** True while connected and ready. */
  readonly ready: boolean;
  close(): Promise<void>;
}

const COMMAND_TIMEOUT_MS_DEFAULT = 200;
const CONNECT_TIMEOUT_MS_DEFAULT = 1_000;
const RECONNECT_DELAY_MAX_MS_DEFAULT = 1_000;
const RECONNECT_DELAY_BASE_MS = 50;
const RECONNECT_EXPONENT_MAX = 10;

// Compare-and-set / compare-and-delete: only the holder of a claim may replace or free it.
const SWAP_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0`;
const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

interface Scripted {
  idemSwap(key: string, expected: string, value: string, ttlMs: number): Promise<number>;
  idemRelease(key: string, expected: string): Promise<number>;
}

/** Redacts a password in redis://user:pass@host URLs before logging them. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable REDIS_URL)";
  }
}

export function createRedisCache(o: RedisCacheOptions): RedisCache {
  const delayMaxMs = o.reconnectDelayMaxMs ?? RECONNECT_DELAY_MAX_MS_DEFAULT;
  const redis = new Redis(o.url, {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: o.commandTimeoutMs ?? COMMAND_TIMEOUT_MS_DEFAULT,
    connectTimeout: o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT,
    // Reconnect forever (Redis coming back is the point), never slower than delayMaxMs.
    retryStrategy: (times) =>
      Math.min(RECONNECT_DELAY_BASE_MS * 2 ** Math.min(times, RECONNECT_EXPONENT_MAX), delayMaxMs),
    disableClientInfo: true,
    connectionName: o.connectionName,
  });
  redis.defineCommand("idemSwap", { lua: SWAP_LUA, numberOfKeys: 1 });
  redis.defineCommand("idemRelease", { lua: RELEASE_LUA, numberOfKeys: 1 });
  const scripted = redis as unknown as Scripted;
  const where = redactUrl(o.url);

  let ready = false;
  // One warning per outage, not one per reconnect attempt.
  let warned = false;
  redis.on("ready", () => {
    ready = true;
    warned = false;
    o.logger.info({ redis: where }, "idempotency cache connected");
  });
  redis.on("close", () => {
    if (ready)
      o.logger.warn({ redis: where }, "idempotency cache disconnected; the durable log answers until it is back");
    ready = false;
  });
  redis.on("error", (e: Error) => {
    if (warned) return;
    warned = true;
    o.logger.warn(
      { redis: where, err: e.message },
      "idempotency cache unavailable; the durable log answers until it is back",
    );
  });

  return {
    get ready() {
      return ready;
    },
    async claim(key, value, ttlMs) {
      const old = await redis.set(key, value, "PX", ttlMs, "NX", "GET");
      return old ?? undefined;
    },
    async swap(key, expected, value, ttlMs) {
      return (await scripted.idemSwap(key, expected, value, ttlMs)) === 1;
    },
    async put(key, value, ttlMs) {
      await redis.set(key, value, "PX", ttlMs);
    },
    async release(key, expected) {
      await scripted.idemRelease(key, expected);
    },
    async close() {
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}
