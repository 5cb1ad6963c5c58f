// The fast path's storage, as a port: Redis in production (redis-cache.ts),
// a Map in unit tests. Values are opaque strings (record.ts encodes them).
// Every method may throw or reject: the caller treats that as "the cache is
// down" and asks the durable log instead.

export interface IdempotencyCache {
  /** Atomic SET NX PX + GET: undefined if the key was free and now holds `value`, else what it already holds. */
  claim(key: string, value: string, ttlMs: number): Promise<string | undefined>;
  /** Replaces `expected` by `value` atomically; false if the key holds anything else (or nothing). */
  swap(key: string, expected: string, value: string, ttlMs: number): Promise<boolean>;
  /** Unconditional write with a TTL. */
  put(key: string, value: string, ttlMs: number): Promise<void>;
  /** Deletes the key only while it still holds `expected` (someone else's claim is never deleted). */
  release(key: string, expected: string): Promise<void>;
}

/** In-process stand-in with the same semantics (TTL from an injected clock). For tests. */
export function createMemoryCache(
  nowMs: () => number = Date.now,
): IdempotencyCache & { readonly entries: Map<string, { value: string; expiresAtMs: number }> } {
  const entries = new Map<string, { value: string; expiresAtMs: number }>();
  const get = (key: string): string | undefined => {
    const e = entries.get(key);
    if (e && e.expiresAtMs <= nowMs()) entries.delete(key);
    return entries.get(key)?.value;
  };
  return {
    entries,
    async claim(key, value, ttlMs) {
      const old = get(key);
      if (old !== undefined) return old;
      entries.set(key, { value, expiresAtMs: nowMs() + ttlMs });
      return undefined;
    },
    async swap(key, expected, value, ttlMs) {
      if (get(key) !== expected) return false;
      entries.set(key, { value, expiresAtMs: nowMs() + ttlMs });
      return true;
    },
    async put(key, value, ttlMs) {
      entries.set(key, { value, expiresAtMs: nowMs() + ttlMs });
    },
    async release(key, expected) {
      if (get(key) === expected) entries.delete(key);
    },
  };
}
