// Fixed-window rate counters on SQLite (sign-ups per client, link attempts
// per user; DESIGN.md §11). One statement counts a hit, so concurrent hits
// all count; a hit after the window ended starts a new one.
import type { RateLimits } from "../domain/ports.js";
import { num, type Db } from "./db.js";
import type { GroupCommit } from "./group-commit.js";

export function createSqliteRateLimits(db: Db, group: GroupCommit): RateLimits {
  const q = {
    hit: db.prepare(`INSERT INTO rate_limits (scope, key, count, window_end) VALUES (@scope, @key, 1, @now + @window)
      ON CONFLICT (scope, key) DO UPDATE SET
        count = CASE WHEN window_end <= @now THEN 1 ELSE count + 1 END,
        window_end = CASE WHEN window_end <= @now THEN @now + @window ELSE window_end END
      RETURNING count, window_end`),
    purge: db.prepare(
      "DELETE FROM rate_limits WHERE (scope, key) IN (SELECT scope, key FROM rate_limits WHERE window_end <= ? LIMIT ?)",
    ),
  };
  return {
    hit: (scope, key, nowMs, windowMs) =>
      group.enqueue(() => {
        const r = q.hit.get({ scope, key, now: nowMs, window: windowMs }) as { count: bigint; window_end: bigint };
        return { count: num(r.count), resetAtMs: num(r.window_end) };
      }),
    purgeExpired: (nowMs, limit) => group.enqueue(() => q.purge.run(nowMs, limit).changes),
  };
}
