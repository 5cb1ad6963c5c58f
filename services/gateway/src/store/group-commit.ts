// Group commit: writes queued while the event loop handles one round of I/O
// run together on the next setImmediate, in ONE SQLite transaction, so many
// callers share one fsync. Each write runs in its own savepoint (a nested
// better-sqlite3 transaction), so one that throws rolls back alone and only
// its caller sees the error. A caller's promise resolves after the COMMIT,
// i.e. once its write is durable.
//
// Some errors make SQLite roll back the WHOLE transaction on its own
// (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM): every write before it is gone,
// and a write after it would run outside any transaction (autocommit) while
// the final COMMIT fails. So after a failed write the batch checks that its
// transaction still stands; if it does not, or if COMMIT itself fails, the
// batch stops, nothing of it is durable, and each write runs again alone in
// its own transaction: every caller learns its own fate, never a neighbour's.
// Writes are therefore idempotent (a re-run finds its own row and reports it).
import type { Db } from "./db.js";

export interface GroupCommit {
  /** Queues a write; resolves with its result once it is durable. */
  enqueue<T>(write: () => T): Promise<T>;
  /**
   * Queues a write that may wait (an acknowledgement): it rides along with
   * the next flush, or goes on its own after `lazyFlushMs`, so it never costs
   * an fsync of its own while other writes are coming.
   */
  enqueueLazy<T>(write: () => T): Promise<T>;
  /** Runs everything queued now (readers that must see queued writes call it first). */
  flush(): void;
  /** Writes waiting for the next flush. */
  readonly queued: number;
}

interface Queued {
  readonly write: () => unknown;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** SQLite rolled the batch's transaction back by itself: none of the batch is durable. */
class BatchLost extends Error {
  override name = "BatchLost";
}

/** Most writes in one transaction: a bound on how long one flush holds the file. */
export const GROUP_COMMIT_BATCH_MAX = 4096;

/** How long a lazy write waits for company. */
export const LAZY_FLUSH_MS = 20;

export function createGroupCommit(db: Db, lazyFlushMs = LAZY_FLUSH_MS): GroupCommit {
  let queue: Queued[] = [];
  let scheduled = false;
  let lazyTimer: NodeJS.Timeout | undefined;

  const runAll = db.transaction((batch: readonly Queued[]): Outcome[] =>
    batch.map((q) => {
      try {
        return { ok: true, value: db.transaction(q.write)() };
      } catch (error) {
        if (!db.inTransaction) throw new BatchLost(String(error));
        return { ok: false, error };
      }
    }),
  );

  /** Each write in a transaction of its own: its own COMMIT decides its own fate. */
  function runAlone(batch: readonly Queued[]): void {
    for (const q of batch) {
      let value: unknown;
      try {
        value = db.transaction(q.write)();
      } catch (error) {
        q.reject(error);
        continue;
      }
      q.resolve(value);
    }
  }

  function flush(): void {
    scheduled = false;
    clearTimeout(lazyTimer);
    lazyTimer = undefined;
    while (queue.length > 0) {
      const batch = queue.slice(0, GROUP_COMMIT_BATCH_MAX);
      queue = queue.slice(batch.length);
      let outcomes: Outcome[];
      try {
        outcomes = runAll(batch);
      } catch {
        // SQLite rolled back on its own, or COMMIT failed (disk full, I/O
        // error): nothing of this batch is durable. One at a time instead.
        runAlone(batch);
        continue;
      }
      batch.forEach((q, i) => {
        const o = outcomes[i]!;
        if (o.ok) q.resolve(o.value);
        else q.reject(o.error);
      });
    }
  }

  return {
    enqueue<T>(write: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(flush);
        }
      });
    },
    enqueueLazy<T>(write: () => T): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
        if (!scheduled && lazyTimer === undefined) {
          lazyTimer = setTimeout(flush, lazyFlushMs);
          lazyTimer.unref();
        }
      });
    },
    flush,
    get queued() {
      return queue.length;
    },
  };
}
