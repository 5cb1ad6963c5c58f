// Group commit: writes queued while the event loop handles one round of I/O
// run together on the next setImmediate, in ONE SQLite transaction, so many
// callers share one fsync. Each write runs in its own savepoint (a nested
// better-sqlite3 transaction), so one that throws rolls back alone and only
// its caller sees the error. A caller's promise resolves after the COMMIT,
// i.e. once its write is durable.
import type { Db } from "./db.js";

export interface GroupCommit {
  /** Queues a write; resolves with its result once it is durable. */
  enqueue<T>(write: () => T): Promise<T>;
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

export function createGroupCommit(db: Db): GroupCommit {
  let queue: Queued[] = [];
  let scheduled = false;

  const runAll = db.transaction((batch: readonly Queued[]): Outcome[] =>
    batch.map((q) => {
      try {
        return { ok: true, value: db.transaction(q.write)() };
      } catch (error) {
        return { ok: false, error };
      }
    }),
  );

  function flush(): void {
    scheduled = false;
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    let outcomes: Outcome[];
    try {
      outcomes = runAll(batch);
    } catch (error) {
      // The COMMIT itself failed (disk full, I/O error): nothing of the batch is durable.
      for (const q of batch) q.reject(error);
      return;
    }
    batch.forEach((q, i) => {
      const o = outcomes[i]!;
      if (o.ok) q.resolve(o.value);
      else q.reject(o.error);
    });
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
    flush,
    get queued() {
      return queue.length;
    },
  };
}
